//! Everything shop knows about systemd: the listening socket it passes (`LISTEN_FDS`),
//! readiness and status (`NOTIFY_SOCKET`), and the watchdog (`WATCHDOG_USEC`). Without
//! those variables every function here is a no-op and `cargo run` binds as usual.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

use sd_notify::NotifyState;

/// What systemd handed this process, read once at start.
#[derive(Debug, Default)]
pub struct Handover {
    /// The socket from `shop@PORT.socket`, ready for tokio (non-blocking).
    pub listener: Option<TcpListener>,
    /// How often systemd expects a sign of life, if it watches.
    pub watchdog: Option<Duration>,
}

impl Handover {
    /// Read (and clear) the socket-activation variables. Call it before starting any
    /// thread: it changes the environment.
    pub fn take() -> io::Result<Handover> {
        let mut fds = sd_notify::listen_fds()?;
        let listener = match fds.next() {
            Some(fd) => Some(listening_tcp_socket(fd)?),
            None => None,
        };
        let extra = fds.count();
        if extra > 0 {
            return Err(io::Error::other(format!(
                "systemd passed {} sockets; shop uses exactly one (one ListenStream= per shop@.socket)",
                extra + 1
            )));
        }
        Ok(Handover {
            listener,
            watchdog: watchdog_interval(),
        })
    }
}

/// Check that `fd` is a listening TCP socket and take it over, made non-blocking (a
/// blocking one would stall the runtime until the next connection arrives).
fn listening_tcp_socket(fd: RawFd) -> io::Result<TcpListener> {
    let kind = socket_option(fd, libc::SO_TYPE).map_err(|e| {
        io::Error::other(format!(
            "systemd passed fd {fd}, but it is not a socket ({e})"
        ))
    })?;
    let domain = socket_option(fd, libc::SO_DOMAIN)?;
    let listening = socket_option(fd, libc::SO_ACCEPTCONN)? == 1;
    if kind != libc::SOCK_STREAM || !matches!(domain, libc::AF_INET | libc::AF_INET6) || !listening
    {
        let what = match kind {
            libc::SOCK_DGRAM => "a datagram socket",
            libc::SOCK_STREAM if domain == libc::AF_UNIX => "a Unix socket",
            libc::SOCK_STREAM => "a stream socket that is not listening",
            _ => "not a TCP socket",
        };
        return Err(io::Error::other(format!(
            "systemd passed fd {fd}, which is {what}; shop needs a listening TCP socket \
             (ListenStream=127.0.0.1:PORT in shop@.socket)"
        )));
    }
    // SAFETY: the fd was passed to this process by systemd and is used only here.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn socket_option(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len point to valid memory of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `WATCHDOG_USEC`, when it is meant for this process (`WATCHDOG_PID` unset or ours).
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us = match std::env::var("WATCHDOG_PID") {
        Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
        Err(_) => true,
    };
    (for_us && usec > 0).then(|| Duration::from_micros(usec))
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// Tell systemd the service is ready, with a status line for `systemctl status`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Update the status line `systemctl status` shows.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Ask systemd for `by` more time to start (`TimeoutStartSec` counts from now again); a
/// long migration (an index built on a big table) asks again and again while it runs.
pub fn extend_start_timeout(by: Duration, status: &str) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    notify(&[
        NotifyState::ExtendTimeoutUsec(usec),
        NotifyState::Status(status),
    ]);
}

/// Tell systemd shutdown has begun.
pub fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A sign of life for the watchdog.
pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}
