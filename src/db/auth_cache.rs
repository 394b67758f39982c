//! Sessions and API tokens remembered between requests (PostgreSQL only), so that a
//! signed-in page or an API write costs no round trip for who is asking. What is
//! remembered is forgotten the moment the database says it changed: migration 7's
//! triggers `NOTIFY shop_auth` on every change of a session, a token or a user,
//! and `Store::listen_for_auth_changes` forwards those notifications here. Nothing is
//! remembered while that listener is not connected (and everything is forgotten when it
//! drops), nothing for longer than `KEEP_FOR`, and a lookup that raced a change is not
//! kept. SQLite stores have no cache: a lookup there is a read in the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;

use chrono::{DateTime, Utc};

use super::Store;
use crate::accounts::User;
use crate::ids::UserId;

/// A signed-in browser's session, as its cookie finds it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: User,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// The user an API token belongs to, and the token's last use.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub user: User,
    pub last_used_at: Option<DateTime<Utc>>,
    /// `None`: it never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The channel migration 7's triggers notify.
pub const CHANNEL: &str = "shop_auth";

/// The longest anything is remembered: a bound on what a lost notification could cost,
/// short enough that a session's last visit, read again, is never far behind.
const KEEP_FOR: Duration = Duration::from_secs(30);
/// The most sessions (and, apart, tokens) remembered at once (about 200 bytes each).
const MOST: usize = 4096;
/// How long the listener waits before connecting again (after a loss, or while the
/// database has no triggers yet: they come with the migrations).
const LISTEN_AGAIN_AFTER: Duration = Duration::from_secs(1);

impl Store {
    /// Forget what `change` names in this process at once (its own writes; other
    /// processes hear of them from the triggers).
    pub(super) fn forget(&self, change: &Change) {
        if let Some(cache) = &self.auth {
            cache.forget(change);
        }
    }

    /// PostgreSQL: whether changes are heard, and how many sessions and tokens are
    /// remembered (for `/metrics`).
    pub fn auth_cache_stats(&self) -> Option<(bool, usize, usize)> {
        self.auth.as_ref().map(|cache| cache.stats())
    }

    /// Hear migration 7's notifications for as long as the process runs, and forward them
    /// to the cache (PostgreSQL; returns at once on SQLite). While the listener is not
    /// connected, the cache keeps nothing and every lookup reads the database. When the
    /// primary moves to another host, it listens there (the old one hears no writes).
    pub async fn listen_for_auth_changes(self) {
        let (Some(cache), Some(hosts)) = (self.auth.clone(), self.hosts.clone()) else {
            return;
        };
        let mut moved = hosts.watch();
        loop {
            moved.mark_unchanged();
            let Some(pool) = self.listener_pool() else {
                return;
            };
            // Ok: it was listening until the connection was lost; Err: it never got there
            // (the database is down, or not migrated yet), which the store reports itself.
            let heard = tokio::select! {
                heard = listen(&pool, &cache) => heard,
                _ = moved.changed() => Ok("the primary moved to another host".to_owned()),
            };
            if let Ok(why) = heard {
                tracing::warn!(
                    "no longer hearing session and token changes ({why}): signed-in requests read the database until the listener is back"
                );
            }
            cache.deaf();
            tokio::time::sleep(LISTEN_AGAIN_AFTER).await;
        }
    }
}

/// Connect, listen and forward notifications until the connection is lost (`Ok`: why it
/// ended), or fail before listening (`Err`).
async fn listen(pool: &sqlx::PgPool, cache: &AuthCache) -> Result<String, String> {
    let text = |e: sqlx::Error| e.to_string();
    let mut listener = PgListener::connect_with(pool).await.map_err(text)?;
    listener.listen(CHANNEL).await.map_err(text)?;
    let triggers: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'shop_auth_changed')",
    )
    .fetch_one(&mut listener)
    .await
    .map_err(text)?;
    if !triggers {
        return Err("the database has no shop_auth triggers yet".to_owned());
    }
    cache.listening();
    tracing::debug!("hearing session and token changes");
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                cache.forget(&Change::from_payload(notification.payload()));
            }
            Ok(None) => return Ok("the connection was lost".to_owned()),
            Err(e) => return Ok(e.to_string()),
        }
    }
}

/// What a notification says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A session ended or was touched (by its hash).
    Session(String),
    /// An API token was revoked or used (by its hash).
    Token(String),
    /// A user was disabled, enabled, given a password or removed (by id).
    User(UserId),
    /// A table was emptied, or a payload this binary does not know: forget everything.
    Everything,
}

impl Change {
    /// The change a trigger's payload names.
    pub fn from_payload(payload: &str) -> Change {
        let (kind, rest) = payload.split_at(payload.len().min(1));
        match kind {
            "s" if !rest.is_empty() => Change::Session(rest.to_owned()),
            "t" if !rest.is_empty() => Change::Token(rest.to_owned()),
            "u" => rest.parse().map_or(Change::Everything, Change::User),
            _ => Change::Everything,
        }
    }
}

/// A lookup's permission to be remembered: the cache's epoch when it began. A change
/// that arrives while the lookup runs moves the epoch, and the answer is not kept.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// The remembered sessions and tokens, and whether changes are being heard.
#[derive(Debug, Default)]
pub struct AuthCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Whether the listener is connected and listening: only then is anything kept.
    listening: bool,
    /// Moves with every change heard and every start or loss of listening.
    epoch: u64,
    sessions: HashMap<String, (Instant, SessionRecord)>,
    tokens: HashMap<String, (Instant, TokenRecord)>,
}

impl Inner {
    fn forget_all(&mut self) {
        self.epoch += 1;
        self.sessions.clear();
        self.tokens.clear();
    }
}

impl AuthCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing in here panics while holding the lock; a poisoned one is still sound.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session with this hash, if remembered and not older than `KEEP_FOR`.
    pub fn session(&self, id_hash: &str) -> Option<SessionRecord> {
        let inner = self.lock();
        inner
            .sessions
            .get(id_hash)
            .filter(|(at, _)| at.elapsed() < KEEP_FOR)
            .map(|(_, record)| record.clone())
    }

    /// The token with this hash, if remembered and not older than `KEEP_FOR`.
    pub fn token(&self, token_hash: &str) -> Option<TokenRecord> {
        let inner = self.lock();
        inner
            .tokens
            .get(token_hash)
            .filter(|(at, _)| at.elapsed() < KEEP_FOR)
            .map(|(_, record)| record.clone())
    }

    /// Taken before a lookup in the database; `None` while changes are not being heard.
    pub fn ticket(&self) -> Option<Ticket> {
        let inner = self.lock();
        inner.listening.then_some(Ticket(inner.epoch))
    }

    /// Remember a session read with `ticket`, unless something changed meanwhile.
    pub fn keep_session(&self, ticket: Ticket, id_hash: &str, record: &SessionRecord) {
        let mut inner = self.lock();
        if inner.listening && inner.epoch == ticket.0 && !record.user.disabled {
            keep(&mut inner.sessions, id_hash, record.clone());
        }
    }

    /// Remember a token read with `ticket`, unless something changed meanwhile.
    pub fn keep_token(&self, ticket: Ticket, token_hash: &str, record: &TokenRecord) {
        let mut inner = self.lock();
        if inner.listening && inner.epoch == ticket.0 && !record.user.disabled {
            keep(&mut inner.tokens, token_hash, record.clone());
        }
    }

    /// Forget what `change` names (a notification, or this process's own write).
    pub fn forget(&self, change: &Change) {
        let mut inner = self.lock();
        inner.epoch += 1;
        match change {
            Change::Session(hash) => {
                inner.sessions.remove(hash);
            }
            Change::Token(hash) => {
                inner.tokens.remove(hash);
            }
            Change::User(id) => {
                inner.sessions.retain(|_, (_, r)| r.user.id != *id);
                inner.tokens.retain(|_, (_, r)| r.user.id != *id);
            }
            Change::Everything => inner.forget_all(),
        }
    }

    /// The listener is listening (from now on every change is heard).
    pub fn listening(&self) {
        let mut inner = self.lock();
        inner.forget_all();
        inner.listening = true;
    }

    /// The listener lost its connection: changes may go unheard, so forget everything
    /// and keep nothing until it listens again.
    pub fn deaf(&self) {
        let mut inner = self.lock();
        inner.forget_all();
        inner.listening = false;
    }

    /// Whether changes are heard, and how many sessions and tokens are remembered.
    pub fn stats(&self) -> (bool, usize, usize) {
        let inner = self.lock();
        (inner.listening, inner.sessions.len(), inner.tokens.len())
    }
}

/// Insert, making room by dropping what is past `KEEP_FOR` (and, failing that, not
/// keeping this one: the cache stays bounded whatever the traffic).
fn keep<T>(map: &mut HashMap<String, (Instant, T)>, key: &str, value: T) {
    if map.len() >= MOST && !map.contains_key(key) {
        map.retain(|_, (at, _)| at.elapsed() < KEEP_FOR);
        if map.len() >= MOST {
            return;
        }
    }
    map.insert(key.to_owned(), (Instant::now(), value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::User;
    use chrono::Utc;

    fn record(user_id: i64) -> SessionRecord {
        SessionRecord {
            user: User {
                id: UserId(user_id),
                username: format!("user{user_id}"),
                is_admin: false,
                disabled: false,
            },
            created_at: Utc::now(),
            last_seen_at: Utc::now(),
        }
    }

    fn listening_cache() -> AuthCache {
        let cache = AuthCache::default();
        cache.listening();
        cache
    }

    #[test]
    fn payloads_name_what_changed() {
        assert_eq!(Change::from_payload("sabc"), Change::Session("abc".into()));
        assert_eq!(Change::from_payload("tdef"), Change::Token("def".into()));
        assert_eq!(Change::from_payload("u42"), Change::User(UserId(42)));
        for unknown in ["*", "", "s", "u", "ux", "zzz"] {
            assert_eq!(
                Change::from_payload(unknown),
                Change::Everything,
                "{unknown}"
            );
        }
    }

    #[test]
    fn nothing_is_kept_unless_listening() {
        let cache = AuthCache::default();
        assert!(cache.ticket().is_none());
        let cache = listening_cache();
        let ticket = cache.ticket().unwrap();
        cache.deaf();
        cache.keep_session(ticket, "a", &record(1));
        assert!(cache.session("a").is_none(), "kept while deaf");
    }

    #[test]
    fn a_change_during_the_lookup_keeps_its_answer_out() {
        let cache = listening_cache();
        let ticket = cache.ticket().unwrap();
        cache.forget(&Change::Session("a".into()));
        cache.keep_session(ticket, "a", &record(1));
        assert!(cache.session("a").is_none(), "a stale answer was kept");
        let ticket = cache.ticket().unwrap();
        cache.keep_session(ticket, "a", &record(1));
        assert!(cache.session("a").is_some());
    }

    #[test]
    fn changes_forget_their_sessions_and_tokens() {
        let cache = listening_cache();
        for (hash, user) in [("a", 1), ("b", 1), ("c", 2)] {
            let ticket = cache.ticket().unwrap();
            cache.keep_session(ticket, hash, &record(user));
        }
        let ticket = cache.ticket().unwrap();
        let token = TokenRecord {
            user: record(2).user,
            last_used_at: None,
            expires_at: None,
        };
        cache.keep_token(ticket, "t", &token);
        cache.forget(&Change::Session("a".into()));
        assert!(cache.session("a").is_none());
        assert!(cache.session("b").is_some());
        cache.forget(&Change::User(UserId(2)));
        assert!(cache.session("c").is_none() && cache.token("t").is_none());
        assert!(cache.session("b").is_some());
        cache.forget(&Change::Everything);
        assert_eq!(cache.stats(), (true, 0, 0));
    }

    #[test]
    fn disabled_users_are_not_kept_and_the_cache_is_bounded() {
        let cache = listening_cache();
        let mut disabled = record(1);
        disabled.user.disabled = true;
        cache.keep_session(cache.ticket().unwrap(), "d", &disabled);
        assert!(cache.session("d").is_none());
        for n in 0..MOST + 10 {
            cache.keep_session(cache.ticket().unwrap(), &n.to_string(), &record(1));
        }
        assert_eq!(cache.stats().1, MOST);
    }
}
