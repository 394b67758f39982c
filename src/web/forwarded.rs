//! What a request's proxy says about it: nginx tells shop the scheme the browser used
//! (`X-Forwarded-Proto`), and shop believes it only from the proxies it was told to trust
//! (`server.trusted_proxies`), since anyone else could send the header too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::Request;

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
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        peer.is_some_and(|peer| self.trusts(peer))
            && request
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
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
}
