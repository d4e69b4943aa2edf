-- Who does the work that must happen once per archive (the repair worker, the scrub, the audit
-- export, the MPI's re-estimation) when several nodes share the index: the node holding a
-- work's lease, until it expires. Its holder renews it while alive; once it expires, another
-- node takes it over.
CREATE TABLE leases (
    name TEXT COLLATE "C" PRIMARY KEY,        -- the work: a worker's name
    holder TEXT COLLATE "C" NOT NULL,         -- the holding node's id
    incarnation TEXT COLLATE "C" NOT NULL,    -- the holding process (a restarted node is another)
    acquired_at BIGINT NOT NULL,              -- when this holder took it (ms)
    renewed_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL                -- free to take from then on; a release sets it to now
);
