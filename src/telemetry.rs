//! Logging with tracing: to the journal with structured fields when stderr is the journal
//! (under systemd), as human-readable lines on stderr otherwise.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::filter::Directive;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// `log.level`: a tracing filter such as `info` or `shop=debug,sqlx=warn`, parsed at load
/// so a typo is a configuration error rather than a silent `info`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct LogFilter {
    text: String,
    directives: Vec<Directive>,
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

impl TryFrom<String> for LogFilter {
    type Error = String;

    fn try_from(text: String) -> Result<LogFilter, String> {
        let directives = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(|part| {
                let part = part.trim();
                let is_level = LEVELS.contains(&part.to_ascii_lowercase().as_str());
                // A bare word that is no level would be read as a target logged at
                // every level: almost always a misspelt level.
                if !is_level && !part.contains('=') {
                    return Err(format!(
                        "{part:?} is not a level ({}) or target=level",
                        LEVELS.join(", ")
                    ));
                }
                part.parse::<Directive>()
                    .map_err(|e| format!("{part:?} is not a level or target=level ({e})"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if directives.is_empty() {
            return Err("is empty: try info, or shop=debug,sqlx=warn".into());
        }
        Ok(LogFilter { text, directives })
    }
}

impl std::fmt::Display for LogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl LogFilter {
    fn env_filter(&self) -> EnvFilter {
        self.directives
            .iter()
            .cloned()
            .fold(EnvFilter::default(), EnvFilter::add_directive)
    }
}

/// Install the global subscriber with `level`; `RUST_LOG`, when it is a valid filter,
/// wins. In the journal, span fields become fields of each entry (`INSTANCE`,
/// `REQUEST_ID`, `METHOD`, `PATH`) next to the event's own (`STATUS`, `LATENCY_MS`).
pub fn init(level: &LogFilter) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| level.env_filter());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_checked_when_it_is_read() {
        let filter = LogFilter::try_from("info, shop=debug,sqlx=warn".to_owned()).unwrap();
        assert_eq!(filter.directives.len(), 3);
        assert_eq!(filter.to_string(), "info, shop=debug,sqlx=warn");
        for typo in ["inf0", "shop=verbose", "", " , "] {
            assert!(LogFilter::try_from(typo.to_owned()).is_err(), "{typo:?}");
        }
    }
}
