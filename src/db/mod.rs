//! One `Store` that the handlers call, whichever database is behind it: this file holds
//! the type, its pools and how it connects. Its halves: the items in `items`, the orders
//! in `orders`, the accounts in `accounts` (sessions and tokens remembered in
//! `auth_cache`), backups in `snapshot`; the SQL of PostgreSQL and SQLite stands side by side in `queries`, so a
//! reader sees that they match; migrating lives in `migrate`; whether the database
//! answers (outages, the probe, what a failure means) in `availability`; which of several
//! PostgreSQL hosts is the primary, and following it, in `primary`.

mod accounts;
mod auth_cache;
mod availability;
mod items;
mod migrate;
mod orders;
mod primary;
pub mod queries;
mod snapshot;
mod url;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

pub use accounts::{AttemptId, Failures, TokenInfo};
use auth_cache::AuthCache;
pub use auth_cache::{SessionRecord, TokenRecord};
pub use availability::DbState;
use availability::{classify, Availability, Failure};
pub use items::{Created, Deleted, Listed, ListedItem, Updated};
pub use migrate::MigrationState;
pub use orders::{Cancelled, HandedOver, Placed};
use primary::Hosts;
use queries::run;
pub use snapshot::{Accounts, BackupLine, BackupOrder, BackupRow, BackupToken, BackupUser, Record};
use url::Target;
pub use url::{Backend, DatabaseUrl};

/// The item store: a pool of either backend, and whether its database answers.
#[derive(Clone, Debug)]
pub struct Store {
    /// Replaced (never changed) when the primary moves to another host: the old pool's
    /// connections to a powered-off host may hang until TCP gives up, and must not hold
    /// the new pool's places meanwhile.
    pools: Arc<RwLock<Pools>>,
    availability: Arc<Availability>,
    /// PostgreSQL: remembered sessions and tokens (their listener connects apart).
    auth: Option<Arc<AuthCache>>,
    /// PostgreSQL: the URL's hosts, and which one the pools point at.
    hosts: Option<Arc<Hosts>>,
    size: PoolSize,
    /// SQLite: this instance's write transactions take turns here (first come, first
    /// served) before they ask for the file's write lock, so the lock is contended by one
    /// transaction per instance, not by every connection of each: SQLite's busy handler
    /// polls and serves no one in order, and with 24 connections asking, some waited past
    /// the query timeout. A queue for speed only: the file's lock is what keeps writes
    /// apart, whatever the number of instances.
    write_turn: Arc<tokio::sync::Mutex<()>>,
}

/// The requests' pool, and (PostgreSQL) the one-connection pool the listener of session
/// and token changes connects through.
#[derive(Clone, Debug)]
struct Pools {
    requests: Pool,
    listener: Option<PgPool>,
}

#[derive(Clone, Debug)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// What can go wrong talking to the database, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot serve now (unreachable, busy); try again later (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// An idempotency key already names another user's item: the writer must send a new
    /// key (409); the earlier item is neither returned nor changed.
    #[error("the idempotency key names another seller's item")]
    KeyTaken,
    /// Anything else: a bug, a missing privilege or a broken schema (500).
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    /// The migrations could not be applied; the schema is not what this binary expects.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The SQLite file's migration lock could not be taken (a permission or a path to fix).
    #[error("cannot lock {path} for migrating: {source}")]
    MigrationLock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            Failure::Unreachable | Failure::Busy => StoreError::Unavailable(error.to_string()),
            Failure::Other => StoreError::Other(error),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether an SQLite connection coming back to the pool may be used again: not while it
/// is still inside a transaction, which would hold the file's write lock for as long as
/// the connection lives and stop every instance's writes. sqlx leaves one so when a
/// request is dropped (its client went away, a timeout) between `BEGIN IMMEDIATE` and the
/// `Transaction` that would roll it back (sqlx 0.8's `begin_with` awaits a second time
/// after its BEGIN). Closing the connection rolls it back. The ping lets a rollback already
/// queued by a dropped `Transaction` run first.
async fn released_outside_a_transaction(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<bool> {
    use sqlx::{Connection, TransactionManager};
    conn.ping().await?;
    let depth = sqlx::sqlite::SqliteTransactionManager::get_transaction_depth(conn);
    if depth > 0 {
        tracing::warn!(
            depth,
            "an SQLite connection came back inside a transaction (its request was dropped): closing it, which rolls it back"
        );
    }
    Ok(depth == 0)
}

/// How many connections a store keeps, how long a request waits for one, and how long
/// for the database's answer.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// A host powered off mid-query answers nothing, not even a reset: without a bound
    /// the request would wait for TCP to give up (a quarter of an hour).
    pub query_timeout: Duration,
}

/// How long an SQLite connection may sit idle in the pool before it is closed.
const SQLITE_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

impl Store {
    /// A pool for `url`, without connecting: the first query (or `Store::reach`) does.
    /// Creates the SQLite file when it first connects. With several PostgreSQL hosts, the
    /// pools point at the first until `reach` finds which is the primary.
    pub fn connect(url: &DatabaseUrl, size: PoolSize) -> Store {
        let (pools, auth, hosts) = match url.target().clone() {
            Target::Postgres(each) => {
                let hosts = Hosts::new(each);
                let pools = postgres_pools(hosts.options(0), size);
                (pools, Some(Arc::default()), Some(Arc::new(hosts)))
            }
            Target::Sqlite(options) => {
                let options = (*options)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // Writers of other instances queue on the file: this long, the query
                    // timeout (SQLite's statements are bounded by it, not cut off).
                    .busy_timeout(size.query_timeout)
                    .foreign_keys(true)
                    // 256 KiB of page cache per connection, not SQLite's 2 MiB: the kernel
                    // caches the file for every connection at once, and eight 2 MiB caches
                    // filled by a scan took an instance from 17 to 35 MiB (eight of 512 KiB
                    // kept an instance that had searched a million items at 20.3 MiB).
                    .pragma("cache_size", "-256");
                let requests = Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(size.max_connections)
                        .acquire_timeout(size.acquire_timeout)
                        // A connection is a file handle, reopened in well under a
                        // millisecond; one idle this long is closed, with its page cache
                        // and its thread: after a burst an instance shrinks back (eight
                        // open connections kept an instance of three on one file at
                        // 20.5 MiB), where sqlx would keep them ten minutes.
                        .idle_timeout(SQLITE_IDLE_TIMEOUT)
                        // A file is not a server that hangs up: no check (a hop to the
                        // connection's thread and back) before every statement.
                        .test_before_acquire(false)
                        .after_release(|conn, _| Box::pin(released_outside_a_transaction(conn)))
                        .connect_lazy_with(options),
                );
                let pools = Pools {
                    requests,
                    listener: None,
                };
                (pools, None, None)
            }
        };
        Store {
            pools: Arc::new(RwLock::new(pools)),
            availability: Arc::new(Availability::starting()),
            auth,
            hosts,
            size,
            write_turn: Arc::default(),
        }
    }

    /// The requests' pool as it is now (a clone: pools are shared handles).
    fn pool(&self) -> Pool {
        self.pools.read().expect("pools lock").requests.clone()
    }

    /// The auth listener's pool as it is now (PostgreSQL).
    fn listener_pool(&self) -> Option<PgPool> {
        self.pools.read().expect("pools lock").listener.clone()
    }

    /// SQLite: this instance's turn to write (`write_turn`), waited for at most the query
    /// timeout: past it, the same I/O time-out as a statement's (load: a 503).
    async fn write_turn(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, sqlx::Error> {
        let limit = self.size.query_timeout;
        tokio::time::timeout(limit, self.write_turn.lock())
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no turn to write within {} s", limit.as_secs()),
                ))
            })
    }

    /// Run `query` for at most the query timeout: a host that stopped answering counts as
    /// lost (an I/O error), like one that reset the connection. PostgreSQL's only: an SQLite
    /// file does not go away mid-query, its waits end by themselves at its busy timeout
    /// (SQLITE_BUSY: a 503), and a transaction cut off between its `BEGIN IMMEDIATE` and
    /// sqlx's `Transaction` leaves its connection holding the file's lock (closed when it
    /// comes back, by `released_outside_a_transaction`, but better not made at all).
    async fn bounded<T>(
        &self,
        query: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        let limit = self.size.query_timeout;
        tokio::time::timeout(limit, query)
            .await
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from the database within {} s", limit.as_secs()),
                )))
            })
    }

    /// Which database is behind the store (without touching the pools' lock: every
    /// query asks). PostgreSQL stores are those with hosts.
    pub fn backend(&self) -> Backend {
        match self.hosts {
            Some(_) => Backend::Postgres,
            None => Backend::Sqlite,
        }
    }

    /// The pool's open and idle connections.
    pub fn pool_stats(&self) -> (u32, usize) {
        match &self.pool() {
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
        }
    }

    /// The server's own description of itself, e.g. "PostgreSQL 15.8 …" or "SQLite 3.46.0".
    pub async fn server_version(&self) -> StoreResult<String> {
        let (version,): (String,) = run!(self, as queries::VERSION, fetch_one)?;
        Ok(match self.backend() {
            Backend::Postgres => version,
            Backend::Sqlite => format!("SQLite {version}"),
        })
    }

    /// Which server the store talks to, and its role: "10.0.0.21:5432, the primary" (or
    /// "a standby"; "the Unix socket" for a local one), "the file" for SQLite.
    pub async fn connected_to(&self) -> StoreResult<String> {
        if self.backend() == Backend::Sqlite {
            return Ok("the file".to_owned());
        }
        let (server, standby): (Option<String>, bool) = run!(self, as queries::SERVER, fetch_one)?;
        let role = if standby { "a standby" } else { "the primary" };
        Ok(format!(
            "{}, {role}",
            server.as_deref().unwrap_or("the Unix socket")
        ))
    }

    pub async fn close(&self) {
        let Pools { requests, listener } = self.pools.read().expect("pools lock").clone();
        match requests {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
        if let Some(listener) = listener {
            listener.close().await;
        }
    }
}

/// The pools for one PostgreSQL host.
fn postgres_pools(options: &PgConnectOptions, size: PoolSize) -> Pools {
    let listener = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(size.acquire_timeout)
        .connect_lazy_with(options.clone().application_name("shop-listener"));
    let requests = PgPoolOptions::new()
        .max_connections(size.max_connections)
        .acquire_timeout(size.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
        .connect_lazy_with(options.clone().application_name("shop"));
    Pools {
        requests: Pool::Postgres(requests),
        listener: Some(listener),
    }
}

/// How long a connection may have sat in the pool before it is checked (a round trip)
/// on its way out: one that was idle longer may have been closed by a restarted server or
/// a firewall, and a failed check takes the next connection, or a new one, instead. One
/// that served a request a moment ago is taken as it is: checking every connection every
/// time (sqlx's default) was a second round trip for every statement.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The pool's check of a connection it hands out (`false` or an error: not that one).
async fn ping_if_idle(
    conn: &mut sqlx::PgConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if meta.idle_for >= CHECK_IF_IDLE_FOR {
        conn.ping().await?;
    }
    Ok(true)
}

/// The server's clock, at the precision both databases keep (microseconds).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, TransactionManager};

    /// A connection left inside `BEGIN IMMEDIATE` with no `Transaction` to roll it back (what
    /// a request dropped inside sqlx's `begin_with` leaves) goes back to the pool: the pool
    /// closes it, and another instance's writer gets the file's lock at once.
    #[tokio::test]
    async fn a_connection_left_in_a_transaction_does_not_keep_the_file_locked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let size = PoolSize {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
        };
        let store = Store::connect(&url.parse().unwrap(), size);
        let Pool::Sqlite(pool) = store.pool() else {
            unreachable!("an SQLite store")
        };
        let mut left = pool.acquire().await.unwrap();
        sqlx::sqlite::SqliteTransactionManager::begin(&mut left, Some("BEGIN IMMEDIATE".into()))
            .await
            .unwrap();
        drop(left);

        let mut other = sqlx::SqliteConnection::connect_with(
            &url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .busy_timeout(Duration::from_secs(3)),
        )
        .await
        .unwrap();
        let asked = std::time::Instant::now();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the file's write lock was given back");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();

        // The pool goes on serving, on a fresh connection, outside any transaction.
        let mut next = pool.acquire().await.unwrap();
        assert_eq!(
            sqlx::sqlite::SqliteTransactionManager::get_transaction_depth(&next),
            0
        );
        next.ping().await.unwrap();
    }
}
