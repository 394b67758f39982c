//! Repeat views that cost nothing: the pages' validators (`ETag`s, made from the data a
//! page shows and the build that renders it) and the `304 Not Modified` answer to a
//! conditional GET whose validator still holds, given before anything is rendered.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::hash::Fnv1a;
use super::page_cache::PageKey;
use super::templates;
use crate::db::{Store, StoreResult};
use crate::items::ListQuery;

/// A page's validator: a weak `ETag` (the page may be compressed on its way), the same on
/// every instance for the same data, and different as soon as anything it depends on is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(String);

impl ETag {
    /// The tag of a page made from `parts` (the data's version, the query, the form token
    /// it embeds) by this build of shop (its version, templates and stylesheet).
    pub fn of(parts: &[&[u8]]) -> ETag {
        let mut hash = Fnv1a::new();
        hash.write(&templates::fingerprint().to_le_bytes());
        for part in parts {
            // Length first: ("ab", "c") and ("a", "bc") are different pages.
            hash.write(&(part.len() as u64).to_le_bytes());
            hash.write(part);
        }
        ETag(format!("W/\"{:016x}\"", hash.finish()))
    }

    /// A list's tag: the data's version (read first, so the list read after it is never
    /// older than its tag), which list (`flavour`: the page or the API's JSON) and its query.
    pub async fn of_list(store: &Store, flavour: &str, query: &ListQuery) -> StoreResult<ETag> {
        Ok(ETag::of_list_keyed(store, flavour, query).await?.0)
    }

    /// `of_list`, and the same parts in full: the key the page is kept by once rendered.
    pub async fn of_list_keyed(
        store: &Store,
        flavour: &str,
        query: &ListQuery,
    ) -> StoreResult<(ETag, PageKey)> {
        let version = store.data_version().await?;
        let query = format!("{query:?}");
        let tag = ETag::of(&[flavour.as_bytes(), version.as_bytes(), query.as_bytes()]);
        Ok((tag, PageKey::new(flavour, &version, &query)))
    }

    /// The 304 for a request whose `If-None-Match` names this tag; `None`: send the page.
    pub fn answer(&self, request: &HeaderMap, cache: CacheControl) -> Option<Response> {
        self.matches(request).then(|| self.not_modified(cache))
    }

    /// Whether the request's `If-None-Match` names this tag (or `*`): weak comparison.
    pub fn matches(&self, request: &HeaderMap) -> bool {
        let ours = opaque(&self.0);
        request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || opaque(tag) == ours)
    }

    /// The answer to a conditional GET that still holds: no body.
    pub fn not_modified(&self, cache: CacheControl) -> Response {
        self.label(StatusCode::NOT_MODIFIED.into_response(), cache)
    }

    /// `response` (a 200 page), labelled with this tag.
    pub fn label(&self, mut response: Response, cache: CacheControl) -> Response {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&self.0) {
            headers.insert(header::ETAG, value);
        }
        let (control, vary) = match cache {
            CacheControl::Shared => ("no-cache", None),
            CacheControl::PerBrowser => ("private, no-cache", Some("Cookie")),
        };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(control));
        if let Some(vary) = vary {
            headers.append(header::VARY, HeaderValue::from_static(vary));
        }
        response
    }
}

/// Page-router layer: what a cache may keep of a page. Every page depends on the
/// browser's cookies (who is signed in, the form token), so every one says `Vary:
/// Cookie`; one that hands out a cookie is the browser's alone (`private`); and one that
/// shows or takes account data (`/login`, `/signup`, `/account…`, and the item forms,
/// which only a signed-in seller sees) is kept by nobody (`no-store`).
pub async fn page_caching(request: Request, next: Next) -> Response {
    let no_store = holds_account_data(request.uri().path());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if no_store {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else if headers.contains_key(header::SET_COOKIE) {
        let shared = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map_or(true, |v| !v.contains("private") && !v.contains("no-store"));
        if shared {
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            );
        }
    }
    let varies = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("cookie"));
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("Cookie"));
    }
    response
}

/// The pages that show or take account data (orders are too: who bought what): no cache
/// keeps them.
fn holds_account_data(path: &str) -> bool {
    let item_form = path
        .strip_prefix("/items/")
        .is_some_and(|rest| rest.ends_with("/edit") || rest.ends_with("/delete"));
    matches!(path, "/" | "/login" | "/signup" | "/logout")
        || path == "/account"
        || path.starts_with("/account/")
        || path == "/orders"
        || path.starts_with("/orders/")
        || path == "/sales"
        || item_form
}

/// Who may keep a copy of a page. Either way it is checked with the server before each
/// use (`no-cache`): that check is the cheap conditional GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheControl {
    /// The same for every visitor (the list).
    Shared,
    /// Embeds the browser's form token (an item's page, with its delete button).
    PerBrowser,
}

/// A tag without its weakness prefix: what weak comparison compares.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(if_none_match: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(if_none_match).unwrap(),
        );
        headers
    }

    #[test]
    fn tags_depend_on_every_part_and_its_boundaries() {
        let tag = ETag::of(&[b"ab", b"c"]);
        assert_eq!(tag, ETag::of(&[b"ab", b"c"]));
        assert_ne!(tag, ETag::of(&[b"a", b"bc"]));
        assert_ne!(tag, ETag::of(&[b"ab", b"d"]));
        assert!(tag.0.starts_with("W/\""), "{}", tag.0);
    }

    #[test]
    fn if_none_match_is_compared_weakly_in_lists() {
        let tag = ETag::of(&[b"page"]);
        let strong = tag.0.trim_start_matches("W/").to_owned();
        assert!(tag.matches(&request(&tag.0)));
        assert!(tag.matches(&request(&strong)));
        assert!(tag.matches(&request(&format!("\"other\", {}", tag.0))));
        assert!(tag.matches(&request("*")));
        assert!(!tag.matches(&request("W/\"other\"")));
        assert!(!tag.matches(&HeaderMap::new()));
    }

    #[test]
    fn account_pages_and_forms_are_never_stored() {
        for path in [
            "/",
            "/login",
            "/signup",
            "/account",
            "/account/tokens",
            "/items/3/edit",
            "/items/3/delete",
            "/orders",
            "/orders/7",
            "/sales",
        ] {
            assert!(holds_account_data(path), "{path}");
        }
        for path in [
            "/items",
            "/items/3",
            "/success",
            "/accounting",
            "/salesroom",
        ] {
            assert!(!holds_account_data(path), "{path}");
        }
    }

    #[test]
    fn not_modified_has_no_body_and_keeps_the_headers() {
        let tag = ETag::of(&[b"page"]);
        let response = tag.not_modified(CacheControl::PerBrowser);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], tag.0.as_str());
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "private, no-cache"
        );
        assert_eq!(response.headers()[header::VARY], "Cookie");
    }
}
