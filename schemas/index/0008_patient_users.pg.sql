-- A user of the patient role is bound to one person of the master person index. Their studies
-- are those of every local key the person holds now, so later link, unlink, merge and unmerge
-- decisions change what they see. A user whose person is merged away sees nothing until an
-- administrator binds the account again (`strata user bind`). NULL for every other role.
ALTER TABLE users ADD COLUMN person_fk BIGINT REFERENCES persons (id);
