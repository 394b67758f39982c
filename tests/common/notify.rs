//! A `NOTIFY_SOCKET` the test owns: what shop tells systemd (READY=1, STATUS=…,
//! WATCHDOG=1, STOPPING=1), each message with when it arrived.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    /// Bind `notify` in `dir` and collect every datagram from now on.
    pub fn bind_in(dir: &Path) -> NotifySocket {
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push((Instant::now(), text));
            }
        });
        NotifySocket { path, messages }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn all(&self) -> Vec<(Instant, String)> {
        self.messages.lock().unwrap().clone()
    }

    /// The first message since `since` with a line that starts with `what`.
    pub fn first(&self, what: &str, since: Instant) -> Option<(Instant, String)> {
        self.all()
            .into_iter()
            .find(|(at, m)| *at >= since && m.lines().any(|l| l.starts_with(what)))
    }

    /// How many messages since `since` have a line that starts with `what`.
    pub fn count(&self, what: &str, since: Instant) -> usize {
        self.all()
            .iter()
            .filter(|(at, m)| *at >= since && m.lines().any(|l| l.starts_with(what)))
            .count()
    }

    /// Wait (at most `timeout`) for a message like `first` finds.
    pub fn wait_for(&self, what: &str, since: Instant, timeout: Duration) -> bool {
        super::poll_until(timeout, || self.first(what, since).is_some())
    }
}
