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
use crate::items::{idempotency_key, Cursor, FieldErrors, Item, ItemInput, NewItem};

#[derive(Serialize)]
pub struct ItemList {
    items: Vec<Item>,
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
        items: page.items,
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
    let item = new_item(body)?;
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
    Ok((StatusCode::CREATED, headers, Json(created.item)).into_response())
}

/// `GET /api/items/{id}`
pub async fn show(ExistingItem(item): ExistingItem) -> Json<Item> {
    Json(item)
}

/// `PUT /api/items/{id}`: replace name, quantity and description.
pub async fn update(
    State(state): State<AppState>,
    Editable(permit, _): Editable<ApiWriter>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Item>, AppError> {
    let item = new_item(body)?;
    let item = state.store.update_item(&permit, &item).await?;
    if item.is_some() {
        audit_item("item_updated", permit.by(), permit.subject().id);
    }
    item.map(Json).ok_or(AppError::NotFound("item"))
}

/// `DELETE /api/items/{id}` → 204.
pub async fn delete(
    State(state): State<AppState>,
    Editable(permit, _): Editable<ApiWriter>,
) -> Result<StatusCode, AppError> {
    if state.store.delete_item(&permit).await? {
        audit_item("item_deleted", permit.by(), permit.subject().id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("item"))
    }
}

fn new_item(body: Result<Json<Value>, JsonRejection>) -> Result<NewItem, AppError> {
    let Json(body) = body.map_err(|r| AppError::Rejected(r.status(), r.body_text()))?;
    let input = item_input(&body)?;
    input.validate().map_err(AppError::Invalid)
}

/// Read the three fields of a JSON object; a field of the wrong JSON type is a field error.
fn item_input(body: &Value) -> Result<ItemInput, AppError> {
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
    let input = ItemInput {
        name,
        quantity,
        description,
    };
    if errors.is_empty() {
        return Ok(input);
    }
    // Report the type errors together with whatever else is wrong.
    let mut all = input.validate().err().unwrap_or_default();
    all.extend(errors);
    Err(AppError::Invalid(all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_json_types_are_field_errors() {
        let Err(AppError::Invalid(errors)) =
            item_input(&json!({"name": 5, "quantity": [1], "description": "d"}))
        else {
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
        let input = item_input(&json!({"name": "a", "quantity": 7, "description": "d"})).unwrap();
        assert_eq!(input.validate().unwrap().quantity, 7);
        let input = item_input(&json!({"name": "a", "quantity": "7", "description": "d"})).unwrap();
        assert_eq!(input.validate().unwrap().quantity, 7);
        let input = item_input(&json!({"name": "a", "quantity": 1.5, "description": "d"})).unwrap();
        assert!(input.validate().is_err());
    }
}
