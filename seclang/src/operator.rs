//! Operators (`@rx`, `@pm`, …): compiled once at load time, evaluated per value.
//!
//! Regexes run on the `regex` crate's bytes engine (linear time in the input: a hostile value
//! cannot make a rule backtrack for seconds), compiled as ModSecurity v3 compiles them for
//! PCRE: `DOTALL` and `MULTILINE`, matching bytes rather than UTF-8. PCRE syntax with the same
//! meaning is translated (`\Z`, `\e`, possessive quantifiers and atomic groups, which cannot
//! change *whether* a pattern matches somewhere when the rest of the pattern is the same, only
//! which match is found).
//!
//! Constructs the `regex` crate lacks (look-around, back-references) go to `fancy-regex`,
//! which runs the rest of the pattern on the same linear engine and backtracks only for the
//! look-around, with a hard limit on backtracking steps ([`BACKTRACK_LIMIT`]): a value that
//! hits the limit counts as no match, so its time stays bounded. `fancy-regex` matches text,
//! so such a pattern sees invalid UTF-8 replaced by U+FFFD. In CRS 3.3.4 three rules need it:
//! 920120 (a look-behind over HTML entities in file names), 942130 (a back-reference: the
//! same word on both sides of a comparison) and 953120 (`<?` not followed by `xml`, in
//! responses).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::meta;
use regex_automata::util::syntax;

/// A compiled operator (negation `!` is handled by the caller).
#[derive(Debug)]
pub struct Operator {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A linear-time regex and its translated pattern.
    Rx(Box<(meta::Regex, String)>),
    Fancy(Box<fancy_regex::Regex>),
    /// The automaton and its phrases, lower-cased (for the chain prefilter).
    Pm(AhoCorasick, Vec<Vec<u8>>),
    Within(Vec<u8>),
    Contains(Vec<u8>),
    ContainsWord(Vec<u8>),
    BeginsWith(Vec<u8>),
    EndsWith(Vec<u8>),
    StrEq(Vec<u8>),
    Num(NumOp, i64),
    ByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8,
    IpMatch(Vec<IpNet>),
    DetectSqli,
    DetectXss,
    Unconditional,
    NoMatch,
    /// Needs the network or a database this sandbox does not have.
    Unavailable(&'static str, &'static str),
}

#[derive(Debug, Clone, Copy)]
enum NumOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
struct IpNet {
    addr: u128,
    prefix: u32,
    v4: bool,
}

/// Compiles `@name arg`. `load_file` returns the text of a data file (`@pmFromFile`).
pub fn compile(
    name: &str,
    arg: &str,
    load_file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Operator, String> {
    let kind = match name.to_ascii_lowercase().as_str() {
        "rx" => match regex(arg) {
            Ok(rx) => rx,
            Err(e) if needs_backtracking(arg) => {
                Kind::Fancy(Box::new(fancy(arg).map_err(|f| format!("{e}; {f}"))?))
            }
            Err(e) => return Err(e),
        },
        "pm" => phrases(arg.split_ascii_whitespace().map(str::as_bytes))?,
        "pmf" | "pmfromfile" => {
            let mut texts = Vec::new();
            for file in arg.split_ascii_whitespace() {
                texts.push(load_file(file).map_err(|e| format!("@{name} {file}: {e}"))?);
            }
            let lines = texts
                .iter()
                .flat_map(|t| t.lines())
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            phrases(lines.map(str::as_bytes))?
        }
        "within" => Kind::Within(arg.as_bytes().to_vec()),
        "contains" => Kind::Contains(arg.as_bytes().to_vec()),
        "containsword" => Kind::ContainsWord(arg.as_bytes().to_vec()),
        "beginswith" => Kind::BeginsWith(arg.as_bytes().to_vec()),
        "endswith" => Kind::EndsWith(arg.as_bytes().to_vec()),
        "streq" => Kind::StrEq(arg.as_bytes().to_vec()),
        "eq" => Kind::Num(NumOp::Eq, atoi(arg)),
        "ne" => Kind::Num(NumOp::Ne, atoi(arg)),
        "lt" => Kind::Num(NumOp::Lt, atoi(arg)),
        "le" => Kind::Num(NumOp::Le, atoi(arg)),
        "gt" => Kind::Num(NumOp::Gt, atoi(arg)),
        "ge" => Kind::Num(NumOp::Ge, atoi(arg)),
        "validatebyterange" => Kind::ByteRange(byte_ranges(arg)?),
        "validateurlencoding" => Kind::ValidateUrlEncoding,
        "validateutf8encoding" => Kind::ValidateUtf8,
        "ipmatch" => Kind::IpMatch(ip_list(arg.split(',').map(str::trim))?),
        "ipmatchf" | "ipmatchfromfile" => {
            let text = load_file(arg.trim()).map_err(|e| format!("@{name} {arg}: {e}"))?;
            let lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            Kind::IpMatch(ip_list(lines)?)
        }
        "detectsqli" => Kind::DetectSqli,
        "detectxss" => Kind::DetectXss,
        "unconditionalmatch" => Kind::Unconditional,
        "nomatch" => Kind::NoMatch,
        "rbl" => Kind::Unavailable(
            "rbl",
            "@rbl needs DNS lookups, which plugins cannot make: it never matches",
        ),
        "geolookup" => Kind::Unavailable(
            "geoLookup",
            "@geoLookup needs a GeoIP database: it never matches and GEO stays empty",
        ),
        other => return Err(format!("unsupported operator @{other}")),
    };
    Ok(Operator { kind })
}

/// `@pm` lists longer than this run without a literal prefilter.
const MAX_PREFILTERED_PHRASES: usize = 64;

impl Operator {
    pub fn name(&self) -> &'static str {
        match &self.kind {
            Kind::Rx(_) | Kind::Fancy(_) => "rx",
            Kind::Pm(..) => "pm",
            Kind::Within(_) => "within",
            Kind::Contains(_) => "contains",
            Kind::ContainsWord(_) => "containsWord",
            Kind::BeginsWith(_) => "beginsWith",
            Kind::EndsWith(_) => "endsWith",
            Kind::StrEq(_) => "streq",
            Kind::Num(op, _) => match op {
                NumOp::Eq => "eq",
                NumOp::Ne => "ne",
                NumOp::Lt => "lt",
                NumOp::Le => "le",
                NumOp::Gt => "gt",
                NumOp::Ge => "ge",
            },
            Kind::ByteRange(_) => "validateByteRange",
            Kind::ValidateUrlEncoding => "validateUrlEncoding",
            Kind::ValidateUtf8 => "validateUtf8Encoding",
            Kind::IpMatch(_) => "ipMatch",
            Kind::DetectSqli => "detectSQLi",
            Kind::DetectXss => "detectXSS",
            Kind::Unconditional => "unconditionalMatch",
            Kind::NoMatch => "noMatch",
            Kind::Unavailable(name, _) => name,
        }
    }

    /// Evaluates against one (already transformed) value; `captures`, when given, is filled
    /// with what the operator captured (regex groups 0–9, the libinjection fingerprint, the
    /// phrase found).
    pub fn matches(&self, input: &[u8], captures: Option<&mut Vec<Vec<u8>>>) -> bool {
        match &self.kind {
            Kind::Rx(rx) => match captures {
                None => rx.0.is_match(input),
                Some(caps) => {
                    let re = &rx.0;
                    // Most values do not match: find out without allocating captures.
                    if !re.is_match(input) {
                        return false;
                    }
                    let mut c = re.create_captures();
                    re.captures(input, &mut c);
                    if !c.is_match() {
                        return false;
                    }
                    caps.clear();
                    for group in 0..c.group_len().min(10) {
                        caps.push(
                            c.get_group(group)
                                .map(|span| input[span.range()].to_vec())
                                .unwrap_or_default(),
                        );
                    }
                    true
                }
            },
            Kind::Fancy(re) => {
                let text = String::from_utf8_lossy(input);
                match re.captures(&text) {
                    Ok(Some(c)) => {
                        if let Some(caps) = captures {
                            caps.clear();
                            for g in c.iter().take(10) {
                                caps.push(
                                    g.map(|m| m.as_str().as_bytes().to_vec())
                                        .unwrap_or_default(),
                                );
                            }
                        }
                        true
                    }
                    // No match, or the backtracking limit was hit: bounded time wins.
                    Ok(None) | Err(_) => false,
                }
            }
            Kind::Pm(ac, _) => match ac.find(input) {
                Some(m) => {
                    if let Some(caps) = captures {
                        caps.clear();
                        caps.push(input[m.start()..m.end()].to_vec());
                    }
                    true
                }
                None => false,
            },
            // ModSecurity v3: the argument contains the input (an empty input never matches).
            Kind::Within(arg) => !input.is_empty() && memchr::memmem::find(arg, input).is_some(),
            Kind::Contains(arg) => memchr::memmem::find(input, arg).is_some(),
            Kind::ContainsWord(arg) => contains_word(input, arg),
            Kind::BeginsWith(arg) => input.starts_with(arg),
            Kind::EndsWith(arg) => input.ends_with(arg),
            Kind::StrEq(arg) => input == arg.as_slice(),
            Kind::Num(op, n) => {
                let v = atoi(&String::from_utf8_lossy(input));
                match op {
                    NumOp::Eq => v == *n,
                    NumOp::Ne => v != *n,
                    NumOp::Lt => v < *n,
                    NumOp::Le => v <= *n,
                    NumOp::Gt => v > *n,
                    NumOp::Ge => v >= *n,
                }
            }
            // Matches (flags the value) when a byte is outside the allowed ranges.
            Kind::ByteRange(allowed) => input.iter().any(|b| !allowed[usize::from(*b)]),
            Kind::ValidateUrlEncoding => invalid_url_encoding(input),
            Kind::ValidateUtf8 => std::str::from_utf8(input).is_err(),
            Kind::IpMatch(nets) => ip_matches(nets, input),
            Kind::DetectSqli => {
                let r = libinjectionrs::detect_sqli(input);
                let hit = r.is_injection();
                if hit && let Some(caps) = captures {
                    caps.clear();
                    caps.push(
                        r.fingerprint
                            .map(|f| f.to_string().into_bytes())
                            .unwrap_or_default(),
                    );
                }
                hit
            }
            Kind::DetectXss => libinjectionrs::detect_xss(input).is_injection(),
            Kind::Unconditional => true,
            Kind::NoMatch | Kind::Unavailable(..) => false,
        }
    }

    /// For `@rx` on the linear engine and short `@pm` lists: strings one of which every match contains
    /// (see `prefilter`).
    pub(crate) fn required_literals(&self) -> Option<Vec<Vec<u8>>> {
        match &self.kind {
            Kind::Rx(rx) => crate::prefilter::required(&rx.1),
            // A phrase match is a match of one of the phrases. A long phrase list (the
            // `@pmFromFile` lists run to hundreds) costs as much to prefilter as to run, and
            // would turn its chain's automaton from a DFA into a slower NFA.
            Kind::Pm(_, phrases)
                if phrases.len() <= MAX_PREFILTERED_PHRASES
                    && !phrases.iter().any(Vec::is_empty) =>
            {
                Some(phrases.clone())
            }
            _ => None,
        }
    }

    /// Some(reason) when the operator cannot do its job in the sandbox.
    pub fn limitation(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Unavailable(_, why) => Some(why),
            _ => None,
        }
    }
}

/// Translates PCRE syntax with the same meaning and compiles as ModSecurity does: bytes, not
/// UTF-8; `.` matches a newline; `^`/`$` at line ends.
///
/// The engine's fully compiled DFA is left out: built for the `wasm32` target it reports
/// match ends wrongly (`^(?:ht|f)tps?://(.*?)/` on `https://evil.example/x` ends after
/// `https://`), which loses the captures CRS rules read back through `TX:0`–`TX:9`. The lazy
/// DFA and the NFA engines are unaffected, and are what a large CRS pattern uses anyway.
fn regex(pattern: &str) -> Result<Kind, String> {
    let translated = translate(pattern);
    let re = meta::Builder::new()
        .configure(
            meta::Config::new()
                .dfa(false)
                // As `regex::bytes` does: an empty match may split a UTF-8 sequence.
                .utf8_empty(false)
                .nfa_size_limit(Some(64 << 20))
                // The lazy DFA's cache per regex: CRS has hundreds of regexes, so keep each
                // small.
                .hybrid_cache_capacity(512 << 10),
        )
        .syntax(
            syntax::Config::new()
                .unicode(false)
                .utf8(false)
                .dot_matches_new_line(true)
                .multi_line(true),
        )
        .build(&translated)
        .map_err(|e| regex_error(pattern, &e.to_string()))?;
    Ok(Kind::Rx(Box::new((re, translated))))
}

/// A compile error, with a long pattern shortened (CRS patterns run to kilobytes).
fn regex_error(pattern: &str, error: &str) -> String {
    let shown: String = pattern.chars().take(60).collect();
    let more = if shown.len() < pattern.len() {
        "…"
    } else {
        ""
    };
    let why = error.lines().last().unwrap_or(error);
    format!("regex `{shown}{more}`: {why}")
}

/// Backtracking steps a look-around or back-reference pattern may take per value.
pub const BACKTRACK_LIMIT: usize = 100_000;

fn needs_backtracking(pattern: &str) -> bool {
    ["(?=", "(?!", "(?<=", "(?<!"]
        .iter()
        .any(|p| pattern.contains(p))
        || pattern
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'\\' && w[1].is_ascii_digit() && w[1] != b'0')
}

fn fancy(pattern: &str) -> Result<fancy_regex::Regex, String> {
    let translated = translate(pattern);
    fancy_regex::RegexBuilder::new(&format!("(?sm){translated}"))
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
        .map_err(|e| regex_error(pattern, &e.to_string()))
}

/// PCRE → `regex` syntax: `\Z` → `\z` (with `$` semantics at a final newline), `\e` → `\x1b`,
/// possessive quantifiers and atomic groups → plain ones, `\/` → `/`, literal non-ASCII
/// bytes → `\xHH`.
fn translate(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            let n = b[i + 1];
            match n {
                b'Z' => out.push_str(r"(?:\n?\z)"),
                b'e' => out.push_str(r"\x1b"),
                b'/' | b'"' | b'\'' | b'<' | b'>' | b'=' | b'@' | b'%' | b'&' | b'!' | b','
                | b';' | b'`' | b'~' | b'#' | b':' | b'_' => out.push(n as char),
                _ if n >= 0x80 => {
                    out.push_str(&format!(r"\x{n:02x}"));
                }
                _ => {
                    out.push('\\');
                    out.push(n as char);
                }
            }
            i += 2;
            continue;
        }
        if c >= 0x80 {
            // A UTF-8 character in the pattern: match its bytes, as PCRE without UTF mode
            // does. In a class each byte is a member of its own (`[’]` is `[\xe2\x80\x99]`);
            // a group there would add `(`, `?`, `:` and `)` to the class.
            let len = utf8_len(c);
            let end = (i + len).min(b.len());
            if !in_class {
                out.push_str("(?:");
            }
            for byte in &b[i..end] {
                out.push_str(&format!(r"\x{byte:02x}"));
            }
            if !in_class {
                out.push(')');
            }
            i = end;
            continue;
        }
        if in_class {
            if c == b']' {
                in_class = false;
            }
            if c == b'[' && b.get(i + 1) == Some(&b':') {
                // POSIX class inside a bracket: copy through its closing `:]`.
                if let Some(end) = p[i..].find(":]") {
                    out.push_str(&p[i..i + end + 2]);
                    i += end + 2;
                    continue;
                }
            }
            if c == b'[' {
                out.push_str(r"\[");
                i += 1;
                continue;
            }
            out.push(c as char);
            i += 1;
            continue;
        }
        match c {
            b'[' => {
                in_class = true;
                out.push('[');
                i += 1;
                // `[]...]` and `[^]...]`: a leading `]` is a literal.
                if b.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    out.push_str(r"\]");
                    i += 1;
                }
                continue;
            }
            // PCRE reads a `{` that does not start a valid `{n}`, `{n,}` or `{n,m}` literally.
            b'{' if !is_quantifier(&b[i..]) => {
                out.push_str(r"\{");
                i += 1;
                continue;
            }
            b'}' if !closes_quantifier(&b[..=i]) => {
                out.push_str(r"\}");
                i += 1;
                continue;
            }
            b'(' if p[i..].starts_with("(?>") => {
                out.push_str("(?:");
                i += 3;
                continue;
            }
            b'+' if i > 0
                && matches!(b[i - 1], b'*' | b'+' | b'?' | b'}')
                && !escaped(b, i - 1) =>
            {
                // Possessive quantifier: drop the `+`.
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(c as char);
        i += 1;
    }
    out
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `b`.
fn is_quantifier(b: &[u8]) -> bool {
    let Some(end) = b.iter().position(|c| *c == b'}') else {
        return false;
    };
    let inner = &b[1..end];
    let (lo, hi) = match inner.iter().position(|c| *c == b',') {
        Some(c) => (&inner[..c], Some(&inner[c + 1..])),
        None => (inner, None),
    };
    !lo.is_empty()
        && lo.iter().all(u8::is_ascii_digit)
        && hi.is_none_or(|h| h.iter().all(u8::is_ascii_digit))
}

/// Whether the `}` that ends `upto` closes a quantifier.
fn closes_quantifier(upto: &[u8]) -> bool {
    let before = &upto[..upto.len() - 1];
    match before.iter().rposition(|c| *c == b'{') {
        Some(open) => {
            !escaped(before, open)
                && !before[open..].contains(&b'}')
                && is_quantifier(&upto[open..])
        }
        None => false,
    }
}

fn escaped(b: &[u8], i: usize) -> bool {
    let mut n = 0;
    let mut j = i;
    while j > 0 && b[j - 1] == b'\\' {
        n += 1;
        j -= 1;
    }
    n % 2 == 1
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

fn phrases<'a>(list: impl Iterator<Item = &'a [u8]>) -> Result<Kind, String> {
    let list: Vec<&[u8]> = list.collect();
    let ac = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(&list)
        .map_err(|e| format!("phrase list: {e}"))?;
    Ok(Kind::Pm(
        ac,
        list.iter().map(|p| p.to_ascii_lowercase()).collect(),
    ))
}

/// ModSecurity's integer reading: leading whitespace, optional sign, digits; else 0.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let n: i64 = digits[..end].parse().unwrap_or(0);
    if neg { -n } else { n }
}

fn byte_ranges(arg: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for part in arg
        .split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let bad = || format!("@validateByteRange: `{part}` is not a byte or range");
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: u8 = lo.parse().map_err(|_| bad())?;
        let hi: u8 = hi.parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        for b in lo..=hi {
            allowed[usize::from(b)] = true;
        }
    }
    Ok(allowed)
}

/// `%` not followed by two hex digits.
fn invalid_url_encoding(input: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &input[i..]) {
        let at = i + p;
        let ok = input.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
            && input.get(at + 2).is_some_and(u8::is_ascii_hexdigit);
        if !ok {
            return true;
        }
        i = at + 3;
        if i >= input.len() {
            break;
        }
    }
    false
}

fn contains_word(input: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    memchr::memmem::find_iter(input, word).any(|at| {
        let before = at == 0 || !is_word(input[at - 1]);
        let end = at + word.len();
        let after = end >= input.len() || !is_word(input[end]);
        before && after
    })
}

fn ip_list<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for item in items.filter(|i| !i.is_empty()) {
        let (addr, prefix) = match item.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (item, None),
        };
        let ip: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("@ipMatch: `{item}` is not an IP address or CIDR range"))?;
        let (bits, max, v4) = match ip {
            std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), 32, true),
            std::net::IpAddr::V6(a) => (u128::from(a), 128, false),
        };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("@ipMatch: `{item}` has a bad prefix length"))?,
            None => max,
        };
        out.push(IpNet {
            addr: bits,
            prefix,
            v4,
        });
    }
    Ok(out)
}

fn ip_matches(nets: &[IpNet], input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    let Ok(ip) = text.trim().parse::<std::net::IpAddr>() else {
        return false;
    };
    let (bits, v4) = match ip {
        std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), true),
        std::net::IpAddr::V6(a) => (u128::from(a), false),
    };
    nets.iter().any(|n| {
        if n.v4 != v4 {
            return false;
        }
        let width = if v4 { 32 } else { 128 };
        let shift = width - n.prefix;
        if shift >= 128 {
            return true;
        }
        (bits >> shift) == (n.addr >> shift)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, arg: &str) -> Operator {
        compile(name, arg, &|_| Err("no files".into())).unwrap()
    }

    #[test]
    fn rx_is_dotall_multiline_and_byte_oriented() {
        assert!(op("rx", "a.b").matches(b"a\nb", None));
        assert!(op("rx", "^b$").matches(b"a\nb\nc", None));
        assert!(op("rx", r"\xff").matches(b"\xff", None));
        let mut caps = Vec::new();
        assert!(op("rx", "(a)(b)?").matches(b"xa", Some(&mut caps)));
        assert_eq!(caps, vec![b"a".to_vec(), b"a".to_vec(), Vec::new()]);
    }

    #[test]
    fn pcre_only_syntax_is_translated() {
        assert!(op("rx", r"a\Z").matches(b"xa\n", None));
        assert!(op("rx", r"(?>ab)c").matches(b"abc", None));
        assert!(op("rx", r"a++b").matches(b"aab", None));
        assert!(op("rx", r"[]a]").matches(b"]", None));
        assert!(op("rx", r"\${|a{2}").matches(b"${x", None));
        assert!(op("rx", r"a{2}").matches(b"aa", None));
        assert!(!op("rx", r"^a{2}$").matches(b"a{2}", None));
        assert!(op("rx", r"x{,3}").matches(b"x{,3}", None));
        assert!(op("rx", r"\/etc\/passwd").matches(b"/etc/passwd", None));
        assert!(op("rx", "é").matches("café".as_bytes(), None));
        // In a class, a UTF-8 character is its bytes (942430 lists `´’‘` among specials).
        let class = op("rx", "^[a’]$");
        assert!(class.matches(b"\xe2", None) && class.matches(b"\x99", None));
        for other in ["?", "(", ":", ")", "’"] {
            assert!(!class.matches(other.as_bytes(), None), "{other}");
        }
    }

    #[test]
    fn look_around_and_back_references_run_with_a_backtracking_limit() {
        assert!(op("rx", r"<\?(?!xml)").matches(b"<?php", None));
        assert!(!op("rx", r"<\?(?!xml)").matches(b"<?xml", None));
        assert!(op("rx", r"\b(\w+)\b=\b\1\b").matches(b"a or x=x", None));
        assert!(!op("rx", r"\b(\w+)\b=\b\1\b").matches(b"a or x=y", None));
    }

    #[test]
    fn pm_is_case_insensitive_and_captures_the_phrase() {
        let mut caps = Vec::new();
        assert!(op("pm", "foo bar").matches(b"xxBARyy", Some(&mut caps)));
        assert_eq!(caps, vec![b"BAR".to_vec()]);
        assert!(!op("pm", "foo bar").matches(b"baz", None));
    }

    #[test]
    fn pm_from_file_skips_comments_and_blank_lines() {
        let o = compile("pmFromFile", "list.data", &|_| {
            Ok("# comment\n\nnikto\nsqlmap\n".into())
        })
        .unwrap();
        assert!(o.matches(b"Mozilla sqlmap/1.0", None));
        assert!(!o.matches(b"# comment", None));
    }

    #[test]
    fn within_looks_for_the_input_in_the_argument() {
        let o = op("within", "GET HEAD POST");
        assert!(o.matches(b"HEAD", None));
        assert!(!o.matches(b"DELETE", None));
        assert!(!o.matches(b"", None));
    }

    #[test]
    fn numbers_compare_like_atoi() {
        assert!(op("eq", "0").matches(b"abc", None));
        assert!(op("lt", "2").matches(b"1", None));
        assert!(op("ge", "5").matches(b"12px", None));
        assert!(!op("gt", "5").matches(b"-7", None));
    }

    #[test]
    fn byte_range_flags_bytes_outside_the_ranges() {
        let o = op("validateByteRange", "9,10,13,32-126");
        assert!(!o.matches(b"hello world\n", None));
        assert!(o.matches(b"nul\x00", None));
        assert!(o.matches(b"\xc3\xa9", None));
    }

    #[test]
    fn url_and_utf8_validation_flag_bad_encodings() {
        let u = op("validateUrlEncoding", "");
        assert!(!u.matches(b"a%20b", None));
        assert!(u.matches(b"a%2", None));
        assert!(u.matches(b"a%zz", None));
        let v = op("validateUtf8Encoding", "");
        assert!(!v.matches("é".as_bytes(), None));
        assert!(v.matches(b"\xc0\xaf", None));
    }

    #[test]
    fn ip_match_handles_cidrs_of_both_families() {
        let o = op("ipMatch", "127.0.0.1,10.0.0.0/8,::1");
        assert!(o.matches(b"10.2.3.4", None));
        assert!(o.matches(b"::1", None));
        assert!(!o.matches(b"11.0.0.1", None));
        assert!(!o.matches(b"not an ip", None));
    }

    #[test]
    fn libinjection_detects_sqli_and_xss() {
        let mut caps = Vec::new();
        assert!(op("detectSQLi", "").matches(b"1' OR '1'='1", Some(&mut caps)));
        assert!(!caps[0].is_empty());
        assert!(!op("detectSQLi", "").matches(b"hello world", None));
        assert!(op("detectXSS", "").matches(b"<script>alert(1)</script>", None));
        assert!(!op("detectXSS", "").matches(b"a < b and c > d", None));
    }

    #[test]
    fn unknown_and_unavailable_operators_are_reported() {
        let err = compile("fuzzyHash", "x", &|_| Err(String::new())).unwrap_err();
        assert_eq!(err, "unsupported operator @fuzzyhash");
        assert!(op("rbl", "sbl.spamhaus.org").limitation().is_some());
        assert!(!op("rbl", "x").matches(b"1.2.3.4", None));
    }

    #[test]
    fn contains_word_needs_word_boundaries() {
        let o = op("containsWord", "select");
        assert!(o.matches(b"a select b", None));
        assert!(!o.matches(b"selection", None));
    }
}
