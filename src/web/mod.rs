//! The HTTP face of shop: the router, the state every handler shares, and the layers
//! around it. It only speaks HTTP: the rules are the domains' (`items`, `orders`,
//! `accounts`, `access`). Handlers live in `pages` (HTML), `order_pages`, `signin`
//! (sign-up, login, logout), `account` (the account page), `admin` (what only admins
//! do), `api` and `order_api` (JSON), with what both order faces share in `orders`; `auth`
//! says who is asking and `extract` what they ask about (and whether they may change
//! it); `health` answers the probes, `metrics` Prometheus; `cache` makes the validators
//! of conditional GETs and `page_cache` keeps the anonymous list pages; `rows` writes the
//! list's table; `cookies`, `csrf`, `forwarded`,
//! `hash`, `middleware` and `error` are the plumbing.

mod account;
mod admin;
mod api;
mod auth;
mod cache;
mod cookies;
mod csrf;
mod device;
pub mod error;
mod extract;
mod forwarded;
mod hash;
mod health;
mod metrics;
pub mod middleware;
mod order_api;
mod order_pages;
mod orders;
mod page_cache;
mod pages;
mod password_check;
mod rows;
mod signin;
mod templates;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;

pub use csrf::CsrfKey;
pub use forwarded::TrustedProxies;
pub use metrics::Metrics;
use page_cache::PageCache;
use templates::{stylesheet_path, Templates, FAVICON, FAVICON_PATH, STYLESHEET};

use crate::accounts::password::Hasher;
use crate::config::AccountSettings;
use crate::db::Store;
use crate::money::Currency;

/// What every handler can reach. Cheap to clone (axum clones it for every layer and
/// handler a request passes: one reference count, not one for each part).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What `AppState` shares.
#[derive(Clone)]
pub struct Shared {
    pub store: Store,
    templates: Arc<Templates>,
    csrf: Arc<CsrfKey>,
    proxies: TrustedProxies,
    instance_header: HeaderValue,
    metrics: Metrics,
    hasher: Hasher,
    accounts: Arc<AccountSettings>,
    currency: Currency,
    pages: Arc<PageCache>,
}

impl AppState {
    pub fn new(
        store: Store,
        csrf: CsrfKey,
        proxies: TrustedProxies,
        instance: &str,
        metrics: Metrics,
        accounts: AccountSettings,
        currency: Currency,
    ) -> Result<AppState, tera::Error> {
        Ok(AppState(Arc::new(Shared {
            store,
            templates: Arc::new(Templates::load()?),
            csrf: Arc::new(csrf),
            proxies,
            instance_header: HeaderValue::from_str(instance)
                .unwrap_or(HeaderValue::from_static("")),
            metrics,
            hasher: Hasher::per_core(),
            accounts: Arc::new(accounts),
            currency,
            pages: Arc::new(PageCache::new(0)),
        })))
    }

    /// Keep up to `bytes` of rendered anonymous list pages (`page_cache`).
    pub fn with_page_cache(self, bytes: usize) -> AppState {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.pages = Arc::new(PageCache::new(bytes));
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Limits the layers enforce on every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_bytes: usize,
    pub request_timeout: Duration,
}

/// Every route of shop, with its layers (outermost first: observe, render errors,
/// timeout, body limit: enforced by the extractors, as 413).
pub fn router(state: AppState, limits: Limits) -> Router {
    let pages = Router::new()
        .route("/", get(pages::new_item_form).post(pages::create_item))
        .route("/items", get(pages::list_items))
        .route("/success", get(pages::list_items))
        .route(
            "/items/{id}",
            get(pages::show_item).post(pages::update_item),
        )
        .route("/items/{id}/edit", get(pages::edit_item_form))
        .route(
            "/items/{id}/buy",
            get(order_pages::buy_page).post(order_pages::buy),
        )
        .route("/orders", get(order_pages::my_orders))
        .route("/sales", get(order_pages::my_sales))
        .route("/orders/{id}", get(order_pages::show_order))
        .route("/orders/{id}/cancel", post(order_pages::cancel_order))
        .route("/orders/{id}/hand-over", post(order_pages::hand_over_order))
        .route(
            "/items/{id}/delete",
            get(pages::delete_item_form).post(pages::delete_item),
        )
        .route("/signup", get(signin::signup_form).post(signin::signup))
        .route("/login", get(signin::login_form).post(signin::login))
        .route("/logout", post(signin::logout))
        .route("/account", get(account::account_page))
        .route("/account/password", post(account::change_password))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/revoke", post(account::revoke_token))
        .route(
            "/account/sessions/end-others",
            post(account::end_other_sessions),
        )
        .route("/account/users/disable", post(admin::disable_user))
        // Outermost first: what caches may keep, the CSRF cookie, then the session (which
        // ties tokens to it).
        .layer(from_fn_with_state(state.clone(), auth::resolve_session))
        .layer(from_fn_with_state(state.clone(), csrf::ensure_cookie))
        .layer(axum::middleware::from_fn(cache::page_caching));
    let api = Router::new()
        .route("/api/items", get(api::list).post(api::create))
        .route(
            "/api/items/{id}",
            get(api::show).put(api::update).delete(api::delete),
        )
        .route("/api/orders", get(order_api::list).post(order_api::create))
        .route("/api/orders/{id}", get(order_api::show))
        .route("/api/orders/{id}/cancel", post(order_api::cancel_order))
        .route(
            "/api/orders/{id}/hand-over",
            post(order_api::hand_over_order),
        );
    Router::new()
        .merge(pages)
        .merge(api)
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/static/{file}", get(static_file))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(state.clone(), middleware::observe))
                .layer(from_fn_with_state(state.clone(), error::render_errors))
                .layer(from_fn_with_state(state.clone(), csrf::refuse_cross_site))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    limits.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(limits.body_bytes)),
        )
        .with_state(state)
}

/// The stylesheet, under its content-hashed name only.
async fn static_file(Path(file): Path<String>) -> Response {
    let path = format!("/static/{file}");
    if path == stylesheet_path() {
        let headers = [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ];
        (headers, STYLESHEET).into_response()
    } else if path == FAVICON_PATH {
        let headers = [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ];
        (headers, FAVICON).into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
