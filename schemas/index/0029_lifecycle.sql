-- A record's end: legal holds, expiry batches an administrator approves, and instances a
-- rejection note (IHE IOCM) took out of sight until they are purged.

-- A legal hold on a person (every study of every key linked to it) or on one study: while it
-- is in force (not released), nothing under it can be deleted by any path.
CREATE TABLE holds (
    id           INTEGER PRIMARY KEY,
    person_uid   TEXT,                     -- the person's stable id, or
    study_uid    TEXT,                     -- one study
    reason       TEXT NOT NULL,
    placed_by    TEXT NOT NULL,
    placed_at    INTEGER NOT NULL,
    released_by  TEXT,
    released_at  INTEGER
);
CREATE INDEX holds_study ON holds (study_uid);
CREATE INDEX holds_person ON holds (person_uid);

-- Studies past retention and under no hold, proposed for deletion as one batch; deleted only
-- after an administrator approves the batch.
CREATE TABLE expiry_batches (
    id           INTEGER PRIMARY KEY,
    state        TEXT NOT NULL,            -- proposed, approved, done, dismissed
    proposed_at  INTEGER NOT NULL,
    decided_by   TEXT,
    decided_at   INTEGER,
    finished_at  INTEGER
);
CREATE INDEX expiry_batches_state ON expiry_batches (state, id);

CREATE TABLE expiry_items (
    batch_fk        INTEGER NOT NULL REFERENCES expiry_batches (id),
    study_uid       TEXT NOT NULL,
    retained_until  TEXT NOT NULL,         -- YYYYMMDD, as the proposal computed it
    instances       INTEGER NOT NULL,
    bytes           INTEGER NOT NULL,
    outcome         TEXT NOT NULL,         -- proposed, deleted, kept (held or retained at deletion)
    PRIMARY KEY (batch_fk, study_uid)
);

-- Instances a rejection note named: out of the index (no query or retrieval finds them), their
-- blobs kept until the purge, which waits for the configured delay, retention and holds. A
-- purged one keeps its row (purged_at set), so the same instance sent again is still refused.
CREATE TABLE rejected_instances (
    sop_uid       TEXT PRIMARY KEY,
    blob_id       TEXT NOT NULL,
    size          INTEGER NOT NULL,
    study_uid     TEXT NOT NULL,
    series_uid    TEXT NOT NULL,
    patient_fk    INTEGER NOT NULL REFERENCES patients (id),
    study_date    TEXT,
    modality      TEXT,
    source        TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    note_uid      TEXT NOT NULL,           -- the rejection note's SOP Instance UID
    code          TEXT NOT NULL,           -- its title: 113001, 113037, 113038 or 113039 (DCM)
    rejected_at   INTEGER NOT NULL,
    purged_at     INTEGER
);
CREATE INDEX rejected_instances_at ON rejected_instances (rejected_at);
