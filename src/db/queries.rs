//! Every SQL statement shop runs, its PostgreSQL and SQLite text side by side, and the
//! `run!` macro that binds the same arguments to whichever one the store needs.

/// One statement in both dialects. Parameters are numbered the same way in both.
pub struct Sql {
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

impl Sql {
    /// A statement that reads the same in both dialects.
    const fn same(text: &'static str) -> Sql {
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

pub const APPLIED_MIGRATIONS: Sql =
    Sql::same("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version");

pub const LIST: Sql = Sql::same(
    "SELECT id, name, quantity, description, date_added FROM items \
     ORDER BY date_added DESC, id DESC LIMIT $1 OFFSET $2",
);

pub const SEARCH: Sql = Sql {
    postgres: "SELECT id, name, quantity, description, date_added FROM items \
               WHERE name ILIKE $1 ESCAPE '\\' OR description ILIKE $1 ESCAPE '\\' \
               ORDER BY date_added DESC, id DESC LIMIT $2 OFFSET $3",
    // SQLite's LIKE ignores case (for ASCII letters).
    sqlite: "SELECT id, name, quantity, description, date_added FROM items \
             WHERE name LIKE $1 ESCAPE '\\' OR description LIKE $1 ESCAPE '\\' \
             ORDER BY date_added DESC, id DESC LIMIT $2 OFFSET $3",
};

pub const GET: Sql =
    Sql::same("SELECT id, name, quantity, description, date_added FROM items WHERE id = $1");

/// Inserts nothing (and returns no row) when an item with the same idempotency key exists;
/// PostgreSQL makes a concurrent insert of the same key wait for the first to finish.
pub const INSERT: Sql = Sql::same(
    "INSERT INTO items (name, quantity, description, date_added, idempotency_key) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id, name, quantity, description, date_added",
);

pub const GET_BY_IDEMPOTENCY_KEY: Sql = Sql::same(
    "SELECT id, name, quantity, description, date_added FROM items WHERE idempotency_key = $1",
);

pub const UPDATE: Sql = Sql::same(
    "UPDATE items SET name = $1, quantity = $2, description = $3, updated_at = $4 WHERE id = $5 \
     RETURNING id, name, quantity, description, date_added",
);

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
    ($store:expr, as $sql:expr, $fetch:ident $(, $arg:expr)* $(,)?) => {
        $crate::db::queries::run!(@gated $store, $sql, |sql, pool| {
            sqlx::query_as(sql)$(.bind($arg))*.$fetch(pool).await
        })
    };
    ($store:expr, $sql:expr, execute $(, $arg:expr)* $(,)?) => {
        $crate::db::queries::run!(@gated $store, $sql, |sql, pool| {
            sqlx::query(sql)$(.bind($arg))*.execute(pool).await.map(|r| r.rows_affected())
        })
    };
    // The gate, the backend's text of the statement, and the error sorting, around `$query`
    // (written once, run on the pool of either backend).
    (@gated $store:expr, $sql:expr, |$text:ident, $pool:ident| $query:block) => {{
        let store: &$crate::db::Store = $store;
        match store.gate() {
            Err(e) => Err(e),
            Ok(()) => {
                let $text = $sql.for_backend(store.backend());
                let result = match &store.pool {
                    $crate::db::Pool::Postgres($pool) => $query,
                    $crate::db::Pool::Sqlite($pool) => $query,
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

    const COLUMNS: &str = "id, name, quantity, description, date_added";

    #[test]
    fn statements_select_the_item_columns() {
        for sql in [LIST, SEARCH, GET, INSERT, UPDATE, GET_BY_IDEMPOTENCY_KEY] {
            for text in [sql.postgres, sql.sqlite] {
                assert!(text.contains(COLUMNS), "{text}");
            }
        }
    }
}
