//! What each command does: `serve` (wait for the database, migrate, listen, serve until
//! a signal), `migrate`, and `check` (a diagnosis a person can act on).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::config::Settings;
use crate::db::{DbState, Store, StoreError};
use crate::server::{self, ConnectionPolicy, Heartbeat};
use crate::systemd::{self, Handover};
use crate::web::{self, AppState, CsrfKey, Limits, Metrics, TrustedProxies};

/// `shop serve`: on the socket systemd passed, or on `server.listen`.
pub async fn serve(settings: Settings, handover: Handover) -> anyhow::Result<()> {
    let socket_activated = handover.listener.is_some();
    let listener = match handover.listener {
        Some(socket) => {
            TcpListener::from_std(socket).context("using the socket passed by systemd")?
        }
        None => {
            let address = settings.server.listen;
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (server.listen)"))?
        }
    };
    let instance = match &settings.instance {
        Some(name) => name.clone(),
        None => listener.local_addr()?.port().to_string(),
    };
    let span = tracing::info_span!("shop", instance = %instance);
    let run = Run {
        settings,
        instance,
        listener,
        socket_activated,
        watchdog: handover.watchdog,
    };
    run.serve().instrument(span).await
}

/// One `shop serve` process, from its listener to its exit.
struct Run {
    settings: Settings,
    /// The instance's name: `instance`, or the port it listens on.
    instance: String,
    listener: TcpListener,
    socket_activated: bool,
    watchdog: Option<Duration>,
}

impl Run {
    async fn serve(self) -> anyhow::Result<()> {
        let Run {
            settings,
            instance,
            listener,
            socket_activated,
            watchdog,
        } = self;
        let local = listener.local_addr()?;
        let socket = if socket_activated {
            "passed by systemd"
        } else {
            "bound by shop"
        };
        let database = &settings.database.url;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            database = %database,
            socket,
            "starting shop {} on {local} (socket {socket}), database {database}",
            env!("CARGO_PKG_VERSION")
        );
        systemd::status("waiting for the database");
        let store = Store::connect(database, settings.database.pool_size());
        first_contact(&store, &settings).await?;
        let metrics = Metrics::install(&instance)
            .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
        let state = AppState::new(
            store.clone(),
            csrf_key(&settings),
            TrustedProxies::new(&settings.server.trusted_proxies),
            &instance,
            metrics,
            settings.accounts.clone(),
            settings.sales.currency,
        )
        .context("loading templates")?
        .with_page_cache(settings.server.page_cache_bytes());
        let app = web::router(
            state,
            Limits {
                body_bytes: settings.server.body_limit_bytes,
                request_timeout: settings.server.request_timeout(),
            },
        );
        let serving = format!("serving on {local}");
        tracing::info!("shop is serving at http://{local}/");
        systemd::ready(&status_line(&serving, &store));
        tokio::spawn(
            store
                .clone()
                .watch_availability(settings.database.migrate_on_start)
                .in_current_span(),
        );
        tokio::spawn(report_db_state(store.clone(), serving));
        tokio::spawn(expire_sessions(store.clone(), settings.accounts.clone()).in_current_span());
        tokio::spawn(store.clone().listen_for_auth_changes().in_current_span());
        tokio::spawn(return_free_memory());
        let heartbeat = Arc::new(Heartbeat::default());
        if let Some(interval) = watchdog {
            tokio::spawn(watchdog_pings(Arc::clone(&heartbeat), interval).in_current_span());
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
        let policy = ConnectionPolicy {
            keepalive_idle: settings.server.keepalive_idle(),
            shutdown_timeout: settings.server.shutdown_timeout(),
            idle_exit,
        };
        server::serve(listener, app, policy, server::shutdown_signal(), heartbeat).await;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The status line `systemctl status` shows: where it serves and the database's state.
fn status_line(serving: &str, store: &Store) -> String {
    match store.db_state() {
        DbState::Up => format!("{serving}, database ok ({})", store.backend().name()),
        down => format!(
            "{serving}, answering 503: database {} ({})",
            down.describe(),
            store.backend().name()
        ),
    }
}

/// Keep the status line in step with the database's state.
async fn report_db_state(store: Store, serving: String) {
    let mut changes = store.watch_db_state();
    // A change between READY and this task's start must not be missed.
    changes.mark_changed();
    while changes.changed().await.is_ok() {
        systemd::status(&status_line(&serving, &store));
    }
}

/// How often an instance deletes expired sessions and failed logins past their window
/// (every instance does; the deletes are cheap and harmless when another did them first).
const EXPIRE_EVERY: Duration = Duration::from_secs(600);

/// Delete sessions past either lifetime and failed logins older than the window.
async fn expire_sessions(store: Store, accounts: crate::config::AccountSettings) {
    let mut ticks = tokio::time::interval(EXPIRE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = chrono::Utc::now();
        let ago =
            |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let sessions = store
            .delete_expired_sessions(ago(accounts.session_idle()), ago(accounts.session_max()))
            .await;
        let failures = store
            .delete_old_login_failures(ago(accounts.guess_limit().window))
            .await;
        match (sessions, failures) {
            (Ok(0), Ok(_)) => {}
            (Ok(n), Ok(_)) => tracing::info!(sessions = n, "deleted {n} expired session(s)"),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "expired sessions not deleted this time")
            }
        }
    }
}

/// How often an instance hands the memory its allocator holds free back to the system.
const RETURN_FREE_MEMORY_EVERY: Duration = Duration::from_secs(5);

/// Hand back, now and then, what glibc's allocator keeps free: each thread that allocates
/// (the runtime's, the hashing ones, one for each SQLite connection) has an arena of its
/// own, and the free pages in the middle of an arena stay resident until trimmed. After a
/// burst of 1,000-row pages an instance stayed a few MiB larger for good; a trim takes
/// well under a millisecond.
async fn return_free_memory() {
    let mut ticks = tokio::time::interval(RETURN_FREE_MEMORY_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only returns free memory; any thread may call it.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Send `WATCHDOG=1` every half interval while this process is alive: this task got
/// scheduled and the accept loop turned recently. The database plays no part: an outage
/// is answered with 503s, and restarting would not bring the database back.
async fn watchdog_pings(heartbeat: Arc<Heartbeat>, interval: Duration) {
    let period = interval / 2;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let age = heartbeat.age();
        if age < period {
            systemd::watchdog();
        } else {
            tracing::error!(
                stalled_ms = age.as_millis() as u64,
                "the accept loop has not turned for {:.1} s; withholding the watchdog ping",
                age.as_secs_f64()
            );
        }
    }
}

/// Run `work` (reaching the database, migrating it), telling systemd every 10 s that the
/// start goes on: building an index on a big table can outlast `TimeoutStartSec`, and an
/// instance killed mid-build would build it again at every restart.
async fn while_keeping_systemd_waiting<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => systemd::extend_start_timeout(
                Duration::from_secs(30),
                "migrating the database (a big table takes a while)",
            ),
        }
    }
}

/// Reach the database before serving, for at most `database.startup_wait_secs`, and
/// apply pending migrations (unless configured not to). A database that does not answer
/// by then is no reason to wait longer: the instance serves (503 until the database comes,
/// when the availability probe migrates and opens the gate). A database that answers with
/// anything else (a wrong password, no such database, a failed migration) is fatal.
async fn first_contact(store: &Store, settings: &Settings) -> anyhow::Result<()> {
    let migrate = settings.database.migrate_on_start;
    let deadline = Instant::now() + settings.database.startup_wait();
    loop {
        match while_keeping_systemd_waiting(store.reach(migrate)).await {
            Ok(()) => break,
            Err(StoreError::Unavailable(e)) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "database not reachable yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(
                    error = %e,
                    "database not reachable: serving 503 until it answers"
                );
                return Ok(());
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("database {} (database.url)", settings.database.url))
            }
        }
    }
    if !migrate {
        let state = store.migration_state().await?;
        if !state.is_current() {
            tracing::warn!(
                pending = state.pending.len(),
                "migrations are pending and database.migrate_on_start is false: /readyz will answer 503 until `shop migrate` runs"
            );
        }
    }
    Ok(())
}

fn csrf_key(settings: &Settings) -> CsrfKey {
    match &settings.security.secret {
        Some(secret) => CsrfKey::new(secret.expose().as_bytes()),
        None => {
            tracing::warn!(
                "security.secret is not set: using a random one, so forms are accepted only by this process"
            );
            CsrfKey::random()
        }
    }
}

/// The store of `database.url`, reached (not migrated): for the one-shot commands.
pub(crate) async fn reach_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = &settings.database.url;
    let store = Store::connect(url, settings.database.pool_size());
    store
        .reach(false)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(store)
}

/// `shop migrate`.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let store = reach_store(&settings).await?;
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
        settings.instance.as_deref().unwrap_or("(the port)")
    );
    println!(
        "listen:          {} (unless systemd passes a socket)",
        settings.server.listen
    );
    println!("database:        {}", settings.database.url);
    let store = Store::connect(&settings.database.url, settings.database.pool_size());
    let reached = store.reach(false).await.map(|()| store);
    match reached {
        Err(e) => {
            ok = false;
            println!(
                "  reachable:     NO, at {} — {e}",
                chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
            );
            println!("  fix:           start the database or correct database.url;");
            println!("                 `systemctl status 'shop@*'` shows since when the instances miss it");
        }
        Ok(store) => {
            let version = store
                .server_version()
                .await
                .unwrap_or_else(|e| format!("version unknown: {e}"));
            println!("  reachable:     yes — {version}");
            let server = store
                .connected_to()
                .await
                .unwrap_or_else(|e| format!("unknown: {e}"));
            println!("  connected to:  {server}");
            ok &= report_migrations(&store, settings.database.migrate_on_start).await;
            store.close().await;
        }
    }
    if settings.security.secret.is_some() {
        println!("security.secret: set");
    } else {
        println!("security.secret: NOT SET — each process makes its own, so a form rendered by one instance");
        println!("                 is refused by another; set the same secret for all instances");
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
                "  migrations:    schema {}, newer than this shop knows ({:?} from a newer shop): it works on it,",
                state.schema(),
                state.unknown
            );
            println!(
                "                 as migrations only add; see README, \"Backups and rollback\""
            );
            true
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
