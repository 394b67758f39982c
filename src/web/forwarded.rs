//! What a request's proxy says about it: nginx tells shop the scheme the browser used
//! (`X-Forwarded-Proto`), and shop believes it only from the proxies it was told to trust
//! (`server.trusted_proxies`), since anyone else could send the header too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Request};

use super::AppState;

/// The addresses whose forwarding headers shop believes.
#[derive(Debug, Clone)]
pub struct TrustedProxies(Arc<[IpAddr]>);

impl TrustedProxies {
    pub fn new(addresses: &[IpAddr]) -> TrustedProxies {
        TrustedProxies(addresses.iter().map(IpAddr::to_canonical).collect())
    }

    fn trusts(&self, peer: IpAddr) -> bool {
        self.0.contains(&peer.to_canonical())
    }

    /// Did the browser use HTTPS? Only a trusted proxy's `X-Forwarded-Proto: https` says so.
    pub fn came_over_https<B>(&self, request: &Request<B>) -> bool {
        self.https(request.extensions(), request.headers())
    }

    /// `came_over_https`, for an extractor (which has the request's parts).
    pub(super) fn https(&self, extensions: &Extensions, headers: &HeaderMap) -> bool {
        peer(extensions).is_some_and(|peer| self.trusts(peer))
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }

    /// The browser's address: the last one a trusted proxy added to `X-Forwarded-For`
    /// (nginx appends the address it saw), otherwise the connection's peer.
    fn client(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer(extensions)?;
        if !self.trusts(peer) {
            return Some(peer.to_canonical());
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        Some(forwarded.unwrap_or(peer).to_canonical())
    }
}

fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// Where a request came from, as far as shop can believe it: over HTTPS or not, and the
/// browser's address (what failed logins are counted by, beside the account).
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub https: bool,
    pub address: Option<IpAddr>,
}

impl Origin {
    /// The address as the journal shows it.
    pub fn address_text(&self) -> String {
        self.address
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string())
    }

    /// The address as failed password checks are counted by: an IPv4 address whole, an
    /// IPv6 one by its /64 (what one customer, or one machine, is given to rotate through).
    pub fn address_key(&self) -> String {
        match self.address {
            Some(IpAddr::V6(v6)) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(prefix))
            }
            Some(v4) => v4.to_string(),
            None => "unknown".to_owned(),
        }
    }
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Origin, Self::Rejection> {
        Ok(Origin {
            https: state.proxies.https(&parts.extensions, &parts.headers),
            address: state.proxies.client(&parts.extensions, &parts.headers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, proto: Option<&str>) -> Request<()> {
        let mut request = Request::builder().uri("/");
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        let mut request = request.body(()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    #[test]
    fn only_a_trusted_proxy_says_https() {
        let proxies =
            TrustedProxies::new(&["127.0.0.1".parse().unwrap(), "10.0.0.30".parse().unwrap()]);
        assert!(proxies.came_over_https(&request("10.0.0.30:41000", Some("https"))));
        assert!(proxies.came_over_https(&request("127.0.0.1:41000", Some("HTTPS"))));
        assert!(proxies.came_over_https(&request("[::ffff:10.0.0.30]:41000", Some("https"))));
        assert!(!proxies.came_over_https(&request("10.0.0.30:41000", Some("http"))));
        assert!(!proxies.came_over_https(&request("10.0.0.30:41000", None)));
        assert!(!proxies.came_over_https(&request("10.0.0.99:41000", Some("https"))));
        let mut unknown_peer = request("10.0.0.30:41000", Some("https"));
        unknown_peer.extensions_mut().clear();
        assert!(!proxies.came_over_https(&unknown_peer));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let key = |address: &str| {
            Origin {
                https: false,
                address: Some(address.parse().unwrap()),
            }
            .address_key()
        };
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("198.51.100.7"), "198.51.100.7");
    }

    #[test]
    fn the_client_address_comes_from_a_trusted_proxy_only() {
        let proxies = TrustedProxies::new(&["10.0.0.30".parse().unwrap()]);
        let mut through = request("10.0.0.30:41000", None);
        through
            .headers_mut()
            .insert("x-forwarded-for", "1.2.3.4, 203.0.113.9".parse().unwrap());
        let client = |r: &Request<()>| proxies.client(r.extensions(), r.headers());
        assert_eq!(client(&through), Some("203.0.113.9".parse().unwrap()));
        let mut direct = request("10.0.0.99:41000", None);
        direct
            .headers_mut()
            .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert_eq!(client(&direct), Some("10.0.0.99".parse().unwrap()));
    }
}
