//! Typed settings: built-in defaults < a TOML file < `SHOP_*` environment variables,
//! validated once at start so a bad value fails with the name of its key.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::accounts::throttle::GuessLimit;
use crate::accounts::TokenLifetime;
use crate::db::{DatabaseUrl, PoolSize};
use crate::money::Currency;
use crate::telemetry::LogFilter;

/// Where the config file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/shop/shop.toml";

/// The whole configuration of one shop process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Name of this instance (under systemd: the port, from `SHOP_INSTANCE=%i`); when
    /// not set, the port it listens on.
    #[serde(default)]
    pub instance: Option<String>,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub security: SecuritySettings,
    pub log: LogSettings,
    pub backup: BackupSettings,
    pub accounts: AccountSettings,
    pub sales: SalesSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind when no socket is passed in by systemd.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// A request that takes longer than this gets 503.
    pub request_timeout_secs: u64,
    /// After SIGTERM, in-flight requests get this long to finish.
    pub shutdown_timeout_secs: u64,
    /// A connection waiting for a request's headers (idle between keep-alive requests, or
    /// a slow client) is closed after this long. Keep it above nginx's upstream
    /// `keepalive_timeout`, so nginx never reuses a connection shop has just closed.
    pub keepalive_idle_secs: u64,
    /// Under socket activation, exit cleanly after this many seconds with no request
    /// (0: never); systemd keeps the socket and starts shop again on the next connection.
    pub idle_exit_after_secs: u64,
    /// The proxies (nginx) whose `X-Forwarded-Proto` and `X-Forwarded-For` are believed:
    /// a request from one of these addresses that says `https` came over HTTPS (its
    /// cookies are `Secure` and `__Host-`), and the client address it names is the one
    /// failed logins are counted by. None by default: any process that can connect from
    /// a trusted address can claim any client address, so trust only nginx's. A list in
    /// the file; in `SHOP_SERVER__TRUSTED_PROXIES`, addresses separated by commas.
    #[serde(deserialize_with = "addresses")]
    pub trusted_proxies: Vec<IpAddr>,
    /// How much of the anonymous list pages, rendered, an instance keeps to send again
    /// while the data has not changed, in KiB (0: render every one).
    pub page_cache_kib: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite:…`; the scheme chooses the backend.
    pub url: DatabaseUrl,
    pub max_connections: u32,
    /// How long a request waits for a database connection before it gets 503.
    pub acquire_timeout_secs: u64,
    /// How long a request waits for the database's answer before it gets 503 (and the
    /// database counts as lost until the probe reaches it again).
    pub query_timeout_secs: u64,
    /// Apply pending migrations when `shop serve` starts.
    pub migrate_on_start: bool,
    /// How long `shop serve` keeps retrying an unreachable database at start.
    pub startup_wait_secs: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Shared by every instance: signs CSRF tokens. Not set: read from `secret_file`, or
    /// (neither set) a random one per process.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A file holding the secret (the package generates /etc/shop/secret at installation).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A tracing filter such as `info` or `shop=debug,sqlx=warn` (`RUST_LOG` wins).
    pub level: LogFilter,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// Where `shop backup` writes (and `shop-backup.service` keeps) backups.
    pub dir: PathBuf,
    /// How many backups `shop backup` keeps in `dir`; older ones are removed.
    pub keep: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// Who may make an account: anyone on `/signup` (`open`), or only `shop user add`.
    pub signup: Signup,
    /// The shortest password accepted (ASVS: at least 8).
    pub min_password_chars: usize,
    /// A session nobody used for this long ends (sliding: each visit pushes it on).
    pub session_idle_secs: u64,
    /// A session ends this long after the login that made it, used or not.
    pub session_max_secs: u64,
    /// Password checks (logins, the current password on the account page, new API
    /// tokens) that failed for one account, or from one address (an IPv6 client's /64),
    /// or from one known device, within `login_window_secs`, after which further checks
    /// get 429 until the oldest failure has left the window (`accounts::throttle`).
    pub login_attempts: i64,
    pub login_window_secs: u64,
    /// How long a new API token works (0: until revoked); `shop token create --expires`
    /// chooses per token.
    pub token_lifetime_secs: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesSettings {
    /// The shop's currency, an ISO 4217 code: every price is in it, with as many decimals
    /// as it has (2 for EUR, 0 for JPY). Changing it later does not convert prices.
    pub currency: Currency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signup {
    Open,
    Closed,
}

impl AccountSettings {
    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_secs)
    }
    pub fn session_max(&self) -> Duration {
        Duration::from_secs(self.session_max_secs)
    }
    pub fn guess_limit(&self) -> GuessLimit {
        GuessLimit {
            attempts: self.login_attempts,
            window: Duration::from_secs(self.login_window_secs),
        }
    }
    pub fn token_lifetime(&self) -> TokenLifetime {
        TokenLifetime::from_secs(self.token_lifetime_secs)
    }
}

/// A string that never shows up in `Debug` output or logs.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configuration problem, naming the key (or the file) at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// The config crate's error, reworded as `key: what is wrong (where it came from)`.
    fn from_source(error: config::ConfigError) -> ConfigError {
        let (key, what, origin) = match error {
            config::ConfigError::At {
                error,
                origin,
                key: Some(key),
            } => (key, error.to_string(), origin),
            config::ConfigError::Type {
                origin,
                unexpected,
                expected,
                key: Some(key),
            } => (
                key,
                format!("expected {expected}, found {unexpected}"),
                origin,
            ),
            other => return ConfigError(other.to_string()),
        };
        let origin = origin.map(|o| format!(" (in {o})")).unwrap_or_default();
        ConfigError(format!("{key}: {what}{origin}"))
    }
}

impl Settings {
    /// Load defaults, then the file (an explicit path must exist; the default one may be
    /// absent), then `SHOP_*` variables, and validate the result.
    pub fn load(explicit_file: Option<&Path>) -> Result<(Settings, Option<PathBuf>), ConfigError> {
        let file = match explicit_file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )))
            }
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.is_file()),
        };
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = &file {
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("SHOP")
                    .prefix_separator("_")
                    .separator("__")
                    .source(Some(setting_variables())),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(ConfigError::from_source)?;
        let mut settings = settings;
        settings.read_secret_file()?;
        settings.validate()?;
        Ok((settings, file))
    }

    /// Take the secret from `security.secret_file` when it is not given directly.
    fn read_secret_file(&mut self) -> Result<(), ConfigError> {
        let (None, Some(path)) = (&self.security.secret, &self.security.secret_file) else {
            return Ok(());
        };
        let shown = path.display();
        let secret = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("security.secret_file: cannot read {shown}: {e}")))?;
        let secret = Secret::new(secret.trim());
        if secret.expose().len() < 32 {
            return Err(ConfigError(format!(
                "security.secret_file: {shown} must hold at least 32 characters"
            )));
        }
        self.security.secret = Some(secret);
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError(format!("{key}: {why}")));
        if !(1024..=64 * 1024 * 1024).contains(&self.server.body_limit_bytes) {
            return bad(
                "server.body_limit_bytes",
                "must be between 1024 and 67108864".into(),
            );
        }
        for (key, value) in [
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
            ),
            (
                "server.keepalive_idle_secs",
                self.server.keepalive_idle_secs,
            ),
            (
                "database.acquire_timeout_secs",
                self.database.acquire_timeout_secs,
            ),
            (
                "database.query_timeout_secs",
                self.database.query_timeout_secs,
            ),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if !(8..=64).contains(&self.accounts.min_password_chars) {
            return bad(
                "accounts.min_password_chars",
                "must be between 8 and 64".into(),
            );
        }
        for (key, value) in [
            (
                "accounts.session_idle_secs",
                self.accounts.session_idle_secs,
            ),
            ("accounts.session_max_secs", self.accounts.session_max_secs),
            (
                "accounts.login_window_secs",
                self.accounts.login_window_secs,
            ),
        ] {
            if value < 60 {
                return bad(key, "must be at least 60".into());
            }
        }
        if self.accounts.login_attempts < 1 {
            return bad("accounts.login_attempts", "must be at least 1".into());
        }
        if self.backup.keep == 0 {
            return bad("backup.keep", "must be at least 1".into());
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1".into());
        }
        if let Some(secret) = &self.security.secret {
            if secret.expose().len() < 32 {
                return bad(
                    "security.secret",
                    "must be at least 32 characters (try: head -c 32 /dev/urandom | base64)".into(),
                );
            }
        }
        if let Some(name) = &self.instance {
            if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
                return bad("instance", "must be a short printable name".into());
            }
        }
        Ok(())
    }
}

impl DatabaseSettings {
    /// The pool the store keeps for this database.
    pub fn pool_size(&self) -> PoolSize {
        PoolSize {
            max_connections: self.max_connections,
            acquire_timeout: Duration::from_secs(self.acquire_timeout_secs),
            query_timeout: Duration::from_secs(self.query_timeout_secs),
        }
    }

    pub fn startup_wait(&self) -> Duration {
        Duration::from_secs(self.startup_wait_secs)
    }
}

/// A list of IP addresses: a TOML array, or (from the environment) one string of
/// addresses separated by commas (empty: none).
fn addresses<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<IpAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        List(Vec<IpAddr>),
        Text(String),
    }
    match Given::deserialize(deserializer)? {
        Given::List(list) => Ok(list),
        Given::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse()
                    .map_err(|_| serde::de::Error::custom(format!("{a:?} is not an IP address")))
            })
            .collect(),
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
    pub fn keepalive_idle(&self) -> Duration {
        Duration::from_secs(self.keepalive_idle_secs)
    }
    pub fn idle_exit_after(&self) -> Option<Duration> {
        (self.idle_exit_after_secs > 0).then(|| Duration::from_secs(self.idle_exit_after_secs))
    }
    pub fn page_cache_bytes(&self) -> usize {
        self.page_cache_kib.saturating_mul(1024)
    }
}

/// The top-level keys: `SHOP_<KEY>…` variables for anything else are not settings.
const TOP_LEVEL_KEYS: &[&str] = &[
    "instance", "server", "database", "security", "log", "backup", "accounts",
];

/// The `SHOP_*` environment variables that are settings. Others (a deployment's own
/// `SHOP_SOMETHING`) are left alone, with a warning on stderr naming them, since a
/// misspelt one (`SHOP_DATABASE_URL` for `SHOP_DATABASE__URL`) would otherwise go unseen.
fn setting_variables() -> config::Map<String, String> {
    let mut settings = config::Map::new();
    for (name, value) in std::env::vars() {
        let Some(key) = name.strip_prefix("SHOP_") else {
            continue;
        };
        let top = key
            .split("__")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if TOP_LEVEL_KEYS.contains(&top.as_str()) {
            settings.insert(name, value);
        } else {
            eprintln!(
                "shop: ignoring the environment variable {name}: not a setting \
                 (settings are SHOP_<SECTION>__<KEY>, e.g. SHOP_DATABASE__URL)"
            );
        }
    }
    settings
}

/// The built-in defaults: what `cargo run` gets on a bare machine.
pub const DEFAULTS: &str = r#"
[server]
listen = "127.0.0.1:8080"
body_limit_bytes = 16384
request_timeout_secs = 30
shutdown_timeout_secs = 20
keepalive_idle_secs = 75
idle_exit_after_secs = 0
trusted_proxies = []
page_cache_kib = 1024

[database]
url = "sqlite:shop.db"
max_connections = 8
acquire_timeout_secs = 1
query_timeout_secs = 5
migrate_on_start = true
startup_wait_secs = 1

[log]
level = "info"

[backup]
dir = "/var/backups/shop"
keep = 7

[accounts]
signup = "open"
min_password_chars = 8
# A week without a visit, or 30 days after the login, whichever comes first.
session_idle_secs = 604800
session_max_secs = 2592000
login_attempts = 10
login_window_secs = 900
# 90 days.
token_lifetime_secs = 7776000

[sales]
currency = "EUR"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let secret = Secret::new("super-secret-value");
        assert_eq!(format!("{secret:?}"), "[redacted]");
    }
}
