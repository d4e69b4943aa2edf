-- Hot and cold tiers. A study's life: when it was last read (the tier policy moves studies
-- nobody reads), whether its replicas were removed for the cold tier's shards, and until when
-- a cold study read again stays hot. No row: hot, never read since it arrived.
CREATE TABLE study_tiers (
    study_uid      TEXT PRIMARY KEY,
    tier           TEXT NOT NULL DEFAULT 'hot',  -- 'hot' (replicas) or 'cold' (shards only)
    last_read_at   INTEGER,                      -- ms; noted at most once an hour
    reads          INTEGER NOT NULL DEFAULT 0,   -- reads noted
    cold_since     INTEGER,                      -- ms, when it last moved to cold
    restored_until INTEGER                       -- ms: a restored study stays hot until then
);
CREATE INDEX study_tiers_tier ON study_tiers (tier, restored_until);

-- Blobs whose every shard is durable on the cold stores (k data + m parity): from then on the
-- replicas' copies may go. A reindex finds them again on the cold stores.
CREATE TABLE cold_blobs (
    blob_id    TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    k          INTEGER NOT NULL,
    m          INTEGER NOT NULL,
    stored_at  INTEGER NOT NULL,
    hot        INTEGER NOT NULL DEFAULT 1        -- 1 while the replicas hold it too
);
