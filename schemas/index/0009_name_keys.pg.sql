-- SQLite's migration 0009 made every stored name key again with the archive's own folding.
-- A PostgreSQL index passes this version while it is still empty (PostgreSQL came later), and
-- every key it holds is made by that folding when its row is written: nothing to do.
SELECT 1;
