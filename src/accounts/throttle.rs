//! Guessing, bounded. Every check of a password — a login, the current password on the
//! account page, the password that makes an API token — is first written down as an
//! attempt, then the attempts are counted, and only then is the password hashed. So
//! guesses sent at once count each other, on every instance of every host (the table is
//! the database's): at most `limit` checks per window, whatever the concurrency. A check
//! that succeeds takes its attempt (and the account's failures) back; a wrong one leaves
//! it; one that was refused or never made (429, busy hashing, a lost database) is taken
//! back too, so waiting is never what keeps an account locked.
//!
//! Who is counted: the account, and the client's address (an IPv6 client by its /64) —
//! unless the attempt comes from a *known device*: a browser holding the signed cookie
//! it was given at an earlier successful login to this account. That device is counted
//! on its own, so guesses from elsewhere lock strangers out but not the owner on their
//! own browser (OWASP's "device cookies").

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::db::{AttemptId, Failures, Store, StoreError};

/// How many password checks a window allows.
#[derive(Debug, Clone, Copy)]
pub struct GuessLimit {
    pub attempts: i64,
    pub window: Duration,
}

/// Who is making an attempt, as counted.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The address as counted (`Origin::address_key`: an IPv6 client's /64).
    pub address: &'a str,
    /// The nonce of a known device's cookie, checked for this account.
    pub device: Option<&'a str>,
}

/// Why an attempt may not be made.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("too many failed password checks: wait {0} s")]
    TooMany(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A password check written down and allowed: say how it ended. Dropping it without a
/// word counts it as a failure (the safe default).
#[must_use = "say whether the password was right"]
#[derive(Debug)]
pub struct Attempt(AttemptId);

/// Write the attempt down, then count: refused (and taken back) when `client` has had
/// more than the limit's attempts for the account `key` within the window.
pub async fn begin(
    store: &Store,
    limit: GuessLimit,
    key: &str,
    client: Client<'_>,
) -> Result<Attempt, Refused> {
    let attempt = store
        .record_attempt(key, client.address, client.device)
        .await?;
    let now = Utc::now();
    let since = now - chrono::Duration::from_std(limit.window).unwrap_or(chrono::Duration::MAX);
    let counted = match client.device {
        Some(device) => store.device_failures(device, since).await.map(|f| vec![f]),
        None => store
            .login_failures(key, client.address, since)
            .await
            .map(|(account, address)| vec![account, address]),
    };
    let counted = match counted {
        Ok(counted) => counted,
        Err(e) => {
            forget(store, attempt).await;
            return Err(e.into());
        }
    };
    let wait = counted
        .into_iter()
        .filter_map(|failures| wait_after(failures, limit, now))
        .max();
    match wait {
        Some(seconds) => {
            forget(store, attempt).await;
            Err(Refused::TooMany(seconds))
        }
        None => Ok(Attempt(attempt)),
    }
}

/// Take an attempt back; a store that fails here leaves a failure that ends with its window.
async fn forget(store: &Store, attempt: AttemptId) {
    if let Err(e) = store.forget_attempt(attempt).await {
        tracing::warn!(error = %e, "could not take back a password attempt: it counts as a failure until its window ends");
    }
}

impl Attempt {
    /// The password was right: the attempt and the account's earlier failures are gone.
    pub async fn succeeded(self, store: &Store, key: &str) -> Result<(), StoreError> {
        store.forget_attempt(self.0).await?;
        store.clear_login_failures(key).await
    }

    /// The password was never checked (hashing busy, the database lost): not a guess.
    pub async fn not_checked(self, store: &Store) {
        forget(store, self.0).await;
    }

    /// The password was wrong: the attempt stays, a failure until its window ends.
    pub fn failed(self) {}
}

/// With `failures` in the window (this attempt among them): how many seconds to wait, or
/// `None` while within the limit. The wait ends when the oldest failure leaves the window.
fn wait_after(failures: Failures, limit: GuessLimit, now: DateTime<Utc>) -> Option<u64> {
    let before_this = failures.count - 1;
    login_wait(
        before_this,
        failures.oldest,
        limit.attempts,
        limit.window,
        now,
    )
}

/// After `count` failed logins since the window began (the oldest at `oldest`): how many
/// seconds to wait before the next try, or `None` while under `limit`. The wait ends when
/// the oldest failure leaves the window, so nobody is locked out for good.
fn login_wait(
    count: i64,
    oldest: Option<DateTime<Utc>>,
    limit: i64,
    window: std::time::Duration,
    now: DateTime<Utc>,
) -> Option<u64> {
    if count < limit {
        return None;
    }
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let until = oldest.map_or(now + window, |oldest| oldest + window);
    Some(until.signed_duration_since(now).num_seconds().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_wait_only_past_the_limit_and_only_until_the_window_moves_on() {
        let now = Utc::now();
        let window = std::time::Duration::from_secs(900);
        assert_eq!(login_wait(9, Some(now), 10, window, now), None);
        let oldest = now - chrono::Duration::seconds(600);
        assert_eq!(login_wait(10, Some(oldest), 10, window, now), Some(300));
        assert_eq!(login_wait(50, Some(now), 10, window, now), Some(900));
    }
}
