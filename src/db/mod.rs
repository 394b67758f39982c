//! One `Store` that the handlers call, whichever database is behind it. The SQL of the
//! PostgreSQL and SQLite halves stands side by side in `queries`, so a reader sees that
//! they match; connecting and migrating live in `migrate`.

mod migrate;
mod queries;

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseSettings;
use crate::items::{Item, ItemPage, ListQuery, NewItem};
pub use migrate::MigrationState;
use queries::run;

/// Which database a URL names, decided by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }

    pub fn from_url(url: &str) -> Result<Backend, String> {
        let scheme = url.split(':').next().unwrap_or("");
        match scheme {
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "sqlite" => Ok(Backend::Sqlite),
            _ => Err(format!(
                "unsupported scheme {scheme:?}: use postgres://… (PostgreSQL) or sqlite:PATH (SQLite)"
            )),
        }
    }
}

/// The item store, over a pool of either backend.
#[derive(Clone, Debug)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// What can go wrong talking to the database, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now; try again later (503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug or a broken schema (500).
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Config(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Other(error)
        }
    }
}

/// Connection trouble, a server shutting down or a busy SQLite file: worth a retry, not a bug.
fn is_unavailable(error: &sqlx::Error) -> bool {
    use sqlx::Error::*;
    match error {
        PoolTimedOut | PoolClosed | Io(_) | Tls(_) | Protocol(_) | WorkerCrashed => true,
        Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: 08xxx connection exception, 57P0x shutdown/restart, 53300 too many
            // connections. SQLite: 5 (SQLITE_BUSY), 6 (SQLITE_LOCKED) and their extended codes.
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

impl Store {
    /// Connect a pool for `settings.database.url`. Creates the SQLite file if needed.
    pub async fn connect(settings: &DatabaseSettings) -> StoreResult<Store> {
        let url = settings.url.expose();
        let acquire_timeout = Duration::from_secs(settings.acquire_timeout_secs);
        match Backend::from_url(url).map_err(StoreError::Config)? {
            Backend::Postgres => {
                let options: PgConnectOptions = url.parse()?;
                let pool = PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options.application_name("shop"))
                    .await?;
                Ok(Store::Postgres(pool))
            }
            Backend::Sqlite => {
                let options: SqliteConnectOptions = url.parse()?;
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(acquire_timeout)
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await?;
                Ok(Store::Sqlite(pool))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Postgres(_) => Backend::Postgres,
            Store::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> StoreResult<()> {
        run!(self, queries::PING, execute)?;
        Ok(())
    }

    /// The server's own description of itself, e.g. "PostgreSQL 15.8 …" or "SQLite 3.46.0".
    pub async fn server_version(&self) -> StoreResult<String> {
        let (version,): (String,) = run!(self, as queries::VERSION, fetch_one)?;
        Ok(match self {
            Store::Postgres(_) => version,
            Store::Sqlite(_) => format!("SQLite {version}"),
        })
    }

    /// One page of the newest-first list; fetches one row more than the page to know
    /// whether another page follows, and never counts the table.
    pub async fn list_items(&self, query: &ListQuery) -> StoreResult<ItemPage> {
        let limit = i64::from(query.per_page) + 1;
        let mut items: Vec<Item> = if query.search.is_empty() {
            run!(self, as queries::LIST, fetch_all, limit, query.offset())?
        } else {
            let pattern = query.like_pattern();
            run!(self, as queries::SEARCH, fetch_all, pattern, limit, query.offset())?
        };
        let has_next = items.len() > query.per_page as usize;
        items.truncate(query.per_page as usize);
        Ok(ItemPage { items, has_next })
    }

    pub async fn get_item(&self, id: i64) -> StoreResult<Option<Item>> {
        Ok(run!(self, as queries::GET, fetch_optional, id)?)
    }

    /// Store a new item. With an idempotency key that an earlier item was created with,
    /// store nothing and return that item instead (`Created::replayed`).
    pub async fn create_item(&self, item: &NewItem, key: Option<&str>) -> StoreResult<Created> {
        // Twice at most: the earlier item could be deleted between the two statements.
        for _ in 0..2 {
            let (name, quantity, description) = (&item.name, item.quantity, &item.description);
            let inserted: Option<Item> = run!(self, as queries::INSERT, fetch_optional, name, quantity, description, now(), key)?;
            if let Some(item) = inserted {
                return Ok(Created {
                    item,
                    replayed: false,
                });
            }
            let earlier: Option<Item> =
                run!(self, as queries::GET_BY_IDEMPOTENCY_KEY, fetch_optional, key)?;
            if let Some(item) = earlier {
                return Ok(Created {
                    item,
                    replayed: true,
                });
            }
        }
        Err(StoreError::Config(
            "an idempotency key kept conflicting with a vanishing item".into(),
        ))
    }

    /// Replace an item's fields; `None` when there is no such item.
    pub async fn update_item(&self, id: i64, item: &NewItem) -> StoreResult<Option<Item>> {
        Ok(
            run!(self, as queries::UPDATE, fetch_optional, &item.name, item.quantity, &item.description, id)?,
        )
    }

    /// Delete an item; `false` when there was no such item.
    pub async fn delete_item(&self, id: i64) -> StoreResult<bool> {
        let deleted = run!(self, queries::DELETE, execute, id)?;
        Ok(deleted > 0)
    }

    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(pool) => pool.close().await,
        }
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
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
