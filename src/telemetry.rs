//! Logging with tracing: to the journal with structured fields when stderr is the journal
//! (under systemd), as human-readable lines on stderr otherwise — one line an event, its
//! control characters escaped (`EscapedStderr`), so no logged text can forge a line.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `log.level`: a tracing filter such as `info` or `shop=debug,sqlx=warn`, parsed at load
/// so a typo is a configuration error rather than a silent `info`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct LogFilter {
    text: String,
    /// Parsed once: `target=level` pairs and a default level. A static filter: unlike
    /// `EnvFilter`, it does no work when a span is entered or left, which a request's span
    /// is on every poll (with `EnvFilter`, a third of a 1,000-row page's time).
    targets: Targets,
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

impl TryFrom<String> for LogFilter {
    type Error = String;

    fn try_from(text: String) -> Result<LogFilter, String> {
        let mut targets = Targets::new();
        let mut any = false;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            any = true;
            let (target, level) = part.split_once('=').unwrap_or(("", part));
            let word = level.trim().to_ascii_lowercase();
            let level = match word.parse::<LevelFilter>() {
                Ok(level) if LEVELS.contains(&word.as_str()) => level,
                // A bare word that is no level would be read as a target logged at
                // every level: almost always a misspelt level.
                _ if target.is_empty() => {
                    return Err(format!(
                        "{part:?} is not a level ({}) or target=level",
                        LEVELS.join(", ")
                    ))
                }
                _ => return Err(format!("{part:?} is not a level or target=level")),
            };
            targets = match target.trim() {
                "" => targets.with_default(level),
                target => targets.with_target(target, level),
            };
        }
        if !any {
            return Err("is empty: try info, or shop=debug,sqlx=warn".into());
        }
        Ok(LogFilter { text, targets })
    }
}

impl std::fmt::Display for LogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

pub fn init(level: &LogFilter) {
    // RUST_LOG, when set and valid, overrides log.level (as for any tracing program).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| LogFilter::try_from(text).ok())
        .map_or_else(|| level.targets.clone(), |env| env.targets);
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
    let ansi = std::io::stderr().is_terminal();
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || EscapedStderr { ansi })
                .with_ansi(ansi)
                .with_target(false),
        )
        .init();
}

/// stderr, for the log lines: each event arrives whole (the fmt layer formats it, then
/// writes it at once), and every control character in it but its closing newline is
/// written escaped (`\n`, `\r`, `\x1b`, …), whatever a field held. With colours on (a
/// terminal) the escape character that starts them is left alone: tracing escapes the
/// ones inside fields itself.
struct EscapedStderr {
    ansi: bool,
}

impl Write for EscapedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        // 0xC2 starts the C1 controls' UTF-8 (and a few letters: those take the slow way).
        let plain = !body.iter().any(|&b| {
            (b < 0x20 && b != b'\t' && !(self.ansi && b == 0x1b)) || b == 0x7f || b == 0xc2
        });
        let mut stderr = std::io::stderr().lock();
        if plain {
            stderr.write_all(buf)?;
        } else {
            let escaped = escape_controls(&String::from_utf8_lossy(buf), self.ansi);
            stderr.write_all(escaped.as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `text` with its control characters escaped, but for a closing newline (and, when
/// `keep_escape`, the escape character).
fn escape_controls(text: &str, keep_escape: bool) -> String {
    let (body, end) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (text, ""),
    };
    let mut out = String::with_capacity(text.len() + 8);
    for c in body.chars() {
        match c {
            '\x1b' if keep_escape => out.push(c),
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push_str(end);
    out
}

/// For the one-shot commands that change accounts (`shop user`, `shop token`): their
/// audit lines go to the journal when there is one (the command itself prints what a
/// person needs to see), and nowhere otherwise.
pub fn init_audit() {
    if !std::path::Path::new("/run/systemd/journal/socket").exists() {
        return;
    }
    if let Ok(journal) = tracing_journald::layer() {
        let filter = Targets::new().with_target("shop", LevelFilter::INFO);
        let journal = journal
            .with_syslog_identifier("shop".into())
            .with_field_prefix(None);
        tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .init();
    }
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
    fn a_logged_line_stays_one_line() {
        assert_eq!(
            escape_controls("failed login for \"ann\nforged line\r\" \x1b[31m\n", false),
            "failed login for \"ann\\nforged line\\r\" \\u{1b}[31m\n"
        );
        assert_eq!(escape_controls("plain\ttab", false), "plain\ttab");
        assert_eq!(escape_controls("\x1b[1mbold\n", true), "\x1b[1mbold\n");
    }

    #[test]
    fn a_filter_is_checked_when_it_is_read() {
        let filter = LogFilter::try_from("info, shop=debug,sqlx=warn".to_owned()).unwrap();
        assert_eq!(filter.targets.iter().count(), 2);
        assert_eq!(filter.targets.default_level(), Some(LevelFilter::INFO));
        assert_eq!(filter.to_string(), "info, shop=debug,sqlx=warn");
        for typo in ["inf0", "shop=verbose", "", " , "] {
            assert!(LogFilter::try_from(typo.to_owned()).is_err(), "{typo:?}");
        }
    }
}
