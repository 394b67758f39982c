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

/// 256 random bits, hex: what every secret shop hands out is made of.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database keeps of a session id or token.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What the database knows a session by: the SHA-256 of its id (never the id itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionHash(String);

impl SessionHash {
    /// The hash of the session id a cookie carries.
    pub fn of(session_id: &str) -> SessionHash {
        SessionHash(digest(session_id))
    }

    /// A hash as the database stores it (read back from a table or a notification).
    pub fn from_stored(hash: String) -> SessionHash {
        SessionHash(hash)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `value` has the shape of `random_hex` (a session id, a CSRF cookie): junk
/// never reaches the database.
pub fn is_random_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `value` has the shape of an API token.
pub fn is_api_token(value: &str) -> bool {
    value.strip_prefix(TOKEN_PREFIX).is_some_and(is_random_hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_recognisable_and_stored_hashed() {
        let (a, b) = (new_session_id(), new_session_id());
        assert_ne!(a, b);
        assert!(is_random_hex(&a));
        let token = new_api_token();
        assert!(is_api_token(&token) && token.starts_with("shop_"));
        assert!(!is_api_token(&a));
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), a);
    }
}
