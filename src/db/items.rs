//! The items' half of the store: the list (a page, searched, by keyset or offset), one
//! item, and the writes (a create that an idempotency key makes safe to retry; an update
//! and a delete that need the permit of `access::ChangeItem`: an edit from an older
//! version, or a delete while orders wait, changes nothing).

use chrono::{DateTime, Utc};
use tracing::instrument::WithSubscriber;
use tracing::subscriber::NoSubscriber;

use super::queries::{self, run, transaction, Filter, Start};
use super::{now, Backend, Store, StoreError, StoreResult};
use crate::access::{ChangeItem, Permit};
use crate::accounts::User;
use crate::ids::{ItemId, UserId};
use crate::items::{Cursor, Item, ItemPage, ListQuery, NewItem, Seek};

impl Store {
    /// One page of the newest-first list, as owned items (the JSON list).
    pub async fn list_items(&self, query: &ListQuery) -> StoreResult<ItemPage> {
        let mut items = Vec::with_capacity(query.per_page as usize);
        let listed = self
            .visit_items(query, |item| items.push(item.to_item()))
            .await?;
        Ok(ItemPage {
            items,
            has_next: listed.has_next,
            has_prev: listed.has_prev,
        })
    }

    /// One page of the newest-first list, each item handed to `each` newest first,
    /// borrowed from the database's answer (the HTML list writes its rows straight from
    /// them: no copy of their texts). Fetches one row more than the page to know whether
    /// another page follows, and never counts the table.
    pub async fn visit_items(
        &self,
        query: &ListQuery,
        mut each: impl FnMut(ListedItem<'_>) + Send,
    ) -> StoreResult<Listed> {
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
        let shown = query.per_page as usize;
        // Newer pages are read oldest first (from the cursor up), and shown newest first.
        let newer = start == Start::Newer;
        let (fetched, first, last) = run!(@gated self, sql.as_str(), |text, pool| {
            let mut statement = sqlx::query(text).persistent(prepared);
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
            let rows = statement.fetch_all(pool).with_subscriber(NoSubscriber::default()).await?;
            let count = rows.len().min(shown);
            let (mut first, mut last) = (None, None);
            for n in 0..count {
                let row = &rows[if newer { count - 1 - n } else { n }];
                let item = ListedItem::read(row)?;
                let at = Some(Cursor { date_added: item.date_added, id: item.id });
                first = first.or(at);
                last = at;
                each(item);
            }
            Ok::<_, sqlx::Error>((rows.len(), first, last))
        })?;
        let more = fetched > shown;
        let (has_next, has_prev) = match start {
            Start::Offset => (more, query.page > 1),
            Start::Older => (more, true),
            Start::Newer => (true, more),
        };
        Ok(Listed {
            first,
            last,
            has_next,
            has_prev,
        })
    }

    /// A value that changes whenever any instance changes an item (see
    /// `queries::DATA_VERSION`): what the pages' `ETag`s are made from. Read it before the
    /// data it stands for, so a page is never older than its validator.
    pub async fn data_version(&self) -> StoreResult<String> {
        let (version,): (String,) = run!(self, as queries::DATA_VERSION, fetch_one)?;
        Ok(version)
    }

    pub async fn get_item(&self, id: ItemId) -> StoreResult<Option<Item>> {
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
            let inserted: Option<Item> = run!(self, as queries::INSERT, fetch_optional, name, quantity, description, now(), key, owner, &seller.username, item.price_minor)?;
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

    /// Replace the fields of the item `permit` allows changing, if it is still at
    /// `version` (the one the edit was made from; `None`: whatever it is now).
    pub async fn update_item(
        &self,
        permit: &Permit<ChangeItem>,
        item: &NewItem,
        version: Option<i64>,
    ) -> StoreResult<Updated> {
        let id = permit.subject().id;
        let saved: Option<Item> = run!(self, as queries::UPDATE, fetch_optional, &item.name, item.quantity, &item.description, now(), item.price_minor, id, version)?;
        Ok(match saved {
            Some(item) => Updated::Saved(item),
            None => match self.get_item(id).await? {
                Some(current) => Updated::Stale(current),
                None => Updated::Gone,
            },
        })
    }

    /// Delete the item `permit` allows changing, unless orders of it wait for hand-over.
    /// A sale under way finishes first (its row lock), and then counts.
    pub async fn delete_item(&self, permit: &Permit<ChangeItem>) -> StoreResult<Deleted> {
        let id = permit.subject().id;
        let deleted: u64 = transaction!(self, |tx, backend| {
            if backend == Backend::Postgres {
                sqlx::query(queries::LOCK_ITEM)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let deleted = sqlx::query(queries::DELETE.for_backend(backend))
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(deleted)
        })?;
        if deleted > 0 {
            return Ok(Deleted::Deleted);
        }
        let (placed,): (i64,) = run!(self, as queries::PLACED_ORDERS_OF_ITEM, fetch_one, id)?;
        Ok(if placed > 0 {
            Deleted::HasPlacedOrders(placed)
        } else {
            Deleted::Gone
        })
    }
}

/// The outcome of `update_item`.
#[derive(Debug, Clone)]
pub enum Updated {
    Saved(Item),
    /// Changed since the edit's version (a sale, another edit): nothing saved; the item as
    /// it is now.
    Stale(Item),
    Gone,
}

/// The outcome of `delete_item`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    Gone,
    /// This many orders of it wait for hand-over: nothing deleted.
    HasPlacedOrders(i64),
}

/// One item of a list page, its texts borrowed from the row the database answered.
#[derive(Debug, Clone, Copy)]
pub struct ListedItem<'r> {
    pub id: ItemId,
    pub name: &'r str,
    pub quantity: i32,
    pub description: &'r str,
    pub date_added: DateTime<Utc>,
    pub owner_id: Option<UserId>,
    pub seller: Option<&'r str>,
    pub price_minor: Option<i64>,
    pub version: i64,
}

/// What a list page is besides its items: the first and last shown (where the pages
/// before and after it start), and whether there are such pages.
#[derive(Debug, Clone, Copy)]
pub struct Listed {
    pub first: Option<Cursor>,
    pub last: Option<Cursor>,
    pub has_next: bool,
    pub has_prev: bool,
}

impl<'r> ListedItem<'r> {
    /// The item in a row of `queries::ITEM_COLUMNS`, by position (not by name, which is a
    /// lookup per column of every row).
    fn read<R>(row: &'r R) -> Result<ListedItem<'r>, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Option<&'r str>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        // Unchecked: the columns' types are the schema's, not the caller's to choose, and
        // a mismatch still fails to decode; checking them for every row cost a tenth of a
        // 1,000-row page.
        Ok(ListedItem {
            id: row.try_get_unchecked(0)?,
            name: row.try_get_unchecked(1)?,
            quantity: row.try_get_unchecked(2)?,
            description: row.try_get_unchecked(3)?,
            date_added: row.try_get_unchecked(4)?,
            owner_id: row.try_get_unchecked(5)?,
            seller: row.try_get_unchecked(6)?,
            price_minor: row.try_get_unchecked(7)?,
            version: row.try_get_unchecked(8)?,
        })
    }

    pub fn to_item(self) -> Item {
        Item {
            id: self.id,
            name: self.name.to_owned(),
            quantity: self.quantity,
            description: self.description.to_owned(),
            date_added: self.date_added,
            owner_id: self.owner_id,
            seller: self.seller.map(str::to_owned),
            price_minor: self.price_minor,
            version: self.version,
        }
    }
}

/// An item from a row of `queries::ITEM_COLUMNS`.
impl<'r, R> sqlx::FromRow<'r, R> for Item
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<&'r str>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Item, sqlx::Error> {
        ListedItem::read(row).map(ListedItem::to_item)
    }
}

/// The outcome of `create_item`.
#[derive(Debug, Clone)]
pub struct Created {
    pub item: Item,
    /// The key had been used: nothing new was stored, `item` is the earlier one.
    pub replayed: bool,
}
