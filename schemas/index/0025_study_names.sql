-- A study carries its patient's folded name (kept equal to patients.patient_name_key by the
-- index whenever a patient's name changes), so a search of studies by a name prefix chooses
-- its page from the studies' own indexes: in name order and then the answer's order, or in the
-- answer's order with the name beside it, whichever the planner finds cheaper. No join to the
-- patients is needed before the page is chosen.
ALTER TABLE studies ADD COLUMN patient_name_key TEXT;
UPDATE studies SET patient_name_key = (SELECT p.patient_name_key FROM patients p WHERE p.id = studies.patient_fk);
CREATE INDEX studies_name ON studies (patient_name_key, study_date, study_time);
