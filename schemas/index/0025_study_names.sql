-- A study carries its patient's folded name (kept equal to patients.patient_name_key by the
-- index whenever a patient's name changes), so a search of studies by a name chooses its page
-- from the studies' own indexes, without a join to the patients: a name matching few studies
-- reads them in name order (studies_name) and sorts them; a name matching many walks the
-- answer's order (studies_date, which now holds the id and the name too) until the page is
-- full. The search chooses by counting the matches up to a bound (see query.rs).
ALTER TABLE studies ADD COLUMN patient_name_key TEXT;
UPDATE studies SET patient_name_key = (SELECT p.patient_name_key FROM patients p WHERE p.id = studies.patient_fk);
CREATE INDEX studies_name ON studies (patient_name_key, study_date, study_time);
DROP INDEX studies_date;
CREATE INDEX studies_date ON studies (study_date, study_time, id, patient_name_key);
