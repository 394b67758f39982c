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
use crate::systemd::{self, Handover};
use crate::web::{self, AppState, CsrfKey, Limits};

/// `shop serve`: on the socket systemd passed, or on `server.listen`.
pub async fn serve(mut settings: Settings, handover: Handover) -> anyhow::Result<()> {
    let socket_activated = handover.listener.is_some();
    let listener = match handover.listener {
        Some(socket) => {
            TcpListener::from_std(socket).context("using the socket passed by systemd")?
        }
        None => {
            let address = settings.listen_addr();
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (server.listen)"))?
        }
    };
    if settings.instance.is_empty() {
        settings.instance = listener.local_addr()?.port().to_string();
    }
    let span = tracing::info_span!("shop", instance = %settings.instance);
    let run = Run {
        settings,
        listener,
        socket_activated,
        watchdog: handover.watchdog,
    };
    run.serve().instrument(span).await
}

/// One `shop serve` process, from its listener to its exit.
struct Run {
    settings: Settings,
    listener: TcpListener,
    socket_activated: bool,
    watchdog: Option<Duration>,
}

impl Run {
    async fn serve(self) -> anyhow::Result<()> {
        let Run {
            settings,
            listener,
            socket_activated,
            watchdog,
        } = self;
        let local = listener.local_addr()?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            database = %redact_url(settings.database.url.expose()),
            socket = if socket_activated { "passed by systemd" } else { "bound by shop" },
            "starting shop"
        );
        systemd::status("waiting for the database");
        let store = connect_and_migrate(&settings).await?;
        let state = AppState::new(store.clone(), csrf_key(&settings), &settings.instance)
            .context("loading templates")?;
        let activity = state.activity();
        let app = web::router(
            state,
            Limits {
                body_bytes: settings.server.body_limit_bytes,
                request_timeout: settings.server.request_timeout(),
            },
        );
        let serving = format!(
            "serving on {local}, database ok ({})",
            store.backend().name()
        );
        tracing::info!("shop is serving at http://{local}/");
        systemd::ready(&serving);
        if let Some(interval) = watchdog {
            tokio::spawn(watchdog_pings(store.clone(), interval, serving).in_current_span());
        }
        let idle_exit = match settings.server.idle_exit_after() {
            Some(after) if socket_activated => Some(after),
            Some(_) => {
                tracing::warn!(
                    "server.idle_exit_after_secs is ignored: it needs a socket passed by systemd"
                );
                None
            }
            None => None,
        };
        let shutdown = async move {
            tokio::select! {
                () = server::shutdown_signal() => {}
                () = activity.idle_for(idle_exit) => {}
            }
            systemd::stopping("stopping: finishing requests in flight");
        };
        let policy = ConnectionPolicy {
            keepalive_idle: settings.server.keepalive_idle(),
            shutdown_timeout: settings.server.shutdown_timeout(),
        };
        server::serve(listener, app, policy, shutdown).await;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Send `WATCHDOG=1` every half interval, but only while the database answers: an
/// instance that cannot reach it (or whose runtime is wedged) is restarted by systemd.
async fn watchdog_pings(store: Store, interval: Duration, serving: String) {
    let period = interval / 2;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        ticks.tick().await;
        let outcome = match tokio::time::timeout(period, store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", period.as_millis())),
        };
        match outcome {
            Ok(()) => {
                systemd::watchdog();
                if !healthy {
                    tracing::info!("database reachable again; watchdog pings resume");
                    systemd::status(&serving);
                }
                healthy = true;
            }
            Err(e) => {
                if healthy {
                    tracing::warn!(error = %e, "database ping failed; withholding watchdog pings");
                    systemd::status(&format!(
                        "database unreachable ({e}); withholding watchdog pings"
                    ));
                }
                healthy = false;
            }
        }
    }
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
                systemd::status(&format!("waiting for the database: {e}"));
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
