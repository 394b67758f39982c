//! Every check of a password the web makes — a login, the current password on the account
//! page, the password that makes an API token — in one place: counted against guessing
//! before it is hashed (`accounts::throttle`), by the client's address and known device,
//! and written to the journal naming the account only when it is a real user's (what was
//! typed for an unknown one could be anything: a password typed in the wrong field).

use super::device::DeviceCookie;
use super::error::AppError;
use super::forwarded::Origin;
use super::AppState;
use crate::accounts::throttle::{self, Client, Refused};
use crate::accounts::{authenticate, LoginError, User};

/// What the journal calls an account whose name names no user.
const UNKNOWN_USER: &str = "(unknown)";

/// What is being checked, for the journal.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    Login,
    CurrentPassword,
    NewToken,
}

impl Check {
    fn as_str(self) -> &'static str {
        match self {
            Check::Login => "login",
            Check::CurrentPassword => "current_password",
            Check::NewToken => "new_token",
        }
    }
}

/// `secret` checked as the password of the account `key`: the user, or why not (wrong,
/// unknown, disabled: the person is told the same). 429 past the limit, 503 while every
/// hashing slot is busy; neither counts as a guess.
pub async fn check_password_of(
    state: &AppState,
    origin: &Origin,
    device: &DeviceCookie,
    check: Check,
    key: &str,
    secret: String,
) -> Result<Result<User, LoginError>, AppError> {
    let address = origin.address_key();
    let client = Client {
        address: &address,
        device: device.nonce_for(&state.csrf, key),
    };
    let limit = state.accounts.guess_limit();
    let attempt = match throttle::begin(&state.store, limit, key, client).await {
        Ok(attempt) => attempt,
        Err(Refused::TooMany(seconds)) => {
            let user = known_name(state, key).await;
            tracing::warn!(
                event = "login_throttled",
                check = check.as_str(),
                user = %user,
                address = %origin.address_text(),
                known_device = client.device.is_some(),
                retry_after_secs = seconds,
                "{} for {user} from {} refused for {seconds} s: too many failures",
                check.as_str(),
                origin.address_text()
            );
            return Err(AppError::TooManyAttempts(seconds));
        }
        Err(Refused::Store(e)) => return Err(e.into()),
    };
    match authenticate(&state.store, &state.hasher, key, secret).await {
        Ok(user) => {
            attempt.succeeded(&state.store, key).await?;
            Ok(Ok(user))
        }
        Err(LoginError::Busy) => {
            attempt.not_checked(&state.store).await;
            Err(AppError::Busy)
        }
        Err(LoginError::Store(e)) => {
            attempt.not_checked(&state.store).await;
            Err(e.into())
        }
        Err(refused) => {
            attempt.failed();
            let user = match &refused {
                LoginError::WrongPassword(user) | LoginError::Disabled(user) => {
                    user.username.as_str()
                }
                _ => UNKNOWN_USER,
            };
            let why = refused.to_string();
            tracing::warn!(
                event = "login_failed",
                check = check.as_str(),
                user = %user,
                address = %origin.address_text(),
                known_device = client.device.is_some(),
                reason = why,
                "failed {} for {user} from {} ({why})",
                check.as_str(),
                origin.address_text()
            );
            Ok(Err(refused))
        }
    }
}

/// The name of the user `key` names, for the journal; `UNKNOWN_USER` for none.
async fn known_name(state: &AppState, key: &str) -> String {
    match state.store.find_user(key).await {
        Ok(Some(user)) => user.username,
        _ => UNKNOWN_USER.to_owned(),
    }
}
