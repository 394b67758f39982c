//! Per-request plumbing around every handler: the request id (taken from nginx's
//! `X-Request-Id` or made here), a tracing span carrying it, one log line per request,
//! the `X-Request-Id` / `X-Shop-Instance` response headers, and the security headers every
//! response carries (Content-Security-Policy, `nosniff`, `Referrer-Policy`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;
use tracing::Instrument;

use super::{metrics, AppState};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_SHOP_INSTANCE: HeaderName = HeaderName::from_static("x-shop-instance");

/// What a page may load and do: its one stylesheet and nothing else (no script, no inline
/// style, no frames, no `<base>`); its forms post only to this site; nobody frames it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every response carries, pages and API alike.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// The id that ties a request's log lines to what the person saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// Use the proxy's id when it is a sane token, otherwise make a new one.
    fn from_header(value: Option<&HeaderValue>) -> RequestId {
        let given = value.and_then(|v| v.to_str().ok()).filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        });
        match given {
            Some(id) => RequestId(id.to_owned()),
            None => RequestId(format!("{:016x}", rand::thread_rng().gen::<u64>())),
        }
    }
}

/// Outermost layer: id, span, access log line, metrics and identifying headers.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    metrics::request_started();
    let request_id = RequestId::from_header(request.headers().get(&X_REQUEST_ID));
    request.extensions_mut().insert(request_id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", |m| m.as_str())
        .to_owned();
    // `event`, `user`, `item_id` (and for an order `order_id`, `quantity`) are filled in
    // by a change (`auth::audit_item`, `auth::audit_order`), so that the request's one
    // line is also its record.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id.0,
        method = %method,
        path = %path,
        event = tracing::field::Empty,
        user = tracing::field::Empty,
        item_id = tracing::field::Empty,
        order_id = tracing::field::Empty,
        quantity = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics::request_finished(&route, status, elapsed);
    let latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
    // The message reads on its own in `journalctl` (fields: STATUS, LATENCY_MS, ROUTE, and
    // the span's REQUEST_ID, METHOD, PATH, INSTANCE).
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(
                status,
                latency_ms,
                route,
                "{method} {path} {status} {latency_ms:.1} ms (request {})",
                request_id.0
            );
        } else {
            tracing::info!(
                status,
                latency_ms,
                route,
                "{method} {path} {status} {latency_ms:.1} ms (request {})",
                request_id.0
            );
        }
    });
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
    headers.insert(X_SHOP_INSTANCE.clone(), state.instance_header.clone());
    secure(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_ids_are_kept_only_when_sane() {
        let good = HeaderValue::from_static("abc-123_x.y");
        assert_eq!(RequestId::from_header(Some(&good)).0, "abc-123_x.y");
        let bad = HeaderValue::from_static("a b<script>");
        let made = RequestId::from_header(Some(&bad)).0;
        assert_eq!(made.len(), 16);
        assert_ne!(RequestId::from_header(None).0, made);
    }
}
