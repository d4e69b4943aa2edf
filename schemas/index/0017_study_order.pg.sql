-- Study searches are answered in date order (NULLs first), a page at a time. The index on the
-- date now holds that order to the id, so a page's scan stops at its end, and the index of a
-- patient's studies holds each study's date, time and id, so the ids of a page of studies
-- matching a patient attribute (a name) are chosen from the indexes alone.
DROP INDEX studies_date;
CREATE INDEX studies_date ON studies (study_date NULLS FIRST, study_time NULLS FIRST, id);
DROP INDEX studies_patient;
CREATE INDEX studies_patient ON studies (patient_fk, study_date, study_time, id);
