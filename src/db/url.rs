//! The database URL, parsed once when the settings load: which backend it names, the
//! driver's connect options, and a form fit for logs (the password hidden).

use std::fmt;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// Which database a URL names, decided by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// `postgres://…` or `sqlite:…`, parsed: `Display` and `Debug` show it redacted.
#[derive(Clone, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl {
    target: Target,
    redacted: String,
}

/// The driver's options for the URL's backend.
#[derive(Clone)]
pub(crate) enum Target {
    Postgres(PgConnectOptions),
    Sqlite(SqliteConnectOptions),
}

impl DatabaseUrl {
    pub fn backend(&self) -> Backend {
        match self.target {
            Target::Postgres(_) => Backend::Postgres,
            Target::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(url: String) -> Result<DatabaseUrl, String> {
        let scheme = url.split(':').next().unwrap_or("");
        let invalid = |e: sqlx::Error| format!("{} is not a usable URL: {e}", redact(&url));
        let target = match scheme {
            "postgres" | "postgresql" => Target::Postgres(url.parse().map_err(invalid)?),
            "sqlite" => Target::Sqlite(url.parse().map_err(invalid)?),
            _ => {
                return Err(format!(
                    "unsupported scheme {scheme:?}: use postgres://… (PostgreSQL) or sqlite:PATH (SQLite)"
                ))
            }
        };
        Ok(DatabaseUrl {
            target,
            redacted: redact(&url),
        })
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<DatabaseUrl, String> {
        DatabaseUrl::try_from(url.to_owned())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted)
    }
}

/// The URL with its password (in the authority or a `password=` parameter) as `****`.
fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        // Up to the query, not the first '/': a password with a '/' its writer forgot to
        // escape makes the URL unusable, and the error message must not show it either.
        let authority_end = out[rest..].find('?').map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let at = rest + at;
            if let Some(colon) = out[rest..at].find(':') {
                out.replace_range(rest + colon + 1..at, "****");
            }
        }
    }
    if let Some(start) = out.find("password=") {
        let value = start + "password=".len();
        let end = out[value..].find('&').map_or(out.len(), |i| value + i);
        out.replace_range(value..end, "****");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> String {
        url.parse::<DatabaseUrl>().unwrap().to_string()
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            shown("postgres://shop:hunter2@db/shop"),
            "postgres://shop:****@db/shop"
        );
        assert_eq!(
            shown("postgres://shop@localhost/shop?host=/run/postgresql"),
            "postgres://shop@localhost/shop?host=/run/postgresql"
        );
        assert_eq!(
            shown("postgres://db/shop?user=a&password=x&sslmode=disable"),
            "postgres://db/shop?user=a&password=****&sslmode=disable"
        );
        assert_eq!(
            shown("sqlite:/var/lib/shop/shop.db"),
            "sqlite:/var/lib/shop/shop.db"
        );
        let unusable = "postgres://shop:a/b@db/shop"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(
            unusable.starts_with("postgres://shop:****@db/shop is not a usable URL"),
            "a password with an unescaped '/' is hidden in the error too: {unusable}"
        );
        let debug = format!(
            "{:?}",
            "postgres://a:pw@h/d".parse::<DatabaseUrl>().unwrap()
        );
        assert!(!debug.contains("pw"), "{debug}");
    }

    #[test]
    fn the_scheme_chooses_the_backend() {
        let backend = |url: &str| url.parse::<DatabaseUrl>().map(|u| u.backend());
        assert_eq!(backend("postgresql://h/d"), Ok(Backend::Postgres));
        assert_eq!(backend("sqlite::memory:"), Ok(Backend::Sqlite));
        let error = backend("mysql://h/d").unwrap_err();
        assert!(error.contains("unsupported scheme \"mysql\""), "{error}");
    }

    #[test]
    fn a_broken_url_is_refused_without_its_password() {
        let error = "postgres://u:secretpw@h:notaport/d"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(error.contains("not a usable URL"), "{error}");
        assert!(!error.contains("secretpw"), "{error}");
    }
}
