-- Accounts: sellers own their items (see the PostgreSQL migration of the same number).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL CHECK (length(username) BETWEEN 3 AND 32),
    username_key  TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TEXT    NOT NULL
);

CREATE TABLE sessions (
    id_hash      TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT    NOT NULL,
    last_seen_at TEXT    NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   TEXT    NOT NULL,
    last_used_at TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE login_failures (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    username_key TEXT    NOT NULL,
    address      TEXT    NOT NULL,
    at           TEXT    NOT NULL
);
CREATE INDEX login_failures_account ON login_failures (username_key, at);
CREATE INDEX login_failures_address ON login_failures (address, at);

-- Who sells the item: owner_id decides who may change it, seller is their name as the
-- list shows it (see PostgreSQL's migration 6 for why it is kept here). SQLite keeps the
-- foreign key: its check takes no lock of its own (a writer holds the whole file).
ALTER TABLE items ADD COLUMN owner_id INTEGER REFERENCES users (id);
ALTER TABLE items ADD COLUMN seller TEXT;
