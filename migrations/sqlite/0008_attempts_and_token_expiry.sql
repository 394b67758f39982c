-- Accounts under attack (see PostgreSQL's migration 8): token expiry (NULL: never) and
-- the device a password check came with.
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE login_failures ADD COLUMN device TEXT;
CREATE INDEX login_failures_device ON login_failures (device, at) WHERE device IS NOT NULL;
