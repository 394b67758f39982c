-- Accounts under attack. Only adds (nullable columns, an index): an older shop keeps
-- working on the tables, its tokens never expire and its failures name no device.

-- An API token may end on its own: NULL never (tokens made before this, or
-- `shop token create --expires never`).
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMPTZ;

-- A password check is written here before the hash is computed (and removed when it
-- succeeds), so concurrent guesses count each other. `device` is the nonce of the signed
-- device cookie the attempt came with, if any: a known device is counted on its own and
-- passes a lockout of the account (src/accounts/throttle.rs).
ALTER TABLE login_failures ADD COLUMN device TEXT;
CREATE INDEX login_failures_device ON login_failures (device, at) WHERE device IS NOT NULL;
