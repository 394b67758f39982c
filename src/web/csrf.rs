//! CSRF protection for the HTML forms: the browser holds a random `shop_csrf` cookie and
//! every form carries HMAC(secret, cookie), and once the browser is signed in,
//! HMAC(secret, cookie and session), so a token from before the login (or from another
//! session) is worth nothing. Any instance that shares the secret accepts a form another
//! instance rendered; another site can neither read the cookie nor forge the token.

use axum::extract::{Form, FromRequest, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::cookies;
use super::error::AppError;
use super::AppState;
use crate::accounts::secrets::{self, SessionHash};

/// The secret tokens are signed with.
#[derive(Clone)]
pub struct CsrfKey(Vec<u8>);

impl CsrfKey {
    pub fn new(secret: &[u8]) -> CsrfKey {
        CsrfKey(secret.to_vec())
    }

    /// A key nobody else has: forms work only on the instance that rendered them.
    pub fn random() -> CsrfKey {
        let mut key = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        CsrfKey(key)
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"shop csrf v1:");
        mac
    }

    /// The token a form must carry for a browser holding `cookie`.
    pub fn token_for(&self, cookie: &str) -> String {
        let mut mac = self.mac();
        mac.update(cookie.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Does `token` belong to `cookie`? (Compared in constant time.)
    pub fn verify(&self, cookie: &str, token: &str) -> bool {
        let Ok(token) = hex::decode(token) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(cookie.as_bytes());
        mac.verify_slice(&token).is_ok()
    }
}

/// The browser's CSRF cookie for this request (freshly made when it sent none).
#[derive(Debug, Clone)]
pub struct CsrfCookie {
    pub value: String,
    pub is_new: bool,
    /// The signed-in session the tokens are tied to; set by `auth`.
    pub session: Option<SessionHash>,
}

impl CsrfCookie {
    /// What the tokens sign: the cookie, and the session once there is one.
    fn binding(&self) -> String {
        match &self.session {
            Some(session) => format!("{}:{}", self.value, session.as_str()),
            None => self.value.clone(),
        }
    }

    /// The cookie the browser sent, if any, tied to `session`.
    pub fn sent(headers: &HeaderMap, session: Option<SessionHash>) -> Option<CsrfCookie> {
        cookies::csrf_value(headers).map(|value| CsrfCookie {
            value,
            is_new: false,
            session,
        })
    }

    fn from_headers(headers: &HeaderMap) -> CsrfCookie {
        CsrfCookie::sent(headers, None).unwrap_or_else(|| CsrfCookie {
            value: secrets::random_hex(),
            is_new: true,
            session: None,
        })
    }
}

/// Page-router layer: make sure the request has a CSRF cookie, and hand a new one to the
/// browser with the response.
/// The cookie is `Secure` (sent back over HTTPS only) when the browser came over HTTPS,
/// as a trusted proxy tells.
pub async fn ensure_cookie(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let cookie = CsrfCookie::from_headers(request.headers());
    // Asked only when a cookie is handed out: most requests bring theirs.
    let secure = cookie.is_new && state.proxies.came_over_https(&request);
    request.extensions_mut().insert(cookie.clone());
    let mut response = next.run(request).await;
    if cookie.is_new {
        cookies::set_csrf(&mut response, &cookie.value, secure);
    }
    response
}

/// A form that must carry a valid CSRF token (its `csrf_token` field): declare one with
/// `protected_form!`, the one way to write a form that changes something.
pub trait Protected {
    fn csrf_token(&self) -> Option<&str>;
}

/// A form struct whose fields are all optional strings sent by the browser, one of them
/// `csrf_token`, checked by `CheckedForm` before the handler runs.
macro_rules! protected_form {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize)]
        $vis struct $name {
            csrf_token: Option<String>,
            $($field: Option<String>,)*
        }

        impl $crate::web::csrf::Protected for $name {
            fn csrf_token(&self) -> Option<&str> {
                self.csrf_token.as_deref()
            }
        }
    };
}
pub(crate) use protected_form;

/// A form body, read and checked against the browser's CSRF cookie before the handler runs.
pub struct CheckedForm<T>(pub T);

impl<T> FromRequest<AppState> for CheckedForm<T>
where
    T: Protected + serde::de::DeserializeOwned + Send,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AppError> {
        let cookie = request.extensions().get::<CsrfCookie>().cloned();
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(|rejection| AppError::Rejected(rejection.status(), rejection.body_text()))?;
        let cookie = cookie.ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("the CSRF cookie layer is missing"))
        })?;
        if !verify(state, &cookie, form.csrf_token()) {
            return Err(AppError::Forbidden(REFUSED));
        }
        Ok(CheckedForm(form))
    }
}

/// The token to embed in the forms of this response.
pub fn form_token(state: &AppState, cookie: &CsrfCookie) -> String {
    state.csrf.token_for(&cookie.binding())
}

/// The one check of a form token, for the forms and the API's cookie writers alike: the
/// browser sent its cookie (not one made for this request) and the token signs it (and
/// the session it is tied to).
pub fn verify(state: &AppState, cookie: &CsrfCookie, token: Option<&str>) -> bool {
    !cookie.is_new && token.is_some_and(|t| state.csrf.verify(&cookie.binding(), t))
}

/// What a form whose token does not hold is told.
const REFUSED: &str = "This form could not be accepted because its security token is missing or \
    out of date (or your browser is not sending cookies). Go back, reload the page, and send it again.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_cookie_and_key() {
        let key = CsrfKey::new(b"0123456789abcdef0123456789abcdef");
        let token = key.token_for("cookie-a");
        assert!(key.verify("cookie-a", &token));
        assert!(!key.verify("cookie-b", &token));
        assert!(!key.verify("cookie-a", "zz"));
        assert!(!CsrfKey::random().verify("cookie-a", &token));
        let same_secret = CsrfKey::new(b"0123456789abcdef0123456789abcdef");
        assert!(same_secret.verify("cookie-a", &token));
    }
}
