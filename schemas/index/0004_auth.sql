-- Users, their API tokens and browser sessions. Only hashes of secrets are kept: an argon2 hash
-- of each password, and SHA-256 of each token and session id (they are 256-bit random values,
-- so a fast hash suffices).
CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_fk      INTEGER NOT NULL REFERENCES users (id),
    token_hash   TEXT NOT NULL UNIQUE,
    label        TEXT,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_fk     INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- Recent failed logins, to slow down guessing.
CREATE TABLE login_failures (
    name  TEXT NOT NULL,
    at    INTEGER NOT NULL
);
CREATE INDEX login_failures_name ON login_failures (name, at);
