//! Every item at once, for backups: read in one consistent snapshot while the instances
//! keep writing, and put back in one transaction (all the rows, or none).

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::queries::{self, run};
use super::{Backend, Pool, Store, StoreError, StoreResult};

/// One item with every column the table has (what a backup holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct BackupRow {
    pub id: i64,
    pub name: String,
    pub quantity: i32,
    pub description: String,
    pub date_added: DateTime<Utc>,
    /// Absent before schema 3 (from the database, and from backups).
    #[serde(default)]
    #[sqlx(default)]
    pub updated_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
}

/// How many rows one INSERT statement of a restore carries (7 parameters each, within
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
    /// Hand every item to `each`, in id order, as one consistent snapshot: rows written
    /// meanwhile by the instances are either all in it or not at all. Gives how many.
    pub async fn export<E: From<StoreError>>(
        &self,
        mut each: impl FnMut(BackupRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        let backend = self.backend();
        let mut rows = 0u64;
        on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await.map_err(|e| self.failed(e))?;
            if backend == Backend::Postgres {
                sqlx::query(queries::SNAPSHOT)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            let mut stream = sqlx::query_as::<_, BackupRow>(queries::EXPORT.for_backend(backend))
                .fetch(&mut *tx);
            while let Some(row) = stream.try_next().await.map_err(|e| self.failed(e))? {
                each(row)?;
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

    /// Replace every item with `rows`, in one transaction: on any error nothing changed.
    pub async fn replace_all(&self, rows: &[BackupRow]) -> StoreResult<()> {
        let backend = self.backend();
        on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await.map_err(|e| self.failed(e))?;
            sqlx::query(queries::DELETE_ALL.for_backend(backend))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.failed(e))?;
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO items (id, name, quantity, description, date_added, updated_at, idempotency_key) ",
                );
                insert.push_values(chunk, |mut values, row| {
                    values
                        .push_bind(row.id)
                        .push_bind(&row.name)
                        .push_bind(row.quantity)
                        .push_bind(&row.description)
                        .push_bind(row.date_added)
                        .push_bind(row.updated_at)
                        .push_bind(&row.idempotency_key);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            if backend == Backend::Postgres {
                sqlx::query(queries::FOLLOW_IDS)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            tx.commit().await.map_err(|e| self.failed(e))?;
        });
        Ok(())
    }
}
