//! Whether the database answers, as this process last saw it: one state shared by every
//! request, consulted before touching the pool (so during an outage a request is answered
//! 503 at once instead of waiting for the pool), marked down by a query that lost its
//! connection, and marked up again by the background probe in `Store::watch_availability`.
//! Which errors mean "the database is unreachable" is decided here too, per backend.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{queries, Pool, Store, StoreError, StoreResult};

/// The database as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbState {
    Up,
    Down {
        since: DateTime<Utc>,
        reason: String,
    },
}

impl DbState {
    pub fn is_up(&self) -> bool {
        matches!(self, DbState::Up)
    }

    /// "unreachable since 2026-11-23 15:40:02 UTC (38 s): connection refused".
    pub fn describe(&self) -> String {
        match self {
            DbState::Up => "reachable".to_owned(),
            DbState::Down { since, reason } => {
                let seconds = (Utc::now() - *since).num_seconds().max(0);
                format!(
                    "unreachable since {} ({seconds} s): {reason}",
                    since.format("%Y-%m-%d %H:%M:%S UTC")
                )
            }
        }
    }
}

/// Why a store that never reached its database is down.
const NOT_YET: &str = "not reached yet";

/// The shared state, with change notification for the probe and the status line.
#[derive(Debug)]
pub struct Availability(watch::Sender<DbState>);

impl Availability {
    /// A store that has not reached its database yet.
    pub fn starting() -> Availability {
        Availability(watch::Sender::new(DbState::Down {
            since: Utc::now(),
            reason: NOT_YET.to_owned(),
        }))
    }

    pub fn current(&self) -> DbState {
        self.0.borrow().clone()
    }

    pub fn is_up(&self) -> bool {
        self.0.borrow().is_up()
    }

    pub fn subscribe(&self) -> watch::Receiver<DbState> {
        self.0.subscribe()
    }

    /// The database was lost (or is still missing: then only the reason is updated).
    pub fn mark_down(&self, reason: &str) {
        self.0.send_if_modified(|state| match state {
            DbState::Up => {
                tracing::warn!(
                    error = reason,
                    "database unavailable ({reason}): answering 503 until it is back"
                );
                *state = DbState::Down {
                    since: Utc::now(),
                    reason: reason.to_owned(),
                };
                true
            }
            DbState::Down { reason: old, .. } if old != reason => {
                *old = reason.to_owned();
                true
            }
            DbState::Down { .. } => false,
        });
    }

    /// The database answers (and is migrated).
    pub fn mark_up(&self) {
        self.0.send_if_modified(|state| match state {
            DbState::Up => false,
            DbState::Down { since, reason } => {
                let after = (Utc::now() - *since).to_std().unwrap_or(Duration::ZERO);
                if reason == NOT_YET {
                    tracing::info!("database reachable: serving");
                } else {
                    tracing::info!(
                        down_ms = after.as_millis() as u64,
                        "database reachable again after {:.1} s: serving",
                        after.as_secs_f64()
                    );
                }
                *state = DbState::Up;
                true
            }
        });
    }
}

/// What an error says about the database, and so what a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot be reached: 503, and every other request gets 503 at once
    /// until the probe reaches it again.
    Unreachable,
    /// It answers but cannot serve this now (busy, full, too many connections): 503.
    Busy,
    /// Anything else (a bug, a missing privilege, a broken schema): 500.
    Other,
}

/// Sort a sqlx error. Database errors are judged by their own backend's codes: a
/// PostgreSQL SQLSTATE and an SQLite result code can look alike (42501, insufficient
/// privilege, ends in the byte of SQLITE_BUSY).
pub fn classify(error: &sqlx::Error) -> Failure {
    use sqlx::Error::*;
    match error {
        PoolTimedOut | Io(_) | Tls(_) | Protocol(_) | WorkerCrashed => Failure::Unreachable,
        // The pool is closed only at shutdown.
        PoolClosed => Failure::Busy,
        Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                postgres_failure(&code)
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_failure(&code)
            } else {
                Failure::Other
            }
        }
        _ => Failure::Other,
    }
}

/// A PostgreSQL SQLSTATE: class 08 (connection exception), 57P01–57P03 (the server
/// shutting down, crashed or starting) and 25006 (a read-only transaction: the host is a
/// standby now, the primary is elsewhere) mean unreachable; class 53 (insufficient
/// resources: disk full, out of memory, too many connections) and 57014 (a statement
/// cancelled) mean busy.
pub fn postgres_failure(sqlstate: &str) -> Failure {
    match sqlstate {
        s if s.starts_with("08") => Failure::Unreachable,
        "57P01" | "57P02" | "57P03" | "25006" => Failure::Unreachable,
        s if s.starts_with("53") => Failure::Busy,
        "57014" => Failure::Busy,
        _ => Failure::Other,
    }
}

/// An SQLite (extended) result code: SQLITE_BUSY (5), SQLITE_LOCKED (6) and SQLITE_FULL
/// (13), with their extended codes, mean busy; the file is local, so never unreachable.
pub fn sqlite_failure(code: &str) -> Failure {
    match code.parse::<i32>() {
        Ok(c) if matches!(c & 0xff, 5 | 6 | 13) => Failure::Busy,
        _ => Failure::Other,
    }
}

/// How often the probe checks a database that answers (to notice an outage with no
/// traffic), and one that does not (to notice its return).
const PROBE_WHILE_UP: Duration = Duration::from_secs(5);
const PROBE_WHILE_DOWN: Duration = Duration::from_millis(250);

impl Store {
    /// Whether the database answers, as this process last saw it.
    pub fn db_state(&self) -> DbState {
        self.availability.current()
    }

    /// Changes of `db_state`, for the status line.
    pub fn watch_db_state(&self) -> tokio::sync::watch::Receiver<DbState> {
        self.availability.subscribe()
    }

    /// Refuse at once while the database is known to be down (used by `run!`).
    pub(super) fn gate(&self) -> StoreResult<()> {
        match self.availability.current() {
            DbState::Up => Ok(()),
            down => Err(StoreError::Unavailable(down.describe())),
        }
    }

    /// Turn a query's error into ours, marking the database down when it was lost.
    pub(super) fn failed(&self, error: sqlx::Error) -> StoreError {
        if classify(&error) == Failure::Unreachable
            && !self.saturated(&error)
            && !self.waited_for_the_file(&error)
        {
            self.availability.mark_down(&error.to_string());
        }
        StoreError::from(error)
    }

    /// Whether an SQLite write ran out of time waiting for its turn (`Store::write_turn`):
    /// the file is local, so it was waiting for other writers, which is load (a 503 for
    /// this request), not a lost database.
    fn waited_for_the_file(&self, error: &sqlx::Error) -> bool {
        self.backend() == super::Backend::Sqlite
            && matches!(error, sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_codes_are_judged_by_postgres_rules() {
        for (code, expected) in [
            ("08001", Failure::Unreachable), // cannot connect now
            ("08006", Failure::Unreachable), // connection failure
            ("57P01", Failure::Unreachable), // admin shutdown (systemctl stop postgresql)
            ("57P03", Failure::Unreachable), // the database system is starting up
            ("25006", Failure::Unreachable), // read-only transaction: demoted to a standby
            ("53300", Failure::Busy),        // too many connections
            ("53100", Failure::Busy),        // disk full
            ("42501", Failure::Other),       // insufficient privilege: a missing GRANT
            ("42P01", Failure::Other),       // undefined table
            ("23505", Failure::Other),       // unique violation
            ("28P01", Failure::Other),       // wrong password
            ("3D000", Failure::Other),       // no such database
        ] {
            assert_eq!(postgres_failure(code), expected, "SQLSTATE {code}");
        }
    }

    #[test]
    fn sqlite_codes_are_judged_by_sqlite_rules() {
        for (code, expected) in [
            ("5", Failure::Busy),     // SQLITE_BUSY
            ("517", Failure::Busy),   // SQLITE_BUSY_SNAPSHOT
            ("6", Failure::Busy),     // SQLITE_LOCKED
            ("13", Failure::Busy),    // SQLITE_FULL
            ("2067", Failure::Other), // SQLITE_CONSTRAINT_UNIQUE
            ("1", Failure::Other),    // SQLITE_ERROR (no such table, …)
            ("8", Failure::Other),    // SQLITE_READONLY
        ] {
            assert_eq!(sqlite_failure(code), expected, "result code {code}");
        }
    }

    #[test]
    fn the_state_goes_down_once_and_back_up() {
        let availability = Availability::starting();
        assert!(!availability.is_up());
        availability.mark_up();
        assert!(availability.is_up());
        availability.mark_down("connection refused");
        let DbState::Down { since, .. } = availability.current() else {
            panic!("down")
        };
        availability.mark_down("still refused");
        match availability.current() {
            DbState::Down {
                since: again,
                reason,
            } => {
                assert_eq!(again, since, "the outage keeps its start");
                assert_eq!(reason, "still refused");
            }
            DbState::Up => panic!("down"),
        }
        assert!(availability
            .current()
            .describe()
            .starts_with("unreachable since "));
    }
}
