-- Sends: studies pushed to a peer (an AE of the AE table by C-STORE, or a configured DICOMweb
-- peer by STOW-RS) as a job the archive carries out in the background, one row per instance
-- with its outcome, so a restarted archive carries on where it stopped and a failed instance
-- can be tried again.
CREATE TABLE send_jobs (
    id           INTEGER PRIMARY KEY,
    created_by   TEXT NOT NULL,
    target_kind  TEXT NOT NULL,            -- 'ae' or 'dicomweb'
    target       TEXT NOT NULL,            -- the AE title or the DICOMweb peer's name
    state        TEXT NOT NULL,            -- queued, running, done, failed
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER
);
CREATE INDEX send_jobs_state ON send_jobs (state, id);

CREATE TABLE send_items (
    job_fk      INTEGER NOT NULL REFERENCES send_jobs (id),
    position    INTEGER NOT NULL,          -- the order the instances go in
    study_uid   TEXT NOT NULL,
    sop_uid     TEXT NOT NULL,
    outcome     TEXT NOT NULL,             -- pending, sent, failed
    attempts    INTEGER NOT NULL,
    error       TEXT,                      -- why the last attempt failed
    next_at     INTEGER NOT NULL,          -- a pending item is not tried again before (ms)
    PRIMARY KEY (job_fk, position)
);

-- Shares: a read-only DICOMweb token limited to chosen studies, for a receiving system to
-- pull them; it expires and can be revoked. Only the SHA-256 of the token is kept.
CREATE TABLE shares (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    label       TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE share_studies (
    share_fk   INTEGER NOT NULL REFERENCES shares (id),
    study_uid  TEXT NOT NULL,
    PRIMARY KEY (share_fk, study_uid)
);
