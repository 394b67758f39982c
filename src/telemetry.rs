//! Logging with tracing: to the journal with structured fields when stderr is the journal
//! (under systemd), as human-readable lines on stderr otherwise.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `level` is a filter such as `info`; `RUST_LOG` wins.
/// In the journal, span fields become fields of each entry (`INSTANCE`, `REQUEST_ID`,
/// `METHOD`, `PATH`) next to the event's own (`STATUS`, `LATENCY_MS`).
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if stderr_is_journal() {
        if let Ok(journal) = tracing_journald::layer() {
            let journal = journal
                .with_syslog_identifier("shop".into())
                .with_field_prefix(None);
            registry.with(journal).init();
            return;
        }
    }
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .init();
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for the stream it connects stderr to.
fn stderr_is_journal() -> bool {
    let Some(expected) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(file) = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
    else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    expected.to_str() == Some(&format!("{}:{}", meta.dev(), meta.ino()))
}
