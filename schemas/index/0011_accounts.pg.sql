-- Accounts that can be managed: a user can be disabled (every credential refused, nothing
-- deleted) and can be made to change their password at the next sign-in (the first
-- administrator, whose password was printed); API tokens can expire (NULL: tokens made before
-- expiry existed never do); failed sign-ins remember where they came from, so guessing is
-- throttled per address and over all addresses as well as per user name.
ALTER TABLE users ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE login_failures ADD COLUMN remote TEXT COLLATE "C";
CREATE INDEX login_failures_remote ON login_failures (remote, at);
CREATE INDEX login_failures_at ON login_failures (at);
CREATE INDEX api_tokens_user ON api_tokens (user_fk);
CREATE INDEX sessions_user ON sessions (user_fk);
