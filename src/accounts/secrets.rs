//! The random secrets accounts hand out — session ids and API tokens — and the one-way
//! form the database keeps of them (SHA-256: a 256-bit random secret needs no slow hash,
//! and a stolen table gives nobody a usable cookie or token).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every API token starts with this, so a leaked one is recognisable (secret scanners,
/// logs) and a person knows what it is.
pub const TOKEN_PREFIX: &str = "shop_";

/// 256 random bits, hex: a session id.
pub fn new_session_id() -> String {
    random_hex()
}

/// `shop_` and 256 random bits, hex: an API token.
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex())
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database keeps of a session id or token.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `value` has the shape of a session id (so junk never reaches the database).
pub fn is_session_id(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `value` has the shape of an API token.
pub fn is_api_token(value: &str) -> bool {
    value.strip_prefix(TOKEN_PREFIX).is_some_and(is_session_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_recognisable_and_stored_hashed() {
        let (a, b) = (new_session_id(), new_session_id());
        assert_ne!(a, b);
        assert!(is_session_id(&a));
        let token = new_api_token();
        assert!(is_api_token(&token) && token.starts_with("shop_"));
        assert!(!is_api_token(&a));
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), a);
    }
}
