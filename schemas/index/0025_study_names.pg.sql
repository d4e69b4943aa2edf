-- A study carries its patient's folded name (kept equal to patients.patient_name_key by the
-- index whenever a patient's name changes), so a search of studies by a name prefix chooses
-- its page from the studies' own indexes: in name order and then the answer's order, or by
-- walking the answer's order with the name beside it in the index, whichever the planner finds
-- cheaper. No join to the patients is needed before the page is chosen.
ALTER TABLE studies ADD COLUMN patient_name_key TEXT COLLATE "C";
UPDATE studies SET patient_name_key = p.patient_name_key FROM patients p WHERE p.id = studies.patient_fk;
CREATE INDEX studies_name ON studies (patient_name_key, study_date NULLS FIRST, study_time NULLS FIRST, id);
DROP INDEX studies_date;
CREATE INDEX studies_date ON studies (study_date NULLS FIRST, study_time NULLS FIRST, id) INCLUDE (patient_name_key);
-- the planner's figures for the new column now, not at autovacuum's next visit
ANALYZE studies;
