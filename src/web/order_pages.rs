//! The order pages: buying from an item's page, my purchases (`/orders`), the orders of
//! my items (`/sales`, those waiting for hand-over first), an order's page with its
//! cancel and hand-over buttons. The rules and outcomes are `web::orders`'s.

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};

use super::auth::SignedIn;
use super::csrf::{protected_form, CheckedForm};
use super::error::AppError;
use super::orders::{buy_permit, cancel, hand_over, place, OrderPermit};
use super::templates::Frame;
use super::AppState;
use crate::access::{may_hand_over, CancelOrder, HandOverOrder, SeeOrder};
use crate::accounts::User;
use crate::ids::{ItemId, OrderId};
use crate::items::idempotency_key;
use crate::money::Currency;
use crate::orders::{Order, OrderInput, OrderState};

/// How many orders a list page shows.
const PER_PAGE: u32 = 50;

protected_form! {
    /// The item page's Buy form: how many, at the price the page showed, and the key
    /// that makes a double click or a reload one order.
    pub struct BuyForm { idempotency_key, quantity, price_minor }
}

protected_form! {
    /// A cancel or hand-over button: only its token.
    pub struct OrderButton {}
}

/// An order as the templates show it.
#[derive(Serialize)]
struct OrderView<'a> {
    id: OrderId,
    state: OrderState,
    state_label: &'static str,
    item_id: ItemId,
    item_name: &'a str,
    quantity: i32,
    unit_price: String,
    total: String,
    buyer: &'a str,
    seller: &'a str,
    placed_at: String,
    changed_at: Option<String>,
    can_cancel: bool,
    can_hand_over: bool,
}

impl<'a> OrderView<'a> {
    fn of(order: &'a Order, viewer: &User, currency: Currency) -> OrderView<'a> {
        let placed = order.state == OrderState::Placed;
        let when = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
        OrderView {
            id: order.id,
            state: order.state,
            state_label: order.state.label(),
            item_id: order.item_id,
            item_name: &order.item_name,
            quantity: order.quantity,
            // An order keeps the currency it was bought in.
            unit_price: show(currency, order, order.unit_price_minor),
            total: show(currency, order, order.total_minor),
            buyer: &order.buyer,
            seller: &order.seller,
            placed_at: when(order.placed_at),
            changed_at: order.handed_over_at.or(order.cancelled_at).map(when),
            can_cancel: placed,
            can_hand_over: placed && may_hand_over(viewer, order),
        }
    }
}

/// An amount of `order`, in its own currency (the shop's, unless that was changed since).
fn show(shop: Currency, order: &Order, minor: i64) -> String {
    match order.currency.parse::<Currency>() {
        Ok(currency) => currency.show(minor),
        Err(_) => format!("{} {}", shop.amount(minor), order.currency),
    }
}

/// `POST /items/{id}/buy`: place the order and show it; a repeat of the same form (a
/// double click, a reload) shows the same order. Anonymous visitors go to log in.
pub async fn buy(
    State(state): State<AppState>,
    buyer: SignedIn,
    id: ItemId,
    CheckedForm(form): CheckedForm<BuyForm>,
) -> Result<Redirect, AppError> {
    let key = idempotency_key(form.idempotency_key.as_deref()).map_err(AppError::BadRequest)?;
    let wanted = OrderInput {
        item_id: Some(id.to_string()),
        quantity: form.quantity,
        price_minor: form.price_minor,
    }
    .validate()
    .map_err(AppError::Invalid)?;
    let permit = buy_permit(&state, buyer.user, id).await?;
    let (order, _) = place(&state, &permit, &wanted, key).await?;
    Ok(Redirect::to(&format!("/orders/{}", order.id)))
}

/// `GET /items/{id}/buy` (where a login for a Buy button comes back to): the item.
pub async fn buy_page(id: ItemId) -> Redirect {
    Redirect::to(&format!("/items/{id}"))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    after: Option<String>,
}

/// `GET /orders`: what I bought, newest first.
pub async fn my_orders(
    State(state): State<AppState>,
    viewer: SignedIn,
    Extension(frame): Extension<Frame>,
    Query(params): Query<PageParams>,
) -> Result<Html<String>, AppError> {
    let after = params.after.as_deref().and_then(|a| a.trim().parse().ok());
    let mut orders = state
        .store
        .list_orders(&viewer.user, false, after, PER_PAGE + 1)
        .await?;
    let next = next_after(&mut orders);
    let views = views(&orders, &viewer.user, state.currency);
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    context.insert("heading", "My orders");
    context.insert("as_seller", &false);
    context.insert("waiting", &Vec::<OrderView>::new());
    context.insert("orders", &views);
    context.insert("next_url", &next.map(|id| format!("/orders?after={id}")));
    Ok(Html(state.templates.render("orders.html", &context)?))
}

/// `GET /sales`: the orders of my items, those waiting for hand-over first (oldest
/// first: the first to hand over), then the rest, newest first.
pub async fn my_sales(
    State(state): State<AppState>,
    viewer: SignedIn,
    Extension(frame): Extension<Frame>,
    Query(params): Query<PageParams>,
) -> Result<Html<String>, AppError> {
    let after = params.after.as_deref().and_then(|a| a.trim().parse().ok());
    let waiting = match after {
        None => state.store.placed_orders_of(&viewer.user, 500).await?,
        Some(_) => Vec::new(),
    };
    let mut orders = state
        .store
        .list_orders(&viewer.user, true, after, PER_PAGE + 1)
        .await?;
    let next = next_after(&mut orders);
    orders.retain(|o| o.state != OrderState::Placed);
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    context.insert("heading", "My sales");
    context.insert("as_seller", &true);
    context.insert("waiting", &views(&waiting, &viewer.user, state.currency));
    context.insert("orders", &views(&orders, &viewer.user, state.currency));
    context.insert("next_url", &next.map(|id| format!("/sales?after={id}")));
    Ok(Html(state.templates.render("orders.html", &context)?))
}

/// Keep one page of `orders` (fetched with one more) and say where the next starts.
fn next_after(orders: &mut Vec<Order>) -> Option<OrderId> {
    let more = orders.len() > PER_PAGE as usize;
    orders.truncate(PER_PAGE as usize);
    orders.last().filter(|_| more).map(|o| o.id)
}

fn views<'a>(orders: &'a [Order], viewer: &User, currency: Currency) -> Vec<OrderView<'a>> {
    orders
        .iter()
        .map(|o| OrderView::of(o, viewer, currency))
        .collect()
}

/// `GET /orders/{id}`: for its buyer, its seller and admins (404 for anyone else).
pub async fn show_order(
    State(state): State<AppState>,
    OrderPermit(permit, _): OrderPermit<SeeOrder, SignedIn>,
    Extension(frame): Extension<Frame>,
) -> Result<Html<String>, AppError> {
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    let viewer = permit.by();
    let order = permit.subject();
    context.insert("order", &OrderView::of(order, viewer, state.currency));
    context.insert("is_buyer", &(order.buyer_id == viewer.id));
    Ok(Html(state.templates.render("order.html", &context)?))
}

/// `POST /orders/{id}/cancel`: cancel (the stock goes back) and show the order.
pub async fn cancel_order(
    State(state): State<AppState>,
    OrderPermit(permit, _): OrderPermit<CancelOrder, SignedIn>,
    CheckedForm(_): CheckedForm<OrderButton>,
) -> Result<Response, AppError> {
    let order = cancel(&state, &permit).await?;
    Ok(Redirect::to(&format!("/orders/{}", order.id)).into_response())
}

/// `POST /orders/{id}/hand-over`: mark it handed over and show it.
pub async fn hand_over_order(
    State(state): State<AppState>,
    OrderPermit(permit, _): OrderPermit<HandOverOrder, SignedIn>,
    CheckedForm(_): CheckedForm<OrderButton>,
) -> Result<Response, AppError> {
    let order = hand_over(&state, &permit).await?;
    Ok(Redirect::to(&format!("/orders/{}", order.id)).into_response())
}
