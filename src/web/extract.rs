//! What handlers take from a request's path and query string, already parsed: an item
//! id, the item it names, the list's page and search. A malformed value is answered
//! here (404 for an id that names no item, 400 for a bad page), never in a handler.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::Deserialize;

use super::error::AppError;
use super::AppState;
use crate::items::{Item, ListParams, ListQuery};

/// The `{id}` of `/items/{id}…`: anything that is not a positive integer names no item.
pub struct ItemId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for ItemId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ItemId, AppError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound("item"))?;
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(ItemId)
            .ok_or(AppError::NotFound("item"))
    }
}

/// The item `{id}` names, read from the store: 404 when there is none.
pub struct ExistingItem(pub Item);

impl FromRequestParts<AppState> for ExistingItem {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ExistingItem, AppError> {
        let ItemId(id) = ItemId::from_request_parts(parts, state).await?;
        let item = state.store.get_item(id).await?;
        item.map(ExistingItem).ok_or(AppError::NotFound("item"))
    }
}

/// `?page=&per_page=&q=&after=&before=` of a list, parsed by `ListQuery` (400 with its reason).
pub struct Listing(pub ListQuery);

/// The list parameters as they came in the query string.
#[derive(Debug, Default, Deserialize)]
struct RawListParams {
    page: Option<String>,
    per_page: Option<String>,
    q: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Listing {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Listing, AppError> {
        let Query(params) = Query::<RawListParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(e.body_text()))?;
        ListQuery::parse(ListParams {
            page: params.page.as_deref(),
            per_page: params.per_page.as_deref(),
            q: params.q.as_deref(),
            after: params.after.as_deref(),
            before: params.before.as_deref(),
        })
        .map(Listing)
        .map_err(AppError::BadRequest)
    }
}
