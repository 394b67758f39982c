//! API tokens: what a name must be, how long one lasts, and issuing one (the account page
//! and `shop token create` alike). The token is shown once; only its hash outlives the call.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{secrets, User, MAX_TOKEN_NAME_CHARS};
use crate::db::{Store, StoreError};

/// A token's name as typed: 1 to 64 printable characters.
pub fn token_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_TOKEN_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(format!(
            "Give the token a name of 1 to {MAX_TOKEN_NAME_CHARS} characters (what uses it)."
        ));
    }
    Ok(name.to_owned())
}

/// How long a new token works: for a while, or until it is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLifetime {
    For(Duration),
    Never,
}

impl TokenLifetime {
    /// The setting `accounts.token_lifetime_secs` (0: tokens never expire).
    pub fn from_secs(secs: u64) -> TokenLifetime {
        match secs {
            0 => TokenLifetime::Never,
            secs => TokenLifetime::For(Duration::from_secs(secs)),
        }
    }

    /// When a token made at `now` stops working; `None`: never.
    pub fn expiry(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            TokenLifetime::Never => None,
            TokenLifetime::For(lasts) => {
                Some(now + chrono::Duration::from_std(lasts).unwrap_or(chrono::Duration::MAX))
            }
        }
    }
}

/// `never`, or a number of days (`90` or `90d`), as `shop token create --expires` takes it.
impl FromStr for TokenLifetime {
    type Err = String;

    fn from_str(text: &str) -> Result<TokenLifetime, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("never") {
            return Ok(TokenLifetime::Never);
        }
        let days: u64 = text
            .strip_suffix('d')
            .unwrap_or(text)
            .parse()
            .ok()
            .filter(|d| (1..=36_500).contains(d))
            .ok_or_else(|| format!("{text:?} is not a lifetime: give a number of days (1 to 36500, e.g. 90 or 90d) or \"never\""))?;
        Ok(TokenLifetime::For(Duration::from_secs(days * 86_400)))
    }
}

/// Make an API token for `user` that works for `lifetime` (`by`: "web" or "cli", for the
/// journal): the token.
pub async fn issue_token(
    store: &Store,
    user: &User,
    name: &str,
    lifetime: TokenLifetime,
    by: &str,
) -> Result<String, StoreError> {
    let token = secrets::new_api_token();
    let expires_at = lifetime.expiry(Utc::now());
    let info = store
        .create_token(user.id, name, &secrets::digest(&token), expires_at)
        .await?;
    let expires = expires_at.map_or_else(|| "never".to_owned(), |at| at.to_rfc3339());
    tracing::info!(event = "token_created", user = %user.username, token_id = info.id.0, token_name = %info.name, expires = %expires, by, "API token {} ({:?}) created for {}, expiring {expires}", info.id, info.name, user.username);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_days_or_never() {
        let day = Duration::from_secs(86_400);
        assert_eq!("90".parse(), Ok(TokenLifetime::For(day * 90)));
        assert_eq!(" 7d ".parse(), Ok(TokenLifetime::For(day * 7)));
        assert_eq!("Never".parse(), Ok(TokenLifetime::Never));
        for bad in ["0", "-1", "1w", "", "99999999999999999999"] {
            assert!(bad.parse::<TokenLifetime>().is_err(), "{bad}");
        }
        assert_eq!(TokenLifetime::from_secs(0), TokenLifetime::Never);
        let now = Utc::now();
        assert_eq!(
            TokenLifetime::from_secs(60).expiry(now),
            Some(now + chrono::Duration::seconds(60))
        );
    }
}
