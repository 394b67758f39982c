//! API tokens: what a name must be, and issuing one (the account page and `shop token
//! create` alike). The token is shown once; only its hash outlives the call.

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

/// Make an API token for `user` (`by`: "web" or "cli", for the journal): the token.
pub async fn issue_token(
    store: &Store,
    user: &User,
    name: &str,
    by: &str,
) -> Result<String, StoreError> {
    let token = secrets::new_api_token();
    let info = store
        .create_token(user.id, name, &secrets::digest(&token))
        .await?;
    tracing::info!(event = "token_created", user = %user.username, token_id = info.id.0, token_name = %info.name, by, "API token {} ({:?}) created for {}", info.id, info.name, user.username);
    Ok(token)
}
