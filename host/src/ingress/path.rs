//! The canonical request path: one spelling of every path, computed once before routing, so
//! no encoding trick sends a request past the plugins of the route it really belongs to.
//!
//! The rules are RFC 3986 §6.2.2 normalisation plus refusals, modelled on Envoy's
//! `normalize_path` + `merge_slashes` + `path_with_escaped_slashes_action = REJECT_REQUEST`:
//!
//! 1. Percent-encoded unreserved characters (`A–Z a–z 0–9 - . _ ~`), sub-delimiters but `;`
//!    (`! $ & ' ( ) * + , =`), `:` and `@` are decoded: all are legal unencoded in a segment.
//!    Every other escape is kept with upper-case hex digits. Bytes outside ASCII are
//!    percent-encoded.
//! 2. Refused (400): a malformed escape; an encoded `/` (`%2F`) or `\` (`%5C`); a raw `\`;
//!    `%00` and other encoded control characters; escapes that decode to invalid UTF-8
//!    (overlong forms such as `%C0%AE` included); `;` path parameters, raw or `%3B`, unless
//!    allowed (then `%3B` is kept encoded, as data).
//! 3. Repeated slashes are merged (setting, on by default; a leading `//` is always merged).
//! 4. Dot segments are removed (RFC 3986 §5.2.4); one that would climb above the root is
//!    refused. With path parameters allowed, `..;x` counts as `..` (as Tomcat reads it).
//!
//! The result is a fixed point: canonicalising it again changes nothing.

use std::borrow::Cow;

/// How paths are canonicalised, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Merge `//` into `/`.
    pub merge_slashes: bool,
    /// Keep `;` path parameters instead of refusing them.
    pub allow_path_params: bool,
}

impl Default for PathRules {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            allow_path_params: false,
        }
    }
}

/// Why a path cannot be made safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// It does not start with `/`.
    #[error("the path must start with `/`")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    /// `%2F` or `%5C`: a separator in disguise.
    #[error("the path has an encoded `/` or `\\`")]
    EncodedSeparator,
    /// A raw `\`, which some servers read as `/`.
    #[error("the path has a `\\`")]
    Backslash,
    /// A control character, raw or encoded (`%00` included).
    #[error("the path has a control character")]
    Control,
    /// Escapes that decode to invalid UTF-8 (overlong forms included).
    #[error("the path decodes to invalid UTF-8")]
    InvalidUtf8,
    /// `..` above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// `;` path parameters, which servers read differently.
    #[error("the path has `;` parameters")]
    PathParams,
    /// A rewrite with a `?` or `#`, which would change the query.
    #[error("a rewritten path cannot hold `?` or `#`")]
    QueryInPath,
    /// A rewrite with a `.` or `..` segment, which would leave the path the route matched.
    #[error("a rewritten path cannot hold `.` or `..` segments")]
    DotSegmentInRewrite,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The sub-delimiters, `:` and `@`, but `;`: legal unencoded in a segment (RFC 3986 §3.3), and
/// decoded by every server behind, so a route pattern holding one (`/jobs:cancel`) must not be
/// missed by its encoded spelling.
fn is_segment_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
    )
}

/// Bytes that a plainly canonical path may not hold, `/` aside (it needs a look ahead): one
/// table lookup per byte keeps the common case at about a nanosecond per byte.
const NOT_PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b <= 0x20
            || b >= 0x7f
            || b == b'%' as usize
            || b == b'\\' as usize
            || b == b';' as usize;
        b += 1;
    }
    table[b'/' as usize] = true;
    table
};

/// Whether `path` is already canonical for the common case, found in one pass over its bytes
/// without allocating: no escapes, no `\`, `;`, control or non-ASCII bytes, no `//`, and no
/// `.` or `..` segment.
fn is_plainly_canonical(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    for (i, &b) in path.iter().enumerate() {
        if !NOT_PLAIN[usize::from(b)] {
            continue;
        }
        if b != b'/' {
            return false;
        }
        let rest = &path[i + 1..];
        let merged_or_dot = matches!(
            rest,
            [b'/', ..] | [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
        );
        if merged_or_dot {
            return false;
        }
    }
    true
}

/// The canonical form of `path` (without query), or why it is refused. Borrows `path` when it
/// is already canonical, which is the common case.
pub fn canonical(path: &str, rules: PathRules) -> Result<Cow<'_, str>, PathError> {
    if is_plainly_canonical(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let escaped = decode_unreserved(path.as_bytes(), rules)?;
    Ok(Cow::Owned(remove_dot_segments(&escaped, rules)?))
}

/// The canonical form of a path a plugin writes (`set-path`). Stricter than a client's: a
/// rewrite built from client input must not inject a query (`?`, `#`) or climb out of the
/// path the route matched with dot segments, raw or encoded.
pub fn canonical_rewrite(path: &str, rules: PathRules) -> Result<Cow<'_, str>, PathError> {
    if path.contains(['?', '#']) {
        return Err(PathError::QueryInPath);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(path.as_bytes(), rules)?;
    if decoded[1..].split('/').any(|segment| {
        let name = segment.split(';').next().unwrap_or(segment);
        name == "." || name == ".."
    }) {
        return Err(PathError::DotSegmentInRewrite);
    }
    canonical(path, rules)
}

/// Step 1 and 2: decodes unreserved escapes, upper-cases the others, encodes non-ASCII bytes,
/// and refuses what cannot be made safe.
fn decode_unreserved(path: &[u8], rules: PathRules) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len());
    // Every byte the path stands for, to check that it is UTF-8 once decoded.
    let mut decoded = Vec::with_capacity(path.len());
    let push_escaped = |out: &mut String, b: u8| {
        out.push('%');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    };
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' => {
                let hex = |j: usize| {
                    path.get(j)
                        .and_then(|&h| char::from(h).to_digit(16))
                        .ok_or(PathError::BadEscape)
                };
                let value = u8::try_from(hex(i + 1)? << 4 | hex(i + 2)?)
                    .map_err(|_| PathError::BadEscape)?;
                match value {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(PathError::Control),
                    // A parameter in disguise: servers that decode before they split read it as one.
                    b';' if !rules.allow_path_params => return Err(PathError::PathParams),
                    v if is_unreserved(v) || is_segment_delimiter(v) => out.push(char::from(v)),
                    v => push_escaped(&mut out, v),
                }
                decoded.push(value);
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' if !rules.allow_path_params => return Err(PathError::PathParams),
            0..=0x20 | 0x7f => return Err(PathError::Control),
            0x80..=0xff => push_escaped(&mut out, b),
            _ => out.push(char::from(b)),
        }
        decoded.push(b);
        i += 1;
    }
    std::str::from_utf8(&decoded).map_err(|_| PathError::InvalidUtf8)?;
    Ok(out)
}

/// Steps 3 and 4 on a path that starts with `/` and holds only safe characters.
fn remove_dot_segments(path: &str, rules: PathRules) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        let is_last = i == last;
        // With parameters allowed, `..;jsessionid=x` (or `..%3Bx`, to a server that decodes
        // first) is still `..` to the servers behind.
        let name = match rules.allow_path_params {
            true => {
                let end = [segment.find(';'), segment.find("%3B")]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(segment.len());
                &segment[..end]
            }
            false => segment,
        };
        match name {
            "." => trailing_slash = is_last,
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = is_last;
            }
            "" if is_last => trailing_slash = true,
            // A leading empty segment is always merged: `//host/x` reads as a network path.
            "" if rules.merge_slashes || kept.is_empty() => {}
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(path: &str) -> Result<String, PathError> {
        canonical(path, PathRules::default()).map(Cow::into_owned)
    }

    /// Raw paths, what wasmgate makes of them, and what it refuses.
    const TABLE: &[(&str, Result<&str, PathError>)] = &[
        ("/", Ok("/")),
        ("/private/x", Ok("/private/x")),
        ("/private/", Ok("/private/")),
        ("/public/../private/x", Ok("/private/x")),
        ("/public/%2e%2e/private/x", Ok("/private/x")),
        ("/public/%2E%2E/private/x", Ok("/private/x")),
        ("/public/.%2e/private/x", Ok("/private/x")),
        ("/public/%2e./private/x", Ok("/private/x")),
        ("//private/x", Ok("/private/x")),
        ("///private//x", Ok("/private/x")),
        ("/./private/x", Ok("/private/x")),
        ("/%2e/private/x", Ok("/private/x")),
        ("/%70rivate/x", Ok("/private/x")),
        ("/%50RIVATE/x", Ok("/PRIVATE/x")),
        ("/private/x/.", Ok("/private/x/")),
        ("/private/x/..", Ok("/private/")),
        ("/private/..", Ok("/")),
        ("/a/b/../../private", Ok("/private")),
        ("/private/%7e/%41", Ok("/private/~/A")),
        ("/private/a%2db", Ok("/private/a-b")),
        ("/private/%3f", Ok("/private/%3F")),
        ("/v1/jobs%3acancel", Ok("/v1/jobs:cancel")),
        (
            "/v1/%40me/%21%24%26%27%28%29%2a%2b%2c%3d",
            Ok("/v1/@me/!$&'()*+,="),
        ),
        ("/public/..%3b/private", Err(PathError::PathParams)),
        ("/private%3Bx", Err(PathError::PathParams)),
        ("/q/%23/%5b%5d", Ok("/q/%23/%5B%5D")),
        ("/private/%3F", Ok("/private/%3F")),
        ("/private/%252e%252e", Ok("/private/%252e%252e")),
        ("/private/%25", Ok("/private/%25")),
        ("/private/caf%c3%a9", Ok("/private/caf%C3%A9")),
        ("/private.", Ok("/private.")),
        ("/private./x", Ok("/private./x")),
        ("/private../x", Ok("/private../x")),
        ("/...", Ok("/...")),
        ("/private/.hidden", Ok("/private/.hidden")),
        ("/public/..%2fprivate/x", Err(PathError::EncodedSeparator)),
        ("/private%2fx", Err(PathError::EncodedSeparator)),
        ("/private%2Fx", Err(PathError::EncodedSeparator)),
        ("/public/..%5cprivate/x", Err(PathError::EncodedSeparator)),
        ("/public/..\\private/x", Err(PathError::Backslash)),
        ("/public/..;/private/x", Err(PathError::PathParams)),
        ("/private;jsessionid=1", Err(PathError::PathParams)),
        ("/private/%00", Err(PathError::Control)),
        ("/private/%0a", Err(PathError::Control)),
        ("/private/%7f", Err(PathError::Control)),
        ("/private/%c0%ae%c0%ae/x", Err(PathError::InvalidUtf8)),
        ("/private/%e0%80%ae", Err(PathError::InvalidUtf8)),
        ("/private/%ff", Err(PathError::InvalidUtf8)),
        ("/private/%", Err(PathError::BadEscape)),
        ("/private/%2", Err(PathError::BadEscape)),
        ("/private/%zz", Err(PathError::BadEscape)),
        ("/..", Err(PathError::AboveRoot)),
        ("/../private/x", Err(PathError::AboveRoot)),
        ("/public/../../private/x", Err(PathError::AboveRoot)),
        ("/%2e%2e/private", Err(PathError::AboveRoot)),
        ("private/x", Err(PathError::NotAbsolute)),
        ("*", Err(PathError::NotAbsolute)),
    ];

    #[test]
    fn every_raw_path_in_the_table_gets_its_canonical_form_or_refusal() {
        assert!(TABLE.len() >= 40);
        for (raw, expected) in TABLE {
            let expected = expected.map(str::to_owned);
            assert_eq!(canon(raw), expected, "canonical form of {raw:?}");
        }
    }

    #[test]
    fn merge_slashes_off_keeps_inner_empty_segments_but_never_a_leading_one() {
        let rules = PathRules {
            merge_slashes: false,
            ..PathRules::default()
        };
        let c = |p| canonical(p, rules).map(Cow::into_owned);
        assert_eq!(c("/a//b"), Ok("/a//b".into()));
        assert_eq!(c("//private/x"), Ok("/private/x".into()));
        assert_eq!(c("/a//../b"), Ok("/a/b".into()));
    }

    #[test]
    fn allowed_path_params_stay_but_cannot_hide_a_dot_segment() {
        let rules = PathRules {
            allow_path_params: true,
            ..PathRules::default()
        };
        let c = |p| canonical(p, rules).map(Cow::into_owned);
        assert_eq!(c("/a;v=1/b"), Ok("/a;v=1/b".into()));
        assert_eq!(c("/public/..;/private/x"), Ok("/private/x".into()));
        assert_eq!(c("/public/.;x/private"), Ok("/public/private".into()));
    }

    #[test]
    fn a_clean_path_is_borrowed_not_copied() {
        for clean in ["/", "/api/v1/users/42", "/a.b/c..d/.e", "/x-y_z~"] {
            assert!(matches!(
                canonical(clean, PathRules::default()),
                Ok(Cow::Borrowed(_))
            ));
        }
    }

    fn is_dot_segment(segment: &str) -> bool {
        segment == "." || segment == ".."
    }

    /// Paths built from the characters that matter to normalisation.
    fn raw_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%2E"),
            Just("%2f"),
            Just("%5c"),
            Just("%70"),
            Just("%25"),
            Just("%3a"),
            Just("%3b"),
            Just("%3B"),
            Just("%40"),
            Just(":"),
            Just("+"),
            Just("%c3%a9"),
            Just("%c0%ae"),
            Just("%"),
            Just(";"),
            Just("\\"),
            Just("private"),
            Just("public"),
            Just("p"),
            Just("x"),
            Just("~"),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    #[test]
    fn rewrites_cannot_inject_a_query_or_climb() {
        let rules = PathRules::default();
        for (path, refused) in [
            ("/users/x?role=admin", PathError::QueryInPath),
            ("/users/x#", PathError::QueryInPath),
            ("/users/../admin", PathError::DotSegmentInRewrite),
            ("/users/%2e%2e/admin", PathError::DotSegmentInRewrite),
            ("/users/./x", PathError::DotSegmentInRewrite),
            ("/users/%2fadmin", PathError::EncodedSeparator),
            ("users", PathError::NotAbsolute),
        ] {
            assert_eq!(canonical_rewrite(path, rules), Err(refused), "{path}");
        }
        assert_eq!(
            canonical_rewrite("/v2//users/%7ebob", rules).as_deref(),
            Ok("/v2/users/~bob")
        );
    }

    proptest! {
        #[test]
        fn canonical_paths_are_fixed_points_without_dot_segments(raw in raw_path()) {
            for rules in [
                PathRules::default(),
                PathRules { merge_slashes: false, allow_path_params: true },
            ] {
                if let Ok(once) = canonical(&raw, rules) {
                    let twice = canonical(&once, rules).map(Cow::into_owned);
                    prop_assert_eq!(twice.as_deref(), Ok(&*once), "from {:?}", raw);
                    prop_assert!(once.starts_with('/') && !once.starts_with("//"));
                    prop_assert!(
                        !once.split('/').any(is_dot_segment),
                        "dot segment left in {:?} (from {:?})", once, raw
                    );
                    // The fast path takes only what the full rules leave as it is.
                    if is_plainly_canonical(raw.as_bytes()) {
                        let full = decode_unreserved(raw.as_bytes(), rules)
                            .and_then(|d| remove_dot_segments(&d, rules));
                        prop_assert_eq!(full.as_deref(), Ok(&*raw));
                    }
                    // One spelling: nothing legal unencoded is left encoded.
                    for escape in once.split('%').skip(1) {
                        let byte = u8::from_str_radix(&escape[..2], 16).unwrap();
                        prop_assert!(
                            !is_unreserved(byte) && !is_segment_delimiter(byte),
                            "{:?} left encoded in {:?}", byte as char, once
                        );
                    }
                }
            }
        }
    }
}
