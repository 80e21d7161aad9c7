//! Preparing a request for the upstream and a response for the client: hop-by-hop fields
//! removed (RFC 9110 §7.6.1), `X-Forwarded-*`, `X-Real-IP` and the request id set.
//!
//! A client's own forwarding headers were removed at ingress unless it is a trusted proxy
//! ([`crate::ingress::headers`]), so what is set here is the gateway's word.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Id`.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Removes hop-by-hop fields. The fields a client's `Connection` named went at ingress; a
/// plugin cannot set `Connection`, so nothing set since can be removed through it.
/// `Transfer-Encoding` is left to hyper, which re-frames bodies on each connection.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &crate::fields::HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The hop a request took into the gateway.
pub struct Hop<'a> {
    /// The connection's peer (a trusted proxy, or the client itself).
    pub peer: std::net::IpAddr,
    /// The client, as ingress worked it out.
    pub client: std::net::IpAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The canonical authority.
    pub host: Option<&'a str>,
}

/// Appends the peer to `X-Forwarded-For` (its lines joined into one) and sets `X-Real-IP` to
/// the client and `X-Forwarded-Host` to the authority routed on. A trusted proxy's
/// `X-Forwarded-Proto` is kept; otherwise it is the gateway's own.
pub fn set_forwarded(headers: &mut HeaderMap, hop: Hop<'_>) {
    let peer = hop.peer.to_string();
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let xff = match prior.is_empty() {
        false => format!("{}, {peer}", prior.join(", ")),
        true => peer,
    };
    if let Ok(xff) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), xff);
    }
    if let Ok(client) = HeaderValue::from_str(&hop.client.to_string()) {
        headers.insert(X_REAL_IP.clone(), client);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = if hop.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    match hop.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// The request id: the client's if trusted and well-formed, otherwise a new random one.
pub fn request_id(headers: &HeaderMap, trust_client: bool) -> HeaderValue {
    if trust_client
        && let Some(id) = headers.get(&REQUEST_ID)
        && (1..=128).contains(&id.len())
        && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return id.clone();
    }
    let id = format!("{:032x}", fastrand::u128(..));
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_appends_the_peer_and_real_ip_names_the_client() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        h.append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.insert("x-forwarded-host", "admin.internal".parse().unwrap());
        let hop = Hop {
            peer: "10.0.0.1".parse().unwrap(),
            client: "203.0.113.9".parse().unwrap(),
            tls: true,
            host: Some("api.example.com"),
        };
        set_forwarded(&mut h, hop);
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 203.0.113.9, 10.0.0.1");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
    }

    #[test]
    fn malformed_client_request_id_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc 123".parse().unwrap());
        let id = request_id(&h, true);
        assert_eq!(id.len(), 32);
        h.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(request_id(&h, true), "abc-123");
        assert_ne!(request_id(&h, false), "abc-123");
    }
}
