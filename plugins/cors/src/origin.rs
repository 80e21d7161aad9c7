//! Origin rules: exact origins and wildcard-subdomain patterns, parsed once at configure time.

/// One allowed origin, or a pattern for the subdomains of one.
#[derive(Debug, PartialEq)]
pub enum OriginRule {
    /// `scheme://host[:port]`, lower-cased.
    Exact(String),
    /// `scheme://*.domain[:port]`: any origin `scheme://<labels>.domain[:port]` with at least one
    /// label in place of `*`. Stored as the scheme prefix and the `.domain[:port]` suffix.
    Subdomains { prefix: String, suffix: String },
}

impl OriginRule {
    pub fn parse(origin: &str) -> Result<Self, String> {
        let lower = origin.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once("://") else {
            return Err(format!(
                "`{origin}` is not an origin (expected scheme://host[:port])"
            ));
        };
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(format!("`{origin}` has an invalid scheme"));
        }
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(format!(
                "`{origin}` is not an origin: no path, query or user info allowed (expected scheme://host[:port])"
            ));
        }
        match rest.strip_prefix("*.") {
            Some(domain) => {
                if domain.is_empty() || domain.contains('*') || domain.starts_with('.') {
                    return Err(format!(
                        "`{origin}`: a wildcard must be followed by a domain, as in https://*.example.com"
                    ));
                }
                Ok(Self::Subdomains {
                    prefix: format!("{scheme}://"),
                    suffix: format!(".{domain}"),
                })
            }
            None if rest.contains('*') => Err(format!(
                "`{origin}`: `*` is only allowed as the first label, as in https://*.example.com"
            )),
            None => Ok(Self::Exact(lower)),
        }
    }

    /// Whether the browser-sent `origin` is allowed by this rule (scheme and host compare
    /// case-insensitively, the port exactly).
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Exact(allowed) => allowed.eq_ignore_ascii_case(origin),
            Self::Subdomains { prefix, suffix } => {
                let len = origin.len();
                if len <= prefix.len() + suffix.len()
                    || !origin.is_char_boundary(prefix.len())
                    || !origin.is_char_boundary(len - suffix.len())
                {
                    return false;
                }
                let (head, tail) = (&origin[..prefix.len()], &origin[len - suffix.len()..]);
                let labels = &origin[prefix.len()..len - suffix.len()];
                head.eq_ignore_ascii_case(prefix)
                    && tail.eq_ignore_ascii_case(suffix)
                    && labels.split('.').all(|l| {
                        !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OriginRule;

    fn rule(s: &str) -> OriginRule {
        OriginRule::parse(s).unwrap()
    }

    #[test]
    fn exact_origin_matches_case_insensitively_and_only_itself() {
        let r = rule("https://App.example.com");
        assert!(r.matches("https://app.example.com"));
        assert!(r.matches("HTTPS://APP.EXAMPLE.COM"));
        assert!(!r.matches("http://app.example.com"));
        assert!(!r.matches("https://app.example.com:8443"));
        assert!(!r.matches("https://app.example.com.evil.com"));
    }

    #[test]
    fn wildcard_matches_subdomains_but_not_the_apex_or_lookalikes() {
        let r = rule("https://*.example.com");
        assert!(r.matches("https://a.example.com"));
        assert!(r.matches("https://a.b.example.com"));
        assert!(!r.matches("https://example.com"));
        assert!(!r.matches("https://evilexample.com"));
        assert!(!r.matches("https://a.example.com.evil.com"));
        assert!(!r.matches("http://a.example.com"));
        assert!(!r.matches("https://a:b@x.example.com"));
        assert!(!r.matches("https://.example.com"));
        assert!(!r.matches("https://a..example.com"));
    }

    #[test]
    fn wildcard_with_port() {
        let r = rule("https://*.example.com:8443");
        assert!(r.matches("https://a.example.com:8443"));
        assert!(!r.matches("https://a.example.com"));
    }

    #[test]
    fn invalid_origins_are_rejected_with_a_reason() {
        for (bad, why) in [
            ("example.com", "not an origin"),
            ("https://example.com/path", "no path"),
            ("https://a.*.example.com", "only allowed as the first label"),
            ("https://*.", "must be followed by a domain"),
        ] {
            let err = OriginRule::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
