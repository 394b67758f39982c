//! The orders' JSON API: `POST /api/orders` (with an `Idempotency-Key`), `GET
//! /api/orders` (as buyer, `?as=seller`), `GET /api/orders/{id}`, and `POST
//! /api/orders/{id}/cancel` and `/hand-over`. The same rules and outcomes as the pages
//! (`web::orders`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::ApiWriter;
use super::error::AppError;
use super::orders::{buy_permit, cancel, hand_over, place, OrderPermit};
use super::AppState;
use crate::access::{CancelOrder, HandOverOrder, SeeOrder};
use crate::ids::OrderId;
use crate::items::{idempotency_key, FieldErrors, DEFAULT_PER_PAGE, MAX_PER_PAGE};
use crate::orders::{Order, OrderInput};

/// `POST /api/orders` `{"item_id", "quantity", "price_minor"}` (the unit price the buyer
/// saw) → 201 with the order and its `Location`. The same `Idempotency-Key` again, for
/// the same request: 201 with the same order and `Idempotent-Replayed: true`; for another
/// request: 422.
pub async fn create(
    State(state): State<AppState>,
    ApiWriter(buyer): ApiWriter,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, AppError> {
    let sent_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let key = idempotency_key(sent_key).map_err(AppError::BadRequest)?;
    let Json(body) = body.map_err(|r| AppError::Rejected(r.status(), r.body_text()))?;
    let wanted = order_input(&body)?.validate().map_err(AppError::Invalid)?;
    let permit = buy_permit(&state, buyer, wanted.item_id).await?;
    let (order, replayed) = place(&state, &permit, &wanted, key).await?;
    let headers = [
        (header::LOCATION, format!("/api/orders/{}", order.id)),
        (
            HeaderName::from_static("idempotent-replayed"),
            replayed.to_string(),
        ),
    ];
    Ok((StatusCode::CREATED, headers, Json(order)).into_response())
}

/// The three fields of an order's JSON, as text for `OrderInput` (numbers, or numbers in
/// strings); another JSON type is a field error.
fn order_input(body: &Value) -> Result<OrderInput, AppError> {
    let Some(object) = body.as_object() else {
        return Err(AppError::BadRequest(
            "The body must be a JSON object with item_id, quantity and price_minor.".into(),
        ));
    };
    let mut errors = FieldErrors::new();
    let mut number = |field: &'static str| match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.insert(field, format!("The {field} must be a whole number."));
            None
        }
    };
    let input = OrderInput {
        item_id: number("item_id"),
        quantity: number("quantity"),
        price_minor: number("price_minor"),
    };
    if errors.is_empty() {
        Ok(input)
    } else {
        Err(AppError::Invalid(errors))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// `seller`: the orders of my items; anything else (or nothing): my purchases.
    #[serde(rename = "as")]
    role: Option<String>,
    after: Option<String>,
    per_page: Option<String>,
}

#[derive(Serialize)]
struct OrderList {
    orders: Vec<Order>,
    /// The next page's position, for `?after=`.
    next_after: Option<OrderId>,
}

/// `GET /api/orders?as=seller&after=&per_page=`: newest first, a keyset page.
pub async fn list(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Query(params): Query<ListParams>,
) -> Result<Json<impl Serialize>, AppError> {
    let as_seller = match params.role.as_deref() {
        None | Some("" | "buyer") => false,
        Some("seller") => true,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "as must be buyer or seller, not {other:?}."
            )))
        }
    };
    let after = match params
        .after
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(text) => Some(text.parse::<OrderId>().map_err(|_| {
            AppError::BadRequest(format!(
                "after must be an order id from a list, not {text:?}."
            ))
        })?),
    };
    let per_page = match params
        .per_page
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => DEFAULT_PER_PAGE,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if n >= 1 => n.min(MAX_PER_PAGE),
            _ => {
                return Err(AppError::BadRequest(format!(
                    "per_page must be a whole number from 1, not {text:?}."
                )))
            }
        },
    };
    let mut orders = state
        .store
        .list_orders(&user, as_seller, after, per_page + 1)
        .await?;
    let more = orders.len() > per_page as usize;
    orders.truncate(per_page as usize);
    let next_after = orders.last().filter(|_| more).map(|o| o.id);
    Ok(Json(OrderList { orders, next_after }))
}

/// `GET /api/orders/{id}`: for its buyer, its seller and admins; 404 for anyone else.
pub async fn show(OrderPermit(permit, _): OrderPermit<SeeOrder, ApiWriter>) -> Json<Order> {
    Json(permit.subject().clone())
}

/// `POST /api/orders/{id}/cancel` → the cancelled order; 409 once handed over.
pub async fn cancel_order(
    State(state): State<AppState>,
    OrderPermit(permit, _): OrderPermit<CancelOrder, ApiWriter>,
) -> Result<Json<Order>, AppError> {
    cancel(&state, &permit).await.map(Json)
}

/// `POST /api/orders/{id}/hand-over` → the handed-over order; 409 once cancelled.
pub async fn hand_over_order(
    State(state): State<AppState>,
    OrderPermit(permit, _): OrderPermit<HandOverOrder, ApiWriter>,
) -> Result<Json<Order>, AppError> {
    hand_over(&state, &permit).await.map(Json)
}
