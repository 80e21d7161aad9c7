//! What the WAF inspects in a request, and the protocol checks that are not patterns.
//!
//! Targets are named for findings and exclusions: `path`, `args:<name>`, `args-names`,
//! `header:<name>`, `cookie:<name>`, `body:<field>` (form fields), `body:<JSON pointer>`
//! (JSON strings and keys), `body` (any other body, whole).

use crate::engine::{Engine, Finding};
use crate::normalize::{Anomalies, Views, bad_percent, normalize, raw_pairs};
use crate::rules::{CRITICAL, Category, target};

/// Headers never inspected: credentials (opaque tokens), and fields the gateway or the HTTP
/// layer validate themselves. Cookies are inspected value by value, separately.
const SKIPPED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "content-length",
    "host",
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "pragma",
    "te",
    "upgrade-insecure-requests",
];

/// Checks that are code rather than patterns: (id, paranoia, category, message).
pub const PROTOCOL_RULES: &[(u32, u8, Category, &str)] = &[
    (920100, 1, Category::Protocol, "null byte"),
    (
        920110,
        1,
        Category::Protocol,
        "line break in a path, parameter or cookie (header injection)",
    ),
    (920120, 1, Category::Protocol, "invalid URL encoding"),
    (920130, 1, Category::Protocol, "IIS %u encoding"),
    (920140, 1, Category::Protocol, "overlong UTF-8 encoding"),
    (920150, 1, Category::Protocol, "control characters"),
    (920160, 1, Category::Protocol, "abusive byte ranges"),
    (
        920170,
        1,
        Category::Protocol,
        "method override to a dangerous method",
    ),
    (920180, 1, Category::Protocol, "character set not allowed"),
    (
        920190,
        1,
        Category::Protocol,
        "request body does not parse as its content type says",
    ),
    (
        920200,
        1,
        Category::Protocol,
        "XML external entity declaration",
    ),
    (
        920210,
        1,
        Category::Protocol,
        "request body in an encoding the WAF cannot inspect",
    ),
    (930140, 1, Category::Lfi, "UNC path to a remote share"),
];

/// Methods a client may not tunnel through an override header or parameter.
const DANGEROUS_METHODS: &[&str] = &[
    "TRACE", "TRACK", "CONNECT", "DEBUG", "PROPFIND", "MOVE", "COPY",
];

/// Charsets a request body may declare.
const CHARSETS: &[&str] = &[
    "utf-8",
    "utf8",
    "iso-8859-1",
    "latin1",
    "us-ascii",
    "ascii",
    "windows-1252",
];

#[cfg(test)]
thread_local! {
    /// Tests compare the fast path with the value-by-value scan it stands in for.
    pub static SLOW_PATH_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the JSON fast path may run (always, outside tests).
fn fast_path_enabled() -> bool {
    #[cfg(test)]
    return !SLOW_PATH_ONLY.get();
    #[cfg(not(test))]
    true
}

/// What the WAF reads from a request (the plugin's request, or a test double).
pub trait Inspected {
    fn path(&self) -> String;
    fn query(&self) -> Option<String>;
    fn header(&self, name: &str) -> Option<String>;
    fn header_all(&self, name: &str) -> Vec<String>;
    fn header_names(&self) -> Vec<String>;
    fn body(&self) -> Option<Vec<u8>>;
}

impl Inspected for wasmgate_plugin_sdk::Request {
    fn path(&self) -> String {
        self.path()
    }
    fn query(&self) -> Option<String> {
        self.query()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.header(name)
    }
    fn header_all(&self, name: &str) -> Vec<String> {
        self.header_all(name)
    }
    fn header_names(&self) -> Vec<String> {
        self.header_names()
    }
    fn body(&self) -> Option<Vec<u8>> {
        self.body()
    }
}

/// The request's findings.
pub fn inspect(engine: &Engine, req: &impl Inspected) -> Vec<Finding> {
    let mut scan = Scan {
        engine,
        findings: Vec::new(),
        pending: Vec::new(),
        joined: String::new(),
        seen_keys: Default::default(),
    };
    let path = req.path();
    scan.raw_encoding(&path, "path");
    scan.value(&path, target::PATH, "path", false);
    if let Some(query) = req.query() {
        scan.raw_encoding(&query, "args");
        for (name, value) in raw_pairs(&query) {
            let decoded = normalize(&name).0.plain;
            if decoded == "_method" && is_dangerous_method(&value) {
                scan.protocol(920170, "args:_method");
            }
            scan.value(&name, target::NAMES, "args-names", false);
            scan.value(&value, target::ARGS, &format!("args:{decoded}"), false);
        }
    }
    for name in req.header_names() {
        if SKIPPED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        for value in req.header_all(&name) {
            scan.value(&value, target::HEADERS, &format!("header:{name}"), false);
        }
    }
    for cookie in req.header_all("cookie") {
        for pair in cookie.split(';') {
            let (name, value) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
            scan.value(value, target::COOKIES, &format!("cookie:{name}"), false);
        }
    }
    scan.headers(req);
    scan.body(req);
    scan.run_rules();
    scan.findings
}

struct Scan<'a> {
    engine: &'a Engine,
    findings: Vec<Finding>,
    /// Normalised values waiting for the rules: (views, target kind, target name).
    pending: Vec<(Views, u8, String)>,
    /// Every view of every pending value, joined by line feeds, for the prefilter.
    joined: String,
    /// JSON keys already inspected: arrays of objects repeat the same few keys.
    seen_keys: std::collections::HashSet<String>,
}

impl Scan<'_> {
    fn protocol(&mut self, id: u32, target_name: &str) {
        let Some(&(_, paranoia, category, _)) =
            PROTOCOL_RULES.iter().find(|(rule, ..)| *rule == id)
        else {
            return;
        };
        let seen = self.findings.iter().any(|f| f.rule == id);
        if paranoia <= self.engine.paranoia
            && !seen
            && !self.engine.excluded(id, category, target_name)
        {
            self.findings.push(Finding {
                rule: id,
                category,
                score: CRITICAL,
                target: target_name.to_owned(),
            });
        }
    }

    fn raw_encoding(&mut self, raw: &str, target_name: &str) {
        if bad_percent(raw) {
            self.protocol(920120, target_name);
        }
    }

    /// Normalises and inspects one value. `multiline` values (bodies) may hold line breaks.
    fn value(&mut self, raw: &str, kind: u8, target_name: &str, multiline: bool) {
        if raw.is_empty() {
            return;
        }
        let (views, anomalies) = normalize(raw);
        self.anomalies(anomalies, target_name, multiline);
        for view in [Some(&views.plain), views.sql.as_ref(), views.shell.as_ref()]
            .into_iter()
            .flatten()
        {
            self.joined.push_str(view);
            self.joined.push('\n');
        }
        self.pending.push((views, kind, target_name.to_owned()));
    }

    /// Runs the pattern rules: one prefilter scan over everything, then value by value only
    /// if it found something.
    fn run_rules(&mut self) {
        if !self.engine.may_match(&self.joined) {
            return;
        }
        for (views, kind, target_name) in &self.pending {
            self.engine
                .inspect(views, *kind, target_name, &mut self.findings);
        }
    }

    fn anomalies(&mut self, a: Anomalies, target_name: &str, multiline: bool) {
        let checks = [
            (a.null_byte, 920100),
            (a.line_break && !multiline, 920110),
            (a.iis_unicode, 920130),
            (a.overlong_utf8, 920140),
            (a.control_chars, 920150),
            (a.unc_path, 930140),
        ];
        for (hit, id) in checks {
            if hit {
                self.protocol(id, target_name);
            }
        }
    }

    fn headers(&mut self, req: &impl Inspected) {
        if let Some(range) = req.header("range") {
            // Many ranges (overlapping-range DoS) or numbers beyond any real size.
            let huge = range
                .split(|c: char| !c.is_ascii_digit())
                .any(|n| n.len() > 15);
            if range.matches(',').count() >= 5 || huge {
                self.protocol(920160, "header:range");
            }
        }
        for name in [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ] {
            if req.header(name).is_some_and(|m| is_dangerous_method(&m)) {
                self.protocol(920170, &format!("header:{name}"));
            }
        }
        if let Some(ct) = req.header("content-type")
            && let Some(charset) = ct
                .split(';')
                .skip(1)
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
                .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase())
            && !CHARSETS.contains(&charset.as_str())
        {
            self.protocol(920180, "header:content-type");
        }
    }

    fn body(&mut self, req: &impl Inspected) {
        let has_body = req
            .header("content-length")
            .is_some_and(|l| l.trim() != "0")
            || req.header("transfer-encoding").is_some();
        let Some(body) = req.body() else {
            if has_body && req.header("content-encoding").is_some() {
                self.protocol(920210, "body");
            }
            return;
        };
        if body.is_empty() {
            return;
        }
        let content_type = req
            .header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let text = String::from_utf8_lossy(&body);
        if text.contains("<!") {
            let lower = text.to_ascii_lowercase();
            let doctype_subset = lower
                .find("<!doctype")
                .is_some_and(|at| lower[at..].contains(['[', '%']));
            if lower.contains("<!entity") || doctype_subset {
                self.protocol(920200, "body");
            }
        }
        if essence == "application/json" || essence.ends_with("+json") {
            // Fast path: one prefilter scan over the whole decoded document clears a clean
            // body without taking it apart value by value.
            if fast_path_enabled()
                && let Some(haystack) = json_haystack(&body)
                && self.engine.clears(&haystack)
            {
                return;
            }
            let mut de = serde_json::Deserializer::from_slice(&body);
            let walk = JsonWalk {
                scan: &mut *self,
                pointer: String::new(),
            };
            let walked = serde::de::DeserializeSeed::deserialize(walk, &mut de);
            if walked.and_then(|()| de.end()).is_err() {
                self.protocol(920190, "body");
                self.value(&text, target::BODY, "body", true);
            }
        } else if essence == "application/x-www-form-urlencoded" {
            self.raw_encoding(&text, "body");
            for (name, value) in raw_pairs(&text) {
                let decoded = normalize(&name).0.plain;
                self.value(&name, target::NAMES, "body-names", false);
                self.value(&value, target::BODY, &format!("body:{decoded}"), true);
            }
        } else {
            self.value(&text, target::BODY, "body", true);
        }
    }

    fn json_key(&mut self, key: &str, pointer: &str) {
        if !self.seen_keys.contains(key) {
            self.seen_keys.insert(key.to_owned());
            self.value(key, target::NAMES, &format!("body-names:{pointer}"), false);
        }
    }
}

/// Walks a JSON document's keys and strings in document order, named by JSON Pointer —
/// duplicate keys included: a parsed `Value` keeps only the last of them, and an upstream may
/// read the first.
struct JsonWalk<'s, 'a> {
    scan: &'s mut Scan<'a>,
    pointer: String,
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonWalk<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonWalk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let target = format!("body:{}", self.pointer);
        self.scan.value(v, target::BODY, &target, true);
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for i in 0.. {
            let pointer = format!("{}/{i}", self.pointer);
            let item = JsonWalk {
                scan: &mut *self.scan,
                pointer,
            };
            if seq.next_element_seed(item)?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let escaped = key.replace('~', "~0").replace('/', "~1");
            let pointer = format!("{}/{escaped}", self.pointer);
            self.scan.json_key(&key, &pointer);
            map.next_value_seed(JsonWalk {
                scan: &mut *self.scan,
                pointer,
            })?;
        }
        Ok(())
    }
}

fn is_dangerous_method(method: &str) -> bool {
    DANGEROUS_METHODS.contains(&method.trim().to_ascii_uppercase().as_str())
}

/// The text of a JSON document as the rules would see its keys and string values, all at once:
/// JSON escapes decoded, lower case, with a shell view appended when quoting could hide a
/// command. Every value's normalised views are substrings of it, so a prefilter miss on it
/// clears every value. `None` when the document needs value-by-value decoding (percent
/// escapes, HTML entities, SQL comments, escaped backslashes or control characters) or is
/// not valid JSON.
pub fn json_haystack(body: &[u8]) -> Option<String> {
    if needs_value_scan(body) {
        return None;
    }
    // Valid, and shallow enough for the value-by-value parser (which refuses deep nesting).
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
    let openings = body.iter().filter(|b| matches!(b, b'[' | b'{')).count();
    if openings > 100 && nesting_depth(body) > 100 {
        return None;
    }
    let mut out = body.to_vec();
    out.make_ascii_lowercase();
    // Strings become lines, as values are in the value-by-value scan, so that `^` and `$`
    // (multi-line in the prefilter) meet a value's ends: structural quotes turn into line
    // feeds, escaped ones into quotes.
    if body.contains(&b'\\') {
        out = unescape_json(&out)?;
        // Escapes may spell what the check above looks for (`&\u006ct;`).
        if needs_value_scan(&out) {
            return None;
        }
    } else {
        for b in out.iter_mut().filter(|b| **b == b'"') {
            *b = b'\n';
        }
    }
    let mut out = String::from_utf8(out).ok()?;
    // What `normalize` folds into a space or reports as an anomaly, the prefilter cannot see:
    // DEL, and non-ASCII whitespace or control characters. Jump from non-ASCII to non-ASCII.
    let mut at = 0;
    while let Some(found) = out.as_bytes()[at..].iter().position(|b| *b >= 0x7f) {
        let c = out[at + found..].chars().next()?;
        if c == '\u{7f}' || c.is_whitespace() || c.is_control() {
            return None;
        }
        at += found + c.len_utf8();
    }
    if crate::normalize::hides_shell_words(&out) {
        let shell = crate::normalize::strip_shell_quoting(&out);
        out.push('\n');
        out.push_str(&shell);
    }
    Some(out)
}

/// Whether raw text holds what only the value-by-value decoder undoes: `%` escapes, HTML
/// entities, SQL comments, and the non-ASCII letters that lower-case to ASCII (dotted capital
/// I, Kelvin sign).
fn needs_value_scan(text: &[u8]) -> bool {
    let mut at = 0;
    while let Some(found) = text[at..]
        .iter()
        .position(|b| matches!(b, b'%' | b'&' | b'/' | 0xc4 | 0xe2))
    {
        let i = at + found;
        let next = text.get(i + 1).copied();
        let decodable = match text[i] {
            b'%' => true,
            b'&' => next.is_some_and(|n| n.is_ascii_alphabetic() || n == b'#'),
            b'/' => next == Some(b'*'),
            0xc4 => next == Some(0xb0),
            _ => next == Some(0x84) && text.get(i + 2) == Some(&0xaa),
        };
        if decodable {
            return true;
        }
        at = i + 1;
    }
    false
}

/// Decodes the escapes of a valid (lower-cased) JSON text, structural quotes becoming line
/// feeds. `None` for what the fast path leaves to the value-by-value decoder: escaped
/// backslashes and carriage returns, control or non-ASCII whitespace characters, lone
/// surrogates, `%` or `&` spelt as escapes, and line feeds inside keys (an anomaly there).
fn unescape_json(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let (mut i, mut in_string, mut line_feed) = (0, false, false);
    while i < text.len() {
        // Copy the run up to the next byte that matters in one go.
        let special = |b: &u8| *b == b'"' || (in_string && *b == b'\\');
        let run = text[i..].iter().position(special).unwrap_or(text.len() - i);
        out.extend_from_slice(&text[i..i + run]);
        i += run;
        let Some(&c) = text.get(i) else { break };
        if c == b'"' {
            out.push(b'\n');
            if in_string {
                let next = text[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                if line_feed && next == Some(&b':') {
                    return None;
                }
            }
            (in_string, line_feed) = (!in_string, false);
            i += 1;
            continue;
        }
        let decoded = match text.get(i + 1)? {
            b'n' => '\n',
            b't' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'u' => {
                let hex = std::str::from_utf8(text.get(i + 2..i + 6)?).ok()?;
                let decoded = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                let unusual = decoded.is_control() || (decoded.is_whitespace() && decoded != ' ');
                if (unusual && decoded != '\n') || matches!(decoded, '%' | '&' | '\\' | '\u{7f}') {
                    return None;
                }
                i += 4;
                decoded
            }
            _ => return None,
        };
        line_feed |= decoded == '\n';
        let mut buf = [0; 4];
        for lower in decoded.to_lowercase() {
            out.extend_from_slice(lower.encode_utf8(&mut buf).as_bytes());
        }
        i += 2;
    }
    Some(out)
}

/// The deepest nesting of arrays and objects in a JSON text.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}
