//! The cookies shop reads and writes, in one place: the session cookie (`shop_session`,
//! `__Host-shop_session` over HTTPS) and the CSRF cookie (`shop_csrf`). Both carry 256
//! random bits in hex; anything else under their names is ignored.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

use crate::accounts::secrets;

/// The session cookie over plain HTTP, and over HTTPS (where the `__Host-` prefix makes
/// the browser insist on `Secure`, `Path=/` and no `Domain`).
pub const SESSION: &str = "shop_session";
pub const HOST_SESSION: &str = "__Host-shop_session";
/// The browser's CSRF cookie.
pub const CSRF: &str = "shop_csrf";

/// The first well-formed value (256 random bits, hex) of a cookie named one of `names`.
pub fn read(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| names.contains(name) && secrets::is_random_hex(value))
        .map(|(_, value)| value.to_owned())
}

/// The session id a request's cookie carries, if it has the right shape.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    read(headers, &[HOST_SESSION, SESSION])
}

/// The CSRF cookie a request carries, if it has the right shape.
pub fn csrf_value(headers: &HeaderMap) -> Option<String> {
    read(headers, &[CSRF])
}

/// Append one `Set-Cookie` to `response`.
fn append(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Put the session cookie on `response` (`None`: clear it). HttpOnly and SameSite=Lax
/// always; over HTTPS `Secure` and the `__Host-` name, and the plain one cleared.
pub fn set_session(response: &mut Response, id: Option<&str>, https: bool) {
    let clear = "=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax";
    match (id, https) {
        (Some(id), true) => {
            append(
                response,
                &format!("{HOST_SESSION}={id}; Path=/; HttpOnly; SameSite=Lax; Secure"),
            );
            append(response, &format!("{SESSION}{clear}"));
        }
        (Some(id), false) => append(
            response,
            &format!("{SESSION}={id}; Path=/; HttpOnly; SameSite=Lax"),
        ),
        (None, true) => {
            append(response, &format!("{HOST_SESSION}{clear}; Secure"));
            append(response, &format!("{SESSION}{clear}"));
        }
        (None, false) => append(response, &format!("{SESSION}{clear}")),
    }
}

/// Hand the browser a new CSRF cookie (`Secure` when it came over HTTPS).
pub fn set_csrf(response: &mut Response, value: &str, https: bool) {
    let secure = if https { "; Secure" } else { "" };
    append(
        response,
        &format!("{CSRF}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn either_session_cookie_name_is_read_when_well_formed() {
        let id = secrets::new_session_id();
        for name in [SESSION, HOST_SESSION] {
            assert_eq!(
                session_id(&headers(&format!("a=b; {name}={id}"))),
                Some(id.clone())
            );
        }
        assert_eq!(session_id(&headers("shop_session=short")), None);
    }

    #[test]
    fn only_well_formed_csrf_cookies_are_read() {
        let value = "a".repeat(64);
        assert_eq!(
            csrf_value(&headers(&format!("x=1; shop_csrf={value}"))),
            Some(value)
        );
        assert_eq!(csrf_value(&headers("shop_csrf=short")), None);
    }

    #[test]
    fn cookies_are_httponly_lax_and_secure_with_the_host_prefix_over_https() {
        let mut response = Response::new(axum::body::Body::empty());
        set_session(&mut response, Some("abc"), true);
        let cookies: Vec<_> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            cookies[0],
            "__Host-shop_session=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let mut response = Response::new(axum::body::Body::empty());
        set_session(&mut response, Some("abc"), false);
        assert_eq!(
            response.headers()[header::SET_COOKIE],
            "shop_session=abc; Path=/; HttpOnly; SameSite=Lax"
        );
    }
}
