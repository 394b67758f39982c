//! Prometheus metrics: the recorder this process installs, what the web layer records for
//! each request (by route template and status class, with a latency histogram and the
//! requests in flight), and `GET /metrics`, which adds the database pool, the database's
//! availability and the build, and renders it all in Prometheus's text format. Items
//! created are counted where they are created (the store).

use std::time::Duration;

use ::metrics::{counter, gauge, histogram};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

const REQUESTS: &str = "shop_http_requests_total";
const DURATION: &str = "shop_http_request_duration_seconds";
const IN_FLIGHT: &str = "shop_http_requests_in_flight";

/// Latency buckets (seconds): from a cached page to the request timeout.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes: every
/// request leaves 8 bytes until then (at 80,000 requests/s, 640 KB a second).
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// This process's metrics.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Install the process-wide recorder (once per process) and describe the metrics.
    pub fn install(instance: &str) -> Result<Metrics, String> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), BUCKETS)
            .map_err(|e| e.to_string())?
            .install_recorder()
            .map_err(|e| e.to_string())?;
        describe();
        gauge!(
            "shop_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "shop_instance" => instance.to_owned()
        )
        .set(1.0);
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(UPKEEP_EVERY);
            loop {
                ticks.tick().await;
                upkeep.run_upkeep();
            }
        });
        Ok(Metrics { handle })
    }
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route template and status class"
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by route template"
    );
    describe_gauge!(IN_FLIGHT, "HTTP requests being answered now");
    describe_gauge!(
        "shop_db_pool_connections",
        "Open database connections in the pool"
    );
    describe_gauge!(
        "shop_db_pool_idle_connections",
        "Idle database connections in the pool"
    );
    describe_gauge!(
        "shop_db_up",
        "1 while the database answers, 0 while it is unreachable"
    );
    describe_gauge!(
        "shop_auth_changes_heard",
        "PostgreSQL: 1 while this instance hears session and token changes (and may remember them), 0 while every lookup reads the database"
    );
    describe_gauge!(
        "shop_auth_remembered",
        "PostgreSQL: sessions and API tokens remembered between requests, by kind"
    );
    describe_counter!(
        "shop_items_created_total",
        "Items stored (idempotent replays not counted)"
    );
    describe_gauge!(
        "shop_build_info",
        "The version and instance name of this process"
    );
}

/// A request is being answered.
pub fn request_started() {
    gauge!(IN_FLIGHT).increment(1.0);
}

/// A request was answered: `route` is its template (`/items/{id}`), never the raw path.
pub fn request_finished(route: &str, status: u16, elapsed: Duration) {
    gauge!(IN_FLIGHT).decrement(1.0);
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(REQUESTS, "route" => route.to_owned(), "status_class" => class).increment(1);
    histogram!(DURATION, "route" => route.to_owned()).record(elapsed.as_secs_f64());
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let (size, idle) = state.store.pool_stats();
    gauge!("shop_db_pool_connections").set(f64::from(size));
    gauge!("shop_db_pool_idle_connections").set(idle as f64);
    let up = if state.store.db_state().is_up() {
        1.0
    } else {
        0.0
    };
    gauge!("shop_db_up").set(up);
    if let Some((heard, sessions, tokens)) = state.store.auth_cache_stats() {
        gauge!("shop_auth_changes_heard").set(if heard { 1.0 } else { 0.0 });
        gauge!("shop_auth_remembered", "kind" => "session").set(sessions as f64);
        gauge!("shop_auth_remembered", "kind" => "token").set(tokens as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.handle.render(),
    )
}
