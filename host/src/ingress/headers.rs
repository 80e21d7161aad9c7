//! Header fields the gateway owns. What a client sends in them is removed before any plugin
//! runs, so the upstream can trust them: identity headers that auth plugins assert, the
//! forwarding headers (rebuilt from the connection), URL-override and method-override
//! headers, and every hop-by-hop field, `Connection`-named ones included.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName};
use ipnet::IpNet;

/// Removed from every client request whatever the config says: frameworks behind a gateway
/// honour them to rewrite the URL or the method the gateway routed on.
pub const ALWAYS_STRIPPED: [HeaderName; 8] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-original-method"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    // The consumer header of the auth plugins' default config.
    HeaderName::from_static("x-consumer-id"),
];

/// Forwarding headers: a client's copies count only when it is a trusted proxy.
pub const FORWARDING: [HeaderName; 6] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
];

/// Hop-by-hop fields (RFC 9110 §7.6.1), `Upgrade` aside: the route decides on it.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
];

/// What the gateway removes from client requests, worked out once per snapshot.
#[derive(Debug, Clone, Default)]
pub struct OwnedHeaders {
    /// Names removed from every request: [`ALWAYS_STRIPPED`], the headers the configured
    /// plugins assert, and `[server] strip_request_headers`.
    pub strip: Vec<HeaderName>,
    /// Peers whose forwarding headers are believed (`[server] trusted_proxies`).
    pub trusted_proxies: Vec<IpNet>,
}

impl OwnedHeaders {
    /// `strip` plus the always-stripped names, each once.
    pub fn new(strip: impl IntoIterator<Item = HeaderName>, trusted_proxies: Vec<IpNet>) -> Self {
        let mut names: Vec<HeaderName> = ALWAYS_STRIPPED.to_vec();
        for name in strip {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Self {
            strip: names,
            trusted_proxies,
        }
    }

    fn trusts(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    /// Removes what the gateway owns from a client's `headers` and returns the client's
    /// address: the peer's, or, when the peer is a trusted proxy, the nearest untrusted
    /// address in its `X-Forwarded-For` chain.
    pub fn strip(&self, headers: &mut HeaderMap, peer: super::Peer) -> IpAddr {
        let super::Peer {
            addr: peer,
            internal,
        } = peer;
        // `Connection` may name any field, even one a plugin sets later: honour it now, on
        // what the client sent, and never again.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| name != header::UPGRADE)
            .collect();
        let forwarded_kept = internal || self.trusts(peer);
        // One pass over the few fields a request has, instead of one lookup per owned name:
        // nothing is allocated unless there is something to remove.
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                HOP_BY_HOP.contains(name)
                    || named.contains(name)
                    || (!internal && self.strip.contains(name))
                    || (!forwarded_kept && FORWARDING.contains(name))
            })
            .cloned()
            .collect();
        for name in &doomed {
            headers.remove(name);
        }
        if !forwarded_kept {
            return canonical_ip(peer);
        }
        // Behind trusted proxies: walk the chain from the nearest hop outwards.
        let chain: Vec<IpAddr> = headers
            .get_all(&FORWARDING[0])
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect();
        chain
            .iter()
            .rev()
            .copied()
            .map(canonical_ip)
            .find(|ip| !internal && !self.trusts(*ip))
            .or_else(|| chain.first().copied().map(canonical_ip))
            .unwrap_or(canonical_ip(peer))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> super::super::Peer {
        super::super::Peer {
            addr: addr.parse().unwrap(),
            internal: false,
        }
    }

    #[test]
    fn an_internal_listener_keeps_what_its_peers_assert() {
        let owned = OwnedHeaders::new([], vec![]);
        let mut h = headers(&[
            ("x-consumer-id", "demo"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        let internal = super::super::Peer {
            addr: "127.0.0.1".parse().unwrap(),
            internal: true,
        };
        assert_eq!(
            owned.strip(&mut h, internal),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(h["x-consumer-id"], "demo");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn connection_named_identity_and_forwarding_fields_are_removed_from_untrusted_peers() {
        let owned = OwnedHeaders::new([HeaderName::from_static("x-jwt-claim-email")], vec![]);
        let mut h = headers(&[
            ("connection", "keep-alive, x-kept-by-trick, upgrade"),
            ("x-kept-by-trick", "1"),
            ("upgrade", "websocket"),
            ("x-consumer-id", "demo"),
            ("x-jwt-claim-email", "root@example.com"),
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-other", "kept"),
        ]);
        let client = owned.strip(&mut h, peer("203.0.113.9"));
        assert_eq!(client, "203.0.113.9".parse::<IpAddr>().unwrap());
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["upgrade", "x-other"]);
    }

    #[test]
    fn a_trusted_proxy_passes_its_chain_and_names_the_client() {
        let owned = OwnedHeaders::new([], vec!["10.0.0.0/8".parse().unwrap()]);
        let mut h = headers(&[("x-forwarded-for", "198.51.100.7, 10.1.1.1")]);
        let client = owned.strip(&mut h, peer("10.0.0.2"));
        assert_eq!(client, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert!(h.contains_key("x-forwarded-for"));
        let mut spoofed = headers(&[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(
            owned.strip(&mut spoofed, peer("::ffff:10.0.0.2")),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
    }
}
