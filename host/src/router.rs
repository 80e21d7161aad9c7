//! Route matching: host, path (exact or prefix), method, headers and listener.
//!
//! Routes are tried in file order and the first whose every condition holds wins, so the
//! config reads top to bottom like a firewall rule list: put specific routes before general
//! ones. Matching allocates nothing.

use http::{HeaderMap, Method};

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Any path.
    Any,
    /// Exactly this path.
    Exact(String),
    /// This prefix on a segment boundary: `/api` takes `/api`, `/api/` and `/api/x`, not `/apix`.
    /// A prefix ending in `/` takes everything below it.
    Prefix(String),
}

impl PathMatch {
    /// Whether `path` (canonical, see [`crate::ingress`]) matches; with `case_insensitive`,
    /// ASCII letters compare without case.
    fn matches(&self, path: &str, case_insensitive: bool) -> bool {
        let same = |a: &str, b: &str| match case_insensitive {
            true => a.eq_ignore_ascii_case(b),
            false => a == b,
        };
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => same(path, p),
            PathMatch::Prefix(prefix) => match strip_prefix(path, prefix, case_insensitive) {
                Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
        }
    }
}

/// `path` without `prefix`, if it starts with it (ignoring ASCII case when asked).
pub fn strip_prefix<'p>(path: &'p str, prefix: &str, case_insensitive: bool) -> Option<&'p str> {
    if !case_insensitive {
        return path.strip_prefix(prefix);
    }
    let head = path.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &path[prefix.len()..])
}

/// How a route matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// Exactly this host (lower case, no port).
    Exact(String),
    /// Any subdomain of this domain (stored as `.example.com`).
    Subdomain(String),
}

impl HostMatch {
    /// Parses `api.example.com` or `*.example.com`.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let lower = pattern.to_ascii_lowercase();
        if let Some(domain) = lower.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err(format!(
                    "`{pattern}`: a wildcard host looks like `*.example.com`"
                ));
            }
            return Ok(HostMatch::Subdomain(format!(".{domain}")));
        }
        if lower.is_empty() || lower.contains(['*', '/', ' ']) {
            return Err(format!(
                "`{pattern}` is not a host name (a wildcard looks like `*.example.com`)"
            ));
        }
        Ok(HostMatch::Exact(lower))
    }

    fn matches(&self, host: Option<&str>) -> bool {
        let host = host.map(strip_port);
        match (self, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(h), Some(host)) => h.eq_ignore_ascii_case(host),
            (HostMatch::Subdomain(suffix), Some(host)) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            (_, None) => false,
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map_or(host, |(v6, _)| &v6[1..]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The conditions of one route.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Listener indices the route serves on; empty means all.
    pub listeners: Vec<usize>,
    /// Host condition.
    pub host: HostMatch,
    /// Path condition.
    pub path: PathMatch,
    /// Compare the path without regard to ASCII case.
    pub case_insensitive: bool,
    /// Allowed methods; empty means all.
    pub methods: Vec<Method>,
    /// Headers that must carry exactly these values.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// What the router looks at in a request.
pub struct RequestInfo<'a> {
    /// Index of the listener that accepted the connection.
    pub listener: usize,
    /// `Host` header or `:authority`.
    pub host: Option<&'a str>,
    /// The method.
    pub method: &'a Method,
    /// The path, without query.
    pub path: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
}

impl Matcher {
    /// Whether every condition holds for `req`.
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        (self.listeners.is_empty() || self.listeners.contains(&req.listener))
            && self.path.matches(req.path, self.case_insensitive)
            && (self.methods.is_empty()
                || self.methods.contains(req.method)
                // Servers answer HEAD with their GET handler: a GET route keeps HEAD too.
                || (*req.method == Method::HEAD && self.methods.contains(&Method::GET)))
            && self.host.matches(req.host)
            && self.headers.iter().all(|(name, value)| {
                // Exactly one field with that value: with two, the upstream may read the other.
                let mut values = req.headers.get_all(name).iter();
                values.next() == Some(value) && values.next().is_none()
            })
    }
}

/// Routes in file order.
pub struct RouteTable<R> {
    routes: Vec<(Matcher, R)>,
}

impl<R> RouteTable<R> {
    /// A table over `routes`, tried in order.
    pub fn new(routes: Vec<(Matcher, R)>) -> Self {
        Self { routes }
    }

    /// The first route whose matcher takes `req`.
    pub fn find(&self, req: &RequestInfo<'_>) -> Option<&R> {
        self.routes
            .iter()
            .find(|(m, _)| m.matches(req))
            .map(|(_, r)| r)
    }

    /// All routes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &R> {
        self.routes.iter().map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any() -> Matcher {
        Matcher {
            listeners: vec![],
            host: HostMatch::Any,
            path: PathMatch::Any,
            case_insensitive: false,
            methods: vec![],
            headers: vec![],
        }
    }

    fn info<'a>(
        host: Option<&'a str>,
        method: &'a Method,
        path: &'a str,
        headers: &'a HeaderMap,
    ) -> RequestInfo<'a> {
        RequestInfo {
            listener: 0,
            host,
            method,
            path,
            headers,
        }
    }

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        let p = PathMatch::Prefix("/api".into());
        assert!(p.matches("/api", false));
        assert!(p.matches("/api/", false));
        assert!(p.matches("/api/users", false));
        assert!(!p.matches("/apix", false));
        assert!(!p.matches("/ap", false));
        assert!(!p.matches("/API/users", false));
        assert!(p.matches("/API/users", true));
        assert!(!p.matches("/APIx", true));
        let slash = PathMatch::Prefix("/static/".into());
        assert!(slash.matches("/static/a.css", false));
        assert!(!slash.matches("/static", false));
        assert_eq!(strip_prefix("/\u{e9}", "/a", true), None);
    }

    #[test]
    fn host_matching_ignores_case_and_port() {
        let exact = HostMatch::parse("API.example.com").unwrap();
        assert!(exact.matches(Some("api.example.com:8080")));
        assert!(!exact.matches(Some("api.example.com.evil")));
        assert!(!exact.matches(None));
        let wild = HostMatch::parse("*.example.com").unwrap();
        assert!(wild.matches(Some("a.b.Example.com")));
        assert!(!wild.matches(Some("example.com")));
        assert!(!wild.matches(Some("badexample.com")));
        assert!(HostMatch::parse("a.*.com").is_err());
        assert_eq!(strip_port("[::1]:8080"), "::1");
    }

    #[test]
    fn first_matching_route_wins() {
        let mut users = any();
        users.path = PathMatch::Prefix("/users".into());
        users.methods = vec![Method::GET];
        let table = RouteTable::new(vec![(users, "users"), (any(), "fallback")]);
        let h = HeaderMap::new();
        assert_eq!(
            table.find(&info(None, &Method::GET, "/users/1", &h)),
            Some(&"users")
        );
        assert_eq!(
            table.find(&info(None, &Method::POST, "/users/1", &h)),
            Some(&"fallback")
        );
    }

    #[test]
    fn header_condition_needs_exact_value() {
        let mut m = any();
        m.headers = vec![(
            http::HeaderName::from_static("x-version"),
            http::HeaderValue::from_static("2"),
        )];
        let mut h = HeaderMap::new();
        assert!(!m.matches(&info(None, &Method::GET, "/", &h)));
        h.insert("x-version", "2".parse().unwrap());
        assert!(m.matches(&info(None, &Method::GET, "/", &h)));
        h.append("x-version", "3".parse().unwrap());
        assert!(
            !m.matches(&info(None, &Method::GET, "/", &h)),
            "a second value the upstream may read instead"
        );
    }

    #[test]
    fn a_get_route_takes_head_too() {
        let mut m = any();
        m.methods = vec![Method::GET];
        let h = HeaderMap::new();
        assert!(m.matches(&info(None, &Method::HEAD, "/", &h)));
        assert!(!m.matches(&info(None, &Method::POST, "/", &h)));
        m.methods = vec![Method::POST];
        assert!(!m.matches(&info(None, &Method::HEAD, "/", &h)));
    }
}
