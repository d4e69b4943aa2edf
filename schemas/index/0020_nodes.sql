-- The nodes serving the archive, as each one's heartbeat last wrote it: what the operator's
-- console lists. A node writes its row every few seconds while it serves; one not seen for
-- three heartbeats is taken as down. Rows are kept (a node that comes back updates its own).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,                   -- the node's id ([node] id)
    role TEXT NOT NULL,                    -- all | ingest | render
    address TEXT NOT NULL,                 -- the HTTP URL it serves ('' until it listens)
    version TEXT NOT NULL,                 -- the strata version it runs
    started_at INTEGER NOT NULL,           -- when its process started (ms)
    last_seen INTEGER NOT NULL,            -- its last heartbeat (ms)
    load TEXT NOT NULL                     -- its load, JSON (rates over the last minute, in flight)
);
