-- Where each background worker that walks the archive has got to, so a restart resumes it
-- instead of starting over: the scrub's place in its pass over every blob, in blob order.
CREATE TABLE worker_progress (
    worker TEXT COLLATE "C" PRIMARY KEY,
    pass BIGINT NOT NULL,                 -- passes started, the current one included
    cursor TEXT COLLATE "C",                           -- the last blob done in this pass; NULL: none yet
    done BIGINT NOT NULL,                 -- blobs done in this pass
    pass_started_at BIGINT,               -- NULL between passes
    last_pass_finished_at BIGINT,
    last_pass_blobs BIGINT,
    updated_at BIGINT NOT NULL
);
