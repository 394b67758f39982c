//! The device cookie: a browser that signed in to an account (or made it) is given a
//! signed cookie naming that account's known device (`shop_device`, `__Host-shop_device`
//! over HTTPS): a random nonce and HMAC(secret, account and nonce). A password check from
//! that browser for that account is counted as the device's (`accounts::throttle`), so a
//! flood of guesses from elsewhere does not lock its owner out. It proves nothing else:
//! it signs nobody in, and a stolen one is worth `accounts.login_attempts` guesses per
//! window, like any stranger's address.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;

use super::cookies;
use super::csrf::CsrfKey;
use super::AppState;
use crate::accounts::secrets;

/// What the signatures of device cookies are labelled with (see `CsrfKey::sign`).
const LABEL: &[u8] = b"shop device v1:";
/// A browser stays a known device for a year after its last login.
const LASTS_SECS: u64 = 365 * 86_400;

/// The device cookie a request carries (not yet checked against any account).
#[derive(Debug, Clone, Default)]
pub struct DeviceCookie(Option<String>);

impl DeviceCookie {
    /// The device's nonce, when the cookie was signed for the account `key`.
    pub fn nonce_for(&self, signer: &CsrfKey, key: &str) -> Option<&str> {
        let (nonce, signature) = self.0.as_deref()?.split_once('.')?;
        let signed = secrets::is_random_hex(nonce)
            && signer.verify_signed(LABEL, &signed_data(key, nonce), signature);
        signed.then_some(nonce)
    }
}

fn signed_data(key: &str, nonce: &str) -> String {
    format!("{key}:{nonce}")
}

/// Make the browser a known device of the account `key` (keeping its nonce when it
/// already is one).
pub fn remember(
    response: &mut Response,
    signer: &CsrfKey,
    sent: &DeviceCookie,
    key: &str,
    https: bool,
) {
    let nonce = sent
        .nonce_for(signer, key)
        .map_or_else(secrets::random_hex, str::to_owned);
    let value = format!("{nonce}.{}", signer.sign(LABEL, &signed_data(key, &nonce)));
    cookies::set_device(response, &value, LASTS_SECS, https);
}

impl FromRequestParts<AppState> for DeviceCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<DeviceCookie, Self::Rejection> {
        let https = state.proxies.https(&parts.extensions, &parts.headers);
        let shaped = |value: &str| value.len() == 129 && value.is_ascii();
        Ok(DeviceCookie(
            cookies::read(&parts.headers, cookies::DEVICE.over(https), shaped).map(str::to_owned),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_cookie_counts_only_for_its_account_and_secret() {
        let signer = CsrfKey::new(b"0123456789abcdef0123456789abcdef");
        let mut response = Response::new(axum::body::Body::empty());
        remember(
            &mut response,
            &signer,
            &DeviceCookie::default(),
            "ann",
            false,
        );
        let set = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        let value = set
            .strip_prefix("shop_device=")
            .and_then(|v| v.split(';').next())
            .unwrap()
            .to_owned();
        assert_eq!(value.len(), 129, "{set}");
        let cookie = DeviceCookie(Some(value.clone()));
        let nonce = cookie.nonce_for(&signer, "ann").expect("ann's device");
        assert_eq!(value.split('.').next(), Some(nonce));
        assert_eq!(cookie.nonce_for(&signer, "bob"), None, "not bob's");
        assert_eq!(cookie.nonce_for(&CsrfKey::random(), "ann"), None);
        let forged = DeviceCookie(Some(format!("{}.{}", "b".repeat(64), "c".repeat(64))));
        assert_eq!(forged.nonce_for(&signer, "ann"), None);
        // Logging in again keeps the nonce.
        let mut again = Response::new(axum::body::Body::empty());
        remember(&mut again, &signer, &cookie, "ann", false);
        assert!(again.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with(&format!("shop_device={nonce}.")));
    }
}
