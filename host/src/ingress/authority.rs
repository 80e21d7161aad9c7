//! The one authority a request is routed on and forwarded with.
//!
//! HTTP/1.1 names it in `Host` (and, in absolute form, in the request target too); HTTP/2 in
//! `:authority` (and maybe `Host`). A request whose names disagree, or that has two `Host`
//! fields, is refused: routing on one and forwarding the other is how requests reach a
//! virtual host past its route's plugins.

use http::HeaderValue;
use http::header::HOST;

/// Why a request's authority is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// More than one `Host` field.
    #[error("the request has more than one Host header")]
    DuplicateHost,
    /// `Host` names another authority than the request target or `:authority`.
    #[error("the Host header does not match the request's authority")]
    Conflict,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    #[error("an HTTP/1.1 request needs a Host header")]
    MissingHost,
    /// Not `host[:port]`.
    #[error("the request's authority is not a valid host[:port]")]
    Invalid,
}

/// The request's canonical authority: `host[:port]` in lower case, one trailing dot removed
/// from a host name, no user information. `None` for an HTTP/1.0 or HTTP/2 request that
/// names none.
pub fn canonical(parts: &http::request::Parts) -> Result<Option<HeaderValue>, AuthorityError> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(AuthorityError::DuplicateHost);
    }
    // Unchanged values are shared, not copied: a `Host` field clones by reference count.
    let host = host
        .map(|h| normalise(h.as_bytes()).map(|n| n.unwrap_or_else(|| h.clone())))
        .transpose()?;
    let target = parts
        .uri
        .authority()
        .map(|a| {
            let raw = a.as_str().as_bytes();
            match normalise(raw)? {
                Some(normalised) => Ok(normalised),
                None => HeaderValue::from_bytes(raw).map_err(|_| AuthorityError::Invalid),
            }
        })
        .transpose()?;
    match (target, host) {
        (Some(target), Some(host)) if target != host => Err(AuthorityError::Conflict),
        (Some(authority), _) | (None, Some(authority)) => Ok(Some(authority)),
        (None, None) if parts.version == http::Version::HTTP_11 => Err(AuthorityError::MissingHost),
        (None, None) => Ok(None),
    }
}

/// `host[:port]` checked and normalised; `None` when it already is.
fn normalise(raw: &[u8]) -> Result<Option<HeaderValue>, AuthorityError> {
    let (host, port) = split_port(raw)?;
    if host.is_empty() {
        return Err(AuthorityError::Invalid);
    }
    let ip_literal = host.starts_with(b"[");
    if ip_literal {
        let inner = &host[1..host.len() - 1];
        let text = std::str::from_utf8(inner).map_err(|_| AuthorityError::Invalid)?;
        text.parse::<std::net::Ipv6Addr>()
            .map_err(|_| AuthorityError::Invalid)?;
    } else if !host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        // No user information (`@`), spaces, slashes or escapes: a host name or IPv4 address.
        return Err(AuthorityError::Invalid);
    }
    let trailing_dot = !ip_literal && host.len() > 1 && host.ends_with(b".");
    let host = if trailing_dot {
        &host[..host.len() - 1]
    } else {
        host
    };
    if host.starts_with(b".") || host.ends_with(b".") || host.windows(2).any(|w| w == b"..") {
        return Err(AuthorityError::Invalid);
    }
    let lower = host.iter().all(|b| !b.is_ascii_uppercase());
    if lower && !trailing_dot {
        return Ok(None);
    }
    let mut out = host.to_ascii_lowercase();
    if let Some(port) = port {
        out.push(b':');
        out.extend_from_slice(port);
    }
    HeaderValue::from_bytes(&out)
        .map(Some)
        .map_err(|_| AuthorityError::Invalid)
}

/// Splits `host[:port]` (with `[v6]` literals), checking the port.
fn split_port(raw: &[u8]) -> Result<(&[u8], Option<&[u8]>), AuthorityError> {
    let colon = if raw.starts_with(b"[") {
        let close = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(AuthorityError::Invalid)?;
        match &raw[close + 1..] {
            [] => None,
            [b':', ..] => Some(close + 1),
            _ => return Err(AuthorityError::Invalid),
        }
    } else {
        raw.iter().position(|&b| b == b':')
    };
    let Some(colon) = colon else {
        return Ok((raw, None));
    };
    let port = &raw[colon + 1..];
    let valid = !port.is_empty()
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(port)
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
            .is_some();
    if !valid {
        return Err(AuthorityError::Invalid);
    }
    Ok((&raw[..colon], Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, version: http::Version, hosts: &[&str]) -> http::request::Parts {
        let mut req = http::Request::builder().uri(uri).version(version);
        for h in hosts {
            req = req.header(HOST, *h);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn authority(uri: &str, hosts: &[&str]) -> Result<Option<String>, AuthorityError> {
        canonical(&parts(uri, http::Version::HTTP_11, hosts))
            .map(|a| a.map(|v| v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn host_names_are_lower_cased_without_a_trailing_dot() {
        assert_eq!(
            authority("/", &["api.example.com"]),
            Ok(Some("api.example.com".into()))
        );
        assert_eq!(
            authority("/", &["Admin.Example.COM.:8080"]),
            Ok(Some("admin.example.com:8080".into()))
        );
        assert_eq!(authority("/", &["[::1]:9"]), Ok(Some("[::1]:9".into())));
        assert_eq!(authority("/", &["127.0.0.1"]), Ok(Some("127.0.0.1".into())));
    }

    #[test]
    fn conflicting_duplicate_missing_and_malformed_authorities_are_refused() {
        use AuthorityError::*;
        assert_eq!(authority("/", &["a", "a"]), Err(DuplicateHost));
        assert_eq!(authority("http://a/x", &["b"]), Err(Conflict));
        assert_eq!(authority("http://A./x", &["a"]), Ok(Some("a".into())));
        assert_eq!(authority("/", &[]), Err(MissingHost));
        for bad in [
            "user@host",
            "a b",
            "a/b",
            "",
            ":80",
            "a:",
            "a:99999",
            "a:8x",
            "[::1",
            "[zz]",
            "a..b",
            ".a",
            "a..",
            "%61",
        ] {
            assert_eq!(authority("/", &[bad]), Err(Invalid), "{bad:?}");
        }
    }

    #[test]
    fn http2_and_http10_may_name_no_authority() {
        for version in [http::Version::HTTP_2, http::Version::HTTP_10] {
            assert_eq!(canonical(&parts("/", version, &[])), Ok(None));
        }
        let h2 = parts("https://a.example/x", http::Version::HTTP_2, &["b.example"]);
        assert_eq!(canonical(&h2), Err(AuthorityError::Conflict));
    }
}
