//! The web layer's one error type, and the middleware that turns every error response —
//! ours, an extractor's, the body limit's or the timeout's — into a page (or JSON for the
//! API) that says what happened and carries the request id.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::middleware::RequestId;
use super::templates::Frame;
use super::AppState;
use crate::access::Refusal;
use crate::db::StoreError;
use crate::items::FieldErrors;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The API needs to know who writes (401, `WWW-Authenticate: Bearer`).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// A page needs somebody signed in: go to the login page, then come back to this path.
    #[error("sign-in required for {0}")]
    SignInRequired(String),
    /// Too many failed logins for the account or from the address: wait this many seconds.
    #[error("too many failed logins")]
    TooManyAttempts(u64),
    /// Every password-hashing slot is busy (a storm of logins): try again shortly.
    #[error("password hashing is busy")]
    Busy,
    #[error("invalid input")]
    Invalid(FieldErrors),
    /// An extractor could not read the request (wrong content type, bad syntax, too large).
    #[error("rejected ({0}): {1}")]
    Rejected(StatusCode, String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or a broken dependency (500): the person sees a request id, the journal the
    /// whole chain of causes.
    #[error("internal error: {0:#}")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => AppError::Unavailable(e.to_string()),
            StoreError::KeyTaken => AppError::Rejected(
                StatusCode::CONFLICT,
                "This idempotency key was already used for another seller's item: send a new key."
                    .to_owned(),
            ),
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Forbidden(why) => AppError::Forbidden(why),
            Refusal::Hidden(what) => AppError::NotFound(what),
        }
    }
}

impl From<crate::accounts::password::Busy> for AppError {
    fn from(_: crate::accounts::password::Busy) -> Self {
        AppError::Busy
    }
}

impl From<tera::Error> for AppError {
    fn from(error: tera::Error) -> Self {
        AppError::Internal(anyhow::Error::new(error).context("template"))
    }
}

/// What a 503 asks clients to wait before trying again, in seconds.
const RETRY_AFTER_SECS: &str = "5";

/// What the person is told, attached to an error response for `render_errors` to render.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    pub message: String,
    pub fields: FieldErrors,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message, fields) = match self {
            AppError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                format!("There is no such {what}."),
                BTreeMap::new(),
            ),
            AppError::BadRequest(why) => (StatusCode::BAD_REQUEST, why, BTreeMap::new()),
            AppError::Forbidden(why) => (StatusCode::FORBIDDEN, why.to_owned(), BTreeMap::new()),
            AppError::Unauthorized(why) => {
                let challenge = HeaderValue::from_static("Bearer realm=\"shop\"");
                return report(
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, challenge)],
                    ),
                    why,
                );
            }
            AppError::SignInRequired(next) => {
                let query =
                    serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
                return axum::response::Redirect::to(&format!("/login?{query}")).into_response();
            }
            AppError::TooManyAttempts(seconds) => {
                let retry = HeaderValue::from(seconds.max(1));
                let minutes = seconds.div_ceil(60).max(1);
                return report(
                    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry)]),
                    &format!("Too many failed sign-ins for this account or from your address. Try again in {minutes} minute(s)."),
                );
            }
            AppError::Busy => {
                return report(
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                    ),
                    "Too many people are signing in at this moment. Please try again in a second.",
                );
            }
            AppError::Invalid(fields) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Some fields are not valid.".to_owned(),
                fields,
            ),
            // The extractor's words for an oversized body are technical; ours are not.
            AppError::Rejected(StatusCode::PAYLOAD_TOO_LARGE, _) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                default_message(StatusCode::PAYLOAD_TOO_LARGE).to_owned(),
                BTreeMap::new(),
            ),
            AppError::Rejected(status, why) => (status, why, BTreeMap::new()),
            AppError::Unavailable(detail) => {
                // The outage itself is logged once, when the store loses the database.
                tracing::debug!(error = %detail, "database unavailable");
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(
                        header::RETRY_AFTER,
                        HeaderValue::from_static(RETRY_AFTER_SECS),
                    )],
                )
                    .into_response();
                response.extensions_mut().insert(ErrorReport {
                    message: default_message(StatusCode::SERVICE_UNAVAILABLE).to_owned(),
                    fields: BTreeMap::new(),
                });
                return response;
            }
            AppError::Internal(detail) => {
                tracing::error!(error = format!("{detail:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    default_message(StatusCode::INTERNAL_SERVER_ERROR).to_owned(),
                    BTreeMap::new(),
                )
            }
        };
        let mut response = status.into_response();
        response
            .extensions_mut()
            .insert(ErrorReport { message, fields });
        response
    }
}

/// A response of `parts` that `render_errors` renders with `message`.
fn report(parts: impl IntoResponse, message: &str) -> Response {
    let mut response = parts.into_response();
    response.extensions_mut().insert(ErrorReport {
        message: message.to_owned(),
        fields: BTreeMap::new(),
    });
    response
}

/// The message for an error response that came with none of ours.
fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be understood.",
        401 => "Please sign in first.",
        403 => "You are not allowed to do that.",
        404 => "There is no page at this address.",
        405 => "This page does not accept that kind of request.",
        408 => "The request took too long to arrive.",
        429 => "Too many requests; please wait a moment and try again.",
        413 => "What you sent is too large for this shop (item forms are far smaller).",
        415 => "What you sent is not in a form this page accepts.",
        422 => "What you sent could not be read.",
        503 => "The shop cannot reach its database right now. Please try again in a moment.",
        500..=599 => "Something went wrong on our side. It has been logged.",
        _ => "The request could not be completed.",
    }
}

/// Render every error response that does not already carry a page or JSON of ours.
pub async fn render_errors(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let wants_json = request.uri().path().starts_with("/api/");
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_default();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let report = match response.extensions().get::<ErrorReport>() {
        Some(report) => report.clone(),
        None if has_own_body(&response) => return response,
        None => ErrorReport {
            message: default_message(status).to_owned(),
            fields: BTreeMap::new(),
        },
    };
    let frame = response
        .extensions()
        .get::<Frame>()
        .cloned()
        .unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = if wants_json {
        Json(json!({
            "error": report.message,
            "fields": report.fields,
            "request_id": request_id.0,
        }))
        .into_response()
    } else {
        error_page(&state, status, &report, &request_id, &frame)
    };
    // A signed-in visitor's error page names them and carries their form token: theirs
    // alone (an error status may be kept by a cache that is not told otherwise).
    if frame.username.is_some() && !parts.headers.contains_key(header::CACHE_CONTROL) {
        parts.headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
    }
    let (body_parts, body) = body.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        body_parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("text/plain")),
    );
    Response::from_parts(parts, body)
}

/// A handler's own 4xx page (a form re-rendered with its errors) is left as it is.
fn has_own_body(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html") || ct.starts_with("application/json"))
}

fn error_page(
    state: &AppState,
    status: StatusCode,
    report: &ErrorReport,
    request_id: &RequestId,
    frame: &Frame,
) -> Response {
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    context.insert("status", &status.as_u16());
    context.insert("reason", status.canonical_reason().unwrap_or("Error"));
    context.insert("message", &report.message);
    context.insert("request_id", &request_id.0);
    match state.templates.render("error.html", &context) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the error page");
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\nrequest id: {}\n", report.message, request_id.0),
            )
                .into_response()
        }
    }
}
