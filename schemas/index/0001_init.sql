-- The archive index: everything a query needs, rebuilt from the replicas by `strata reindex`.
-- Times are Unix milliseconds; DICOM dates and times are kept as their DICOM strings
-- (YYYYMMDD, HHMMSS.FFFFFF), which sort and range-compare correctly as text.

CREATE TABLE patients (
    id               INTEGER PRIMARY KEY,
    patient_id       TEXT NOT NULL,
    issuer           TEXT NOT NULL,          -- normalised IssuerOfPatientID, or the source
    patient_name     TEXT,
    patient_name_key TEXT,                   -- upper case, accents folded: case-insensitive match
    birth_date       TEXT,
    sex              TEXT,
    updated_at       INTEGER NOT NULL,
    UNIQUE (patient_id, issuer)
);
CREATE INDEX patients_name ON patients (patient_name_key);
CREATE INDEX patients_birth ON patients (birth_date);

CREATE TABLE studies (
    id                   INTEGER PRIMARY KEY,
    study_uid            TEXT NOT NULL UNIQUE,
    patient_fk           INTEGER NOT NULL REFERENCES patients (id),
    study_date           TEXT,
    study_time           TEXT,
    accession_number     TEXT,
    study_id             TEXT,
    study_description    TEXT,
    referring_physician  TEXT,
    num_series           INTEGER NOT NULL DEFAULT 0,
    num_instances        INTEGER NOT NULL DEFAULT 0,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX studies_patient ON studies (patient_fk);
CREATE INDEX studies_date ON studies (study_date, study_time);
CREATE INDEX studies_accession ON studies (accession_number);

CREATE TABLE series (
    id                 INTEGER PRIMARY KEY,
    series_uid         TEXT NOT NULL UNIQUE,
    study_fk           INTEGER NOT NULL REFERENCES studies (id),
    modality           TEXT,
    series_number      INTEGER,
    series_description TEXT,
    body_part          TEXT,
    series_date        TEXT,
    series_time        TEXT,
    num_instances      INTEGER NOT NULL DEFAULT 0,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX series_study ON series (study_fk);
CREATE INDEX series_modality ON series (modality);

CREATE TABLE instances (
    id               INTEGER PRIMARY KEY,
    sop_uid          TEXT NOT NULL UNIQUE,
    series_fk        INTEGER NOT NULL REFERENCES series (id),
    sop_class_uid    TEXT NOT NULL,
    instance_number  INTEGER,
    blob_id          TEXT NOT NULL,
    transfer_syntax  TEXT NOT NULL,
    size             INTEGER NOT NULL,
    frames           INTEGER,
    rows             INTEGER,
    columns          INTEGER,
    content_date     TEXT,
    content_time     TEXT,
    metadata         TEXT NOT NULL,          -- DICOM JSON of the header (PS3.18 F)
    source           TEXT NOT NULL,          -- how it arrived: import, an AE title, a user
    received_at      INTEGER NOT NULL
);
CREATE INDEX instances_series ON instances (series_fk, instance_number);
CREATE INDEX instances_blob ON instances (blob_id);

-- Versions an instance had before `on_conflict = "replace"` superseded them. Their blobs stay.
CREATE TABLE instance_history (
    id           INTEGER PRIMARY KEY,
    sop_uid      TEXT NOT NULL,
    blob_id      TEXT NOT NULL,
    size         INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    replaced_at  INTEGER NOT NULL
);
CREATE INDEX instance_history_sop ON instance_history (sop_uid);
CREATE INDEX instance_history_blob ON instance_history (blob_id);

-- Replica copies known to be missing or corrupt, retried by the repair worker with back-off.
CREATE TABLE repair_queue (
    blob_id          TEXT NOT NULL,
    replica          INTEGER NOT NULL,      -- 0-based position in the configured replica list
    reason           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    queued_at        INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    PRIMARY KEY (blob_id, replica)
);
CREATE INDEX repair_queue_due ON repair_queue (next_attempt_at);
