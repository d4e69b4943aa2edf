-- Where each background worker that walks the archive has got to, so a restart resumes it
-- instead of starting over: the scrub's place in its pass over every blob, in blob order.
CREATE TABLE worker_progress (
    worker TEXT PRIMARY KEY,
    pass INTEGER NOT NULL,                 -- passes started, the current one included
    cursor TEXT,                           -- the last blob done in this pass; NULL: none yet
    done INTEGER NOT NULL,                 -- blobs done in this pass
    pass_started_at INTEGER,               -- NULL between passes
    last_pass_finished_at INTEGER,
    last_pass_blobs INTEGER,
    updated_at INTEGER NOT NULL
);
