//! What handlers take from a request's path and query string, already parsed: an item
//! id, the item it names, the item a writer may change, the list's page and search. A
//! malformed value is answered here (404 for an id that names no item, 400 for a bad
//! page), and so is a refused change (403), never in a handler.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::Deserialize;

use super::auth::Writer;
use super::error::AppError;
use super::AppState;
use crate::access::{ChangeItem, Permit};
use crate::ids::ItemId;
use crate::items::{Item, ListParams, ListQuery};

/// The `{id}` of `/items/{id}…`: anything that is not a positive integer names no item.
impl<S: Send + Sync> FromRequestParts<S> for ItemId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ItemId, AppError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound("item"))?;
        raw.parse().map_err(|_| AppError::NotFound("item"))
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
        let id = ItemId::from_request_parts(parts, state).await?;
        let item = state.store.get_item(id).await?;
        item.map(ExistingItem).ok_or(AppError::NotFound("item"))
    }
}

/// The item `{id}` names, with the permit to change it: who writes is asked first (`W`:
/// a page's `SignedIn`, sent to log in, or the API's `ApiWriter`, 401), then the item
/// (404), then the rule (403, in the journal as `change_refused`). Every handler that
/// changes an item takes one: the store's writes need its permit.
pub struct Editable<W>(pub Permit<ChangeItem>, pub PhantomData<W>);

impl<W: Writer + Send> FromRequestParts<AppState> for Editable<W> {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Editable<W>, AppError> {
        let writer = W::from_request_parts(parts, state).await?;
        let ExistingItem(item) = ExistingItem::from_request_parts(parts, state).await?;
        let item_id = item.id;
        match Permit::<ChangeItem>::check(writer.user().clone(), item) {
            Ok(permit) => Ok(Editable(permit, PhantomData)),
            Err((user, refusal)) => {
                tracing::info!(
                    event = "change_refused",
                    user = %user.username,
                    item_id = item_id.0,
                    "{} may not change item {item_id}",
                    user.username,
                );
                Err(refusal.into())
            }
        }
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
