-- Name keys folded the one way the matcher folds letters (ß → SS, Ł → L, decomposed accents
-- dropped): every stored search key and phonetic key is made again by the archive's own
-- functions, registered on the connection that migrates, so a search finds the rows stored
-- before as it finds new ones. Rows stored before migration 0005 get their phonetic key here too.
UPDATE patients
   SET patient_name_key = strata_name_key(patient_name),
       name_phonetic = strata_phonetic_key(patient_name)
 WHERE patient_name IS NOT NULL;
