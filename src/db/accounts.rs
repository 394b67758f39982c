//! The accounts' half of the store: users, sessions, API tokens and failed logins, their
//! SQL in both dialects side by side (most statements read the same in both).

use chrono::{DateTime, Utc};

use super::auth_cache::{Change, SessionRecord, TokenRecord};
use super::queries::{run, Sql};
use super::{now, Store, StoreResult};
use crate::accounts::secrets::SessionHash;
use crate::accounts::{User, UserRecord, Username};
use crate::ids::{TokenId, UserId};

const CREATE_USER: Sql = Sql::same(
    "INSERT INTO users (username, username_key, password_hash, is_admin, created_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username_key) DO NOTHING \
     RETURNING id, username, is_admin, disabled",
);
const CREDENTIALS: Sql = Sql::same(
    "SELECT id, username, is_admin, disabled, password_hash FROM users WHERE username_key = $1",
);
const FIND_USER: Sql =
    Sql::same("SELECT id, username, is_admin, disabled FROM users WHERE username_key = $1");
const LIST_USERS: Sql = Sql::same(
    "SELECT id, username, is_admin, disabled, created_at FROM users ORDER BY username_key",
);
const SET_PASSWORD_HASH: Sql = Sql::same("UPDATE users SET password_hash = $1 WHERE id = $2");
const SET_DISABLED: Sql = Sql::same(
    "UPDATE users SET disabled = $1 WHERE username_key = $2 RETURNING id, username, is_admin, disabled",
);

const CREATE_SESSION: Sql = Sql::same(
    "INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at) VALUES ($1, $2, $3, $3)",
);
/// One indexed lookup (the primary key, then the user's): what a signed-in page costs.
const SESSION_USER: Sql = Sql::same(
    "SELECT u.id, u.username, u.is_admin, u.disabled, s.created_at, s.last_seen_at \
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
);
const TOUCH_SESSION: Sql = Sql::same("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2");
const DELETE_SESSION: Sql = Sql::same("DELETE FROM sessions WHERE id_hash = $1");
const DELETE_OTHER_SESSIONS: Sql =
    Sql::same("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2");
const DELETE_EXPIRED_SESSIONS: Sql =
    Sql::same("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2");

const CREATE_TOKEN: Sql = Sql::same(
    "INSERT INTO api_tokens (user_id, name, token_hash, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id, name, created_at, last_used_at, expires_at",
);
const TOKEN_USER: Sql = Sql::same(
    "SELECT u.id, u.username, u.is_admin, u.disabled, t.last_used_at, t.expires_at \
     FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
);
const TOUCH_TOKEN: Sql = Sql::same("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2");
const LIST_TOKENS: Sql = Sql::same(
    "SELECT id, name, created_at, last_used_at, expires_at FROM api_tokens WHERE user_id = $1 \
     ORDER BY id",
);
const DELETE_TOKENS: Sql = Sql::same("DELETE FROM api_tokens WHERE user_id = $1");
const REVOKE_TOKEN: Sql = Sql::same("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2");

/// An attempt is written before its password is checked (see `accounts::throttle`).
const RECORD_ATTEMPT: Sql = Sql::same(
    "INSERT INTO login_failures (username_key, address, device, at) VALUES ($1, $2, $3, $4) \
     RETURNING id",
);
const FORGET_ATTEMPT: Sql = Sql::same("DELETE FROM login_failures WHERE id = $1");
const FAILURES_OF_ACCOUNT: Sql =
    Sql::same("SELECT COUNT(*), MIN(at) FROM login_failures WHERE username_key = $1 AND at > $2");
const FAILURES_FROM_ADDRESS: Sql =
    Sql::same("SELECT COUNT(*), MIN(at) FROM login_failures WHERE address = $1 AND at > $2");
const FAILURES_OF_DEVICE: Sql =
    Sql::same("SELECT COUNT(*), MIN(at) FROM login_failures WHERE device = $1 AND at > $2");
const CLEAR_FAILURES: Sql = Sql::same("DELETE FROM login_failures WHERE username_key = $1");
const DELETE_OLD_FAILURES: Sql = Sql::same("DELETE FROM login_failures WHERE at < $1");

type UserRow = (UserId, String, bool, bool);
/// A user's columns, then the session's created and last-seen times.
type SessionRow = (UserId, String, bool, bool, DateTime<Utc>, DateTime<Utc>);
/// A user's columns, then the token's last use and expiry.
type TokenUserRow = (
    UserId,
    String,
    bool,
    bool,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);
type TokenRow = (
    TokenId,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn user((id, username, is_admin, disabled): UserRow) -> User {
    User {
        id,
        username,
        is_admin,
        disabled,
    }
}

/// An API token as listed (never the token itself: it is shown once, at creation).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// `None`: it never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for TokenInfo {
    fn from((id, name, created_at, last_used_at, expires_at): TokenRow) -> TokenInfo {
        TokenInfo {
            id,
            name,
            created_at,
            last_used_at,
            expires_at,
        }
    }
}

/// A password check written down by `record_attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptId(i64);

/// Recent failed logins: how many since the window began, and the oldest of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Failures {
    pub count: i64,
    pub oldest: Option<DateTime<Utc>>,
}

impl Store {
    /// A new user; `None` when the name is taken (whatever its case).
    pub async fn create_user(
        &self,
        name: &Username,
        password_hash: &str,
        is_admin: bool,
    ) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = run!(self, as CREATE_USER, fetch_optional,
            name.as_str(), name.key(), password_hash, is_admin, now())?;
        Ok(row.map(user))
    }

    /// The user with this (lower-case) name and their password hash.
    pub async fn credentials(&self, key: &str) -> StoreResult<Option<(User, String)>> {
        let row: Option<(UserId, String, bool, bool, String)> =
            run!(self, as CREDENTIALS, fetch_optional, key)?;
        Ok(row.map(|(id, name, admin, disabled, hash)| (user((id, name, admin, disabled)), hash)))
    }

    pub async fn find_user(&self, key: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = run!(self, as FIND_USER, fetch_optional, key)?;
        Ok(row.map(user))
    }

    pub async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows: Vec<(UserId, String, bool, bool, DateTime<Utc>)> =
            run!(self, as LIST_USERS, fetch_all)?;
        Ok(rows
            .into_iter()
            .map(|(id, name, admin, disabled, created_at)| UserRecord {
                user: user((id, name, admin, disabled)),
                created_at,
            })
            .collect())
    }

    pub async fn set_password_hash(&self, user_id: UserId, hash: &str) -> StoreResult<()> {
        run!(self, SET_PASSWORD_HASH, execute, hash, user_id)?;
        self.forget(&Change::User(user_id));
        Ok(())
    }

    /// Disable (or enable) the user with this name; `None` when there is none.
    pub async fn set_disabled(&self, key: &str, disabled: bool) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = run!(self, as SET_DISABLED, fetch_optional, disabled, key)?;
        let changed = row.map(user);
        if let Some(user) = &changed {
            self.forget(&Change::User(user.id));
        }
        Ok(changed)
    }

    pub async fn create_session(&self, session: &SessionHash, user_id: UserId) -> StoreResult<()> {
        run!(
            self,
            CREATE_SESSION,
            execute,
            session.as_str(),
            user_id,
            now()
        )?;
        Ok(())
    }

    /// The session with this hash and its user: remembered (PostgreSQL, while changes are
    /// heard), else read and remembered.
    pub async fn session(&self, session: &SessionHash) -> StoreResult<Option<SessionRecord>> {
        let id_hash = session.as_str();
        let cache = self.auth.as_deref();
        if let Some(record) = cache.and_then(|c| c.session(id_hash)) {
            return Ok(Some(record));
        }
        let ticket = cache.and_then(|c| c.ticket());
        let record = self.stored_session(session).await?;
        if let (Some(cache), Some(ticket), Some(record)) = (cache, ticket, &record) {
            cache.keep_session(ticket, id_hash, record);
        }
        Ok(record)
    }

    /// The session as the database has it now, never remembered.
    pub async fn stored_session(
        &self,
        session: &SessionHash,
    ) -> StoreResult<Option<SessionRecord>> {
        let row: Option<SessionRow> =
            run!(self, as SESSION_USER, fetch_optional, session.as_str())?;
        Ok(row.map(
            |(id, name, admin, disabled, created_at, last_seen_at)| SessionRecord {
                user: user((id, name, admin, disabled)),
                created_at,
                last_seen_at,
            },
        ))
    }

    pub async fn touch_session(&self, session: &SessionHash) -> StoreResult<()> {
        run!(self, TOUCH_SESSION, execute, now(), session.as_str())?;
        self.forget(&Change::Session(session.as_str().to_owned()));
        Ok(())
    }

    pub async fn delete_session(&self, session: &SessionHash) -> StoreResult<()> {
        run!(self, DELETE_SESSION, execute, session.as_str())?;
        self.forget(&Change::Session(session.as_str().to_owned()));
        Ok(())
    }

    /// End every session of the user but `keep` (`None`: all of them); how many ended.
    pub async fn delete_other_sessions(
        &self,
        user_id: UserId,
        keep: Option<&SessionHash>,
    ) -> StoreResult<u64> {
        // No stored hash is empty: "" keeps none.
        let keep = keep.map_or("", SessionHash::as_str);
        let ended = run!(self, DELETE_OTHER_SESSIONS, execute, user_id, keep)?;
        self.forget(&Change::User(user_id));
        Ok(ended)
    }

    /// Delete sessions idle since before `idle_before` or made before `made_before`.
    pub async fn delete_expired_sessions(
        &self,
        idle_before: DateTime<Utc>,
        made_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        run!(
            self,
            DELETE_EXPIRED_SESSIONS,
            execute,
            idle_before,
            made_before
        )
    }

    pub async fn create_token(
        &self,
        user_id: UserId,
        name: &str,
        token_hash: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> StoreResult<TokenInfo> {
        let row: TokenRow = run!(self, as CREATE_TOKEN, fetch_one,
            user_id, name, token_hash, now(), expires_at)?;
        Ok(row.into())
    }

    /// The API token with this hash and its user: remembered, else read (as `session`).
    pub async fn token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let cache = self.auth.as_deref();
        if let Some(record) = cache.and_then(|c| c.token(token_hash)) {
            return Ok(Some(record));
        }
        let ticket = cache.and_then(|c| c.ticket());
        let row: Option<TokenUserRow> = run!(self, as TOKEN_USER, fetch_optional, token_hash)?;
        let record = row.map(
            |(id, name, admin, disabled, last_used_at, expires_at)| TokenRecord {
                user: user((id, name, admin, disabled)),
                last_used_at,
                expires_at,
            },
        );
        if let (Some(cache), Some(ticket), Some(record)) = (cache, ticket, &record) {
            cache.keep_token(ticket, token_hash, record);
        }
        Ok(record)
    }

    pub async fn touch_token(&self, token_hash: &str) -> StoreResult<()> {
        run!(self, TOUCH_TOKEN, execute, now(), token_hash)?;
        self.forget(&Change::Token(token_hash.to_owned()));
        Ok(())
    }

    pub async fn list_tokens(&self, user_id: UserId) -> StoreResult<Vec<TokenInfo>> {
        let rows: Vec<TokenRow> = run!(self, as LIST_TOKENS, fetch_all, user_id)?;
        Ok(rows.into_iter().map(TokenInfo::from).collect())
    }

    /// Revoke all of the user's tokens; how many there were.
    pub async fn delete_tokens(&self, user_id: UserId) -> StoreResult<u64> {
        let revoked = run!(self, DELETE_TOKENS, execute, user_id)?;
        self.forget(&Change::User(user_id));
        Ok(revoked)
    }

    /// Revoke one of the user's tokens; `false` when they have no such token.
    pub async fn revoke_token(&self, user_id: UserId, token_id: TokenId) -> StoreResult<bool> {
        let revoked = run!(self, REVOKE_TOKEN, execute, token_id, user_id)? > 0;
        self.forget(&Change::User(user_id));
        Ok(revoked)
    }

    /// Write down a password check about to be made (for the account `key`, from the
    /// address key `address`, with the known device `device`): its id.
    pub async fn record_attempt(
        &self,
        key: &str,
        address: &str,
        device: Option<&str>,
    ) -> StoreResult<AttemptId> {
        let (id,): (i64,) = run!(self, as RECORD_ATTEMPT, fetch_one, key, address, device, now())?;
        Ok(AttemptId(id))
    }

    /// Take back an attempt that succeeded or was never checked.
    pub async fn forget_attempt(&self, attempt: AttemptId) -> StoreResult<()> {
        run!(self, FORGET_ATTEMPT, execute, attempt.0)?;
        Ok(())
    }

    /// Attempts since `since` for the account `key` and from `address`.
    pub async fn login_failures(
        &self,
        key: &str,
        address: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<(Failures, Failures)> {
        let (count, oldest): (i64, Option<DateTime<Utc>>) =
            run!(self, as FAILURES_OF_ACCOUNT, fetch_one, key, since)?;
        let account = Failures { count, oldest };
        let (count, oldest): (i64, Option<DateTime<Utc>>) =
            run!(self, as FAILURES_FROM_ADDRESS, fetch_one, address, since)?;
        Ok((account, Failures { count, oldest }))
    }

    /// Attempts since `since` that came with the known device `device`.
    pub async fn device_failures(
        &self,
        device: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<Failures> {
        let (count, oldest): (i64, Option<DateTime<Utc>>) =
            run!(self, as FAILURES_OF_DEVICE, fetch_one, device, since)?;
        Ok(Failures { count, oldest })
    }

    pub async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        run!(self, CLEAR_FAILURES, execute, key)?;
        Ok(())
    }

    pub async fn delete_old_login_failures(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        run!(self, DELETE_OLD_FAILURES, execute, before)
    }
}
