//! What the order pages and the order API share: the order `{id}` names, with the permit
//! of a rule (`OrderPermit`), the permit to buy an item, and what each outcome of the
//! store means to the person who asked (a sentence with 409 or 422), written once.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::auth::{audit_order, Writer};
use super::error::AppError;
use super::AppState;
use crate::access::{BuyItem, Permit, Rule};
use crate::accounts::User;
use crate::db::{Cancelled, HandedOver, Placed};
use crate::ids::{ItemId, OrderId};
use crate::orders::{not_placed_sentence, Order, OrderRequest};

/// The order `{id}` names, with the permit of `R` for the writer `W` (a page's
/// `SignedIn`, or the API's `ApiWriter`): who asks first, then the order (404), then the
/// rule (404 for anyone who may not know it exists, 403 for a party who may not do this).
pub struct OrderPermit<R: Rule<Subject = Order>, W>(pub Permit<R>, pub PhantomData<W>);

impl<R, W> FromRequestParts<AppState> for OrderPermit<R, W>
where
    R: Rule<Subject = Order> + Send,
    W: Writer + Send,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<OrderPermit<R, W>, AppError> {
        let writer = W::from_request_parts(parts, state).await?;
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound("order"))?;
        let id: OrderId = raw.parse().map_err(|_| AppError::NotFound("order"))?;
        let order = state
            .store
            .get_order(id)
            .await?
            .ok_or(AppError::NotFound("order"))?;
        Permit::<R>::check(writer.user().clone(), order)
            .map(|permit| OrderPermit(permit, PhantomData))
            .map_err(|(_, refusal)| refusal.into())
    }
}

/// The permit for `buyer` to buy the item `id` names: 404 without one, 403 when it is
/// theirs (or they may not buy).
pub async fn buy_permit(
    state: &AppState,
    buyer: User,
    id: ItemId,
) -> Result<Permit<BuyItem>, AppError> {
    let item = state
        .store
        .get_item(id)
        .await?
        .ok_or(AppError::NotFound("item"))?;
    Permit::<BuyItem>::check(buyer, item).map_err(|(_, refusal)| refusal.into())
}

/// Place the order: the order and whether it was placed before under this key, or why
/// not, in a sentence (409: the stock, the price; 422: a key reused for another order).
pub async fn place(
    state: &AppState,
    permit: &Permit<BuyItem>,
    wanted: &OrderRequest,
    key: Option<&str>,
) -> Result<(Order, bool), AppError> {
    match state
        .store
        .place_order(permit, wanted, state.currency, key)
        .await?
    {
        Placed::New(order) => {
            audit_order("order_placed", permit.by(), &order);
            Ok((order, false))
        }
        Placed::Replayed(order) => Ok((order, true)),
        Placed::KeyReused(order) => Err(AppError::Rejected(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "This idempotency key was used for order {} ({} of item {}): send a new key for a new order.",
                order.id, order.quantity, order.item_id
            ),
        )),
        Placed::NotTaken(why) => Err(AppError::Rejected(
            StatusCode::CONFLICT,
            why.sentence(state.currency),
        )),
    }
}

/// Cancel: the order, cancelled now (its stock back), or 409 when it was not `placed`.
pub async fn cancel(
    state: &AppState,
    permit: &Permit<crate::access::CancelOrder>,
) -> Result<Order, AppError> {
    match state.store.cancel_order(permit).await? {
        Cancelled::Now(order) => {
            audit_order("order_cancelled", permit.by(), &order);
            Ok(order)
        }
        Cancelled::NotPlaced(order_state) => Err(AppError::Rejected(
            StatusCode::CONFLICT,
            not_placed_sentence(order_state, "cancelled"),
        )),
        Cancelled::Gone => Err(AppError::NotFound("order")),
    }
}

/// Hand over: the order, handed over now, or 409 when it was not `placed`.
pub async fn hand_over(
    state: &AppState,
    permit: &Permit<crate::access::HandOverOrder>,
) -> Result<Order, AppError> {
    match state.store.hand_over_order(permit).await? {
        HandedOver::Now(order) => {
            audit_order("order_handed_over", permit.by(), &order);
            Ok(order)
        }
        HandedOver::NotPlaced(order_state) => Err(AppError::Rejected(
            StatusCode::CONFLICT,
            not_placed_sentence(order_state, "handed over"),
        )),
        HandedOver::Gone => Err(AppError::NotFound("order")),
    }
}
