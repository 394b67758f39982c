//! The JSON API: the same items and rules as the pages. Reads are anonymous; writes need
//! an `ApiWriter` (an API token, or a signed-in browser's session with its form token),
//! and changing an item takes the same `Editable` permit as the pages.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::auth::{audit_item, ApiWriter};
use super::cache::{CacheControl, ETag};
use super::error::AppError;
use super::extract::{Editable, ExistingItem, Listing};
use super::AppState;
use crate::db::{Deleted, Updated};
use crate::items::{
    idempotency_key, Cursor, FieldErrors, Item, ItemInput, NewItem, PriceInput, Priced,
};
use crate::money::Currency;

#[derive(Serialize)]
pub struct ItemList<'a> {
    items: Vec<Priced<'a>>,
    page: u32,
    per_page: u32,
    next_page: Option<u32>,
    /// The next page's position, for `?after=` (cheaper than `?page=` deep in the list).
    next_after: Option<String>,
}

/// `GET /api/items?page=&per_page=&q=&after=&before=`, with an `ETag` as the list page's.
pub async fn list(
    State(state): State<AppState>,
    Listing(query): Listing,
    request: HeaderMap,
) -> Result<Response, AppError> {
    let tag = ETag::of_list(&state.store, "api", &query).await?;
    if let Some(not_modified) = tag.answer(&request, CacheControl::Shared) {
        return Ok(not_modified);
    }
    let page = state.store.list_items(&query).await?;
    let next_after = page
        .items
        .last()
        .filter(|_| page.has_next)
        .map(|last| Cursor::of(last).to_string());
    let list = Json(ItemList {
        next_page: page.has_next.then_some(query.page.saturating_add(1)),
        next_after,
        items: page
            .items
            .iter()
            .map(|item| Priced(item, state.currency))
            .collect(),
        page: query.page,
        per_page: query.per_page,
    });
    Ok(tag.label(list.into_response(), CacheControl::Shared))
}

/// `POST /api/items` → 201 with the item and its `Location`. With an `Idempotency-Key`
/// header already used, the earlier item is returned (`Idempotent-Replayed: true`); a key
/// another seller's item was made with gets 409.
pub async fn create(
    State(state): State<AppState>,
    ApiWriter(seller): ApiWriter,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, AppError> {
    let sent_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let key = idempotency_key(sent_key).map_err(AppError::BadRequest)?;
    let item = new_item(body, state.currency)?;
    let created = state.store.create_item(&item, &seller, key).await?;
    if !created.replayed {
        audit_item("item_created", &seller, created.item.id);
    }
    let location = format!("/api/items/{}", created.item.id);
    let replayed = if created.replayed { "true" } else { "false" };
    let headers = [
        (header::LOCATION, location),
        (
            HeaderName::from_static("idempotent-replayed"),
            replayed.to_owned(),
        ),
    ];
    let body = Json(Priced(&created.item, state.currency));
    Ok((StatusCode::CREATED, headers, body).into_response())
}

/// An item's JSON with its `ETag` (what `PUT`'s `If-Match` sends back).
fn item_response(item: &Item, currency: Currency) -> Response {
    let tag = [(header::ETAG, item.etag())];
    (tag, Json(Priced(item, currency))).into_response()
}

/// `GET /api/items/{id}`, with the item's `ETag`.
pub async fn show(State(state): State<AppState>, ExistingItem(item): ExistingItem) -> Response {
    item_response(&item, state.currency)
}

/// `PUT /api/items/{id}`: replace name, quantity, description and price. With
/// `If-Match` (the `ETag` of `GET`), only if the item has not changed since (a sale, or
/// another edit): 412 and the item as it is now, never a silent overwrite.
pub async fn update(
    State(state): State<AppState>,
    Editable(permit, _): Editable<ApiWriter>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, AppError> {
    let current = permit.subject();
    let version = match headers.get(header::IF_MATCH) {
        None => None,
        Some(sent) => {
            let sent = sent.to_str().unwrap_or("");
            let matches = sent == "*" || sent.split(',').any(|tag| tag.trim() == current.etag());
            if !matches {
                return Err(stale(current, state.currency));
            }
            (sent != "*").then_some(current.version)
        }
    };
    let item = new_item(body, state.currency)?;
    match state.store.update_item(&permit, &item, version).await? {
        Updated::Saved(item) => {
            audit_item("item_updated", permit.by(), item.id);
            Ok(item_response(&item, state.currency))
        }
        Updated::Stale(now) => Err(stale(&now, state.currency)),
        Updated::Gone => Err(AppError::NotFound("item")),
    }
}

/// 412: the item changed since the client's copy; what it is now.
fn stale(now: &Item, currency: Currency) -> AppError {
    AppError::Rejected(
        StatusCode::PRECONDITION_FAILED,
        format!(
            "The item changed since your copy (a sale or another edit): it is now {} in stock{}, ETag {}. Read it again and make your change to that.",
            now.quantity,
            now.price_minor
                .map(|p| format!(" at {}", currency.show(p)))
                .unwrap_or_default(),
            now.etag()
        ),
    )
}

/// `DELETE /api/items/{id}` → 204.
pub async fn delete(
    State(state): State<AppState>,
    Editable(permit, _): Editable<ApiWriter>,
) -> Result<StatusCode, AppError> {
    match state.store.delete_item(&permit).await? {
        Deleted::Deleted => {
            audit_item("item_deleted", permit.by(), permit.subject().id);
            Ok(StatusCode::NO_CONTENT)
        }
        Deleted::Gone => Err(AppError::NotFound("item")),
        Deleted::HasPlacedOrders(n) => Err(has_placed_orders(n)),
    }
}

/// 409: an item with orders that wait is not deleted.
pub fn has_placed_orders(n: i64) -> AppError {
    AppError::Rejected(
        StatusCode::CONFLICT,
        format!("{n} order(s) of this item wait for hand-over: hand them over or cancel them before deleting it."),
    )
}

fn new_item(
    body: Result<Json<Value>, JsonRejection>,
    currency: Currency,
) -> Result<NewItem, AppError> {
    let Json(body) = body.map_err(|r| AppError::Rejected(r.status(), r.body_text()))?;
    let input = item_input(&body, currency)?;
    input.validate(currency).map_err(AppError::Invalid)
}

/// Read the fields of a JSON object; a field of the wrong JSON type is a field error.
fn item_input(body: &Value, currency: Currency) -> Result<ItemInput, AppError> {
    let Some(object) = body.as_object() else {
        return Err(AppError::BadRequest(
            "The body must be a JSON object with name, quantity and description.".into(),
        ));
    };
    let mut errors = FieldErrors::new();
    let mut text = |field: &'static str| match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.insert(field, format!("The {field} must be a string."));
            None
        }
    };
    let name = text("name");
    let description = text("description");
    let quantity = match object.get("quantity") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.insert("quantity", "The quantity must be a whole number.".into());
            None
        }
    };
    let price = match object.get("price_minor") {
        None | Some(Value::Null) => PriceInput::None,
        Some(Value::Number(n)) if n.as_i64().is_some() => {
            PriceInput::Minor(n.as_i64().unwrap_or(-1))
        }
        Some(_) => {
            errors.insert(
                "price_minor",
                "The price_minor must be a whole number of minor units (cents), or null.".into(),
            );
            PriceInput::None
        }
    };
    let input = ItemInput {
        name,
        quantity,
        description,
        price,
    };
    if errors.is_empty() {
        return Ok(input);
    }
    // Report the type errors together with whatever else is wrong.
    let mut all = input.validate(currency).err().unwrap_or_default();
    all.extend(errors);
    Err(AppError::Invalid(all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_json_types_are_field_errors() {
        let Err(AppError::Invalid(errors)) = item_input(
            &json!({"name": 5, "quantity": [1], "description": "d"}),
            Currency::EUR,
        ) else {
            panic!("expected field errors")
        };
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["name", "quantity"]
        );
        assert!(errors["name"].contains("must be a string"));
    }

    #[test]
    fn numbers_and_numeric_strings_are_quantities() {
        let input = item_input(
            &json!({"name": "a", "quantity": 7, "description": "d"}),
            Currency::EUR,
        )
        .unwrap();
        assert_eq!(input.validate(Currency::EUR).unwrap().quantity, 7);
        let input = item_input(
            &json!({"name": "a", "quantity": "7", "description": "d"}),
            Currency::EUR,
        )
        .unwrap();
        assert_eq!(input.validate(Currency::EUR).unwrap().quantity, 7);
        let input = item_input(
            &json!({"name": "a", "quantity": 1.5, "description": "d"}),
            Currency::EUR,
        )
        .unwrap();
        assert!(input.validate(Currency::EUR).is_err());
    }
}
