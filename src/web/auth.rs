//! Who is asking, answered once per request. Pages: the session cookie, looked up by the
//! `resolve_session` layer only when the browser sends one (anonymous reads stay on the
//! fast path), giving every handler a `Viewer`. The API: `ApiWriter` — an API token
//! (`Authorization: Bearer`), or a session cookie with the form token in `X-CSRF-Token`.
//! Sessions: the cookie carries a random id, the database its SHA-256; idle and absolute
//! lifetimes; a disabled user's sessions and tokens are refused at once.

use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::cookies;
use super::csrf::{self, CsrfCookie};
use super::error::AppError;
use super::templates::{FormToken, Frame};
use super::AppState;
use crate::accounts::secrets::{self, SessionHash};
use crate::accounts::User;
use crate::db::SessionRecord;
use crate::ids::ItemId;

/// A session's last visit is written at most this often (not on every request).
const TOUCH_EVERY: Duration = Duration::from_secs(300);
/// A token's last use is recorded at most this often.
const TOKEN_TOUCH_EVERY: Duration = Duration::from_secs(3600);

/// A signed-in user and the session they came with.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    /// What the database knows the session by.
    pub session: SessionHash,
}

/// Who is looking at a page: somebody signed in, or nobody. Every page handler gets one.
#[derive(Debug, Clone, Default)]
pub struct Viewer(pub Option<SignedIn>);

impl Viewer {
    pub fn user(&self) -> Option<&User> {
        self.0.as_ref().map(|s| &s.user)
    }
}

/// The session behind `id`, if it is alive and its user is not disabled; a session past
/// either lifetime is deleted on the spot.
async fn live_session(state: &AppState, id: &str) -> Result<Option<SignedIn>, AppError> {
    let hash = SessionHash::of(id);
    let Some(mut record) = state.store.session(&hash).await? else {
        return Ok(None);
    };
    let mut idle = idle_for(state, &record);
    if idle.is_none() {
        // A remembered last visit may be behind another instance's: ask the database.
        match state.store.stored_session(&hash).await? {
            Some(stored) => record = stored,
            None => return Ok(None),
        }
        idle = idle_for(state, &record);
    }
    let Some(idle) = idle else {
        state.store.delete_session(&hash).await?;
        return Ok(None);
    };
    if record.user.disabled {
        return Ok(None);
    }
    if idle > TOUCH_EVERY {
        state.store.touch_session(&hash).await?;
    }
    Ok(Some(SignedIn {
        user: record.user,
        session: hash,
    }))
}

/// How long the session has been idle, or `None` once it is past either lifetime.
fn idle_for(state: &AppState, record: &SessionRecord) -> Option<Duration> {
    let now = Utc::now();
    let since =
        |at: chrono::DateTime<Utc>| now.signed_duration_since(at).to_std().unwrap_or_default();
    let idle = since(record.last_seen_at);
    let alive = idle <= state.accounts.session_idle()
        && since(record.created_at) <= state.accounts.session_max();
    alive.then_some(idle)
}

/// Page-router layer (inside the CSRF cookie's): find the session the browser's cookie
/// names, tie the form token to it, and hand the handlers a `Viewer`. A cookie that names
/// no live session is cleared.
pub async fn resolve_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let https = state.proxies.came_over_https(&request);
    let sent = cookies::session_id(request.headers(), https);
    let viewer = match &sent {
        None => Viewer(None),
        Some(id) => match live_session(&state, id).await {
            Ok(found) => Viewer(found),
            Err(e) => return e.into_response(),
        },
    };
    // A seller's header counts the orders waiting for them (a badge: when it cannot be
    // read, the page still shows, without it). Read for the pages a browser asks for, not
    // for its posts: those answer with a redirect (a form shown again with its errors
    // goes without the badge until the next page).
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    let waiting_sales = match viewer.user() {
        Some(user) if reads => state
            .store
            .count_placed_orders_of(user.id)
            .await
            .unwrap_or(0),
        _ => 0,
    };
    let mut frame = Frame {
        username: viewer.user().map(|u| u.username.clone()),
        csrf_token: FormToken::default(),
        waiting_sales,
    };
    if let Some(cookie) = request.extensions_mut().get_mut::<CsrfCookie>() {
        cookie.session = viewer.0.as_ref().map(|s| s.session.clone());
        frame.csrf_token = csrf::form_token(&state, cookie);
    }
    // A cookie that names no live session is cleared.
    let clear_over_https = (sent.is_some() && viewer.0.is_none()).then_some(https);
    request.extensions_mut().insert(viewer.clone());
    request.extensions_mut().insert(frame.clone());
    let mut response = next.run(request).await;
    if response.extensions().get::<Frame>().is_none() {
        response.extensions_mut().insert(frame);
    }
    let handled = response.extensions().get::<SessionChange>().is_some();
    if let (Some(https), false) = (clear_over_https, handled) {
        set_cookie(&mut response, None, https);
    }
    response
}

/// A handler's word to the layer that it set or cleared the session cookie itself.
#[derive(Debug, Clone, Copy)]
pub struct SessionChange;

/// Put the session cookie on `response` (`None`: clear it), and tell the layer so.
pub fn set_cookie(response: &mut Response, id: Option<&str>, https: bool) {
    cookies::set_session(response, id, https);
    response.extensions_mut().insert(SessionChange);
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Viewer, AppError> {
        Ok(parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .unwrap_or_default())
    }
}

/// A page that needs somebody signed in: anonymous visitors are sent to `/login?next=`
/// this page (a GET) or the page they came from (a POST's `Referer`, else `/`).
impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<SignedIn, AppError> {
        match parts.extensions.get::<Viewer>().and_then(|v| v.0.clone()) {
            Some(signed_in) => Ok(signed_in),
            None => {
                let next = if parts.method == axum::http::Method::GET {
                    parts
                        .uri
                        .path_and_query()
                        .map_or("/".to_owned(), |p| p.as_str().to_owned())
                } else {
                    "/".to_owned()
                };
                Err(AppError::SignInRequired(next))
            }
        }
    }
}

/// Who writes through the API: the owner of the API token the request carries, or a
/// signed-in browser that sends its form token in `X-CSRF-Token`. Anybody else: 401.
pub struct ApiWriter(pub User);

impl FromRequestParts<AppState> for ApiWriter {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ApiWriter, AppError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| secrets::is_api_token(t))
                .ok_or(AppError::Unauthorized(
                    "The Authorization header must be \"Bearer shop_…\" with an API token.",
                ))?;
            return token_user(state, token).await.map(ApiWriter);
        }
        let https = state.proxies.https(&parts.extensions, &parts.headers);
        let Some(id) = cookies::session_id(&parts.headers, https) else {
            return Err(AppError::Unauthorized(
                "Sign in: send an API token as \"Authorization: Bearer shop_…\" (make one on /account).",
            ));
        };
        let signed_in = live_session(state, &id)
            .await?
            .ok_or(AppError::Unauthorized(
                "Your session has ended; sign in again.",
            ))?;
        let refused =
            AppError::Unauthorized("A session cookie needs the form token in X-CSRF-Token.");
        let cookie =
            CsrfCookie::sent(&parts.headers, https, Some(signed_in.session)).ok_or(refused)?;
        let token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        if !csrf::verify(state, &cookie, token) {
            return Err(AppError::Unauthorized(
                "A session cookie needs the form token in X-CSRF-Token.",
            ));
        }
        Ok(ApiWriter(signed_in.user))
    }
}

async fn token_user(state: &AppState, token: &str) -> Result<User, AppError> {
    let hash = secrets::digest(token);
    let record = state
        .store
        .token(&hash)
        .await?
        .filter(|r| !r.user.disabled)
        .ok_or(AppError::Unauthorized(
            "This API token is not valid (revoked, or its user is disabled).",
        ))?;
    if record.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(AppError::Unauthorized(
            "This API token has expired: make a new one on /account.",
        ));
    }
    let stale = record.last_used_at.map_or(true, |at| {
        Utc::now()
            .signed_duration_since(at)
            .to_std()
            .unwrap_or_default()
            > TOKEN_TOUCH_EVERY
    });
    if stale {
        state.store.touch_token(&hash).await?;
    }
    Ok(record.user)
}

/// A change to an item, in the journal: which, by whom (`event`: item_created,
/// item_updated, item_deleted). Recorded on the request's span, so the request's own log line carries
/// it (`EVENT`, `USER`, `ITEM_ID`): one line per request, not two (a second line cost a
/// create 6 % of its rate).
pub fn audit_item(event: &'static str, user: &User, item_id: ItemId) {
    let request = tracing::Span::current();
    request.record("event", event);
    request.record("user", user.username.as_str());
    request.record("item_id", item_id.0);
}

/// A change to an order, in the request's own log line like `audit_item`'s (`event`:
/// order_placed, order_cancelled, order_handed_over).
pub fn audit_order(event: &'static str, user: &User, order: &crate::orders::Order) {
    audit_item(event, user, order.item_id);
    let request = tracing::Span::current();
    request.record("order_id", order.id.0);
    request.record("quantity", order.quantity);
}

/// Who writes: the signed-in page visitor (`SignedIn`) or the API's `ApiWriter`. What
/// `Editable` asks first, so each answers a visitor it does not know in its own way (to
/// the login page, or 401).
pub trait Writer: FromRequestParts<AppState, Rejection = AppError> {
    fn user(&self) -> &User;
}

impl Writer for SignedIn {
    fn user(&self) -> &User {
        &self.user
    }
}

impl Writer for ApiWriter {
    fn user(&self) -> &User {
        &self.0
    }
}

/// An admin, signed in: anybody else gets 403 (anonymous visitors go to log in first).
pub struct Admin(pub SignedIn);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, AppError> {
        let signed_in = SignedIn::from_request_parts(parts, state).await?;
        if !signed_in.user.is_admin {
            return Err(AppError::Forbidden("Only an admin may do this."));
        }
        Ok(Admin(signed_in))
    }
}

/// Where to go after signing in: `next` when it is a path on this site, else `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/items/3/edit")), "/items/3/edit");
        assert_eq!(safe_next(Some("/items?q=a")), "/items?q=a");
        for elsewhere in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(Some(elsewhere)), "/", "{elsewhere}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
