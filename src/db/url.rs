//! The database URL, parsed once when the settings load: which backend it names, the
//! driver's connect options (one set per host: PostgreSQL URLs may list several, as
//! libpq's do), and a form fit for logs (the password hidden).

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

/// The driver's options for the URL's backend: for PostgreSQL, one set per host of the
/// URL, in its order (`postgres://u@db1,db2:5433/shop` lists two).
#[derive(Clone)]
pub(crate) enum Target {
    Postgres(Vec<PgConnectOptions>),
    Sqlite(Box<SqliteConnectOptions>),
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
            "postgres" | "postgresql" => Target::Postgres(
                one_url_per_host(&url)
                    .iter()
                    .map(|one| one.parse())
                    .collect::<Result<_, _>>()
                    .map_err(invalid)?,
            ),
            "sqlite" => Target::Sqlite(Box::new(url.parse().map_err(invalid)?)),
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

/// A URL for each host of a libpq-style host list (`postgres://u:p@db1,db2:5433/d?…` gives
/// `…@db1/d?…` and `…@db2:5433/d?…`), without `target_session_attrs`: with several hosts
/// the store always looks for the primary (libpq's `read-write`), and sqlx knows no such
/// parameter.
fn one_url_per_host(url: &str) -> Vec<String> {
    let url = without_parameter(url, "target_session_attrs");
    let Some(scheme_end) = url.find("://") else {
        return vec![url];
    };
    let start = scheme_end + 3;
    let query = url[start..].find('?').map_or(url.len(), |i| start + i);
    let hosts_start = url[start..query]
        .rfind('@')
        .map_or(start, |at| start + at + 1);
    let hosts_end = url[hosts_start..query]
        .find('/')
        .map_or(query, |i| hosts_start + i);
    url[hosts_start..hosts_end]
        .split(',')
        .map(|host| format!("{}{host}{}", &url[..hosts_start], &url[hosts_end..]))
        .collect()
}

/// `url` without the query parameter `name`.
fn without_parameter(url: &str, name: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some(name))
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
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
    fn a_list_of_hosts_gives_options_for_each() {
        let url: DatabaseUrl =
            "postgres://shop:p%2Fw@10.0.0.1,db2:5433/shop?sslmode=verify-full&target_session_attrs=read-write"
                .parse()
                .unwrap();
        let Target::Postgres(hosts) = url.target() else {
            panic!("postgres")
        };
        let seen: Vec<(String, u16, Option<String>)> = hosts
            .iter()
            .map(|o| {
                (
                    o.get_host().to_owned(),
                    o.get_port(),
                    o.get_database().map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("10.0.0.1".to_owned(), 5432, Some("shop".to_owned())),
                ("db2".to_owned(), 5433, Some("shop".to_owned()))
            ]
        );
        assert_eq!(
            url.to_string(),
            "postgres://shop:****@10.0.0.1,db2:5433/shop?sslmode=verify-full&target_session_attrs=read-write"
        );
        assert_eq!(
            one_url_per_host("postgres://h/d?target_session_attrs=any"),
            ["postgres://h/d"]
        );
        assert_eq!(
            one_url_per_host("postgres://a@h1,h2?x=1"),
            ["postgres://a@h1?x=1", "postgres://a@h2?x=1"]
        );
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
