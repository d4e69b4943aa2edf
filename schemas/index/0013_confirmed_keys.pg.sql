-- A patient user's scope is the local keys a person decided are theirs (patients.mpi_manual).
-- The keys each bound user could see before this rule stay theirs: binding confirmed them.
UPDATE patients SET mpi_manual = 1
 WHERE person_fk IN (SELECT person_fk FROM users WHERE person_fk IS NOT NULL);
