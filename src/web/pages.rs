//! The HTML pages: the add-an-item form, the list (at `/items` and the ancestor's
//! `/success`), an item's page, editing and deleting. Every redirect is relative.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Serialize;

use super::auth::{audit_item, SignedIn, Viewer};
use super::cache::{CacheControl, ETag};
use super::csrf::{protected_form, CheckedForm};
use super::error::AppError;
use super::extract::{Editable, ExistingItem, Listing};
use super::rows;
use super::templates::Frame;
use super::AppState;
use crate::access::{may_buy, may_change};
use crate::db::{Deleted, Listed, Updated};
use crate::ids::ItemId;
use crate::items::{
    idempotency_key, new_idempotency_key, Cursor, FieldErrors, Item, ItemInput, ListQuery,
    PriceInput, DEFAULT_PER_PAGE,
};
use crate::money::Currency;

/// An item as the templates show it.
#[derive(Serialize)]
struct ItemView<'a> {
    id: ItemId,
    name: &'a str,
    quantity: i32,
    description: &'a str,
    /// The `<time>` element of the date it was added (markup: shown unescaped).
    added: String,
    seller: Option<&'a str>,
    price_minor: Option<i64>,
    /// The price as the currency writes it (`None`: not for sale).
    price: Option<String>,
}

impl<'a> ItemView<'a> {
    fn of(item: &'a Item, currency: Currency) -> Self {
        let mut added = String::with_capacity(64);
        rows::push_time(&mut added, &item.date_added);
        ItemView {
            id: item.id,
            name: &item.name,
            quantity: item.quantity,
            description: &item.description,
            added,
            seller: item.seller.as_deref(),
            price_minor: item.price_minor,
            price: item.price_minor.map(|p| currency.show(p)),
        }
    }
}

/// Where the list template's table body goes: the rows are spliced in after rendering,
/// written straight into the page's one buffer (`rows`).
const ROWS_MARK: &str = "<!-- rows -->";

/// The list page: the template around the table, and the rows written into it.
fn list_page(state: &AppState, context: &tera::Context, rows: &str) -> Result<String, AppError> {
    let frame = state.templates.render("list.html", context)?;
    let Some((before, after)) = frame.split_once(ROWS_MARK) else {
        return Ok(frame);
    };
    let mut html = String::with_capacity(frame.len() + rows.len());
    html.push_str(before);
    html.push_str(rows);
    html.push_str(after);
    Ok(html)
}

protected_form! {
    /// The fields of the add and edit forms, as sent (an edit's `version`: the item's,
    /// when the form was made).
    pub struct ItemForm { idempotency_key, version, name, quantity, description, price }
}

impl ItemForm {
    fn input(self) -> ItemInput {
        ItemInput {
            name: self.name,
            quantity: self.quantity,
            description: self.description,
            price: self.price.map_or(PriceInput::None, PriceInput::Typed),
        }
    }
}

protected_form! {
    /// The delete confirmation's button: only its token.
    pub struct DeleteForm {}
}

/// Where an item form posts, and what it says.
struct FormPage {
    heading: &'static str,
    submit: &'static str,
    action: String,
    /// Sent back with the POST so a retry of it creates nothing twice (new items only:
    /// an edit is idempotent by itself).
    idempotency_key: Option<String>,
    /// An edit's: the version of the item it was made from.
    version: Option<i64>,
    /// Why the edit was not saved (the item changed meanwhile).
    conflict: Option<String>,
}

impl FormPage {
    fn new_item(idempotency_key: String) -> FormPage {
        FormPage {
            heading: "Add an item to sell",
            submit: "Add item",
            action: "/".into(),
            idempotency_key: Some(idempotency_key),
            version: None,
            conflict: None,
        }
    }

    fn edit(item: &Item) -> FormPage {
        FormPage {
            heading: "Edit item",
            submit: "Save changes",
            action: format!("/items/{}", item.id),
            idempotency_key: None,
            version: Some(item.version),
            conflict: None,
        }
    }

    fn render(
        &self,
        state: &AppState,
        frame: &Frame,
        input: &ItemInput,
        errors: &FieldErrors,
    ) -> Result<Html<String>, AppError> {
        let mut context = tera::Context::new();
        frame.insert_into(&mut context);
        context.insert("heading", self.heading);
        context.insert("submit", self.submit);
        context.insert("action", &self.action);
        context.insert("idempotency_key", &self.idempotency_key);
        context.insert("version", &self.version);
        context.insert("conflict", &self.conflict);
        context.insert("currency", state.currency.code());
        context.insert("input", &input.form_fields(state.currency));
        context.insert("errors", errors);
        Ok(Html(state.templates.render("form.html", &context)?))
    }
}

/// `GET /`: the empty add-an-item form (anonymous visitors sign in first).
pub async fn new_item_form(
    State(state): State<AppState>,
    _: SignedIn,
    Extension(frame): Extension<Frame>,
) -> Result<Html<String>, AppError> {
    let page = FormPage::new_item(new_idempotency_key());
    page.render(&state, &frame, &ItemInput::default(), &FieldErrors::new())
}

/// `POST /`: create the item and go to the list, or show the form again with messages.
/// A repeated POST with the same idempotency key gets the same redirect and stores nothing.
pub async fn create_item(
    State(state): State<AppState>,
    seller: SignedIn,
    Extension(frame): Extension<Frame>,
    CheckedForm(mut form): CheckedForm<ItemForm>,
) -> Result<Response, AppError> {
    let sent_key = form.idempotency_key.take();
    let key = idempotency_key(sent_key.as_deref()).map_err(AppError::BadRequest)?;
    let input = form.input();
    match input.validate(state.currency) {
        Ok(item) => {
            let created = state.store.create_item(&item, &seller.user, key).await?;
            if !created.replayed {
                audit_item("item_created", &seller.user, created.item.id);
            }
            Ok(Redirect::to("/items").into_response())
        }
        Err(errors) => {
            // The same key again: nothing was stored under it yet.
            let key = key.map_or_else(new_idempotency_key, str::to_owned);
            invalid_form(&state, &frame, FormPage::new_item(key), &input, &errors)
        }
    }
}

fn invalid_form(
    state: &AppState,
    frame: &Frame,
    page: FormPage,
    input: &ItemInput,
    errors: &FieldErrors,
) -> Result<Response, AppError> {
    let html = page.render(state, frame, input, errors)?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
}

/// `GET /items` and `GET /success`: one page of the items, newest first, maybe searched.
/// A repeat view whose `ETag` still holds is answered 304 before any item is read.
/// Anonymous visitors share one page (and its 304s); a signed-in visitor's page names them
/// and carries their form token, so it is theirs alone.
pub async fn list_items(
    State(state): State<AppState>,
    Extension(frame): Extension<Frame>,
    Listing(query): Listing,
    request: HeaderMap,
) -> Result<Response, AppError> {
    let (flavour, cache) = match &frame.username {
        None => ("page".to_owned(), CacheControl::Shared),
        Some(name) => (
            format!(
                "page\u{1f}{name}\u{1f}{}\u{1f}{}",
                frame.signed_in_token(),
                frame.waiting_sales
            ),
            CacheControl::PerBrowser,
        ),
    };
    let (tag, key) = ETag::of_list_keyed(&state.store, &flavour, &query).await?;
    if let Some(not_modified) = tag.answer(&request, cache) {
        return Ok(not_modified);
    }
    // Every anonymous reader is sent the same page: rendered once for each version of
    // the data (and query), not once for each reader.
    let shared = cache == CacheControl::Shared;
    if let Some(page) = state.pages.get(&key).filter(|_| shared) {
        return Ok(tag.label(Html(page).into_response(), cache));
    }
    // The rows, written as the database hands them over (their texts never copied out).
    let mut rows = String::with_capacity(query.per_page as usize * rows::ROW_BYTES);
    let currency = state.currency;
    let listed = state
        .store
        .visit_items(&query, |item| rows::write_row(&mut rows, &item, currency))
        .await?;
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    context.insert("has_items", &listed.first.is_some());
    context.insert("search", &query.search);
    context.insert("page", &query.page);
    context.insert("per_page", &query.per_page);
    let (prev_url, next_url) = neighbour_urls(&query, &listed);
    context.insert("prev_url", &prev_url);
    context.insert("next_url", &next_url);
    let html = Bytes::from(list_page(&state, &context, &rows)?);
    if shared {
        state.pages.put(key, html.clone());
    }
    Ok(tag.label(Html(html).into_response(), cache))
}

/// The links to the newer and the older page: each starts next to this page's first or
/// last item (`before=`/`after=`), so a page ten thousand deep costs what the first does.
/// The newest page is plain `/items`.
fn neighbour_urls(query: &ListQuery, page: &Listed) -> (Option<String>, Option<String>) {
    let (first, last) = (page.first, page.last);
    let prev = match first {
        Some(first) if page.has_prev && query.page > 2 => {
            Some(page_url(query, query.page - 1, Some(("before", first))))
        }
        _ if page.has_prev => Some(page_url(query, 1, None)),
        _ => None,
    };
    let next = last
        .filter(|_| page.has_next)
        .map(|last| page_url(query, query.page.saturating_add(1), Some(("after", last))));
    (prev, next)
}

/// The list URL for another page of the same query (only the parameters that differ
/// from the defaults).
fn page_url(query: &ListQuery, page: u32, from: Option<(&str, Cursor)>) -> String {
    let mut params: Vec<(&str, String)> = Vec::new();
    if !query.search.is_empty() {
        params.push(("q", query.search.clone()));
    }
    if query.per_page != DEFAULT_PER_PAGE {
        params.push(("per_page", query.per_page.to_string()));
    }
    if let Some((name, cursor)) = from {
        params.push((name, cursor.to_string()));
    }
    if page != 1 {
        params.push(("page", page.to_string()));
    }
    match serde_urlencoded::to_string(&params) {
        Ok(qs) if !qs.is_empty() => format!("/items?{qs}"),
        _ => "/items".to_owned(),
    }
}

/// `GET /items/{id}`. Its `ETag` is made from the item as read and the form token the
/// page embeds; a repeat view of an unchanged item is answered 304 without rendering.
/// The edit and delete buttons are there only for who may use them (`may_change`).
pub async fn show_item(
    State(state): State<AppState>,
    viewer: Viewer,
    Extension(frame): Extension<Frame>,
    ExistingItem(item): ExistingItem,
    request: HeaderMap,
) -> Result<Response, AppError> {
    let can_change = viewer.user().is_some_and(|user| may_change(user, &item));
    let can_buy = viewer.user().is_some_and(|user| may_buy(user, &item));
    let who = frame.username.as_deref().unwrap_or("");
    // A page served again from the browser's cache keeps its Buy form's key: one that
    // placed an order moved the item's version (in `item`), so it is never served again.
    let tag = ETag::of(&[
        format!("{item:?}").as_bytes(),
        frame.signed_in_token().as_bytes(),
        who.as_bytes(),
        &[u8::from(can_change), u8::from(can_buy)],
        &frame.waiting_sales.to_le_bytes(),
    ]);
    if let Some(not_modified) = tag.answer(&request, CacheControl::PerBrowser) {
        return Ok(not_modified);
    }
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    context.insert("item", &ItemView::of(&item, state.currency));
    context.insert("can_change", &can_change);
    context.insert("can_buy", &can_buy);
    context.insert("buy_key", &new_idempotency_key());
    let html = Html(state.templates.render("item.html", &context)?);
    Ok(tag.label(html.into_response(), CacheControl::PerBrowser))
}

/// `GET /items/{id}/edit`: the form, filled in with the item (for who may change it).
pub async fn edit_item_form(
    State(state): State<AppState>,
    Editable(permit, _): Editable<SignedIn>,
    Extension(frame): Extension<Frame>,
) -> Result<Html<String>, AppError> {
    let item = permit.subject();
    FormPage::edit(item).render(&state, &frame, &input_of(item), &FieldErrors::new())
}

/// The edit form's fields for `item` as it is.
fn input_of(item: &Item) -> ItemInput {
    ItemInput {
        name: Some(item.name.clone()),
        quantity: Some(item.quantity.to_string()),
        description: Some(item.description.clone()),
        price: PriceInput::of(item),
    }
}

/// `POST /items/{id}`: save the edit and show the item, or the form again with messages.
/// An edit made from an older version of the item (sold meanwhile, or edited elsewhere)
/// saves nothing: 409 and the form again, filled in with the item as it is now.
pub async fn update_item(
    State(state): State<AppState>,
    Editable(permit, _): Editable<SignedIn>,
    Extension(frame): Extension<Frame>,
    CheckedForm(mut form): CheckedForm<ItemForm>,
) -> Result<Response, AppError> {
    let version = form
        .version
        .take()
        .and_then(|v| v.trim().parse::<i64>().ok());
    let input = form.input();
    match input.validate(state.currency) {
        Ok(item) => match state.store.update_item(&permit, &item, version).await? {
            Updated::Saved(item) => {
                audit_item("item_updated", permit.by(), item.id);
                Ok(Redirect::to(&format!("/items/{}", item.id)).into_response())
            }
            Updated::Stale(now) => {
                let mut page = FormPage::edit(&now);
                page.conflict = Some(format!(
                    "This item changed while you edited it (a sale, or an edit elsewhere): it now has {} in stock. Nothing was saved; the form shows it as it is now, so make your change again.",
                    now.quantity
                ));
                let html = page.render(&state, &frame, &input_of(&now), &FieldErrors::new())?;
                Ok((StatusCode::CONFLICT, html).into_response())
            }
            Updated::Gone => Err(AppError::NotFound("item")),
        },
        Err(errors) => {
            let mut page = FormPage::edit(permit.subject());
            page.version = version;
            invalid_form(&state, &frame, page, &input, &errors)
        }
    }
}

/// `GET /items/{id}/delete`: asks to confirm (for who may delete it); its form posts
/// below.
pub async fn delete_item_form(
    State(state): State<AppState>,
    Editable(permit, _): Editable<SignedIn>,
    Extension(frame): Extension<Frame>,
) -> Result<Html<String>, AppError> {
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    context.insert("item", &ItemView::of(permit.subject(), state.currency));
    Ok(Html(state.templates.render("delete.html", &context)?))
}

/// `POST /items/{id}/delete`: delete and go back to the list.
pub async fn delete_item(
    State(state): State<AppState>,
    Editable(permit, _): Editable<SignedIn>,
    CheckedForm(_): CheckedForm<DeleteForm>,
) -> Result<Redirect, AppError> {
    match state.store.delete_item(&permit).await? {
        Deleted::Deleted => {
            audit_item("item_deleted", permit.by(), permit.subject().id);
            Ok(Redirect::to("/items"))
        }
        Deleted::Gone => Err(AppError::NotFound("item")),
        Deleted::HasPlacedOrders(n) => Err(super::api::has_placed_orders(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_urls_keep_the_query_and_encode_it() {
        let query = ListQuery::parse(crate::items::ListParams {
            page: Some("2"),
            per_page: Some("10"),
            q: Some("a&b c"),
            ..Default::default()
        })
        .unwrap();
        let cursor = Cursor {
            date_added: chrono::DateTime::from_timestamp_micros(1_000_000).unwrap(),
            id: ItemId(7),
        };
        assert_eq!(
            page_url(&query, 3, Some(("after", cursor))),
            "/items?q=a%26b+c&per_page=10&after=1000000.7&page=3"
        );
        assert_eq!(page_url(&ListQuery::default(), 1, None), "/items");
    }
}
