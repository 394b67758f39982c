//! The orders' half of the store. Placing an order takes the stock with one conditional
//! statement and writes the order in the same transaction (on PostgreSQL the same
//! statement), so no sale takes more than
//! there is, whichever of the instances makes it; the buyer's idempotency key makes a
//! retry return the first order instead of making a second. Cancelling and handing over
//! are conditional changes of the state (`… AND state = 'placed'`): of any number of
//! concurrent ones exactly one happens, and only a cancel that happened puts stock back.

use chrono::{DateTime, Utc};

use super::queries::{self, run, transaction};
use super::{now, Backend, Pool, Store, StoreError, StoreResult};
use crate::access::{BuyItem, CancelOrder, HandOverOrder, Permit};
use crate::accounts::User;
use crate::ids::{ItemId, OrderId, UserId};
use crate::money::Currency;
use crate::orders::{NotTaken, Order, OrderRequest, OrderState};

/// The outcome of `place_order`.
#[derive(Debug, Clone)]
pub enum Placed {
    /// A new order: the stock is taken.
    New(Order),
    /// The buyer's key named this earlier order, for the same request: nothing taken.
    Replayed(Order),
    /// The buyer's key names an earlier order of something else: nothing taken.
    KeyReused(Order),
    NotTaken(NotTaken),
}

/// An order about to be placed: everything it records but its id and the item's name.
struct NewOrder<'a> {
    buyer: &'a User,
    seller_id: UserId,
    seller: String,
    wanted: &'a OrderRequest,
    currency: Currency,
    total: i64,
    key: Option<&'a str>,
    placed_at: DateTime<Utc>,
}

impl NewOrder<'_> {
    /// The order as stored, once the database gave it `id` and took the stock of the item
    /// called `item_name` (nothing to read back).
    fn order(&self, id: OrderId, item_name: String) -> Order {
        Order {
            id,
            state: OrderState::Placed,
            item_id: self.wanted.item_id,
            item_name,
            quantity: self.wanted.quantity,
            unit_price_minor: self.wanted.price_minor,
            total_minor: self.total,
            currency: self.currency.code().to_owned(),
            buyer: self.buyer.username.clone(),
            seller: self.seller.clone(),
            buyer_id: self.buyer.id,
            seller_id: self.seller_id,
            placed_at: self.placed_at,
            handed_over_at: None,
            cancelled_at: None,
        }
    }
}

/// What the order's statements did.
enum Taken {
    /// The stock is taken and the order stored: its id, and the item's name.
    Order(OrderId, String),
    /// Nothing: the buyer's key already has an order.
    KeyUsed,
    /// Nothing: not enough left at that price, or the item is gone.
    Nothing,
}

/// The one-statement order's line refused its missing order (`order_id` NOT NULL): the
/// order was left out because the buyer's key has one, and the statement undid itself.
fn is_line_without_order(error: &dyn sqlx::error::DatabaseError) -> bool {
    error.code().as_deref() == Some("23502") && error.table() == Some("order_lines")
}

/// The outcome of `cancel_order`.
#[derive(Debug, Clone)]
pub enum Cancelled {
    /// Cancelled now, and its stock put back.
    Now(Order),
    /// It was no longer `placed` (handed over, or cancelled by someone else first).
    NotPlaced(OrderState),
    Gone,
}

/// The outcome of `hand_over_order`.
#[derive(Debug, Clone)]
pub enum HandedOver {
    Now(Order),
    NotPlaced(OrderState),
    Gone,
}

impl Store {
    /// Buy `wanted.quantity` of the item `permit` allows buying, at the unit price the
    /// buyer saw, in `currency`. With `key`, a second call with the same key returns the
    /// first order (or `KeyReused`, when it asked for something else).
    pub async fn place_order(
        &self,
        permit: &Permit<BuyItem>,
        wanted: &OrderRequest,
        currency: Currency,
        key: Option<&str>,
    ) -> StoreResult<Placed> {
        let item = permit.subject();
        let new = NewOrder {
            buyer: permit.by(),
            seller_id: item
                .owner_id
                .expect("BuyItem allows only items with a seller"),
            seller: item.seller.clone().unwrap_or_default(),
            wanted,
            currency,
            total: i64::from(wanted.quantity)
                .checked_mul(wanted.price_minor)
                .ok_or_else(|| StoreError::Unavailable("the order's total is too large".into()))?,
            key,
            placed_at: now(),
        };
        let taken = match self.backend() {
            Backend::Postgres => self.take_in_one_statement(&new).await?,
            Backend::Sqlite => self.take_in_a_transaction(&new).await?,
        };
        match taken {
            Taken::Order(id, name) => {
                ::metrics::counter!("shop_orders_placed_total").increment(1);
                Ok(Placed::New(new.order(id, name)))
            }
            Taken::KeyUsed => match self.earlier_order(&new).await? {
                Some(placed) => Ok(placed),
                // Its order vanished between the two statements (a restore): a retry
                // places it.
                None => Err(StoreError::Unavailable(
                    "the idempotency key's order is being replaced".into(),
                )),
            },
            Taken::Nothing => {
                // A retry of an order placed before the item sold out is that order.
                if let Some(placed) = self.earlier_order(&new).await? {
                    return Ok(placed);
                }
                let why = match self.get_item(wanted.item_id).await? {
                    None => NotTaken::Gone,
                    Some(now) => NotTaken::explain(now.quantity, now.price_minor, wanted),
                };
                ::metrics::counter!("shop_orders_refused_total", "reason" => why.reason())
                    .increment(1);
                Ok(Placed::NotTaken(why))
            }
        }
    }

    /// PostgreSQL: the stock, the order and its line in one statement (one round trip,
    /// atomic on its own, the item's row locked from the update to the commit).
    async fn take_in_one_statement(&self, new: &NewOrder<'_>) -> StoreResult<Taken> {
        self.gate()?;
        let Pool::Postgres(pool) = self.pool() else {
            unreachable!("the one-statement order is PostgreSQL's")
        };
        let wanted = new.wanted;
        let answer = self
            .bounded(
                sqlx::query_as::<_, (OrderId, String)>(queries::PLACE_ORDER_POSTGRES)
                    .bind(wanted.quantity)
                    .bind(wanted.item_id)
                    .bind(wanted.price_minor)
                    .bind(new.buyer.id)
                    .bind(&new.buyer.username)
                    .bind(new.seller_id)
                    .bind(&new.seller)
                    .bind(new.currency.code())
                    .bind(new.total)
                    .bind(new.key)
                    .bind(new.placed_at)
                    .fetch_optional(&pool),
            )
            .await;
        match answer {
            Ok(Some((id, name))) => Ok(Taken::Order(id, name)),
            Ok(None) => Ok(Taken::Nothing),
            Err(sqlx::Error::Database(e)) if is_line_without_order(e.as_ref()) => {
                Ok(Taken::KeyUsed)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// SQLite: the same three steps in one `BEGIN IMMEDIATE` transaction (its statements
    /// cannot change two tables at once); the order first, so a used key takes nothing.
    async fn take_in_a_transaction(&self, new: &NewOrder<'_>) -> StoreResult<Taken> {
        let wanted = new.wanted;
        transaction!(self, |tx, backend| {
            let id: Option<(OrderId,)> = sqlx::query_as(queries::INSERT_ORDER.for_backend(backend))
                .bind(new.buyer.id)
                .bind(&new.buyer.username)
                .bind(new.seller_id)
                .bind(&new.seller)
                .bind(new.currency.code())
                .bind(new.total)
                .bind(new.key)
                .bind(new.placed_at)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((id,)) = id else {
                tx.rollback().await?;
                return Ok(Taken::KeyUsed);
            };
            let name: Option<(String,)> = sqlx::query_as(queries::TAKE_STOCK.for_backend(backend))
                .bind(wanted.quantity)
                .bind(wanted.item_id)
                .bind(wanted.price_minor)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((name,)) = name else {
                tx.rollback().await?;
                return Ok(Taken::Nothing);
            };
            sqlx::query(queries::INSERT_ORDER_LINE.for_backend(backend))
                .bind(id)
                .bind(wanted.item_id)
                .bind(&name)
                .bind(wanted.price_minor)
                .bind(wanted.quantity)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Taken::Order(id, name))
        })
    }

    /// The order the buyer's key already names, as this request's answer: the same
    /// order again, or `KeyReused` when it was for something else. None without a key.
    async fn earlier_order(&self, new: &NewOrder<'_>) -> StoreResult<Option<Placed>> {
        let Some(key) = new.key else {
            return Ok(None);
        };
        let earlier: Option<Order> =
            run!(self, as queries::GET_ORDER_BY_KEY, fetch_optional, new.buyer.id, key)?;
        Ok(earlier.map(|order| {
            if same_request(&order, new.wanted) {
                Placed::Replayed(order)
            } else {
                Placed::KeyReused(order)
            }
        }))
    }

    /// Cancel the order `permit` allows cancelling, if it is still `placed`, and put its
    /// stock back in the same transaction.
    pub async fn cancel_order(&self, permit: &Permit<CancelOrder>) -> StoreResult<Cancelled> {
        let id = permit.subject().id;
        let by = permit.by().id;
        let changed: bool = transaction!(self, |tx, backend| {
            let changed = sqlx::query(queries::CANCEL_ORDER.for_backend(backend))
                .bind(id)
                .bind(now())
                .bind(by)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(queries::RETURN_STOCK.for_backend(backend))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })?;
        if changed {
            ::metrics::counter!("shop_orders_cancelled_total").increment(1);
        }
        Ok(match (changed, self.get_order(id).await?) {
            (_, None) => Cancelled::Gone,
            (true, Some(order)) => Cancelled::Now(order),
            (false, Some(order)) => Cancelled::NotPlaced(order.state),
        })
    }

    /// Mark the order `permit` allows handing over as handed over, if it is still `placed`.
    pub async fn hand_over_order(&self, permit: &Permit<HandOverOrder>) -> StoreResult<HandedOver> {
        let id = permit.subject().id;
        let by = permit.by().id;
        let changed = run!(self, queries::HAND_OVER_ORDER, execute, id, now(), by)?;
        if changed > 0 {
            ::metrics::counter!("shop_orders_handed_over_total").increment(1);
        }
        Ok(match (changed > 0, self.get_order(id).await?) {
            (_, None) => HandedOver::Gone,
            (true, Some(order)) => HandedOver::Now(order),
            (false, Some(order)) => HandedOver::NotPlaced(order.state),
        })
    }

    /// One order, whoever's: the caller asks `access` whether the user may see it.
    pub async fn get_order(&self, id: OrderId) -> StoreResult<Option<Order>> {
        Ok(run!(self, as queries::GET_ORDER, fetch_optional, id)?)
    }

    /// `user`'s orders as buyer (or as seller), newest first, older than `before`.
    pub async fn list_orders(
        &self,
        user: &User,
        as_seller: bool,
        before: Option<OrderId>,
        limit: u32,
    ) -> StoreResult<Vec<Order>> {
        let limit = i64::from(limit);
        Ok(if as_seller {
            run!(self, as queries::ORDERS_OF_SELLER, fetch_all, user.id, before, limit)?
        } else {
            run!(self, as queries::ORDERS_OF_BUYER, fetch_all, user.id, before, limit)?
        })
    }

    /// The orders of `seller`'s items that wait for hand-over, oldest first.
    pub async fn placed_orders_of(&self, seller: &User, limit: u32) -> StoreResult<Vec<Order>> {
        Ok(run!(self, as queries::PLACED_ORDERS_OF_SELLER, fetch_all, seller.id, i64::from(limit))?)
    }

    /// How many orders of `seller`'s items wait for hand-over.
    pub async fn count_placed_orders_of(&self, seller: UserId) -> StoreResult<i64> {
        let (count,): (i64,) =
            run!(self, as queries::COUNT_PLACED_ORDERS_OF_SELLER, fetch_one, seller)?;
        Ok(count)
    }
}

/// Whether an earlier order is what `wanted` asks for (the same key, sent again).
fn same_request(order: &Order, wanted: &OrderRequest) -> bool {
    order.item_id == wanted.item_id
        && order.quantity == wanted.quantity
        && order.unit_price_minor == wanted.price_minor
}

/// An order from a row of `queries::order_select!`, by position.
impl<'r, R> sqlx::FromRow<'r, R> for Order
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<DateTime<Utc>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Order, sqlx::Error> {
        let state: String = row.try_get(1)?;
        let state = OrderState::parse(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: format!("not an order state: {state:?}").into(),
        })?;
        Ok(Order {
            id: OrderId(row.try_get(0)?),
            state,
            item_id: ItemId(row.try_get(2)?),
            item_name: row.try_get(3)?,
            quantity: row.try_get(4)?,
            unit_price_minor: row.try_get(5)?,
            total_minor: row.try_get(6)?,
            currency: row.try_get(7)?,
            buyer: row.try_get(8)?,
            seller: row.try_get(9)?,
            buyer_id: UserId(row.try_get(10)?),
            seller_id: UserId(row.try_get(11)?),
            placed_at: row.try_get(12)?,
            handed_over_at: row.try_get(13)?,
            cancelled_at: row.try_get(14)?,
        })
    }
}
