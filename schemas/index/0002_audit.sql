-- The audit trail: append-only and hash-chained. Each row's hash covers its content and the
-- previous row's hash, so a changed, removed or inserted row breaks the chain from that point.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,        -- Unix milliseconds
    actor       TEXT NOT NULL,           -- user name, or AE title for DIMSE
    role        TEXT NOT NULL,           -- the actor's role, or the DIMSE permission used
    action      TEXT NOT NULL,           -- e.g. dimse.store, dimse.find, http.wado
    patient_id  TEXT,
    study_uid   TEXT,
    outcome     TEXT NOT NULL,           -- success, failure, denied
    remote      TEXT,                    -- peer address
    detail      TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, at);
CREATE INDEX audit_patient ON audit (patient_id, at);

-- Rows may be added, never changed or removed.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;
