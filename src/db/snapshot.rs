//! Every item at once, for backups, with the accounts that own them (users and their API
//! tokens' hashes; not sessions, which a restore ends): read in one consistent snapshot
//! while the instances keep writing, and put back in one transaction (all, or none).

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::auth_cache::Change;
use super::queries::{self, run};
use super::{Backend, Pool, Store, StoreError, StoreResult};

/// One item with every column the table has (what a backup holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRow {
    pub id: i64,
    pub name: String,
    pub quantity: i32,
    pub description: String,
    pub date_added: DateTime<Utc>,
    /// Absent before schema 3 (from the database, and from backups).
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    /// Absent before schema 6 (accounts): such items have no seller.
    #[serde(default)]
    pub owner_id: Option<i64>,
    /// Absent before schema 9 (buying): not for sale.
    #[serde(default)]
    pub price_minor: Option<i64>,
    /// Absent before schema 9: the first version.
    #[serde(default)]
    pub version: Option<i64>,
}

/// An order with every column, and its lines (schema 9 on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupOrder {
    pub id: i64,
    pub buyer_id: i64,
    pub buyer: String,
    pub seller_id: i64,
    pub seller: String,
    pub state: String,
    pub currency: String,
    pub total_minor: i64,
    pub idempotency_key: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub handed_over_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub changed_by: Option<i64>,
    pub lines: Vec<BackupLine>,
}

/// One line of an order: what was bought, as copied when it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupLine {
    #[serde(skip)]
    pub order_id: i64,
    pub line: i32,
    pub item_id: i64,
    pub item_name: String,
    pub unit_price_minor: i64,
    pub quantity: i32,
}

/// A user with every column (the password's hash, never the password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupUser {
    pub id: i64,
    pub username: String,
    pub username_key: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// An API token's hash and what it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Absent in backups made before tokens could expire: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The bounds a row of either backend meets for the columns a backup reads.
macro_rules! row_from {
    ($name:ident, |$row:ident| $body:expr) => {
        impl<'r, R> sqlx::FromRow<'r, R> for $name
        where
            R: sqlx::Row,
            &'r str: sqlx::ColumnIndex<R>,
            i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            fn from_row($row: &'r R) -> Result<$name, sqlx::Error> {
                $body
            }
        }
    };
}

/// A column that older schemas lack: `None` when the row has no such column.
fn optional<'r, R, T>(row: &'r R, column: &'r str) -> Result<Option<T>, sqlx::Error>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    match row.try_get::<Option<T>, _>(column) {
        Err(sqlx::Error::ColumnNotFound(_)) => Ok(None),
        other => other,
    }
}

row_from!(BackupRow, |row| Ok(BackupRow {
    id: row.try_get("id")?,
    name: row.try_get("name")?,
    quantity: row.try_get("quantity")?,
    description: row.try_get("description")?,
    date_added: row.try_get("date_added")?,
    updated_at: optional(row, "updated_at")?,
    idempotency_key: row.try_get("idempotency_key")?,
    owner_id: optional(row, "owner_id")?,
    price_minor: optional(row, "price_minor")?,
    version: optional(row, "version")?,
}));

row_from!(BackupOrder, |row| Ok(BackupOrder {
    id: row.try_get("id")?,
    buyer_id: row.try_get("buyer_id")?,
    buyer: row.try_get("buyer")?,
    seller_id: row.try_get("seller_id")?,
    seller: row.try_get("seller")?,
    state: row.try_get("state")?,
    currency: row.try_get("currency")?,
    total_minor: row.try_get("total_minor")?,
    idempotency_key: row.try_get("idempotency_key")?,
    placed_at: row.try_get("placed_at")?,
    handed_over_at: row.try_get("handed_over_at")?,
    cancelled_at: row.try_get("cancelled_at")?,
    changed_by: row.try_get("changed_by")?,
    lines: Vec::new(),
}));

row_from!(BackupLine, |row| Ok(BackupLine {
    order_id: row.try_get("order_id")?,
    line: row.try_get("line")?,
    item_id: row.try_get("item_id")?,
    item_name: row.try_get("item_name")?,
    unit_price_minor: row.try_get("unit_price_minor")?,
    quantity: row.try_get("quantity")?,
}));

row_from!(BackupUser, |row| Ok(BackupUser {
    id: row.try_get("id")?,
    username: row.try_get("username")?,
    username_key: row.try_get("username_key")?,
    password_hash: row.try_get("password_hash")?,
    is_admin: row.try_get("is_admin")?,
    disabled: row.try_get("disabled")?,
    created_at: row.try_get("created_at")?,
}));

row_from!(BackupToken, |row| Ok(BackupToken {
    id: row.try_get("id")?,
    user_id: row.try_get("user_id")?,
    name: row.try_get("name")?,
    token_hash: row.try_get("token_hash")?,
    created_at: row.try_get("created_at")?,
    last_used_at: row.try_get("last_used_at")?,
    expires_at: row.try_get("expires_at")?,
}));

/// One record of a backup, in the order they are written: users, tokens, orders, items.
#[derive(Debug, Clone)]
pub enum Record {
    User(BackupUser),
    Token(BackupToken),
    Order(BackupOrder),
    Item(BackupRow),
}

/// The accounts a backup carries (none in one made before schema 6), and their orders
/// (none before schema 9).
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub users: Vec<BackupUser>,
    pub tokens: Vec<BackupToken>,
    pub orders: Vec<BackupOrder>,
}

const FILL_SELLERS: &str = "UPDATE items SET seller = \
     (SELECT username FROM users WHERE users.id = items.owner_id) WHERE owner_id IS NOT NULL";
const EXPORT_USERS: &str = "SELECT id, username, username_key, password_hash, is_admin, disabled, created_at FROM users ORDER BY id";
const EXPORT_TOKENS: &str =
    "SELECT id, user_id, name, token_hash, created_at, last_used_at, expires_at FROM api_tokens ORDER BY id";
const EXPORT_ORDERS: &str = "SELECT id, buyer_id, buyer, seller_id, seller, state, currency, total_minor, idempotency_key, placed_at, handed_over_at, cancelled_at, changed_by FROM orders ORDER BY id";
const EXPORT_LINES: &str = "SELECT order_id, line, item_id, item_name, unit_price_minor, quantity FROM order_lines ORDER BY order_id, line";
const INSERT_ORDER: &str = "INSERT INTO orders (id, buyer_id, buyer, seller_id, seller, state, currency, total_minor, idempotency_key, placed_at, handed_over_at, cancelled_at, changed_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
const INSERT_LINE: &str = "INSERT INTO order_lines (order_id, line, item_id, item_name, unit_price_minor, quantity) VALUES ($1, $2, $3, $4, $5, $6)";
const FOLLOW_ORDER_IDS: &str = "SELECT setval(pg_get_serial_sequence('orders', 'id'), \
     COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM orders";

const FOLLOW_USER_IDS: &str = "SELECT setval(pg_get_serial_sequence('users', 'id'), \
     COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM users";
const FOLLOW_TOKEN_IDS: &str = "SELECT setval(pg_get_serial_sequence('api_tokens', 'id'), \
     COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM api_tokens";

/// How many rows one INSERT statement of a restore carries (8 parameters each, within
/// both databases' limits).
const ROWS_PER_INSERT: usize = 1000;

/// On the pool of either backend, the same block (compiled once per backend).
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:block) => {
        match $pool {
            Pool::Postgres($p) => $body,
            Pool::Sqlite($p) => $body,
        }
    };
}

impl Store {
    /// Hand every record to `each` — with `accounts` (schema 6 on) the users and the API
    /// tokens first, with `orders` (schema 9 on) the orders, then the items in id order —
    /// as one consistent snapshot: rows written meanwhile by the instances are either all
    /// in it or not at all (an order and the stock it took, together). Gives how many
    /// items.
    pub async fn export<E: From<StoreError>>(
        &self,
        accounts: bool,
        orders: bool,
        mut each: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<u64, E> {
        let backend = self.backend();
        let mut rows = 0u64;
        on_pool!(&self.pool(), |pool| {
            let mut tx = pool.begin().await.map_err(|e| self.failed(e))?;
            if backend == Backend::Postgres {
                sqlx::query(queries::SNAPSHOT)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            if accounts {
                let users = sqlx::query_as::<_, BackupUser>(EXPORT_USERS)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
                for user in users {
                    each(Record::User(user))?;
                }
                let tokens = sqlx::query_as::<_, BackupToken>(EXPORT_TOKENS)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
                for token in tokens {
                    each(Record::Token(token))?;
                }
            }
            if orders {
                let orders = sqlx::query_as::<_, BackupOrder>(EXPORT_ORDERS)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
                let lines = sqlx::query_as::<_, BackupLine>(EXPORT_LINES)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
                // Both in order id order: each order takes the lines of its id.
                let mut lines = lines.into_iter().peekable();
                for mut order in orders {
                    while let Some(line) = lines.next_if(|l| l.order_id <= order.id) {
                        if line.order_id == order.id {
                            order.lines.push(line);
                        }
                    }
                    each(Record::Order(order))?;
                }
            }
            let mut stream = sqlx::query_as::<_, BackupRow>(queries::EXPORT.for_backend(backend))
                .fetch(&mut *tx);
            while let Some(row) = stream.try_next().await.map_err(|e| self.failed(e))? {
                each(Record::Item(row))?;
                rows += 1;
            }
        });
        Ok(rows)
    }

    /// How many items the database holds.
    pub async fn count_items(&self) -> StoreResult<i64> {
        let (count,): (i64,) = run!(self, as queries::COUNT, fetch_one)?;
        Ok(count)
    }

    /// Replace every item with `rows`, and, when the backup has them, every user and API
    /// token with its `accounts` (which ends every session), in one transaction: on any
    /// error nothing changed. A backup from before accounts keeps the users there are.
    /// The orders are always the backup's (none in one from before buying): an order
    /// belongs with the stock it took.
    pub async fn replace_all(
        &self,
        rows: &[BackupRow],
        accounts: Option<&Accounts>,
    ) -> StoreResult<()> {
        let backend = self.backend();
        on_pool!(&self.pool(), |pool| {
            let mut tx = pool.begin().await.map_err(|e| self.failed(e))?;
            for statement in [
                queries::DELETE_ALL.for_backend(backend),
                "DELETE FROM orders",
            ] {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            if let Some(accounts) = accounts {
                for statement in [
                    "DELETE FROM api_tokens",
                    "DELETE FROM sessions",
                    "DELETE FROM users",
                ] {
                    sqlx::query(statement)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.failed(e))?;
                }
                for user in &accounts.users {
                    sqlx::query("INSERT INTO users (id, username, username_key, password_hash, is_admin, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(user.id)
                        .bind(&user.username)
                        .bind(&user.username_key)
                        .bind(&user.password_hash)
                        .bind(user.is_admin)
                        .bind(user.disabled)
                        .bind(user.created_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.failed(e))?;
                }
                for token in &accounts.tokens {
                    sqlx::query("INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, last_used_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(token.id)
                        .bind(token.user_id)
                        .bind(&token.name)
                        .bind(&token.token_hash)
                        .bind(token.created_at)
                        .bind(token.last_used_at)
                        .bind(token.expires_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.failed(e))?;
                }
                for order in &accounts.orders {
                    sqlx::query(INSERT_ORDER)
                        .bind(order.id)
                        .bind(order.buyer_id)
                        .bind(&order.buyer)
                        .bind(order.seller_id)
                        .bind(&order.seller)
                        .bind(&order.state)
                        .bind(&order.currency)
                        .bind(order.total_minor)
                        .bind(&order.idempotency_key)
                        .bind(order.placed_at)
                        .bind(order.handed_over_at)
                        .bind(order.cancelled_at)
                        .bind(order.changed_by)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.failed(e))?;
                    for line in &order.lines {
                        sqlx::query(INSERT_LINE)
                            .bind(order.id)
                            .bind(line.line)
                            .bind(line.item_id)
                            .bind(&line.item_name)
                            .bind(line.unit_price_minor)
                            .bind(line.quantity)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.failed(e))?;
                    }
                }
                if backend == Backend::Postgres {
                    for statement in [FOLLOW_USER_IDS, FOLLOW_TOKEN_IDS, FOLLOW_ORDER_IDS] {
                        sqlx::query(statement)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.failed(e))?;
                    }
                }
            }
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO items (id, name, quantity, description, date_added, updated_at, idempotency_key, owner_id, price_minor, version) ",
                );
                insert.push_values(chunk, |mut values, row| {
                    values
                        .push_bind(row.id)
                        .push_bind(&row.name)
                        .push_bind(row.quantity)
                        .push_bind(&row.description)
                        .push_bind(row.date_added)
                        .push_bind(row.updated_at)
                        .push_bind(&row.idempotency_key)
                        .push_bind(row.owner_id)
                        .push_bind(row.price_minor)
                        .push_bind(row.version.unwrap_or(1));
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            // The seller's name is kept with the item (schema 6); a backup carries the
            // owner's id, and the users are in place by now.
            sqlx::query(FILL_SELLERS)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.failed(e))?;
            if backend == Backend::Postgres {
                sqlx::query(queries::FOLLOW_IDS)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            tx.commit().await.map_err(|e| self.failed(e))?;
        });
        self.forget(&Change::Everything);
        Ok(())
    }
}
