-- C-MOVE destinations managed at run time (`strata ae add|remove`), in addition to the
-- [[dimse.peers]] of strata.toml. Each change is journaled in the replicas, so reindex restores it.
CREATE TABLE ae_peers (
    aet         TEXT COLLATE "C" PRIMARY KEY,
    host        TEXT COLLATE "C" NOT NULL,
    port        BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
