//! Path rewrites (prefix or regex with captures) and query parameter edits.

use regex::Regex;

/// One path rewrite rule; the first rule that matches applies.
#[derive(Debug)]
pub enum PathRule {
    /// Replace a leading path prefix (segment-aware: `/v1` matches `/v1` and `/v1/x`, not
    /// `/v10`).
    Prefix { from: String, to: String },
    /// Replace the first match of a regex; `$1`, `${name}` refer to captures.
    Regex { pattern: Regex, replace: String },
}

impl PathRule {
    /// The rewritten path, if this rule matches `path`.
    pub fn rewrite(&self, path: &str) -> Option<String> {
        match self {
            PathRule::Prefix { from, to } => {
                let rest = path.strip_prefix(from.as_str())?;
                if !(rest.is_empty() || rest.starts_with('/') || from.ends_with('/')) {
                    return None;
                }
                let to = to.trim_end_matches('/');
                Some(match rest {
                    "" if to.is_empty() => "/".to_owned(),
                    "" => to.to_owned(),
                    _ if rest.starts_with('/') => format!("{to}{rest}"),
                    // `from` ended with a slash that `rest` lost.
                    _ => format!("{to}/{rest}"),
                })
            }
            PathRule::Regex { pattern, replace } => pattern
                .is_match(path)
                .then(|| pattern.replace(path, replace.as_str()).into_owned()),
        }
    }
}

/// Query parameter edits, applied in order: `remove`, `rename`, `set`, `add`.
#[derive(Debug, Default)]
pub struct QueryEdits {
    pub remove: Vec<String>,
    pub rename: Vec<(String, String)>,
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
}

impl QueryEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// The edited query string (`None` when no parameter is left). Parameters the edits do
    /// not touch keep their original encoding and order.
    pub fn apply(&self, query: Option<&str>) -> Option<String> {
        let mut params: Vec<Param> = query
            .unwrap_or("")
            .split('&')
            .filter(|raw| !raw.is_empty())
            .map(Param::parse)
            .collect();
        params.retain(|p| !self.remove.contains(&p.name));
        for (from, to) in &self.rename {
            for p in params.iter_mut().filter(|p| p.name == *from) {
                *p = Param::new(to, &p.value);
            }
        }
        for (name, value) in &self.set {
            match params.iter().position(|p| p.name == *name) {
                Some(first) => {
                    params[first] = Param::new(name, value);
                    let mut i = 0;
                    params.retain(|p| {
                        i += 1;
                        i - 1 == first || p.name != *name
                    });
                }
                None => params.push(Param::new(name, value)),
            }
        }
        for (name, value) in &self.add {
            params.push(Param::new(name, value));
        }
        let joined: Vec<&str> = params.iter().map(|p| p.raw.as_str()).collect();
        (!joined.is_empty()).then(|| joined.join("&"))
    }
}

/// One `name=value` pair: decoded for comparison, raw for output.
struct Param {
    name: String,
    value: String,
    raw: String,
}

impl Param {
    fn parse(raw: &str) -> Self {
        let (name, value) = form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .unwrap_or_default();
        Self {
            name,
            value,
            raw: raw.to_owned(),
        }
    }

    fn new(name: &str, value: &str) -> Self {
        let raw = form_urlencoded::Serializer::new(String::new())
            .append_pair(name, value)
            .finish();
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(from: &str, to: &str) -> PathRule {
        PathRule::Prefix {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn prefix_rewrites_are_segment_aware() {
        let rule = prefix("/v1", "/api/v1");
        assert_eq!(rule.rewrite("/v1/users").as_deref(), Some("/api/v1/users"));
        assert_eq!(rule.rewrite("/v1").as_deref(), Some("/api/v1"));
        assert_eq!(rule.rewrite("/v10/users"), None);
        let strip = prefix("/public", "/");
        assert_eq!(strip.rewrite("/public/x").as_deref(), Some("/x"));
        assert_eq!(strip.rewrite("/public").as_deref(), Some("/"));
    }

    #[test]
    fn regex_rewrites_use_captures() {
        let rule = PathRule::Regex {
            pattern: Regex::new(r"^/users/(?P<id>\d+)/orders$").unwrap(),
            replace: "/orders?user=${id}".replace("?user=", "/by-user/"),
        };
        assert_eq!(
            rule.rewrite("/users/42/orders").as_deref(),
            Some("/orders/by-user/42")
        );
        assert_eq!(rule.rewrite("/users/x/orders"), None);
    }

    #[test]
    fn query_edits_keep_untouched_parameters_verbatim() {
        let edits = QueryEdits {
            remove: vec!["debug".into()],
            rename: vec![("q".into(), "search".into())],
            set: vec![("page".into(), "1".into())],
            add: vec![("tag".into(), "a b&c".into())],
        };
        let out = edits.apply(Some("q=rock%20%26%20roll&debug=1&page=3&page=4&x=%7E"));
        assert_eq!(
            out.as_deref(),
            Some("search=rock+%26+roll&page=1&x=%7E&tag=a+b%26c")
        );
        let only_removed = QueryEdits {
            remove: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(only_removed.apply(Some("a=1")), None);
    }
}
