-- Failed sign-ins get an id of their own (they were named by SQLite's rowid), so the same
-- statements run on PostgreSQL. They are kept for the throttle's window only (minutes), so the
-- table is made again empty rather than copied.
DROP TABLE login_failures;
CREATE TABLE login_failures (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    remote  TEXT,
    at      INTEGER NOT NULL
);
CREATE INDEX login_failures_name ON login_failures (name, at);
CREATE INDEX login_failures_remote ON login_failures (remote, at);
CREATE INDEX login_failures_at ON login_failures (at);
