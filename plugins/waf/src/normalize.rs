//! Input normalisation: what attackers use to hide a payload is undone before any rule runs.
//!
//! Every inspected value goes through [`normalize`]: repeated URL-decoding (`%xx`, IIS-style
//! `%uXXXX`, overlong UTF-8 forms of `.`, `/` and `\`), HTML entity decoding, null bytes
//! removed, backslashes read as slashes, whitespace collapsed, lower case. Two more views are
//! derived when the value has the characters they undo: SQL comments removed, and shell quoting
//! removed (`c'a't`, `w\ho\am\i`, `${IFS}`).

/// How many decoding rounds are applied at most (attackers stack two or three).
const MAX_ROUNDS: usize = 4;

/// The views of one value that rules run on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Views {
    /// The decoded, lower-cased value with whitespace collapsed.
    pub plain: String,
    /// `plain` without `/* … */` comments (joins `un/**/ion`), if it had any.
    pub sql: Option<String>,
    /// `plain` without shell quoting and escapes, if it had any.
    pub shell: Option<String>,
}

/// Anomalies met while decoding; each can be a finding on its own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Anomalies {
    /// A null byte (raw or encoded).
    pub null_byte: bool,
    /// IIS `%uXXXX` encoding.
    pub iis_unicode: bool,
    /// Overlong UTF-8 (`%c0%ae`, `%c0%af`, `%e0%80%af`…).
    pub overlong_utf8: bool,
    /// Control characters other than tab, CR and LF.
    pub control_chars: bool,
    /// A CR or LF.
    pub line_break: bool,
    /// A UNC path (`\\\\host\\share`): a Windows remote file.
    pub unc_path: bool,
}

/// Decodes `raw` and derives the views rules run on.
pub fn normalize(raw: &str) -> (Views, Anomalies) {
    let mut anomalies = Anomalies::default();
    let mut text = std::borrow::Cow::Borrowed(raw);
    for _ in 0..MAX_ROUNDS {
        if !text.contains(['%', '&']) {
            break;
        }
        let decoded = html_decode(&url_decode(&text, &mut anomalies));
        if decoded == *text {
            break;
        }
        text = std::borrow::Cow::Owned(decoded);
    }
    anomalies.unc_path = text.trim_start().starts_with("\\\\");
    let mut plain = String::with_capacity(text.len());
    let mut last_space = false;
    for c in text.chars() {
        match c {
            'A'..='Z' => {
                plain.push(c.to_ascii_lowercase());
                last_space = false;
            }
            ' ' | '\t' | '\u{0b}' | '\u{0c}' => push_space(&mut plain, &mut last_space),
            '\0' => anomalies.null_byte = true,
            '\r' => anomalies.line_break = true,
            // Kept: a line break separates shell commands.
            '\n' => {
                anomalies.line_break = true;
                plain.push('\n');
                last_space = true;
            }
            '\\' => {
                plain.push('/');
                last_space = false;
            }
            c if c.is_ascii() && !c.is_ascii_control() => {
                plain.push(c);
                last_space = false;
            }
            c if c.is_whitespace() => push_space(&mut plain, &mut last_space),
            c if c.is_control() => {
                anomalies.control_chars = true;
                push_space(&mut plain, &mut last_space);
            }
            c => {
                plain.extend(c.to_lowercase());
                last_space = false;
            }
        }
    }
    let sql = plain.contains("/*").then(|| strip_sql_comments(&plain));
    let shell = hides_shell_words(&text).then(|| strip_shell_quoting(&text.to_lowercase()));
    (Views { plain, sql, shell }, anomalies)
}

/// Whether quoting could be hiding a command word (`c'a't`, `w\hoami`, `${IFS}`) next to a
/// shell metacharacter: only then is the shell view worth building.
///
/// Looked for token by token (split at spaces): a token with quoting inside a word, or an
/// empty expansion, with a metacharacter in it or in the token before (`x; c'a't`, `|w\hoami`,
/// `$(c"a"t)`). "Don't", far from any `;`, is prose.
pub fn hides_shell_words(text: &str) -> bool {
    let bytes = text.as_bytes();
    let boundary = |b: &u8| matches!(b, b' ' | b'\t' | b'\n');
    let meta = |token: &[u8]| {
        token
            .iter()
            .any(|b| matches!(b, b';' | b'|' | b'&' | b'`' | b'$'))
    };
    let mut at = 0;
    // Jump from quote to quote: most text has few, and most of those are apostrophes.
    while let Some(found) = bytes[at..]
        .iter()
        .position(|b| matches!(b, b'\'' | b'"' | b'\\' | b'^' | b'$'))
    {
        let i = at + found;
        at = i + 1;
        let c = bytes[i];
        let next = &bytes[i + 1..];
        let hiding = match c {
            b'$' => next.starts_with(b"@") || next.starts_with(b"{") || next.starts_with(b"()"),
            _ => {
                i > 0
                    && bytes[i - 1].is_ascii_alphanumeric()
                    && next
                        .first()
                        .is_some_and(|n| n.is_ascii_alphanumeric() || *n == c)
            }
        };
        if !hiding {
            continue;
        }
        // cmd.exe's caret needs no separator: `c^m^d /c` is the command itself.
        if c == b'^' {
            return true;
        }
        let start = bytes[..i].iter().rposition(boundary).map_or(0, |p| p + 1);
        let end = bytes[i..]
            .iter()
            .position(boundary)
            .map_or(bytes.len(), |p| i + p);
        // A metacharacter in the token, a line feed (which separates commands) before it, or a
        // metacharacter in the token before.
        if meta(&bytes[start..end]) || (start > 0 && bytes[start - 1] == b'\n') {
            return true;
        }
        let before = &bytes[..start];
        let prev_end = before
            .iter()
            .rposition(|b| !boundary(b))
            .map_or(0, |p| p + 1);
        let prev_start = before[..prev_end]
            .iter()
            .rposition(boundary)
            .map_or(0, |p| p + 1);
        if meta(&bytes[prev_start..prev_end]) {
            return true;
        }
    }
    false
}

fn push_space(out: &mut String, last_space: &mut bool) {
    if !*last_space {
        out.push(' ');
        *last_space = true;
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One round of percent-decoding, with IIS `%uXXXX` and overlong UTF-8 for `.`, `/`, `\`.
fn url_decode(text: &str, anomalies: &mut Anomalies) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let at = |k: usize| bytes.get(i + k).copied().and_then(hex);
        // %uXXXX
        if matches!(bytes.get(i + 1), Some(b'u' | b'U'))
            && let (Some(a), Some(b), Some(c), Some(d)) = (at(2), at(3), at(4), at(5))
        {
            anomalies.iis_unicode = true;
            let code = u32::from(a) << 12 | u32::from(b) << 8 | u32::from(c) << 4 | u32::from(d);
            let ch = char::from_u32(code).unwrap_or('\u{fffd}');
            let mut buf = [0; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            i += 6;
            continue;
        }
        match (at(1), at(2)) {
            (Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            _ => {
                out.push(b'%');
                i += 1;
            }
        }
    }
    let out = fold_overlong(&out, anomalies);
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces overlong UTF-8 encodings of ASCII (`c0 ae` = `.`, `c0 af` = `/`, `e0 80 af` = `/`)
/// with the character they spell, as lenient decoders do.
fn fold_overlong(bytes: &[u8], anomalies: &mut Anomalies) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (0xc0 | 0xc1, Some(&b), _) if b & 0xc0 == 0x80 => {
                anomalies.overlong_utf8 = true;
                out.push(((bytes[i] & 0x01) << 6) | (b & 0x3f));
                i += 2;
            }
            (0xe0, Some(&0x80), Some(&b)) if b & 0xc0 == 0x80 => {
                anomalies.overlong_utf8 = true;
                out.push(b & 0x3f);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Decodes HTML character references: named ones attackers use, decimal and hex, with or
/// without the closing `;`.
fn html_decode(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    const NAMED: &[(&str, char)] = &[
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("amp", '&'),
        ("sol", '/'),
        ("bsol", '\\'),
        ("colon", ':'),
        ("lpar", '('),
        ("rpar", ')'),
        ("semi", ';'),
        ("equals", '='),
        ("tab", '\t'),
        ("newline", '\n'),
        ("nbsp", ' '),
        ("grave", '`'),
        ("num", '#'),
        ("period", '.'),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let (decoded, used) = if let Some(num) = after.strip_prefix('#') {
            let (digits, radix, skip) = match num.strip_prefix(['x', 'X']) {
                Some(hexd) => (hexd, 16, 2),
                None => (num, 10, 1),
            };
            let len = digits.chars().take_while(|c| c.is_digit(radix)).count();
            let value = u32::from_str_radix(&digits[..len.min(8)], radix).ok();
            match value.and_then(char::from_u32) {
                Some(c) if len > 0 => (Some(c), skip + len),
                _ => (None, 0),
            }
        } else {
            let len = after.chars().take_while(char::is_ascii_alphabetic).count();
            let name = after[..len].to_ascii_lowercase();
            match NAMED.iter().find(|(n, _)| *n == name) {
                Some((_, c)) => (Some(*c), len),
                None => (None, 0),
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                let mut next = &after[used..];
                if let Some(stripped) = next.strip_prefix(';') {
                    next = stripped;
                }
                rest = next;
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether raw, still-encoded text has a `%` that is not followed by two hex digits (nor by
/// `u` and four). Checked on what the client sent, before any decoding: a decoded value may
/// legitimately contain `%`.
pub fn bad_percent(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        let hex_at = |k: usize| bytes.get(i + k).is_some_and(u8::is_ascii_hexdigit);
        let unicode = matches!(bytes.get(i + 1), Some(b'u' | b'U')) && (2..6).all(hex_at);
        b == b'%' && !(hex_at(1) && hex_at(2)) && !unicode
    })
}

/// Splits raw `name=value&…` text (a query string or a form body) into still-encoded pairs,
/// with `+` read as a space. Decoding is left to [`normalize`], which sees overlong and `%u`
/// forms a standard decoder would lose.
pub fn raw_pairs(raw: &str) -> impl Iterator<Item = (String, String)> + '_ {
    raw.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name.replace('+', " "), value.replace('+', " "))
    })
}

/// Removes SQL comments; MySQL's executable comments (`/*!50000 UNION*/`) keep their content,
/// since MySQL runs it.
fn strip_sql_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let inner = &rest[start + 2..];
        let (content, after) = match inner.find("*/") {
            Some(end) => (&inner[..end], &inner[end + 2..]),
            None => (inner, ""),
        };
        if let Some(executable) = content.strip_prefix('!') {
            out.push(' ');
            out.push_str(executable.trim_start_matches(|c: char| c.is_ascii_digit()));
            out.push(' ');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Removes what a shell would remove before running a word: quotes, backslash escapes, `^`
/// (cmd.exe), empty expansions like `$@`, and reads `${IFS}` as a space.
pub fn strip_shell_quoting(text: &str) -> String {
    // (what the shell sees, what it becomes), longest first.
    const EXPANSIONS: &[(&str, &str)] = &[
        ("${ifs}", " "),
        ("$ifs", " "),
        ("$@", ""),
        ("$*", ""),
        ("$()", ""),
        ("${}", ""),
        ("``", ""),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while let Some(c) = rest.chars().next() {
        if matches!(c, '$' | '`') {
            for (from, to) in EXPANSIONS {
                if let Some(after) = rest.strip_prefix(from) {
                    out.push_str(to);
                    rest = after;
                    continue 'outer;
                }
            }
        }
        if !matches!(c, '\'' | '"' | '\\' | '^') {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_url_encoding_is_undone_and_noticed() {
        let (views, _) = normalize("%252e%252e%252fetc%252fpasswd");
        assert_eq!(views.plain, "../etc/passwd");
    }

    #[test]
    fn iis_overlong_and_backslashes_become_plain_paths() {
        let (views, anomalies) = normalize("..%c0%af..%5c%u002e%u002e/boot.ini");
        assert_eq!(views.plain, "../../../boot.ini");
        assert!(anomalies.overlong_utf8 && anomalies.iis_unicode);
        assert!(normalize("%5C%5Chost%5Cshare").1.unc_path);
    }

    #[test]
    fn html_entities_case_and_whitespace() {
        let (views, _) = normalize("&lt;ScRiPt&#x3e;alert&#40;1&#41;&lt;/script&gt;");
        assert_eq!(views.plain, "<script>alert(1)</script>");
        let (views, _) = normalize("1\tOR\u{0b}  1=1");
        assert_eq!(views.plain, "1 or 1=1");
        assert_eq!(normalize("a&b; c&d").0.plain, "a&b; c&d");
    }

    #[test]
    fn sql_comments_and_shell_quoting_get_their_own_views() {
        let (views, _) = normalize("UN/**/ION SEL/*x*/ECT");
        assert_eq!(views.sql.as_deref(), Some("union select"));
        let (views, _) = normalize("1 /*!50000UNION*/ /*!SELECT*/ 1");
        assert_eq!(views.sql.as_deref(), Some("1  union   select  1"));
        let (views, _) = normalize(";c'a't${IFS}/e\"t\"c/pas\\swd");
        assert_eq!(views.shell.as_deref(), Some(";cat /etc/passwd"));
    }

    #[test]
    fn null_bytes_and_bad_percent_are_anomalies() {
        let (views, anomalies) = normalize("file.php%00.jpg");
        assert_eq!(views.plain, "file.php.jpg");
        assert!(anomalies.null_byte);
        assert!(bad_percent("/a?x=%zz"));
        assert!(bad_percent("%2"));
        assert!(!bad_percent("100%25%20sure%u0027"));
    }
}
