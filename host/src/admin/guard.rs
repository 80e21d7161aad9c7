//! Who may talk to the admin API from a browser: nobody.
//!
//! The admin API has no cookies, but a web page can still reach it through the browser of
//! someone on the admin network. Two defences close that door:
//!
//! - **DNS rebinding.** A page on `evil.example` rebinds its name to `127.0.0.1` and then
//!   reads `http://evil.example:9901/status` as same-origin. The browser still sends
//!   `Host: evil.example:9901`, so a request must name the address the client connected to
//!   (an IP literal, which no rebinding produces), `localhost` on a loopback address, or a name
//!   listed in `[admin] allowed_hosts`; anything else gets `421 Misdirected Request`.
//! - **Cross-origin simple requests.** Any page may send a form `POST` to `/reload` without
//!   reading the answer. Browsers mark such requests with `Origin`, so a request that changes
//!   something and carries an `Origin` other than the admin API's own gets `403`. Tools such as
//!   curl send no `Origin` and are not affected.

use std::net::{IpAddr, SocketAddr};

use http::{Method, Request, header};

/// The `host:port` names one admin connection answers to, lower-cased.
pub struct AdminNames {
    names: Vec<String>,
}

/// Why a request was refused, as the client reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `421`: the request names a host this API does not answer to.
    Misdirected(String),
    /// `403`: a web page of another origin tried to change the gateway.
    CrossOrigin(String),
}

impl AdminNames {
    /// The names of a connection accepted on `local`, plus the configured `allowed` entries
    /// (an entry without a port names the host on `local`'s port).
    pub fn new(local: SocketAddr, allowed: &[String]) -> Self {
        let port = local.port();
        let mut names = vec![literal(local.ip(), port)];
        // Bound on `[::]`, an IPv4 client connects to a mapped address but names the IPv4 one.
        if let IpAddr::V6(v6) = local.ip()
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            names.push(literal(IpAddr::V4(v4), port));
        }
        if local.ip().is_loopback() || local.ip().to_canonical().is_loopback() {
            names.push(format!("localhost:{port}"));
        }
        for entry in allowed {
            names.push(match normalise(entry, port) {
                Some(name) => name,
                None => entry.clone(),
            });
        }
        Self { names }
    }

    fn accepts(&self, authority: &str) -> bool {
        // A Host without a port means port 80: that is what the client dialled.
        normalise(authority, 80).is_some_and(|name| self.names.contains(&name))
    }

    /// Refuses a request that names another host, or that changes something and comes from
    /// a web page of another origin.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        // An absolute-form target overrides `Host` (RFC 9112, section 3.2.2).
        let authority = match req.uri().authority() {
            Some(authority) => Some(authority.as_str()),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok()),
        };
        match authority {
            Some(authority) if self.accepts(authority) => {}
            Some(authority) => {
                return Err(Refusal::Misdirected(format!(
                    "misdirected request: this admin API does not answer to the host {authority:?}; \
                     list the name in [admin] allowed_hosts to use it\n"
                )));
            }
            None => {
                return Err(Refusal::Misdirected(
                    "misdirected request: the request names no host (send a Host header)\n".into(),
                ));
            }
        }
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            return Ok(());
        }
        let mut origins = req.headers().get_all(header::ORIGIN).iter();
        let (first, second) = (origins.next(), origins.next());
        match (first, second) {
            (None, _) => Ok(()),
            (Some(origin), None)
                if origin
                    .to_str()
                    .ok()
                    .and_then(|o| o.strip_prefix("http://"))
                    .is_some_and(|authority| self.accepts(authority)) =>
            {
                Ok(())
            }
            (Some(origin), _) => Err(Refusal::CrossOrigin(format!(
                "forbidden: a request from the web origin {:?} cannot change the gateway\n",
                String::from_utf8_lossy(origin.as_bytes())
            ))),
        }
    }
}

fn literal(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// `authority` as lower-case `host:port`, with `default_port` when it has none; `None` when it
/// is not a plain authority (a path or user info in an `Origin`, say).
fn normalise(authority: &str, default_port: u16) -> Option<String> {
    if authority.contains(['/', '@']) {
        return None;
    }
    let parsed: http::uri::Authority = authority.parse().ok()?;
    let port = match parsed.port() {
        Some(port) => port.as_u16(),
        // `host:` with an empty port is the default port too.
        None => default_port,
    };
    Some(format!("{}:{port}", parsed.host().to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, host: Option<&str>, origin: Option<&str>) -> Request<()> {
        let mut req = Request::builder().method(method).uri("/reload");
        if let Some(host) = host {
            req = req.header(header::HOST, host);
        }
        if let Some(origin) = origin {
            req = req.header(header::ORIGIN, origin);
        }
        req.body(()).unwrap()
    }

    fn loopback() -> AdminNames {
        AdminNames::new(
            "127.0.0.1:9901".parse().unwrap(),
            &["admin.internal".into()],
        )
    }

    #[test]
    fn the_own_address_localhost_and_listed_names_are_accepted() {
        let names = loopback();
        for host in [
            "127.0.0.1:9901",
            "localhost:9901",
            "LocalHost:9901",
            "admin.internal:9901",
        ] {
            assert_eq!(
                names.check(&request(Method::GET, Some(host), None)),
                Ok(()),
                "{host}"
            );
        }
    }

    #[test]
    fn other_names_ports_and_a_missing_host_are_misdirected() {
        let names = loopback();
        for host in [
            Some("evil.example:9901"),
            Some("127.0.0.1:9902"),
            Some("localhost"),
            Some("localhost.:9901"),
            Some("127.0.0.1:9901@evil"),
            None,
        ] {
            assert!(
                matches!(
                    names.check(&request(Method::GET, host, None)),
                    Err(Refusal::Misdirected(_))
                ),
                "{host:?}"
            );
        }
    }

    #[test]
    fn localhost_is_no_name_of_a_public_address_and_ipv6_literals_keep_brackets() {
        let public = AdminNames::new("10.0.0.5:9901".parse().unwrap(), &[]);
        assert!(
            public
                .check(&request(Method::GET, Some("localhost:9901"), None))
                .is_err()
        );
        assert!(
            public
                .check(&request(Method::GET, Some("10.0.0.5:9901"), None))
                .is_ok()
        );
        let v6 = AdminNames::new("[::1]:9901".parse().unwrap(), &[]);
        assert!(
            v6.check(&request(Method::GET, Some("[::1]:9901"), None))
                .is_ok()
        );
        assert!(
            v6.check(&request(Method::GET, Some("localhost:9901"), None))
                .is_ok()
        );
        let mapped = AdminNames::new("[::ffff:10.0.0.5]:9901".parse().unwrap(), &[]);
        assert!(
            mapped
                .check(&request(Method::GET, Some("10.0.0.5:9901"), None))
                .is_ok()
        );
    }

    #[test]
    fn a_configured_name_with_a_port_matches_that_port_only() {
        let names = AdminNames::new(
            "127.0.0.1:9901".parse().unwrap(),
            &["admin.internal:443".into()],
        );
        assert!(
            names
                .check(&request(Method::GET, Some("admin.internal:443"), None))
                .is_ok()
        );
        assert!(
            names
                .check(&request(Method::GET, Some("admin.internal:9901"), None))
                .is_err()
        );
    }

    #[test]
    fn a_post_from_another_origin_is_forbidden_and_one_without_origin_is_not() {
        let names = loopback();
        let host = Some("127.0.0.1:9901");
        assert_eq!(names.check(&request(Method::POST, host, None)), Ok(()));
        for own in ["http://127.0.0.1:9901", "http://localhost:9901"] {
            assert_eq!(
                names.check(&request(Method::POST, host, Some(own))),
                Ok(()),
                "{own}"
            );
        }
        for foreign in [
            "https://evil.example",
            "http://evil.example:9901",
            "https://127.0.0.1:9901",
            "null",
            "http://127.0.0.1:9901/path",
        ] {
            assert_eq!(
                names.check(&request(Method::POST, host, Some(foreign))),
                Err(Refusal::CrossOrigin(format!(
                    "forbidden: a request from the web origin {foreign:?} cannot change the gateway\n"
                ))),
            );
        }
        // Reading is guarded by the Host check alone: a page cannot read a cross-origin answer.
        assert_eq!(
            names.check(&request(Method::GET, host, Some("https://evil.example"))),
            Ok(())
        );
    }
}
