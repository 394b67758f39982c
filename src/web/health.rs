//! The probes: `/healthz` (the process answers) and `/readyz` (the database answers and
//! its schema is the one this binary expects), for systemd checks, Ansible and people.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;

/// `GET /healthz`: no database involved.
pub async fn live() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when the database is reachable and migrated, 503 with the reason
/// otherwise (at once, without touching the pool, while the database is known to be down).
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": reason })),
        )
    };
    let db = state.store.db_state();
    if !db.is_up() {
        return not_ready(format!("database {}", db.describe()));
    }
    match state.store.migration_state().await {
        Err(e) => not_ready(format!("database unreachable: {e}")),
        Ok(migrations) if !migrations.is_current() => not_ready(format!(
            "{} migration(s) not applied: run `shop migrate`",
            migrations.pending.len()
        )),
        Ok(_) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": state.store.backend().name() })),
        ),
    }
}
