-- The master person index. A person is a cluster of local patient keys (rows of `patients`);
-- studies keep pointing at local keys, so linking never rewrites anything stored.
CREATE TABLE persons (
    id           INTEGER PRIMARY KEY,
    uid          TEXT NOT NULL UNIQUE,        -- the stable person id the API shows
    created_at   INTEGER NOT NULL,
    merged_into  INTEGER REFERENCES persons (id)
);

-- The person of each local key, its normalised demographics (the matcher's view, JSON), and
-- whether a person (not the matcher) decided its link: the matcher never moves such a key.
ALTER TABLE patients ADD COLUMN person_fk INTEGER REFERENCES persons (id);
ALTER TABLE patients ADD COLUMN demographics TEXT;
ALTER TABLE patients ADD COLUMN mpi_manual INTEGER NOT NULL DEFAULT 0;
-- Demographics set by an administrator: later instances do not overwrite them.
ALTER TABLE patients ADD COLUMN demographics_manual INTEGER NOT NULL DEFAULT 0;
CREATE INDEX patients_person ON patients (person_fk);

-- Blocking keys: a candidate for a new local key is any key sharing one of these.
CREATE TABLE mpi_blocks (
    block_key   TEXT NOT NULL,
    patient_fk  INTEGER NOT NULL REFERENCES patients (id),
    PRIMARY KEY (block_key, patient_fk)
) WITHOUT ROWID;
CREATE INDEX mpi_blocks_patient ON mpi_blocks (patient_fk);

-- Pairs of local keys a person said are not the same person (an unlink, a rejected review):
-- the matcher never links across them.
CREATE TABLE mpi_separations (
    a  INTEGER NOT NULL REFERENCES patients (id),
    b  INTEGER NOT NULL REFERENCES patients (id),
    PRIMARY KEY (a, b)
) WITHOUT ROWID;

-- Local keys the matcher could not decide, with the candidates it scored (JSON).
CREATE TABLE mpi_review (
    id           INTEGER PRIMARY KEY,
    patient_fk   INTEGER NOT NULL REFERENCES patients (id),
    candidates   TEXT NOT NULL,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open',   -- open, accepted, rejected, resolved
    created_at   INTEGER NOT NULL,
    decided_by   TEXT,
    decided_at   INTEGER
);
CREATE INDEX mpi_review_open ON mpi_review (status, id);

-- Every link decision, automatic or manual, in order: the history a person view shows.
CREATE TABLE mpi_history (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    action      TEXT NOT NULL,     -- new, auto_link, review, link, unlink, merge, unmerge,
                                   -- accept, reject, demographics
    actor       TEXT NOT NULL,     -- 'matcher' or the user
    person_fk   INTEGER REFERENCES persons (id),
    other_fk    INTEGER REFERENCES persons (id),
    patient_fk  INTEGER REFERENCES patients (id),
    detail      TEXT NOT NULL      -- JSON: scores, the keys moved
);
CREATE INDEX mpi_history_person ON mpi_history (person_fk);
CREATE INDEX mpi_history_other ON mpi_history (other_fk);

-- The matcher's model (Fellegi–Sunter weights and thresholds, JSON), estimated without labels.
CREATE TABLE mpi_model (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    model         TEXT NOT NULL,
    records       INTEGER NOT NULL,
    estimated_at  INTEGER NOT NULL
);
