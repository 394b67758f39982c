//! The HTTP/1.1 server loop: accept on a listener (bound here or passed in by systemd),
//! serve each connection with hyper, and on shutdown stop accepting, let in-flight
//! requests finish within a bound, and close idle keep-alive connections cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::Instrument;

/// How long a connection accepted just before shutdown may take to send its first
/// request. Without it, a request already on its way would be cut off with no answer.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// How often the accept loop shows it turns, even with no connection to accept (well
/// within the watchdog's half interval).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// When the accept loop last turned: the watchdog's proof that it is not wedged.
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    last_ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    fn beat(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long ago the accept loop last turned.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// When the last request ended and how many are in flight, for `idle_exit_after`.
#[derive(Debug)]
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    /// A request begins; it ends when the returned guard is dropped (also when the
    /// client goes away mid-request).
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    fn idle(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::SeqCst));
        self.since.elapsed().saturating_sub(last)
    }

    /// Completes once no request has been seen for `after`; never when `after` is `None`.
    async fn idle_for(&self, after: Option<Duration>) {
        let Some(after) = after else {
            return std::future::pending().await;
        };
        loop {
            let idle = self.idle();
            if idle >= after {
                tracing::info!(
                    idle_secs = idle.as_secs(),
                    "no requests for a while: exiting until the next connection"
                );
                return;
            }
            tokio::time::sleep((after - idle).max(Duration::from_millis(100))).await;
        }
    }
}

/// One request in flight, counted in `Activity` until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.since.elapsed().as_millis() as u64;
        activity.last_ms.store(now, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How connections are kept and ended.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionPolicy {
    /// How long a connection may wait for a request's headers (idle keep-alive included).
    pub keepalive_idle: Duration,
    /// How long in-flight requests get after shutdown begins.
    pub shutdown_timeout: Duration,
    /// Stop serving after this long without a request (socket activation only).
    pub idle_exit: Option<Duration>,
}

/// Serve `app` on `listener` until `shutdown` completes (or no request came for
/// `policy.idle_exit`), then drain.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    policy: ConnectionPolicy,
    shutdown: impl Future<Output = ()>,
    heartbeat: Arc<Heartbeat>,
) {
    let mut beats = tokio::time::interval(HEARTBEAT_EVERY);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(policy.keepalive_idle)
        .keep_alive(true);
    let (stopping, stop_signal) = watch::channel(false);
    let mut connections = JoinSet::new();
    let activity = Arc::new(Activity::default());
    let idle = activity.idle_for(policy.idle_exit);
    tokio::pin!(shutdown, idle);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: keep going.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = beats.tick() => {
                heartbeat.beat();
                continue;
            }
            () = &mut shutdown => break,
            () = &mut idle => break,
        };
        let connection = serve_connection(
            stream,
            peer,
            app.clone(),
            http.clone(),
            stop_signal.clone(),
            Arc::clone(&activity),
        );
        connections.spawn(connection.in_current_span());
    }
    // Connections still in the listening socket's backlog are not lost: under systemd the
    // socket stays open and the next process accepts them.
    drop(listener);
    crate::systemd::stopping("stopping: finishing requests in flight");
    tracing::info!(
        open_connections = connections.len(),
        "shutting down: no new connections, finishing requests"
    );
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(policy.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    });
    match drained.await {
        Ok(()) => tracing::info!("all connections finished"),
        Err(_) => {
            tracing::warn!(
                timeout_secs = policy.shutdown_timeout.as_secs(),
                remaining = connections.len(),
                "shutdown timeout reached; closing the remaining connections"
            );
            connections.abort_all();
        }
    }
}

/// One connection, from accept to close. When shutdown begins: a request in flight
/// finishes (then the connection closes); a connection that has not sent its first request
/// yet gets `FIRST_REQUEST_GRACE` to do so; an idle kept-alive connection closes at once.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    http: http1::Builder,
    mut stopping: watch::Receiver<bool>,
    activity: Arc<Activity>,
) {
    let _ = stream.set_nodelay(true);
    let (seen_request, mut first_request) = watch::channel(false);
    let draining = stopping.clone();
    let service = tower::service_fn(move |mut request: Request<Incoming>| {
        seen_request.send_replace(true);
        request.extensions_mut().insert(ConnectInfo(peer));
        let (app, draining) = (app.clone(), draining.clone());
        let in_flight = activity.begin();
        async move {
            let mut response = app.oneshot(request).await?;
            drop(in_flight);
            // Tell the client (nginx) not to reuse this connection: it closes after this.
            if *draining.borrow() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => Some(outcome),
        _ = stopping.wait_for(|stop| *stop) => None,
    };
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => {
            if !*first_request.borrow() {
                let first =
                    tokio::time::timeout(FIRST_REQUEST_GRACE, first_request.wait_for(|seen| *seen));
                tokio::select! {
                    outcome = connection.as_mut() => return log_end(outcome),
                    _ = first => {}
                }
            }
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    log_end(outcome);
}

fn log_end(outcome: Result<(), hyper::Error>) {
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested ({name})");
}
