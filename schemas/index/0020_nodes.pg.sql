-- The nodes serving the archive, as each one's heartbeat last wrote it: what the operator's
-- console lists. A node writes its row every few seconds while it serves; one not seen for
-- three heartbeats is taken as down. Rows are kept (a node that comes back updates its own).
CREATE TABLE nodes (
    id TEXT COLLATE "C" PRIMARY KEY,          -- the node's id ([node] id)
    role TEXT COLLATE "C" NOT NULL,           -- all | ingest | render
    address TEXT COLLATE "C" NOT NULL,        -- the HTTP URL it serves ('' until it listens)
    version TEXT COLLATE "C" NOT NULL,        -- the strata version it runs
    started_at BIGINT NOT NULL,               -- when its process started (ms)
    last_seen BIGINT NOT NULL,                -- its last heartbeat (ms)
    load TEXT COLLATE "C" NOT NULL            -- its load, JSON (rates over the last minute, in flight)
);
