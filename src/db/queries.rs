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
        "id, name, quantity, description, date_added, owner_id, seller, price_minor, version"
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
    "INSERT INTO items (name, quantity, description, date_added, idempotency_key, owner_id, seller, price_minor) ",
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
    item_columns!()
));

pub const GET_BY_IDEMPOTENCY_KEY: Sql = Sql::same(concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE idempotency_key = $1"
));

/// Replaces the fields, if the item is still at the version the edit was made from ($7;
/// NULL: whatever it is, for API clients that send no `If-Match`).
pub const UPDATE: Sql = Sql::same(concat!(
    "UPDATE items SET name = $1, quantity = $2, description = $3, updated_at = $4, ",
    "price_minor = $5, version = version + 1 WHERE id = $6 AND ($7 IS NULL OR version = $7) ",
    "RETURNING ",
    item_columns!()
));

/// Taken first in a delete's transaction (PostgreSQL): a sale under way holds the row, so
/// the delete waits for it, and its next statement sees the order the sale made.
pub const LOCK_ITEM: &str = "SELECT id FROM items WHERE id = $1 FOR UPDATE";

/// How many orders of the item wait for hand-over: an item with any is not deleted.
pub const PLACED_ORDERS_OF_ITEM: Sql = Sql::same(
    "SELECT COUNT(*) FROM order_lines l JOIN orders o ON o.id = l.order_id \
     WHERE l.item_id = $1 AND o.state = 'placed'",
);

pub const DELETE: Sql = Sql::same(
    "DELETE FROM items WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM order_lines l \
     JOIN orders o ON o.id = l.order_id WHERE l.item_id = $1 AND o.state = 'placed')",
);

/// An order's row, begun (SQLite's order: this, `TAKE_STOCK` and `INSERT_ORDER_LINE` in one
/// transaction): nothing when the buyer has an order with this idempotency key.
pub const INSERT_ORDER: Sql = Sql::same(
    "INSERT INTO orders (buyer_id, buyer, seller_id, seller, state, currency, total_minor, \
     idempotency_key, placed_at) VALUES ($1, $2, $3, $4, 'placed', $5, $6, $7, $8) \
     ON CONFLICT (buyer_id, idempotency_key) DO NOTHING RETURNING id",
);

/// PostgreSQL places an order in one statement (one round trip, atomic without a
/// transaction): the stock taken by the conditional update (as `TAKE_STOCK`), then the
/// order and its line from what it took. When the buyer's key already has an order the
/// insert leaves the order out, and the line then refuses its missing order (`order_id`
/// NOT NULL), which undoes the whole statement, the stock with it: `place_order` reads
/// that error as "this key has an order". No row: nothing taken.
pub const PLACE_ORDER_POSTGRES: &str = "\
    WITH taken AS (\
        UPDATE items SET quantity = quantity - $1, version = version + 1 \
        WHERE id = $2 AND quantity >= $1 AND price_minor = $3 RETURNING id, name), \
    placed AS (\
        INSERT INTO orders (buyer_id, buyer, seller_id, seller, state, currency, total_minor, \
        idempotency_key, placed_at) SELECT $4, $5, $6, $7, 'placed', $8, $9, $10, $11 FROM taken \
        ON CONFLICT (buyer_id, idempotency_key) DO NOTHING RETURNING id), \
    line AS (\
        INSERT INTO order_lines (order_id, line, item_id, item_name, unit_price_minor, quantity) \
        SELECT placed.id, 1, taken.id, taken.name, $3, $1 FROM taken LEFT JOIN placed ON true) \
    SELECT placed.id, taken.name FROM taken, placed";

/// Takes the stock, in one conditional statement: only if there is enough at the price the
/// buyer saw. The database is the only lock (six instances sell the same item); the row
/// stays locked until the order's transaction ends.
pub const TAKE_STOCK: Sql = Sql::same(
    "UPDATE items SET quantity = quantity - $1, version = version + 1 \
     WHERE id = $2 AND quantity >= $1 AND price_minor = $3 RETURNING name",
);

pub const INSERT_ORDER_LINE: Sql = Sql::same(
    "INSERT INTO order_lines (order_id, line, item_id, item_name, unit_price_minor, quantity) \
     VALUES ($1, 1, $2, $3, $4, $5)",
);

/// Cancels, only from `placed`: of concurrent cancels exactly one changes the row, and
/// only that one puts the stock back.
pub const CANCEL_ORDER: Sql = Sql::same(
    "UPDATE orders SET state = 'cancelled', cancelled_at = $2, changed_by = $3 \
     WHERE id = $1 AND state = 'placed'",
);

/// Puts a cancelled order's stock back (on items that still exist).
pub const RETURN_STOCK: Sql = Sql::same(
    "UPDATE items SET quantity = quantity + (SELECT SUM(l.quantity) FROM order_lines l \
     WHERE l.order_id = $1 AND l.item_id = items.id), version = version + 1 \
     WHERE id IN (SELECT item_id FROM order_lines WHERE order_id = $1)",
);

pub const HAND_OVER_ORDER: Sql = Sql::same(
    "UPDATE orders SET state = 'handed_over', handed_over_at = $2, changed_by = $3 \
     WHERE id = $1 AND state = 'placed'",
);

/// An order with its (first) line: the columns of an `Order`, in its field order.
macro_rules! order_select {
    () => {
        "SELECT o.id, o.state, l.item_id, l.item_name, l.quantity, l.unit_price_minor, \
         o.total_minor, o.currency, o.buyer, o.seller, o.buyer_id, o.seller_id, o.placed_at, \
         o.handed_over_at, o.cancelled_at FROM orders o \
         JOIN order_lines l ON l.order_id = o.id AND l.line = 1 "
    };
}

pub const GET_ORDER: Sql = Sql::same(concat!(order_select!(), "WHERE o.id = $1"));

pub const GET_ORDER_BY_KEY: Sql = Sql::same(concat!(
    order_select!(),
    "WHERE o.buyer_id = $1 AND o.idempotency_key = $2"
));

/// A buyer's orders, newest first, older than order $2 (NULL: from the newest).
pub const ORDERS_OF_BUYER: Sql = Sql::same(concat!(
    order_select!(),
    "WHERE o.buyer_id = $1 AND ($2 IS NULL OR o.id < $2) ORDER BY o.id DESC LIMIT $3"
));

/// A seller's orders, newest first, older than order $2 (NULL: from the newest).
pub const ORDERS_OF_SELLER: Sql = Sql::same(concat!(
    order_select!(),
    "WHERE o.seller_id = $1 AND ($2 IS NULL OR o.id < $2) ORDER BY o.id DESC LIMIT $3"
));

/// A seller's orders that wait for hand-over, oldest first (the first to hand over).
pub const PLACED_ORDERS_OF_SELLER: Sql = Sql::same(concat!(
    order_select!(),
    "WHERE o.seller_id = $1 AND o.state = 'placed' ORDER BY o.id LIMIT $2"
));

pub const COUNT_PLACED_ORDERS_OF_SELLER: Sql =
    Sql::same("SELECT COUNT(*) FROM orders WHERE seller_id = $1 AND state = 'placed'");

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
                    // Not cut off (see `Store::bounded`): SQLite's busy timeout bounds its waits.
                    $crate::db::Pool::Sqlite($pool) => async { $query }.await,
                };
                result.map_err(|e| store.failed(e))
            }
        }
    }};
}
pub(crate) use run;

/// Run `$body` in one transaction on the store's pool, under the same gate and bound as
/// `run!`: `transaction!(store, |tx, backend| { …; tx.commit().await?; Ok(value) })`, the
/// body written once and expanded for each backend. SQLite's begins `IMMEDIATE`: it takes
/// the file's write lock first, so writers queue on the busy timeout instead of failing
/// with SQLITE_BUSY when a read turns into a write, after this instance's earlier write
/// transactions (`Store::write_turn`). A body that returns early, or is cut
/// off by the timeout, rolls back (sqlx does, when the transaction is dropped).
macro_rules! transaction {
    ($store:expr, |$tx:ident, $backend:ident| $body:block) => {{
        let store: &$crate::db::Store = $store;
        let $backend = store.backend();
        match store.gate() {
            Err(e) => Err(e),
            Ok(()) => {
                let result = match &store.pool() {
                    $crate::db::Pool::Postgres(pool) => {
                        store
                            .bounded(async {
                                #[allow(unused_mut)]
                                let mut $tx = pool.begin().await?;
                                $body
                            })
                            .await
                    }
                    $crate::db::Pool::Sqlite(pool) => {
                        async {
                            let _turn = store.write_turn().await?;
                            #[allow(unused_mut)]
                            let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                            $body
                        }
                        .await
                    }
                };
                result.map_err(|e| store.failed(e))
            }
        }
    }};
}
pub(crate) use transaction;

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
            "SELECT id, name, quantity, description, date_added, owner_id, seller, price_minor, \
             version FROM items \
             WHERE (date_added, id) < ($1, $2) ORDER BY date_added DESC, id DESC LIMIT $3"
        );
    }
}
