-- The issuer of the local patient keys of what a user stores over STOW-RS, whatever the files
-- say (NULL: the user's name; an administrator's uploads keep the data set's issuer).
ALTER TABLE users ADD COLUMN issuer TEXT COLLATE "C";
