-- Phonetic keys of patient names (FAMILY^GIVEN Double Metaphone codes) for fuzzy matching.
-- Rows stored before this column existed get their key with the next instance of the patient,
-- or from `strata reindex`.
ALTER TABLE patients ADD COLUMN name_phonetic TEXT COLLATE "C";
CREATE INDEX patients_phonetic ON patients (name_phonetic);
