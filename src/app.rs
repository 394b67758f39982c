//! What each command does: `serve` (wait for the database, migrate, listen, serve until
//! a signal), `migrate`, and `check` (a diagnosis a person can act on).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::config::{redact_url, Settings};
use crate::db::{Store, StoreError};
use crate::server::{self, ConnectionPolicy};
use crate::web::{self, AppState, CsrfKey, Limits};

/// `shop serve`.
pub async fn serve(mut settings: Settings) -> anyhow::Result<()> {
    let address = settings.listen_addr();
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (server.listen)"))?;
    let local = listener.local_addr()?;
    if settings.instance.is_empty() {
        settings.instance = local.port().to_string();
    }
    let span = tracing::info_span!("shop", instance = %settings.instance);
    run_server(settings, listener).instrument(span).await
}

async fn run_server(settings: Settings, listener: TcpListener) -> anyhow::Result<()> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        database = %redact_url(settings.database.url.expose()),
        "starting shop"
    );
    let store = connect_and_migrate(&settings).await?;
    let csrf = csrf_key(&settings);
    let state =
        AppState::new(store.clone(), csrf, &settings.instance).context("loading templates")?;
    let app = web::router(
        state,
        Limits {
            body_bytes: settings.server.body_limit_bytes,
            request_timeout: settings.server.request_timeout(),
        },
    );
    tracing::info!("shop is serving at http://{}/", listener.local_addr()?);
    let policy = ConnectionPolicy {
        keepalive_idle: settings.server.keepalive_idle(),
        shutdown_timeout: settings.server.shutdown_timeout(),
    };
    server::serve(listener, app, policy, server::shutdown_signal()).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Connect and (unless configured not to) migrate, retrying while the database is
/// unreachable for up to `database.startup_wait_secs`. Any other failure is final.
async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<Store> {
    let deadline = Instant::now() + Duration::from_secs(settings.database.startup_wait_secs);
    let mut delay = Duration::from_millis(200);
    loop {
        match try_connect_and_migrate(settings).await {
            Ok(store) => return Ok(store),
            Err(StoreError::Unavailable(e)) if Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "database {} (database.url)",
                        redact_url(settings.database.url.expose())
                    )
                })
            }
        }
    }
}

async fn try_connect_and_migrate(settings: &Settings) -> Result<Store, StoreError> {
    let store = Store::connect(&settings.database).await?;
    if settings.database.migrate_on_start {
        store.migrate().await?;
    } else {
        let state = store.migration_state().await?;
        if !state.is_current() {
            tracing::warn!(
                pending = state.pending.len(),
                "migrations are pending and database.migrate_on_start is false: /readyz will answer 503 until `shop migrate` runs"
            );
        }
    }
    Ok(store)
}

fn csrf_key(settings: &Settings) -> CsrfKey {
    let secret = settings.security.secret.expose();
    if secret.is_empty() {
        tracing::warn!(
            "security.secret is not set: using a random one, so forms are accepted only by this process"
        );
        CsrfKey::random()
    } else {
        CsrfKey::new(secret.as_bytes())
    }
}

/// `shop migrate`.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database).await.with_context(|| {
        format!(
            "cannot connect to {}",
            redact_url(settings.database.url.expose())
        )
    })?;
    let before = store.migration_state().await?;
    store.migrate().await.context("applying migrations")?;
    println!(
        "applied {} migration(s); the database is up to date ({} in all)",
        before.pending.len(),
        before.applied.len() + before.pending.len()
    );
    store.close().await;
    Ok(())
}

/// `shop check`: print what is configured and whether it works. Returns whether all is well.
pub async fn check(settings: Settings, file: Option<PathBuf>) -> bool {
    let mut ok = true;
    println!("config file:     {}", describe_file(file.as_deref()));
    println!(
        "instance:        {}",
        if settings.instance.is_empty() {
            "(none)"
        } else {
            &settings.instance
        }
    );
    println!(
        "listen:          {} (unless systemd passes a socket)",
        settings.server.listen
    );
    println!(
        "database:        {}",
        redact_url(settings.database.url.expose())
    );
    match Store::connect(&settings.database).await {
        Err(e) => {
            ok = false;
            println!("  reachable:     NO — {e}");
            println!("  fix:           start the database or correct database.url");
        }
        Ok(store) => {
            let version = store
                .server_version()
                .await
                .unwrap_or_else(|e| format!("version unknown: {e}"));
            println!("  reachable:     yes — {version}");
            ok &= report_migrations(&store, settings.database.migrate_on_start).await;
            store.close().await;
        }
    }
    if settings.security.secret.expose().is_empty() {
        println!("security.secret: NOT SET — each process makes its own, so a form rendered by one instance");
        println!("                 is refused by another; set the same secret for all instances");
    } else {
        println!("security.secret: set");
    }
    println!(
        "result:          {}",
        if ok { "OK" } else { "PROBLEMS FOUND" }
    );
    ok
}

async fn report_migrations(store: &Store, migrate_on_start: bool) -> bool {
    match store.migration_state().await {
        Err(e) => {
            println!("  migrations:    cannot read — {e}");
            false
        }
        Ok(state) if !state.unknown.is_empty() => {
            println!(
                "  migrations:    the database has migrations this binary does not know ({:?}): a newer shop ran here",
                state.unknown
            );
            false
        }
        Ok(state) if state.is_current() => {
            println!(
                "  migrations:    {} applied, up to date",
                state.applied.len()
            );
            true
        }
        Ok(state) => {
            let names: Vec<String> = state
                .pending
                .iter()
                .map(|(v, d)| format!("{v} {d}"))
                .collect();
            println!(
                "  migrations:    {} pending: {}",
                state.pending.len(),
                names.join(", ")
            );
            if migrate_on_start {
                println!(
                    "                 (`shop serve` applies them at start; or run `shop migrate`)"
                );
                true
            } else {
                println!(
                    "  fix:           run `shop migrate` (database.migrate_on_start is false)"
                );
                false
            }
        }
    }
}

fn describe_file(file: Option<&Path>) -> String {
    match file {
        Some(path) => path.display().to_string(),
        None => "none (built-in defaults and SHOP_* variables)".to_owned(),
    }
}
