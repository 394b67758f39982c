//! One `Store` that the handlers call, whichever database is behind it. The SQL of the
//! PostgreSQL and SQLite halves stands side by side in `queries`, so a reader sees that
//! they match; connecting and migrating live in `migrate`; whether the database answers
//! (and what a failure means) in `availability`; which of several PostgreSQL hosts is
//! the primary in `primary`.

mod accounts;
mod auth_cache;
mod availability;
mod migrate;
mod primary;
mod queries;
mod snapshot;
mod url;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use tracing::instrument::WithSubscriber;
use tracing::subscriber::NoSubscriber;

use crate::access::{ChangeItem, Permit};
use crate::accounts::User;
use crate::items::{Item, ItemPage, ListQuery, NewItem, Seek};
pub use accounts::{Failures, SessionRecord, TokenInfo, TokenRecord};
use auth_cache::AuthCache;
pub use availability::DbState;
use availability::{classify, Availability, Failure};
pub use migrate::MigrationState;
use primary::Hosts;
use queries::{run, Filter, Start};
pub use snapshot::{Accounts, BackupRow, BackupToken, BackupUser, Record};
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

/// How often the probe checks a database that answers (to notice an outage with no
/// traffic), and one that does not (to notice its return).
const PROBE_WHILE_UP: Duration = Duration::from_secs(5);
const PROBE_WHILE_DOWN: Duration = Duration::from_millis(250);

pub type StoreResult<T> = Result<T, StoreError>;

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
                    // Writers of other instances queue on the file: give them time.
                    .busy_timeout(size.acquire_timeout.max(Duration::from_secs(5)))
                    .foreign_keys(true)
                    // 512 KiB of page cache per connection, not SQLite's 2 MiB: the kernel
                    // caches the file for every connection at once, and eight 2 MiB caches
                    // filled by a scan took an instance from 17 to 35 MiB.
                    .pragma("cache_size", "-512");
                let requests = Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(size.max_connections)
                        .acquire_timeout(size.acquire_timeout)
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

    /// Several PostgreSQL hosts: find the primary and, when it is not the host the pools
    /// point at, point them at it (new pools; the old ones go with their connections).
    async fn follow_primary(&self) -> StoreResult<()> {
        let Some(hosts) = self.hosts.as_ref().filter(|h| h.several()) else {
            return Ok(());
        };
        let found = hosts
            .find_primary()
            .await
            .map_err(StoreError::Unavailable)?;
        let was = hosts.current();
        if found != was {
            *self.pools.write().expect("pools lock") =
                postgres_pools(hosts.options(found), self.size);
            hosts.set_current(found);
            tracing::warn!(
                primary = %hosts.name(found),
                "the database primary is now {} (was {}): connecting there",
                hosts.name(found),
                hosts.name(was)
            );
        }
        Ok(())
    }

    /// Run `query` for at most the query timeout: a host that stopped answering counts as
    /// lost (an I/O error), like one that reset the connection.
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

    /// Whether the database answers, as this process last saw it.
    pub fn db_state(&self) -> DbState {
        self.availability.current()
    }

    /// The pool's open and idle connections.
    pub fn pool_stats(&self) -> (u32, usize) {
        match &self.pool() {
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
        }
    }

    /// Changes of `db_state`, for the status line.
    pub fn watch_db_state(&self) -> tokio::sync::watch::Receiver<DbState> {
        self.availability.subscribe()
    }

    /// Refuse at once while the database is known to be down (used by `run!`).
    fn gate(&self) -> StoreResult<()> {
        match self.availability.current() {
            DbState::Up => Ok(()),
            down => Err(StoreError::Unavailable(down.describe())),
        }
    }

    /// Turn a query's error into ours, marking the database down when it was lost.
    fn failed(&self, error: sqlx::Error) -> StoreError {
        if classify(&error) == Failure::Unreachable && !self.saturated(&error) {
            self.availability.mark_down(&error.to_string());
        }
        StoreError::from(error)
    }

    /// Whether a wait for a connection timed out because every open connection is busy
    /// (slow queries under load: a 503 for this request, no outage) rather than because
    /// none can be opened (the database is gone: the pool has dropped them all).
    fn saturated(&self, error: &sqlx::Error) -> bool {
        let (open, idle) = self.pool_stats();
        matches!(error, sqlx::Error::PoolTimedOut) && open > 0 && idle == 0
    }

    /// Reach the database and (with `migrate`) apply pending migrations; on success the
    /// store is up. Not gated: this is how a store that is down comes back.
    pub async fn reach(&self, migrate: bool) -> StoreResult<()> {
        let result = async {
            self.follow_primary().await?;
            self.ping().await?;
            if migrate {
                self.migrate().await?;
            }
            Ok(())
        }
        .await;
        match &result {
            Ok(()) => self.availability.mark_up(),
            Err(StoreError::Unavailable(why)) => self.availability.mark_down(why),
            Err(_) => {}
        }
        result
    }

    /// Keep `db_state` true for as long as the process runs: while the database answers,
    /// check it every few seconds; while it does not, try every quarter second and, once
    /// it answers, apply pending migrations (with `migrate`) before serving again.
    pub async fn watch_availability(self, migrate: bool) {
        loop {
            if self.availability.is_up() {
                tokio::time::sleep(PROBE_WHILE_UP).await;
                // A lost database marks itself down (`ping` sorts the error); a busy one
                // (too many connections, a locked file) is no outage.
                let _ = self.ping().await;
            } else {
                tokio::time::sleep(PROBE_WHILE_DOWN).await;
                match self.reach(migrate).await {
                    Ok(()) | Err(StoreError::Unavailable(_)) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "the database answers but cannot be used; retrying");
                        self.availability.mark_down(&e.to_string());
                        tokio::time::sleep(PROBE_WHILE_UP).await;
                    }
                }
            }
        }
    }

    /// A round trip to the database (not gated: the probe uses it).
    pub async fn ping(&self) -> StoreResult<()> {
        let result = match &self.pool() {
            Pool::Postgres(pool) => self
                .bounded(sqlx::query(queries::PING.postgres).execute(pool))
                .await
                .map(drop),
            Pool::Sqlite(pool) => self
                .bounded(sqlx::query(queries::PING.sqlite).execute(pool))
                .await
                .map(drop),
        };
        result.map_err(|e| self.failed(e))
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

    /// One page of the newest-first list; fetches one row more than the page to know
    /// whether another page follows, and never counts the table.
    pub async fn list_items(&self, query: &ListQuery) -> StoreResult<ItemPage> {
        let backend = self.backend();
        let (filter, needle) = match (query.search.is_empty(), backend) {
            (true, _) => (Filter::All, None),
            (false, Backend::Sqlite) if query.search_is_indexable() => {
                (Filter::Contains, Some(query.fts_phrase()))
            }
            (false, Backend::Sqlite) => (Filter::ContainsShort, Some(query.like_pattern())),
            (false, Backend::Postgres) => (Filter::Contains, Some(query.like_pattern())),
        };
        let (start, cursor) = match query.from {
            None => (Start::Offset, None),
            Some(Seek::Older(cursor)) => (Start::Older, Some(cursor)),
            Some(Seek::Newer(cursor)) => (Start::Newer, Some(cursor)),
        };
        let sql = queries::list(backend, filter, start);
        let limit = i64::from(query.per_page) + 1;
        let offset = (start == Start::Offset).then(|| query.offset());
        // A search is planned for its own text (an unnamed statement): a plan made for
        // any text would walk the whole list for a word that is rare.
        let prepared = needle.is_none();
        let mut items: Vec<Item> = run!(@gated self, sql.as_str(), |text, pool| {
            let mut statement = sqlx::query_as(text).persistent(prepared);
            if let Some(needle) = &needle {
                statement = statement.bind(needle);
            }
            if let Some(cursor) = cursor {
                statement = statement.bind(cursor.date_added).bind(cursor.id);
            }
            statement = statement.bind(limit);
            if let Some(offset) = offset {
                statement = statement.bind(offset);
            }
            // Without logging: sqlx enters the current span (the request's) for every row
            // it hands over, a tenth of a 1,000-row page's time. What it would log here
            // (a slow statement) shows in the request's own line, with its latency.
            statement.fetch_all(pool).with_subscriber(NoSubscriber::default()).await
        })?;
        let more = items.len() > query.per_page as usize;
        items.truncate(query.per_page as usize);
        Ok(match start {
            Start::Offset => ItemPage {
                items,
                has_next: more,
                has_prev: query.page > 1,
            },
            Start::Older => ItemPage {
                items,
                has_next: more,
                has_prev: true,
            },
            Start::Newer => {
                items.reverse();
                ItemPage {
                    items,
                    has_next: true,
                    has_prev: more,
                }
            }
        })
    }

    /// A value that changes whenever any instance changes an item (see
    /// `queries::DATA_VERSION`): what the pages' `ETag`s are made from. Read it before the
    /// data it stands for, so a page is never older than its validator.
    pub async fn data_version(&self) -> StoreResult<String> {
        let (version,): (String,) = run!(self, as queries::DATA_VERSION, fetch_one)?;
        Ok(version)
    }

    pub async fn get_item(&self, id: i64) -> StoreResult<Option<Item>> {
        Ok(run!(self, as queries::GET, fetch_optional, id)?)
    }

    /// Store a new item. With an idempotency key that an earlier item was created with,
    /// store nothing and return that item instead (`Created::replayed`) — to its own
    /// seller: the key of another's item is `KeyTaken`.
    pub async fn create_item(
        &self,
        item: &NewItem,
        seller: &User,
        key: Option<&str>,
    ) -> StoreResult<Created> {
        let owner = seller.id;
        // Twice at most: the earlier item could be deleted between the two statements.
        for _ in 0..2 {
            let (name, quantity, description) = (&item.name, item.quantity, &item.description);
            let inserted: Option<Item> = run!(self, as queries::INSERT, fetch_optional, name, quantity, description, now(), key, owner, &seller.username)?;
            if let Some(item) = inserted {
                ::metrics::counter!("shop_items_created_total").increment(1);
                return Ok(Created {
                    item,
                    replayed: false,
                });
            }
            let earlier: Option<Item> =
                run!(self, as queries::GET_BY_IDEMPOTENCY_KEY, fetch_optional, key)?;
            if let Some(item) = earlier {
                if item.owner_id != Some(owner) {
                    return Err(StoreError::KeyTaken);
                }
                return Ok(Created {
                    item,
                    replayed: true,
                });
            }
        }
        // The earlier item was being deleted as this one was stored, twice: try again.
        Err(StoreError::Unavailable(
            "the idempotency key is in use by an item being deleted".into(),
        ))
    }

    /// Replace the fields of the item `permit` allows changing; `None` when it is gone.
    pub async fn update_item(
        &self,
        permit: &Permit<ChangeItem>,
        item: &NewItem,
    ) -> StoreResult<Option<Item>> {
        let id = permit.subject().id;
        Ok(
            run!(self, as queries::UPDATE, fetch_optional, &item.name, item.quantity, &item.description, now(), id)?,
        )
    }

    /// Delete the item `permit` allows changing; `false` when it was gone already.
    pub async fn delete_item(&self, permit: &Permit<ChangeItem>) -> StoreResult<bool> {
        let deleted = run!(self, queries::DELETE, execute, permit.subject().id)?;
        Ok(deleted > 0)
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
        .connect_lazy_with(options.clone().application_name("shop"));
    Pools {
        requests: Pool::Postgres(requests),
        listener: Some(listener),
    }
}

/// An item from a row of `queries::ITEM_COLUMNS`, by position (not by name, which is a
/// lookup per column of every row).
impl<'r, R> sqlx::FromRow<'r, R> for Item
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Item, sqlx::Error> {
        // Unchecked: the columns' types are the schema's, not the caller's to choose, and
        // a mismatch still fails to decode; checking them for every row cost a tenth of a
        // 1,000-row page.
        Ok(Item {
            id: row.try_get_unchecked(0)?,
            name: row.try_get_unchecked(1)?,
            quantity: row.try_get_unchecked(2)?,
            description: row.try_get_unchecked(3)?,
            date_added: row.try_get_unchecked(4)?,
            owner_id: row.try_get_unchecked(5)?,
            seller: row.try_get_unchecked(6)?,
        })
    }
}

/// The outcome of `create_item`.
#[derive(Debug, Clone)]
pub struct Created {
    pub item: Item,
    /// The key had been used: nothing new was stored, `item` is the earlier one.
    pub replayed: bool,
}

/// The server's clock, at the precision both databases keep (microseconds).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
