//! Schema migrations (sqlx, embedded from `migrations/`), applied once even when several
//! instances start at the same moment, and the migration state `check` and `/readyz` report.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::LazyLock;

use std::borrow::Cow;

use futures_util::future::{self, BoxFuture, FutureExt};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::queries::{self, run};
use super::{Backend, Pool, Store, StoreError, StoreResult};

/// The files of `migrations/postgres` and `migrations/sqlite`, each name with its text
/// (written by build.rs).
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The migrations, embedded. Applied migrations this binary does not know are ignored:
/// migrations only add (columns, indexes), so after a downgrade the older shop keeps
/// working on the newer schema (README: "Backups and rollback").
static POSTGRES: LazyLock<Migrator> = LazyLock::new(|| migrator(embedded::POSTGRES));
static SQLITE: LazyLock<Migrator> = LazyLock::new(|| migrator(embedded::SQLITE));

/// The migrations of `files`, as sqlx reads a folder of them (`sqlx::migrate!` did the
/// same at compile time, with a proc macro that compiled sqlx a second time for the host):
/// `VERSION_DESCRIPTION.sql`, the description's `_` as spaces, `-- no-transaction` on the
/// first line to run outside a transaction, and the text's SHA-384 as its checksum.
fn migrator(files: &'static [(&'static str, &'static str)]) -> Migrator {
    let mut migrator = Migrator::new(Embedded(files))
        .now_or_never()
        .expect("embedded migrations are ready at once")
        .unwrap_or_else(|e| panic!("the embedded migrations: {e}"));
    migrator.set_ignore_missing(true);
    migrator
}

/// A folder of migrations compiled into the binary.
#[derive(Debug)]
struct Embedded(&'static [(&'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        future::ready(
            self.0
                .iter()
                .map(|&(name, sql)| migration(name, sql))
                .collect(),
        )
        .boxed()
    }
}

fn migration(name: &str, sql: &'static str) -> Result<Migration, BoxDynError> {
    let (version, rest) = name
        .split_once('_')
        .ok_or_else(|| format!("migration {name:?}: no VERSION_ prefix"))?;
    let version: i64 = version
        .parse()
        .map_err(|_| format!("migration {name:?}: the version is not a number"))?;
    let migration_type = MigrationType::from_filename(rest);
    let description = rest
        .trim_end_matches(migration_type.suffix())
        .replace('_', " ");
    let no_tx = sql.starts_with("-- no-transaction");
    Ok(Migration::new(
        version,
        Cow::Owned(description),
        migration_type,
        Cow::Borrowed(sql),
        no_tx,
    ))
}

/// How far the database's schema is from the one this binary expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub applied: Vec<i64>,
    pub pending: Vec<(i64, String)>,
    /// Versions the database has that this binary does not know (a newer shop ran here).
    pub unknown: Vec<i64>,
}

impl MigrationState {
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }

    /// The schema version the database is at: its newest applied migration (0: none).
    pub fn schema(&self) -> i64 {
        self.applied.iter().copied().max().unwrap_or(0)
    }
}

impl Store {
    fn migrator(&self) -> &'static Migrator {
        match self.backend() {
            Backend::Postgres => &POSTGRES,
            Backend::Sqlite => &SQLITE,
        }
    }

    /// The newest schema version this binary knows.
    pub fn known_schema(&self) -> i64 {
        self.migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Apply pending migrations. PostgreSQL serialises concurrent runs with an advisory
    /// lock; SQLite has none, so an exclusive `flock` on a lock file next to the database
    /// (`shop.db.migrate-lock`) does the same there.
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool() {
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                // Closed, not returned to the pool: a session lock must not outlive this run.
                conn.close_on_drop();
                // sqlx takes a lock too, but only around its own run: the repair before it
                // must not drop an index another instance is building right now.
                lock_migrations(&mut conn).await?;
                let result: StoreResult<()> = async {
                    drop_interrupted_indexes(&mut conn).await?;
                    // (`run_direct`: `run` with a connection is not `Send` in sqlx 0.8.)
                    POSTGRES.run_direct(&mut *conn).await?;
                    Ok(())
                }
                .await;
                sqlx::query(queries::UNLOCK_MIGRATIONS)
                    .execute(&mut *conn)
                    .await?;
                result?
            }
            Pool::Sqlite(pool) => {
                let path = {
                    let mut conn = pool.acquire().await?;
                    database_file(&mut conn).await?
                };
                // A file of its own, never the database: closing any descriptor of the
                // database file would drop SQLite's own (fcntl) locks on it, and another
                // process closing its last connection would then take the database for
                // unused, checkpoint it and delete the WAL this process still writes to.
                let _lock = match path {
                    Some(path) => Some(lock_exclusive(format!("{path}.migrate-lock")).await?),
                    None => None,
                };
                SQLITE.run(pool).await?;
            }
        }
        Ok(())
    }

    /// Which of this binary's migrations the database has, and which it lacks. Reads only:
    /// a database nobody migrated yet has no bookkeeping table, so everything is pending.
    pub async fn migration_state(&self) -> StoreResult<MigrationState> {
        let (has_table,): (bool,) = run!(self, as queries::HAS_MIGRATIONS_TABLE, fetch_one)?;
        let applied: Vec<i64> = if has_table {
            let rows: Vec<(i64,)> = run!(self, as queries::APPLIED_MIGRATIONS, fetch_all)?;
            rows.into_iter().map(|(v,)| v).collect()
        } else {
            Vec::new()
        };
        let migrations = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration());
        let known: Vec<i64> = migrations.clone().map(|m| m.version).collect();
        Ok(MigrationState {
            pending: migrations
                .filter(|m| !applied.contains(&m.version))
                .map(|m| (m.version, m.description.to_string()))
                .collect(),
            unknown: applied
                .iter()
                .copied()
                .filter(|v| !known.contains(v))
                .collect(),
            applied,
        })
    }
}

/// Take the migration lock, asking again every 100 ms rather than waiting in the database:
/// a waiting statement holds a snapshot, and `CREATE INDEX CONCURRENTLY` in the instance
/// that migrates waits for every snapshot to end — a deadlock PostgreSQL would break by
/// failing one of them.
async fn lock_migrations(conn: &mut sqlx::PgConnection) -> StoreResult<()> {
    let mut said = false;
    loop {
        let (locked,): (bool,) = sqlx::query_as(queries::TRY_LOCK_MIGRATIONS)
            .fetch_one(&mut *conn)
            .await?;
        if locked {
            return Ok(());
        }
        if !said {
            tracing::info!("another instance is migrating the database; waiting for it");
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Drop the indexes on `items` that a `CREATE INDEX CONCURRENTLY` left invalid when it was
/// interrupted (the instance stopped mid-build), so that its migration can run again.
async fn drop_interrupted_indexes(conn: &mut sqlx::PgConnection) -> StoreResult<()> {
    let invalid: Vec<(String,)> = sqlx::query_as(queries::INTERRUPTED_INDEXES)
        .fetch_all(&mut *conn)
        .await?;
    for (index,) in invalid {
        tracing::warn!(%index, "dropping an index whose build was interrupted; it is built again");
        let drop = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS \"{}\"",
            index.replace('"', "\"\"")
        );
        sqlx::query(&drop).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The main database file of an SQLite connection (`None` for an in-memory database).
async fn database_file(conn: &mut sqlx::SqliteConnection) -> StoreResult<Option<String>> {
    let (file,): (String,) =
        sqlx::query_as("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(&mut *conn)
            .await?;
    Ok(Some(file).filter(|f| !f.is_empty()))
}

/// Hold an exclusive `flock` on `path` until the returned file is dropped.
async fn lock_exclusive(path: String) -> StoreResult<File> {
    let locked = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let file = File::options().create(true).append(true).open(&path)?;
            // SAFETY: flock on a file descriptor we own; blocks until the lock is ours.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(file)
        }
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    locked.map_err(|source| StoreError::MigrationLock { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_are_what_sqlx_reads_from_the_folders() {
        for (folder, migrator) in [("postgres", &*POSTGRES), ("sqlite", &*SQLITE)] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(folder);
            let read = sqlx::migrate::resolve_blocking(&dir).unwrap();
            let ours: Vec<_> = migrator.iter().collect();
            assert_eq!(ours.len(), read.len(), "{folder}");
            for (ours, (theirs, _)) in ours.iter().zip(&read) {
                assert_eq!(ours.version, theirs.version);
                assert_eq!(ours.description, theirs.description);
                assert_eq!(ours.checksum, theirs.checksum, "{folder} {}", ours.version);
                assert_eq!(ours.no_tx, theirs.no_tx);
                assert_eq!(ours.migration_type, theirs.migration_type);
            }
        }
        assert!(
            POSTGRES.iter().any(|m| m.no_tx),
            "the search index is built outside a transaction"
        );
    }
}
