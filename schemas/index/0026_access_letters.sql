-- Access letters: the credentials a provider hands a patient (or a guardian) so that they can
-- take a copy of their own studies without an account. Only hashes are kept: the SHA-256 of the
-- access code (100 random bits, so a fast hash suffices, as for tokens) and an argon2 hash of
-- the passcode, which is what encrypts the copy: it is checked before a download starts, so a
-- mistyped passcode is refused instead of giving a file nobody can open, and never stored.
CREATE TABLE access_letters (
    id             INTEGER PRIMARY KEY,
    code_hash      TEXT NOT NULL UNIQUE,
    passcode_hash  TEXT NOT NULL,
    person_fk      INTEGER NOT NULL REFERENCES persons (id),
    issued_by      TEXT NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_by     TEXT,
    last_used_at   INTEGER,
    downloads      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX access_letters_person ON access_letters (person_fk);
