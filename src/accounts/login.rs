//! Checking a login: the user by the name typed, the password against their hash (off
//! the async workers), the same work for a name that has no user (no enumeration by
//! timing), and a hash made with older parameters replaced on success.

use super::password::{self, Busy, Hasher};
use super::User;
use crate::db::{Store, StoreError};

/// Why a login did not sign anybody in. The person is told the same for all but `Busy`
/// and `Store` ("wrong username or password"); the journal is told which.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no such user")]
    NoSuchUser,
    #[error("wrong password")]
    WrongPassword(User),
    #[error("user disabled")]
    Disabled(User),
    /// Every hashing slot is busy: try again shortly.
    #[error("password hashing is busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Busy> for LoginError {
    fn from(_: Busy) -> Self {
        LoginError::Busy
    }
}

/// The user whose (lower-case) name is `key` and whose password is `secret`.
pub async fn authenticate(
    store: &Store,
    hasher: &Hasher,
    key: &str,
    secret: String,
) -> Result<User, LoginError> {
    let Some((user, stored)) = store.credentials(key).await? else {
        hasher.run(move || password::verify_nobody(&secret)).await?;
        return Err(LoginError::NoSuchUser);
    };
    let (verified, rehash) = hasher
        .run(move || {
            let verified = password::verify(&secret, &stored);
            let rehash = verified.needs_rehash.then(|| password::hash(&secret));
            (verified, rehash)
        })
        .await?;
    if user.disabled {
        return Err(LoginError::Disabled(user));
    }
    if !verified.matches {
        return Err(LoginError::WrongPassword(user));
    }
    if let Some(hash) = rehash {
        store.set_password_hash(user.id, &hash).await?;
        tracing::info!(event = "password_rehashed", user = %user.username, "{}'s password hash upgraded to the current parameters", user.username);
    }
    Ok(user)
}
