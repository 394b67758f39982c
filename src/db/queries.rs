//! Every SQL statement shop runs, its PostgreSQL and SQLite text side by side, and the
//! `run!` macro that binds the same arguments to whichever one the store needs.

/// One statement in both dialects. Parameters are numbered the same way in both.
pub struct Sql {
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

impl Sql {
    /// A statement that reads the same in both dialects.
    pub(crate) const fn same(text: &'static str) -> Sql {
        Sql {
            postgres: text,
            sqlite: text,
        }
    }

    pub fn for_backend(&self, backend: super::Backend) -> &'static str {
        match backend {
            super::Backend::Postgres => self.postgres,
            super::Backend::Sqlite => self.sqlite,
        }
    }
}

pub const PING: Sql = Sql::same("SELECT 1");

pub const VERSION: Sql = Sql {
    postgres: "SELECT version()",
    sqlite: "SELECT sqlite_version()",
};

pub const HAS_MIGRATIONS_TABLE: Sql = Sql {
    postgres: "SELECT to_regclass('_sqlx_migrations') IS NOT NULL",
    sqlite: "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
};

/// Held around migrating a PostgreSQL database (an advisory lock of its own, beside sqlx's).
pub const TRY_LOCK_MIGRATIONS: &str = "SELECT pg_try_advisory_lock(hashtext('shop migrations'))";
pub const UNLOCK_MIGRATIONS: &str = "SELECT pg_advisory_unlock(hashtext('shop migrations'))";

/// Indexes on `items` that are not valid: what an interrupted `CREATE INDEX CONCURRENTLY`
/// leaves behind (while the lock above is held, no build is under way).
pub const INTERRUPTED_INDEXES: &str = "SELECT c.relname::text FROM pg_index i \
     JOIN pg_class c ON c.oid = i.indexrelid \
     WHERE i.indrelid = to_regclass('items') AND NOT i.indisvalid";

pub const APPLIED_MIGRATIONS: Sql =
    Sql::same("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version");

/// What a list statement reads: every item, or those whose name or description contains
/// the search text (the needle, bound first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    All,
    /// PostgreSQL: `ILIKE` on the trigram-indexed expression (needle: the `LIKE` pattern).
    /// SQLite: the FTS5 trigram table (needle: a phrase).
    Contains,
    /// Fewer than three characters, which no trigram index helps with: the same `ILIKE` on
    /// PostgreSQL; `LIKE` on SQLite (needle: the `LIKE` pattern).
    ContainsShort,
}

/// Where a list statement starts: at an offset (bound last), or after or before a cursor
/// (its date and id, bound after the needle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Offset,
    /// Older than the cursor, newest first.
    Older,
    /// Newer than the cursor, oldest first (the caller turns the page around).
    Newer,
}

/// The list statement for a filter and a start, in the backend's dialect. Parameters, in
/// this order, each only when used: the needle, the cursor's date and id, the limit, the
/// offset. Both walk the `items_newest_first` index (and stop after a page) unless the
/// search index finds fewer rows.
pub fn list(backend: super::Backend, filter: Filter, start: Start) -> String {
    use super::Backend::{Postgres, Sqlite};
    let mut conditions: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    match (filter, backend) {
        (Filter::All, _) => {}
        (Filter::Contains | Filter::ContainsShort, Postgres) => conditions.push(format!(
            "(name || chr(31) || description) ILIKE ${}",
            next()
        )),
        (Filter::Contains, Sqlite) => conditions.push(format!(
            "id IN (SELECT rowid FROM items_search WHERE items_search MATCH ${})",
            next()
        )),
        (Filter::ContainsShort, Sqlite) => {
            let needle = next();
            conditions.push(format!(
                "(name LIKE ${needle} ESCAPE '\\' OR description LIKE ${needle} ESCAPE '\\')"
            ))
        }
    }
    let order = match start {
        Start::Offset | Start::Older => "DESC",
        Start::Newer => "ASC",
    };
    match start {
        Start::Offset => {}
        Start::Older | Start::Newer => {
            let compare = if start == Start::Older { "<" } else { ">" };
            let (date, id) = (next(), next());
            conditions.push(format!("(date_added, id) {compare} (${date}, ${id})"));
        }
    }
    let mut sql = format!("SELECT {ITEM_COLUMNS} FROM items");
    if !conditions.is_empty() {
        sql += " WHERE ";
        sql += &conditions.join(" AND ");
    }
    sql += &format!(" ORDER BY date_added {order}, id {order} LIMIT ${}", next());
    if start == Start::Offset {
        sql += &format!(" OFFSET ${}", next());
    }
    sql
}

/// The columns of an `Item` (a macro, for `concat!`): the seller's name is kept with the
/// item (migration 6), not looked up per row.
macro_rules! item_columns {
    () => {
        "id, name, quantity, description, date_added, owner_id, seller"
    };
}
const ITEM_COLUMNS: &str = item_columns!();

/// What the pages' cache validators are made of: a value that changes whenever any
/// instance changes an item. PostgreSQL's current snapshot (which transactions have
/// finished): the same snapshot sees the same rows, and any write moves it; it needs no
/// table, so writers never wait on one another for it. SQLite's change counter, which the
/// triggers of migration 0004 move in every writing transaction.
pub const DATA_VERSION: Sql = Sql {
    postgres: "SELECT pg_current_snapshot()::text",
    sqlite: "SELECT CAST(changes AS TEXT) FROM items_changes",
};

/// The server's address and port as it sees them (none over a Unix socket), and whether
/// it is a standby. (PostgreSQL only: SQLite has no server.)
pub const SERVER: Sql =
    Sql::same("SELECT host(inet_server_addr()) || ':' || inet_server_port(), pg_is_in_recovery()");

pub const GET: Sql = Sql::same(concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE id = $1"
));

/// Inserts nothing (and returns no row) when an item with the same idempotency key exists;
/// PostgreSQL makes a concurrent insert of the same key wait for the first to finish.
pub const INSERT: Sql = Sql::same(concat!(
    "INSERT INTO items (name, quantity, description, date_added, idempotency_key, owner_id, seller) ",
    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
    item_columns!()
));

pub const GET_BY_IDEMPOTENCY_KEY: Sql = Sql::same(concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE idempotency_key = $1"
));

pub const UPDATE: Sql = Sql::same(concat!(
    "UPDATE items SET name = $1, quantity = $2, description = $3, updated_at = $4 WHERE id = $5 ",
    "RETURNING ",
    item_columns!()
));

pub const DELETE: Sql = Sql::same("DELETE FROM items WHERE id = $1");

/// For backups: every item, in id order, with the columns the database has (a backup
/// before an upgrade reads an older schema; `BackupRow` fills in what it lacks).
pub const EXPORT: Sql = Sql::same("SELECT * FROM items ORDER BY id");

/// For a backup's snapshot: PostgreSQL's transaction sees one moment throughout. (SQLite's
/// read transaction in WAL mode does so by itself from its first read.)
pub const SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

pub const COUNT: Sql = Sql::same("SELECT COUNT(*) FROM items");

pub const DELETE_ALL: Sql = Sql::same("DELETE FROM items");

/// For a restore: the next new item's id follows the restored ones. (SQLite's
/// AUTOINCREMENT counter follows explicit ids by itself.)
pub const FOLLOW_IDS: &str = "SELECT setval(pg_get_serial_sequence('items', 'id'), \
     COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM items";

/// Run a statement on the store's pool: `run!(store, SQL, execute, args…)` for a plain
/// statement (gives the number of rows affected), `run!(store, as SQL, fetch_one, args…)`
/// to map rows with `FromRow`. While the database is known to be down it answers
/// `StoreError::Unavailable` at once; a lost connection marks it down.
macro_rules! run {
    ($store:expr, as $sql:expr, $fetch:ident $(, $arg:expr)* $(,)?) => {{
        let store: &$crate::db::Store = $store;
        $crate::db::queries::run!(@gated store, $sql.for_backend(store.backend()), |sql, pool| {
            sqlx::query_as(sql)$(.bind($arg))*.$fetch(pool).await
        })
    }};
    ($store:expr, $sql:expr, execute $(, $arg:expr)* $(,)?) => {{
        let store: &$crate::db::Store = $store;
        $crate::db::queries::run!(@gated store, $sql.for_backend(store.backend()), |sql, pool| {
            sqlx::query(sql)$(.bind($arg))*.execute(pool).await.map(|r| r.rows_affected())
        })
    }};
    // The gate and the error sorting around `$query`, which runs `$text` (the statement
    // in the store's dialect) on the pool of either backend (written once, expanded twice).
    (@gated $store:expr, $text_of:expr, |$text:ident, $pool:ident| $query:block) => {{
        let store: &$crate::db::Store = $store;
        match store.gate() {
            Err(e) => Err(e),
            Ok(()) => {
                let $text: &str = $text_of;
                let result = match &store.pool() {
                    $crate::db::Pool::Postgres($pool) => store.bounded(async { $query }).await,
                    $crate::db::Pool::Sqlite($pool) => store.bounded(async { $query }).await,
                };
                result.map_err(|e| store.failed(e))
            }
        }
    }};
}
pub(crate) use run;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::db::Backend;

    #[test]
    fn statements_select_the_item_columns() {
        for sql in [GET, INSERT, UPDATE, GET_BY_IDEMPOTENCY_KEY] {
            for text in [sql.postgres, sql.sqlite] {
                assert!(text.contains(ITEM_COLUMNS), "{text}");
            }
        }
    }

    #[test]
    fn list_statements_number_their_parameters_in_binding_order() {
        use Filter::*;
        use Start::*;
        for backend in [Backend::Postgres, Backend::Sqlite] {
            for filter in [All, Contains, ContainsShort] {
                for start in [Offset, Older, Newer] {
                    let sql = list(backend, filter, start);
                    assert!(sql.starts_with(&format!("SELECT {ITEM_COLUMNS} FROM items")));
                    let expected = usize::from(filter != All)
                        + 2 * usize::from(start != Offset)
                        + 1
                        + usize::from(start == Offset);
                    let mut numbers: Vec<usize> = sql
                        .split('$')
                        .skip(1)
                        .map(|rest| {
                            let digits: String =
                                rest.chars().take_while(char::is_ascii_digit).collect();
                            digits.parse().unwrap()
                        })
                        .collect();
                    numbers.dedup();
                    assert_eq!(numbers, (1..=expected).collect::<Vec<_>>(), "{sql}");
                }
            }
        }
        assert_eq!(
            list(Backend::Postgres, All, Older),
            "SELECT id, name, quantity, description, date_added, owner_id, seller FROM items \
             WHERE (date_added, id) < ($1, $2) ORDER BY date_added DESC, id DESC LIMIT $3"
        );
    }
}
