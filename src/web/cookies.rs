//! The cookies shop reads and writes, in one place: the session cookie, the CSRF cookie
//! and the device cookie (`web::device`). Over plain HTTP they are `shop_session`,
//! `shop_csrf` and `shop_device`; over HTTPS only `__Host-shop_session`,
//! `__Host-shop_csrf` and `__Host-shop_device` are read and written: a browser accepts a
//! `__Host-` cookie only from this host over HTTPS, so a sibling subdomain or a
//! plain-HTTP page cannot plant one (and a planted plain-named one is ignored). Session
//! and CSRF cookies carry 256 random bits in hex; anything else under their names is
//! ignored.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

use crate::accounts::secrets;

/// One cookie's name over plain HTTP, and over HTTPS (where the `__Host-` prefix makes
/// the browser insist on `Secure`, `Path=/` and no `Domain`).
#[derive(Debug, Clone, Copy)]
pub struct CookieName {
    plain: &'static str,
    host: &'static str,
}

impl CookieName {
    /// The name read and written for a request that came over HTTPS, or not.
    pub fn over(self, https: bool) -> &'static str {
        if https {
            self.host
        } else {
            self.plain
        }
    }
}

pub const SESSION: CookieName = CookieName {
    plain: "shop_session",
    host: "__Host-shop_session",
};
pub const CSRF: CookieName = CookieName {
    plain: "shop_csrf",
    host: "__Host-shop_csrf",
};
pub const DEVICE: CookieName = CookieName {
    plain: "shop_device",
    host: "__Host-shop_device",
};

/// The first value of the cookie `name` that `valid` accepts.
pub fn read<'a>(headers: &'a HeaderMap, name: &str, valid: fn(&str) -> bool) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(sent, value)| *sent == name && valid(value))
        .map(|(_, value)| value)
}

/// The session id a request's cookie carries, if it has the right shape.
pub fn session_id(headers: &HeaderMap, https: bool) -> Option<String> {
    read(headers, SESSION.over(https), secrets::is_random_hex).map(str::to_owned)
}

/// The CSRF cookie a request carries, if it has the right shape.
pub fn csrf_value(headers: &HeaderMap, https: bool) -> Option<String> {
    read(headers, CSRF.over(https), secrets::is_random_hex).map(str::to_owned)
}

/// Append one `Set-Cookie` to `response`.
fn append(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The attributes every cookie of shop's has: HttpOnly, SameSite=Lax, the whole site;
/// over HTTPS `Secure` too.
fn attributes(https: bool) -> &'static str {
    if https {
        "; Path=/; HttpOnly; SameSite=Lax; Secure"
    } else {
        "; Path=/; HttpOnly; SameSite=Lax"
    }
}

/// A `Set-Cookie` that makes the browser forget the cookie `name`.
fn cleared(name: &str, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}")
}

/// Put the session cookie on `response` (`None`: clear it). Over HTTPS a plain
/// `shop_session` the browser may still hold (from before HTTPS) is cleared as well.
pub fn set_session(response: &mut Response, id: Option<&str>, https: bool) {
    let name = SESSION.over(https);
    let attributes = attributes(https);
    match id {
        Some(id) => append(response, &format!("{name}={id}{attributes}")),
        None => append(response, &cleared(name, https)),
    }
    if https {
        append(response, &cleared(SESSION.plain, false));
    }
}

/// Hand the browser a new CSRF cookie.
pub fn set_csrf(response: &mut Response, value: &str, https: bool) {
    let name = CSRF.over(https);
    append(response, &format!("{name}={value}{}", attributes(https)));
}

/// Hand the browser a device cookie that lasts `max_age_secs`.
pub fn set_device(response: &mut Response, value: &str, max_age_secs: u64, https: bool) {
    let name = DEVICE.over(https);
    append(
        response,
        &format!(
            "{name}={value}; Max-Age={max_age_secs}{}",
            attributes(https)
        ),
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
    fn each_scheme_reads_only_its_own_session_cookie_name() {
        let (alice, bob) = (secrets::new_session_id(), secrets::new_session_id());
        let both = headers(&format!(
            "a=b; shop_session={alice}; __Host-shop_session={bob}"
        ));
        assert_eq!(session_id(&both, false), Some(alice.clone()));
        assert_eq!(
            session_id(&both, true),
            Some(bob),
            "over HTTPS the __Host- one only"
        );
        let plain_only = headers(&format!("shop_session={alice}"));
        assert_eq!(session_id(&plain_only, true), None);
        assert_eq!(session_id(&headers("shop_session=short"), false), None);
    }

    #[test]
    fn only_well_formed_csrf_cookies_are_read() {
        let value = "a".repeat(64);
        assert_eq!(
            csrf_value(&headers(&format!("x=1; shop_csrf={value}")), false),
            Some(value.clone())
        );
        assert_eq!(
            csrf_value(&headers(&format!("shop_csrf={value}")), true),
            None
        );
        assert_eq!(
            csrf_value(&headers(&format!("__Host-shop_csrf={value}")), true),
            Some(value)
        );
        assert_eq!(csrf_value(&headers("shop_csrf=short"), false), None);
    }

    fn set_cookies(response: &Response) -> Vec<String> {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn cookies_are_httponly_lax_and_secure_with_the_host_prefix_over_https() {
        let mut response = Response::new(axum::body::Body::empty());
        set_session(&mut response, Some("abc"), true);
        set_csrf(&mut response, "def", true);
        assert_eq!(
            set_cookies(&response),
            [
                "__Host-shop_session=abc; Path=/; HttpOnly; SameSite=Lax; Secure",
                "shop_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
                "__Host-shop_csrf=def; Path=/; HttpOnly; SameSite=Lax; Secure",
            ]
        );
        let mut response = Response::new(axum::body::Body::empty());
        set_session(&mut response, Some("abc"), false);
        set_csrf(&mut response, "def", false);
        assert_eq!(
            set_cookies(&response),
            [
                "shop_session=abc; Path=/; HttpOnly; SameSite=Lax",
                "shop_csrf=def; Path=/; HttpOnly; SameSite=Lax",
            ]
        );
    }
}
