//! The SecLang text layer: files into directives (continuation lines, comments, quoting),
//! action lists into actions, variable lists into variable specifications.
//!
//! Nothing here compiles anything; `ruleset` turns the pieces into rules.

use std::fmt;

/// Where a directive came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive: its name and its arguments, quotes removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub origin: Origin,
}

/// Splits a rules file into directives. Lines ending in `\` continue on the next line (as in
/// ModSecurity, the backslash and the newline are removed and nothing is inserted); `#` starts
/// a comment line.
pub fn directives(text: &str, file: &str) -> Result<Vec<Directive>, String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if pending.is_empty() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start_line = i + 1;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        let origin = Origin {
            file: file.to_owned(),
            line: start_line,
        };
        let words = split_words(&pending).map_err(|e| format!("{origin}: {e}"))?;
        pending.clear();
        let mut words = words.into_iter();
        if let Some(name) = words.next() {
            out.push(Directive {
                name,
                args: words.collect(),
                origin,
            });
        }
    }
    if !pending.trim().is_empty() {
        return Err(format!(
            "{file}:{start_line}: the file ends inside a continued line"
        ));
    }
    Ok(out)
}

/// Whitespace-separated words; a double-quoted word may contain whitespace and `\"`. Other
/// backslashes are kept: they belong to the regex or the action inside.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'"') => {
                        word.push('"');
                        chars.next();
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => word.push(c),
                }
            }
            if !closed {
                return Err("unterminated double quote".to_owned());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// One action of an action list: `name` or `name:value` (single quotes around the value
/// removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAction {
    pub name: String,
    pub value: Option<String>,
}

/// Splits `id:1,phase:2,msg:'a, b',t:none` into actions. Commas inside single quotes do not
/// split; `\'` inside quotes is a quote.
pub fn actions(list: &str) -> Result<Vec<RawAction>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = list.chars().peekable();
    let mut pieces = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quote && chars.peek() == Some(&'\'') => {
                cur.push('\\');
                cur.push('\'');
                chars.next();
            }
            '\'' => {
                in_quote = !in_quote;
                cur.push(c);
            }
            ',' if !in_quote => pieces.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if in_quote {
        return Err(format!("unterminated single quote in actions `{list}`"));
    }
    pieces.push(cur);
    for piece in pieces {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.split_once(':') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (piece, None),
        };
        out.push(RawAction {
            name: name.to_owned(),
            value,
        });
    }
    Ok(out)
}

fn unquote(v: &str) -> String {
    let inner = v
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v);
    inner.replace("\\'", "'")
}

/// A variable as written: `ARGS`, `ARGS:q`, `!ARGS:q`, `&TX:foo`, `ARGS:/^json\./`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawVariable {
    pub name: String,
    pub selector: Option<String>,
    pub count: bool,
    pub exclude: bool,
}

/// Splits `REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|ARGS:foo` into variables. A `|` inside a
/// regex selector (`/a|b/`) does not split.
pub fn variables(list: &str) -> Result<Vec<RawVariable>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_regex = false;
    let mut in_quote = false;
    let mut prev = '\0';
    for c in list.chars() {
        match c {
            '/' if !in_quote
                && prev != '\\'
                && (in_regex || (cur.ends_with(':') && !is_xml(&cur))) =>
            {
                in_regex = !in_regex;
                cur.push(c);
            }
            '\'' if !in_regex && (in_quote || cur.ends_with(':')) => {
                in_quote = !in_quote;
                cur.push(c);
            }
            '|' if !in_regex && !in_quote => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
        prev = c;
    }
    parts.push(cur);
    let mut out = Vec::new();
    for part in parts {
        let mut p = part.trim();
        if p.is_empty() {
            return Err(format!("empty variable in `{list}`"));
        }
        let mut exclude = false;
        let mut count = false;
        loop {
            if let Some(rest) = p.strip_prefix('!') {
                exclude = true;
                p = rest;
            } else if let Some(rest) = p.strip_prefix('&') {
                count = true;
                p = rest;
            } else {
                break;
            }
        }
        let (name, selector) = match p.split_once(':') {
            Some((n, s)) => {
                let s = s
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .unwrap_or(s);
                (n, Some(s.to_owned()))
            }
            None => (p, None),
        };
        out.push(RawVariable {
            name: name.to_owned(),
            selector,
            count,
            exclude,
        });
    }
    Ok(out)
}

/// `XML:/xpath` selectors are paths, not regexes.
fn is_xml(var: &str) -> bool {
    var.trim_start_matches(['!', '&'])
        .eq_ignore_ascii_case("XML:")
}

/// An operator as written: `@rx ^a`, `!@eq 0`, or a bare regex (which means `@rx`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOperator {
    pub name: String,
    pub arg: String,
    pub negated: bool,
}

pub fn operator(text: &str) -> RawOperator {
    let mut t = text.trim_start();
    let mut negated = false;
    if let Some(rest) = t.strip_prefix('!') {
        negated = true;
        t = rest.trim_start();
    }
    match t.strip_prefix('@') {
        Some(rest) => {
            let (name, arg) = match rest.find(char::is_whitespace) {
                Some(i) => (&rest[..i], rest[i..].trim_start()),
                None => (rest, ""),
            };
            RawOperator {
                name: name.to_owned(),
                arg: arg.to_owned(),
                negated,
            }
        }
        None => RawOperator {
            name: "rx".to_owned(),
            arg: t.to_owned(),
            negated,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_join_and_comments_are_skipped() {
        let text = "# comment\nSecRule ARGS \"@rx a b\" \\\n    \"id:1,\\\n    phase:2\"\n\nSecMarker END\n";
        let d = directives(text, "x.conf").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].args, vec!["ARGS", "@rx a b", "id:1,    phase:2"]);
        assert_eq!(d[0].origin.line, 2);
        assert_eq!(d[1].origin.line, 6);
    }

    #[test]
    fn escaped_quotes_stay_inside_a_word_and_other_backslashes_are_kept() {
        let d = directives(r#"SecRule ARGS "@rx \"\d+" "id:2""#, "x").unwrap();
        assert_eq!(d[0].args[1], r#"@rx "\d+"#);
    }

    #[test]
    fn unterminated_quote_names_the_line() {
        let err = directives("\n\nSecRule ARGS \"@rx a", "f.conf").unwrap_err();
        assert_eq!(err, "f.conf:3: unterminated double quote");
    }

    #[test]
    fn actions_split_outside_quotes() {
        let a = actions("id:1, msg:'a, b',t:none,setvar:'tx.x=+%{tx.y}',chain").unwrap();
        let names: Vec<_> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["id", "msg", "t", "setvar", "chain"]);
        assert_eq!(a[1].value.as_deref(), Some("a, b"));
        assert_eq!(a[3].value.as_deref(), Some("tx.x=+%{tx.y}"));
        assert_eq!(a[4].value, None);
    }

    #[test]
    fn variables_keep_regex_selectors_whole() {
        let v = variables("ARGS|!REQUEST_COOKIES:/__utm|_ga/|&TX:foo|XML:/*|XML://@*").unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[1].selector.as_deref(), Some("/__utm|_ga/"));
        assert!(v[1].exclude);
        assert!(v[2].count);
        assert_eq!(v[3].selector.as_deref(), Some("/*"));
    }

    #[test]
    fn bare_pattern_is_rx_and_negation_is_read() {
        assert_eq!(operator("^a").name, "rx");
        let o = operator("!@within %{tx.allowed}");
        assert!(o.negated);
        assert_eq!(o.name, "within");
        assert_eq!(o.arg, "%{tx.allowed}");
    }
}
