-- Study searches are answered in date order, a page at a time. The index of a patient's
-- studies holds each study's date and time too, so the ids of a page of studies matching a
-- patient attribute (a name) are chosen from the two indexes alone, without reading a study
-- row for each match. (studies_date, on date and time with the row id after them, already
-- serves the order itself.)
DROP INDEX studies_patient;
CREATE INDEX studies_patient ON studies (patient_fk, study_date, study_time);
