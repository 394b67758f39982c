//! CSRF protection, twice over. First, a request that changes something and that a
//! browser says comes from another site (its `Origin`, or `Sec-Fetch-Site: cross-site`
//! or `same-site`) is refused before anything else (`refuse_cross_site`): login CSRF
//! included, and whatever cookie was planted. Second, the HTML forms: the browser holds a
//! random CSRF cookie (`web::cookies`) and every form carries HMAC(secret, cookie), and
//! once the browser is signed in, HMAC(secret, cookie and session), so a token from before
//! the login (or from another session) is worth nothing. Any instance that shares the
//! secret accepts a form another instance rendered; another site can neither read the
//! cookie nor forge the token.

use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, OnceLock};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::cookies;
use super::error::AppError;
use super::templates::FormToken;
use super::AppState;
use crate::accounts::secrets::{self, SessionHash};

const CSRF_LABEL: &[u8] = b"shop csrf v1:";

/// The secret tokens (and device cookies) are signed with.
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

    /// The HMAC of `data` for one use of the secret (`label`: the CSRF tokens, the
    /// device cookies), so that no signature made for one use is good for another.
    fn mac(&self, label: &[u8], data: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label);
        mac.update(data.as_bytes());
        mac
    }

    /// The signature of `data` for `label`, hex.
    pub fn sign(&self, label: &[u8], data: &str) -> String {
        hex::encode(self.mac(label, data).finalize().into_bytes())
    }

    /// Is `signature` the one of `data` for `label`? (Compared in constant time.)
    pub fn verify_signed(&self, label: &[u8], data: &str, signature: &str) -> bool {
        let Ok(signature) = hex::decode(signature) else {
            return false;
        };
        self.mac(label, data).verify_slice(&signature).is_ok()
    }

    /// The token a form must carry for a browser holding `cookie`.
    pub fn token_for(&self, cookie: &str) -> String {
        self.sign(CSRF_LABEL, cookie)
    }

    /// Does `token` belong to `cookie`?
    pub fn verify(&self, cookie: &str, token: &str) -> bool {
        self.verify_signed(CSRF_LABEL, cookie, token)
    }
}

/// The browser's CSRF cookie for this request: the one it sent, or one made the first time
/// a page asks for a form token (an anonymous reader of the list asks for none, so none is
/// made, signed or sent for them).
#[derive(Debug, Clone)]
pub struct CsrfCookie {
    sent: Option<String>,
    /// Made for a browser that sent none, once, when a form needs it; shared by the
    /// request's copies so that the token and the `Set-Cookie` agree.
    minted: Arc<OnceLock<String>>,
    /// The signed-in session the tokens are tied to; set by `auth`.
    pub session: Option<SessionHash>,
}

impl CsrfCookie {
    /// The cookie's value (made now when the browser sent none).
    fn value(&self) -> &str {
        match &self.sent {
            Some(sent) => sent,
            None => self.minted.get_or_init(secrets::random_hex),
        }
    }

    /// What the tokens sign: the cookie, and the session once there is one.
    fn binding(&self) -> String {
        match &self.session {
            Some(session) => format!("{}:{}", self.value(), session.as_str()),
            None => self.value().to_owned(),
        }
    }

    /// The cookie the browser sent (under the name for its scheme), if any, tied to
    /// `session`.
    pub fn sent(
        headers: &HeaderMap,
        https: bool,
        session: Option<SessionHash>,
    ) -> Option<CsrfCookie> {
        cookies::csrf_value(headers, https).map(|value| CsrfCookie {
            sent: Some(value),
            minted: Arc::default(),
            session,
        })
    }

    fn from_headers(headers: &HeaderMap, https: bool) -> CsrfCookie {
        CsrfCookie::sent(headers, https, None).unwrap_or_else(|| CsrfCookie {
            sent: None,
            minted: Arc::default(),
            session: None,
        })
    }
}

/// Page-router layer: hand the request its CSRF cookie, and a browser that sent none the
/// one made for it, if a page made one. Over HTTPS (as a trusted proxy tells) the cookie
/// is the `__Host-` one, and `Secure`.
pub async fn ensure_cookie(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let https = state.proxies.came_over_https(&request);
    let cookie = CsrfCookie::from_headers(request.headers(), https);
    let minted = Arc::clone(&cookie.minted);
    request.extensions_mut().insert(cookie);
    let mut response = next.run(request).await;
    if let Some(value) = minted.get() {
        cookies::set_csrf(&mut response, value, https);
    }
    response
}

/// Outer layer of every router, pages and API: a request that may change something
/// (anything but GET, HEAD and OPTIONS), that carries no API token, and that the browser
/// says comes from another site is refused with 403 before any handler reads it. A
/// browser says so by `Sec-Fetch-Site` (`cross-site`, or `same-site`: a sibling
/// subdomain is another site too) or by an `Origin` that is not this site's: another
/// host, `null`, or `http:` for a request that came over HTTPS. A request with neither
/// header (a script, an old browser) goes on to the form token's check.
pub async fn refuse_cross_site(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method();
    let changes = !(method == Method::GET || method == Method::HEAD || method == Method::OPTIONS);
    let headers = request.headers();
    if changes && !headers.contains_key(header::AUTHORIZATION) {
        let https = state.proxies.came_over_https(&request);
        if let Some(why) = cross_site(headers, https) {
            tracing::warn!(
                event = "cross_site_refused",
                why,
                "{} {} refused: {why}",
                request.method(),
                request.uri().path()
            );
            return AppError::Forbidden(CROSS_SITE).into_response();
        }
    }
    next.run(request).await
}

const CROSS_SITE: &str = "This request came from another site, and this shop takes changes only \
    from its own pages. If you sent it from this shop's page, reload the page and send it again.";

/// Why the browser's own headers say this request comes from another site; `None`: they
/// do not (or say nothing).
fn cross_site(headers: &HeaderMap, https: bool) -> Option<&'static str> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return Some("Sec-Fetch-Site says another site");
    }
    let origin = headers.get(header::ORIGIN)?;
    let Some((scheme, origin_host)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        return Some("the Origin is opaque (null) or not a URL");
    };
    if https && scheme != "https" {
        return Some("an http: Origin for a request that came over HTTPS");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    (!same_host(origin_host, host)).then_some("the Origin is another host")
}

/// Whether the `Origin`'s host[:port] names the `Host` the request was sent to. nginx
/// passes the host without its port (`$host`), so when `Host` has none only the names
/// are compared; when both have one, the ports must match too.
fn same_host(origin: &str, host: &str) -> bool {
    let split = |authority: &str| -> (String, Option<String>) {
        let authority = authority.trim().to_ascii_lowercase();
        if authority.starts_with('[') {
            // An IPv6 literal: [::1]:8080
            return match authority.split_once("]:") {
                Some((name, port)) => (format!("{name}]"), Some(port.to_owned())),
                None => (authority, None),
            };
        }
        match authority.rsplit_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port.to_owned())),
            None => (authority, None),
        }
    };
    let ((origin_name, origin_port), (host_name, host_port)) = (split(origin), split(host));
    !host_name.is_empty()
        && origin_name == host_name
        && (host_port.is_none() || origin_port.is_none() || origin_port == host_port)
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

/// The token to embed in the forms of this response, signed when first asked for.
pub fn form_token(state: &AppState, cookie: &CsrfCookie) -> FormToken {
    let (key, cookie) = (Arc::clone(&state.csrf), cookie.clone());
    FormToken::new(move || key.token_for(&cookie.binding()))
}

/// The one check of a form token, for the forms and the API's cookie writers alike: the
/// browser sent its cookie (not one made for this request) and the token signs it (and
/// the session it is tied to).
pub fn verify(state: &AppState, cookie: &CsrfCookie, token: Option<&str>) -> bool {
    cookie.sent.is_some() && token.is_some_and(|t| state.csrf.verify(&cookie.binding(), t))
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
        assert!(
            !key.verify_signed(b"shop device v1:", "cookie-a", &token),
            "a token is no signature for another use"
        );
    }

    fn request_headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_the_sites_own_pages_may_post() {
        let ok = |pairs: &[(&'static str, &'static str)], https: bool| {
            cross_site(&request_headers(pairs), https).is_none()
        };
        assert!(ok(&[("host", "shop.example")], true), "no Origin: a script");
        assert!(ok(
            &[("host", "shop.example"), ("origin", "https://shop.example")],
            true
        ));
        assert!(ok(
            &[
                ("host", "shop.example"),
                ("origin", "https://Shop.example:8443")
            ],
            true
        ));
        assert!(ok(
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ],
            false
        ));
        assert!(ok(
            &[("host", "[::1]:8080"), ("origin", "http://[::1]:8080")],
            false
        ));
        assert!(ok(
            &[("host", "shop.example"), ("sec-fetch-site", "same-origin")],
            true
        ));
        assert!(ok(
            &[("host", "shop.example"), ("sec-fetch-site", "none")],
            true
        ));
        for (origin, https) in [
            ("https://evil.example", true),
            ("https://shop.example.evil.example", true),
            ("http://shop.example", true),
            ("null", true),
            ("https://evil.example", false),
        ] {
            let headers = [("host", "shop.example"), ("origin", origin)];
            assert!(!ok(&headers, https), "{origin} over https={https}");
        }
        assert!(!ok(
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:9090")
            ],
            false
        ));
        assert!(!ok(
            &[("host", "shop.example"), ("sec-fetch-site", "cross-site")],
            true
        ));
        assert!(!ok(
            &[("host", "shop.example"), ("sec-fetch-site", "same-site")],
            true
        ));
    }
}
