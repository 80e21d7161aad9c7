//! Header fields the gateway owns. What a client sends in them is removed before any plugin
//! runs, so the upstream can trust them: identity headers that auth plugins assert, the
//! forwarding headers (rebuilt from the connection), URL-override and method-override
//! headers, and every hop-by-hop field, `Connection`-named ones included.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName};
use ipnet::IpNet;

use crate::fields::HOP_BY_HOP;

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

/// Forwarding headers: a client's copies count only when it is a trusted proxy. Besides the
/// standard ones, the names frameworks and CDNs read for the client address, scheme and
/// prefix.
pub const FORWARDING: [HeaderName; 14] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
];

/// Fields a client's `Connection` cannot remove: the request's authority and framing.
const NOT_CONNECTION_NAMEABLE: [HeaderName; 3] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
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
            .filter(|name| name != header::UPGRADE && !NOT_CONNECTION_NAMEABLE.contains(name))
            .collect();
        let forwarded_kept = internal || self.trusts(peer);
        let owned = |name: &HeaderName| {
            // Hop-by-hop fields go, `Upgrade` aside: the route decides on it.
            (name != header::UPGRADE && HOP_BY_HOP.contains(name))
                || named.contains(name)
                || (!internal && self.strip.contains(name))
                || (!forwarded_kept && FORWARDING.contains(name))
        };
        // One pass over the few fields a request has, instead of one lookup per owned name:
        // nothing is allocated unless there is something to remove. `X_Consumer_Id` is
        // `X-Consumer-Id` to servers that map names onto CGI variables (`HTTP_X_CONSUMER_ID`),
        // so an underscore spelling of an owned name goes too.
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                owned(name)
                    || (name.as_str().contains('_')
                        && HeaderName::from_bytes(name.as_str().replace('_', "-").as_bytes())
                            .is_ok_and(|dashed| owned(&dashed)))
            })
            .cloned()
            .collect();
        for name in &doomed {
            headers.remove(name);
        }
        if !forwarded_kept {
            return canonical_ip(peer);
        }
        if internal {
            // Another wasmgate tier: its `X-Real-IP` is the client it worked out.
            return headers
                .get(&FORWARDING[4])
                .and_then(|v| v.to_str().ok())
                .and_then(forwarded_ip)
                .unwrap_or(canonical_ip(peer));
        }
        // Behind trusted proxies: walk the chain from the nearest hop outwards, and stop at
        // the first entry that is not an address (whoever wrote it is not to be believed).
        let entries: Vec<&str> = headers
            .get_all(&FORWARDING[0])
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = canonical_ip(peer);
        for entry in entries.iter().rev() {
            let Some(ip) = forwarded_ip(entry) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// An address as proxies write it in `X-Forwarded-For`: `203.0.113.9`, `2001:db8::1`,
/// `203.0.113.9:51000` or `[2001:db8::1]:443`.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(canonical_ip)
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
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "without X-Real-IP the peer is the client"
        );
        assert_eq!(h["x-consumer-id"], "demo");
        // The first tier worked the client out behind its own trusted balancer; the chain's
        // leftmost entry is whatever the client wrote.
        let mut h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.5"),
            ("x-real-ip", "198.51.100.7"),
        ]);
        assert_eq!(
            owned.strip(&mut h, internal),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn underscore_spellings_of_owned_names_are_removed_and_others_kept() {
        let owned = OwnedHeaders::new([], vec![]);
        let mut h = headers(&[
            ("x_consumer_id", "admin"),
            ("x_forwarded_for", "10.0.0.1"),
            ("X_Real_IP", "10.0.0.1"),
            ("x_request_kind", "kept"),
        ]);
        owned.strip(&mut h, peer("203.0.113.9"));
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x_request_kind"]);
    }

    #[test]
    fn connection_cannot_remove_the_authority_or_the_framing() {
        let owned = OwnedHeaders::new([], vec![]);
        let mut h = headers(&[
            (
                "connection",
                "host, content-length, transfer-encoding, x-gone",
            ),
            ("host", "api.example.com"),
            ("content-length", "2"),
            ("x-gone", "1"),
        ]);
        owned.strip(&mut h, peer("203.0.113.9"));
        assert_eq!(h["host"], "api.example.com");
        assert_eq!(h["content-length"], "2");
        assert!(!h.contains_key("x-gone"));
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
        // Several lines are one chain; ports are allowed; the walk stops at garbage.
        let cases = [
            (
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
                ][..],
                "198.51.100.7",
            ),
            (
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.7:51000, 10.1.1.1")][..],
                "198.51.100.7",
            ),
            (
                &[("x-forwarded-for", "6.6.6.6, [2001:db8::7]:443, 10.1.1.1")][..],
                "2001:db8::7",
            ),
            (
                &[("x-forwarded-for", "6.6.6.6, unknown, 10.1.1.1")][..],
                "10.1.1.1",
            ),
            (&[("x-forwarded-for", "10.3.3.3, 10.1.1.1")][..], "10.3.3.3"),
        ];
        for (pairs, client) in cases {
            let mut h = headers(pairs);
            assert_eq!(
                owned.strip(&mut h, peer("10.0.0.2")),
                client.parse::<IpAddr>().unwrap(),
                "{pairs:?}"
            );
        }
    }
}
