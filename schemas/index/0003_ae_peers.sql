-- C-MOVE destinations managed at run time (`strata ae add|remove`), in addition to the
-- [[dimse.peers]] of strata.toml. Each change is journaled in the replicas, so reindex restores it.
CREATE TABLE ae_peers (
    aet         TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
