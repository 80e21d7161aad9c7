//! Ingress: every client request is made canonical once, before routing.
//!
//! One path ([`path`]), one authority ([`authority`]) and the gateway-owned header fields
//! removed ([`headers`]). Routing, the plugins and the upstream all see that same request, so
//! no trick of encoding, duplicated field or spoofed identity header sends a request past the
//! plugins of the route it really belongs to. What cannot be made safe is refused with 400.

pub mod authority;
pub mod headers;
pub mod path;

use std::net::IpAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;

pub use authority::AuthorityError;
pub use headers::OwnedHeaders;
pub use path::{PathError, PathRules};

/// Why a request was refused at ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    /// The path cannot be made safe.
    #[error("request path refused: {0}")]
    Path(#[from] PathError),
    /// The authority is missing, duplicated, conflicting or malformed.
    #[error("request authority refused: {0}")]
    Authority(#[from] AuthorityError),
    /// A method with lower-case letters: methods are case-sensitive (RFC 9110 §9.1), and
    /// servers that upper-case them would run `post` as the `POST` a route was keeping.
    #[error("request method refused: methods are case-sensitive and none has lower-case letters")]
    Method,
}

/// How requests are made canonical, from `[server]`; one per snapshot.
#[derive(Debug, Clone, Default)]
pub struct IngressRules {
    /// Path canonicalisation.
    pub path: PathRules,
    /// Header fields the gateway owns.
    pub owned: OwnedHeaders,
}

/// `HTTP2-Settings` belongs to an `Upgrade: h2c` that is never forwarded.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Where a request came from, as far as trust goes.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The connection's peer address.
    pub addr: IpAddr,
    /// It arrived on an `internal` listener: the gateway-owned headers it carries are kept.
    pub internal: bool,
}

/// Makes `parts` canonical in place: an origin-form target with the canonical path, `Host`
/// set to the canonical authority, gateway-owned fields removed. Returns the client's address
/// (see [`OwnedHeaders::strip`]).
pub fn canonicalise(
    parts: &mut http::request::Parts,
    peer: Peer,
    rules: &IngressRules,
) -> Result<IpAddr, IngressError> {
    if parts
        .method
        .as_str()
        .bytes()
        .any(|b| b.is_ascii_lowercase())
    {
        return Err(IngressError::Method);
    }
    let authority = authority::canonical(parts)?;
    let canonical = path::canonical(parts.uri.path(), rules.path)?;
    let rebuilt = match canonical {
        std::borrow::Cow::Borrowed(_) if parts.uri.authority().is_none() => None,
        canonical => Some(match parts.uri.query() {
            Some(query) => format!("{canonical}?{query}"),
            None => canonical.into_owned(),
        }),
    };
    if let Some(target) = rebuilt {
        // A canonical path and the query the client sent, which was valid in its URI.
        let path_and_query = PathAndQuery::try_from(target).map_err(|_| PathError::BadEscape)?;
        parts.uri = http::Uri::from(path_and_query);
    }
    match authority {
        Some(authority) => {
            parts.headers.insert(header::HOST, authority);
        }
        None => {
            parts.headers.remove(header::HOST);
        }
    }
    parts.headers.remove(&HTTP2_SETTINGS);
    Ok(rules.owned.strip(&mut parts.headers, peer))
}

/// The request's canonical authority, once [`canonicalise`] has run.
pub fn host(parts: &http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
}

/// Whether the route lets this `Upgrade` through: every protocol the client offers must be
/// one the route allows, and `h2c` never is (it would open an HTTP/2 session with the
/// upstream that no route or plugin sees). Otherwise the request is served without the
/// upgrade, which RFC 9110 §7.8 allows.
pub fn upgrade_allowed(offered: &HeaderValue, allowed: &[String]) -> bool {
    let Ok(offered) = offered.to_str() else {
        return false;
    };
    let mut protocols = offered
        .split(',')
        .map(|p| p.trim().split('/').next().unwrap_or("").trim())
        .peekable();
    protocols.peek().is_some()
        && protocols.all(|p| {
            !p.eq_ignore_ascii_case("h2c") && allowed.iter().any(|a| a.eq_ignore_ascii_case(p))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{HostMatch, Matcher, PathMatch, RequestInfo, RouteTable};
    use proptest::prelude::*;

    fn local() -> Peer {
        Peer {
            addr: "127.0.0.1".parse().unwrap(),
            internal: false,
        }
    }

    fn request(target: &str, host: &str) -> http::request::Parts {
        http::Request::builder()
            .uri(target)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_the_host_it_named() {
        let mut parts = request(
            "http://API.example.com./a/%2e%2e/b?q=%2e",
            "api.example.com",
        );
        let rules = IngressRules::default();
        canonicalise(&mut parts, local(), &rules).unwrap();
        assert_eq!(parts.uri, "/b?q=%2e");
        assert_eq!(host(&parts), Some("api.example.com"));
    }

    #[test]
    fn h2c_and_unlisted_upgrades_are_not_let_through() {
        let ws = ["websocket".to_owned()];
        let allowed =
            |v: &'static str, list: &[String]| upgrade_allowed(&HeaderValue::from_static(v), list);
        assert!(allowed("websocket", &ws));
        assert!(allowed("WebSocket", &ws));
        assert!(!allowed("h2c", &ws));
        assert!(!allowed("websocket, h2c", &ws));
        assert!(!allowed("websocket", &[]));
        assert!(!allowed("h2c", &["h2c".to_owned()]));
        assert!(!allowed("", &ws));
    }

    fn raw_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%70"),
            Just("%50"),
            Just("private"),
            Just("rivate"),
            Just("public"),
            Just("x"),
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    proptest! {
        /// Whatever the client's spelling, a request whose canonical path is under the
        /// protected prefix is routed to the protected route.
        #[test]
        fn a_canonical_path_under_a_protected_prefix_is_always_routed_there(raw in raw_path()) {
            let matcher = |path| Matcher {
                listeners: vec![],
                host: HostMatch::Any,
                path,
                case_insensitive: false,
                methods: vec![],
                headers: vec![],
            };
            let table = RouteTable::new(vec![
                (matcher(PathMatch::Prefix("/private".into())), "private"),
                (matcher(PathMatch::Any), "public"),
            ]);
            let Ok(mut parts) = http::Request::builder().uri(raw.as_str()).header("host", "a")
                .body(()).map(|r| r.into_parts().0) else { return Ok(()) };
            let rules = IngressRules::default();
            if canonicalise(&mut parts, local(), &rules).is_err() {
                return Ok(());
            }
            let path = parts.uri.path();
            let info = RequestInfo {
                listener: 0,
                host: host(&parts),
                method: &http::Method::GET,
                path,
                headers: &parts.headers,
            };
            let protected = path == "/private" || path.starts_with("/private/");
            let routed = table.find(&info).copied();
            prop_assert_eq!(routed == Some("private"), protected, "{} → {}", raw, path);
        }
    }
}
