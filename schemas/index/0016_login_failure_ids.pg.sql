-- Failed sign-ins have had an id of their own in PostgreSQL from the start (SQLite's
-- migration 0016 gives them one): nothing to do.
SELECT 1;
