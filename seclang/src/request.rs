//! Turning a request into the collections rules read: the request line, query and body
//! arguments, cookies, JSON, XML and multipart bodies — named and decoded as ModSecurity v3
//! names and decodes them, so rules and exclusions written for it (`ARGS:json.user.name`)
//! work unchanged.
//!
//! Every parser takes attacker-chosen bytes: none panics, none recurses without a limit, and
//! the work is linear in the input. Capping the number of arguments is the caller's job.

use crate::transform::url_decode;

pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The request-line variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLine {
    pub request_line: Vec<u8>,
    pub request_method: Vec<u8>,
    pub request_protocol: Vec<u8>,
    /// The request-target, URL-decoded (ModSecurity v3 decodes it).
    pub request_uri: Vec<u8>,
    pub request_uri_raw: Vec<u8>,
    /// The path, URL-decoded, without the query.
    pub request_filename: Vec<u8>,
    /// The last segment of `request_filename`.
    pub request_basename: Vec<u8>,
    /// The query as sent (not decoded).
    pub query_string: Vec<u8>,
}

pub fn request_line(method: &[u8], target: &[u8], protocol: &[u8]) -> RequestLine {
    let mut line = Vec::with_capacity(method.len() + target.len() + protocol.len() + 2);
    line.extend_from_slice(method);
    line.push(b' ');
    line.extend_from_slice(target);
    line.push(b' ');
    line.extend_from_slice(protocol);
    let (path, query) = match memchr::memchr(b'?', target) {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &b""[..]),
    };
    let filename = percent_decode(path);
    let basename = match filename.iter().rposition(|b| *b == b'/') {
        Some(i) => filename[i + 1..].to_vec(),
        None => filename.clone(),
    };
    RequestLine {
        request_line: line,
        request_method: method.to_vec(),
        request_protocol: protocol.to_vec(),
        request_uri: percent_decode(target),
        request_uri_raw: target.to_vec(),
        request_filename: filename,
        request_basename: basename,
        query_string: query.to_vec(),
    }
}

/// `%XX` decoding without `+` → space (paths are not forms).
fn percent_decode(input: &[u8]) -> Vec<u8> {
    if !input.contains(&b'%') {
        return input.to_vec();
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        if input[i] == b'%'
            && let (Some(h), Some(l)) = (hex(input.get(i + 1)), hex(input.get(i + 2)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// A query string or urlencoded body: `&`-separated, split at the first `=`, both sides
/// decoded; a name without `=` has an empty value; empty pieces are skipped.
pub fn parse_urlencoded(input: &[u8]) -> Pairs {
    input
        .split(|b| *b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match memchr::memchr(b'=', piece) {
            Some(i) => (url_decode(&piece[..i]), url_decode(&piece[i + 1..])),
            None => (url_decode(piece), Vec::new()),
        })
        .collect()
}

/// One `Cookie` header: `;`-separated `name=value` pairs, leading spaces trimmed; values are
/// not decoded (cookies are not forms).
pub fn parse_cookies(header_value: &[u8]) -> Pairs {
    header_value
        .split(|b| *b == b';')
        .map(|piece| {
            let start = piece
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(piece.len());
            &piece[start..]
        })
        .filter(|piece| !piece.is_empty())
        .map(|piece| match memchr::memchr(b'=', piece) {
            Some(i) => (piece[..i].to_vec(), piece[i + 1..].to_vec()),
            None => (piece.to_vec(), Vec::new()),
        })
        .collect()
}

/// A JSON body into arguments named as ModSecurity v3 names them: `json.a.b` for nested
/// keys, `json.list.array_0` for array elements; numbers as written, booleans `true`/`false`,
/// `null` an empty value.
pub fn parse_json(body: &[u8], max_depth: usize) -> Result<Pairs, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Pairs::new();
    let mut prefix = b"json".to_vec();
    flatten(&value, &mut prefix, None, 0, max_depth, &mut out)?;
    Ok(out)
}

fn flatten(
    value: &serde_json::Value,
    path: &mut [u8],
    key: Option<&[u8]>,
    depth: usize,
    max_depth: usize,
    out: &mut Pairs,
) -> Result<(), String> {
    use serde_json::Value as J;
    if depth > max_depth {
        return Err(format!("JSON nesting deeper than {max_depth}"));
    }
    let name = |path: &[u8], key: Option<&[u8]>| {
        let mut n = path.to_vec();
        if let Some(k) = key {
            n.push(b'.');
            n.extend_from_slice(k);
        }
        n
    };
    match value {
        J::Object(map) => {
            let mut inner = name(path, key);
            for (k, v) in map {
                flatten(v, &mut inner, Some(k.as_bytes()), depth + 1, max_depth, out)?;
            }
        }
        J::Array(items) => {
            let inner = name(path, key);
            for (i, v) in items.iter().enumerate() {
                let mut p = inner.clone();
                let elem = format!("array_{i}");
                match v {
                    J::Object(_) | J::Array(_) => {
                        p.push(b'.');
                        p.extend_from_slice(elem.as_bytes());
                        flatten(v, &mut p, None, depth + 1, max_depth, out)?;
                    }
                    _ => flatten(v, &mut p, Some(elem.as_bytes()), depth + 1, max_depth, out)?,
                }
            }
        }
        J::String(s) => out.push((name(path, key), s.as_bytes().to_vec())),
        J::Number(n) => out.push((name(path, key), n.to_string().into_bytes())),
        J::Bool(b) => out.push((
            name(path, key),
            if *b {
                b"true".to_vec()
            } else {
                b"false".to_vec()
            },
        )),
        J::Null => out.push((name(path, key), Vec::new())),
    }
    Ok(())
}

/// What `XML:/*` and `XML://@*` yield.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmlBody {
    /// The root element's text content (all descendant text, concatenated).
    pub root_text: Vec<u8>,
    pub attribute_values: Vec<Vec<u8>>,
}

/// An XML body. External entities are never resolved; a DTD is allowed (and left to rules).
pub fn parse_xml(body: &[u8]) -> Result<XmlBody, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| e.to_string())?;
    let mut out = XmlBody::default();
    for node in doc.root_element().descendants() {
        if node.is_text()
            && let Some(t) = node.text()
        {
            out.root_text.extend_from_slice(t.as_bytes());
        }
        for a in node.attributes() {
            out.attribute_values.push(a.value().as_bytes().to_vec());
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePart {
    pub name: Vec<u8>,
    pub filename: Vec<u8>,
    pub size: usize,
    pub content_type: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct Multipart {
    pub args: Pairs,
    pub files: Vec<FilePart>,
    /// `MULTIPART_PART_HEADERS`: (part name, `Header: value`) for every header of every part.
    pub part_headers: Pairs,
    pub flags: MultipartFlags,
}

/// The `MULTIPART_*` flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultipartFlags {
    /// The body could not be parsed at all (`REQBODY_ERROR` is set too).
    pub error: bool,
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub lf_line: bool,
    pub crlf_lf_lines: bool,
    pub missing_semicolon: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub invalid_header_folding: bool,
    pub file_limit_exceeded: bool,
    pub unmatched_boundary: bool,
}

impl MultipartFlags {
    /// `MULTIPART_STRICT_ERROR`, as ModSecurity computes it (quoted boundaries alone do not
    /// count: browsers do not send them, but they are legal).
    pub fn strict_error(&self) -> bool {
        self.error
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.file_limit_exceeded
            || self.unmatched_boundary
    }
}

/// A `multipart/form-data` body, given the `Content-Type` header value.
///
/// Strict where ModSecurity is strict, so that the two agree on what is a parse error (an
/// ambiguous body is where a WAF and the application behind it read different fields).
pub fn parse_multipart(content_type: &[u8], body: &[u8]) -> Result<Multipart, String> {
    let mut flags = MultipartFlags::default();
    let boundary = multipart_boundary(content_type, &mut flags)?;
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let finder = memchr::memmem::Finder::new(d);
    let positions: Vec<usize> = finder
        .find_iter(body)
        .filter(|&p| p == 0 || body[p - 1] == b'\n')
        .collect();
    let Some(&first) = positions.first() else {
        return Err("no boundary found in the body".into());
    };
    if first > 0 && !body[..first].iter().all(u8::is_ascii_whitespace) {
        flags.data_before = true;
    }
    let mut out = Multipart::default();
    let mut closed = false;
    for (n, &start) in positions.iter().enumerate() {
        let after = start + d.len();
        if body[after..].starts_with(b"--") {
            closed = true;
            let tail = &body[after + 2..];
            if !tail.iter().all(u8::is_ascii_whitespace) {
                flags.data_after = true;
            }
            break;
        }
        let end = positions.get(n + 1).copied().unwrap_or(body.len());
        let mut part = &body[after..end];
        // The line break after the delimiter, and the one before the next.
        part = part
            .strip_prefix(b"\r\n")
            .or_else(|| {
                let p = part.strip_prefix(b"\n");
                if p.is_some() {
                    flags.lf_line = true;
                }
                p
            })
            .unwrap_or(part);
        if let Some(p) = part.strip_suffix(b"\r\n") {
            part = p;
        } else if let Some(p) = part.strip_suffix(b"\n") {
            flags.lf_line = true;
            part = p;
        }
        let (head, content) = match memchr::memmem::find(part, b"\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => match memchr::memmem::find(part, b"\n\n") {
                Some(i) => {
                    flags.lf_line = true;
                    (&part[..i], &part[i + 2..])
                }
                None => {
                    flags.invalid_part = true;
                    continue;
                }
            },
        };
        let mut name = Vec::new();
        let mut filename: Option<Vec<u8>> = None;
        let mut content_type = Vec::new();
        let mut headers = Vec::new();
        let mut disposed = false;
        for line in head.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                flags.header_folding = true;
                continue;
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                flags.invalid_part = true;
                continue;
            };
            let hname = &line[..colon];
            let hvalue = line[colon + 1..].trim_ascii();
            // A repeated part header is an error, as in ModSecurity: with two
            // Content-Dispositions the WAF and the application could read different parts.
            if headers.iter().any(|h: &Vec<u8>| {
                h.len() > colon && h[colon] == b':' && h[..colon].eq_ignore_ascii_case(hname)
            }) {
                return Err(format!(
                    "duplicate part header {}",
                    String::from_utf8_lossy(hname)
                ));
            }
            headers.push(line.to_vec());
            if hname.eq_ignore_ascii_case(b"content-disposition") {
                disposed = true;
                (name, filename) = disposition(hvalue, &mut flags)?;
            } else if hname.eq_ignore_ascii_case(b"content-type") {
                content_type = hvalue.to_vec();
            }
        }
        for h in headers {
            out.part_headers.push((name.clone(), h));
        }
        if !disposed {
            return Err("part missing Content-Disposition header".into());
        }
        if name.is_empty() {
            return Err("Content-Disposition header missing name field".into());
        }
        // An empty filename makes no file, as in ModSecurity: the part is an argument.
        match filename.filter(|f| !f.is_empty()) {
            Some(filename) => out.files.push(FilePart {
                name,
                filename,
                size: content.len(),
                content_type,
            }),
            None => out.args.push((name, content.to_vec())),
        }
    }
    if !closed {
        flags.unmatched_boundary = true;
    }
    out.flags = flags;
    Ok(out)
}

/// The boundary of a `multipart/form-data; boundary=…` header value. Everything after `=` is
/// the boundary (quotes removed), as ModSecurity reads it; more than one `boundary` parameter,
/// anything but one `;` before it, partial quotes and characters outside RFC 2046's set are
/// errors.
fn multipart_boundary(content_type: &[u8], flags: &mut MultipartFlags) -> Result<String, String> {
    const MIME: &[u8] = b"multipart/form-data";
    if content_type.len() > 1024 {
        return Err("invalid boundary in Content-Type (length)".into());
    }
    if content_type.len() < MIME.len() || !content_type[..MIME.len()].eq_ignore_ascii_case(MIME) {
        return Err("invalid MIME type".into());
    }
    let lower = content_type.to_ascii_lowercase();
    let finder = memchr::memmem::Finder::new(b"boundary");
    // A `boundary` with an `=` somewhere after it, as ModSecurity counts parameters.
    let params = |text: &[u8]| {
        finder
            .find_iter(text)
            .filter(|&at| text[at + 8..].contains(&b'='))
            .count()
    };
    if params(&lower) > 1 {
        return Err("multiple boundary parameters in Content-Type".into());
    }
    let at = finder.find(&lower).ok_or("no boundary in Content-Type")?;
    let mut semicolons = 0;
    for &c in &content_type[MIME.len()..at] {
        match c {
            b';' if semicolons == 0 => semicolons += 1,
            c if c.is_ascii_whitespace() => {}
            _ => return Err("invalid boundary in Content-Type (malformed)".into()),
        }
    }
    flags.missing_semicolon = semicolons == 0;
    let rest = &content_type[at + 8..];
    let eq = memchr::memchr(b'=', rest).ok_or("invalid boundary in Content-Type (malformed)")?;
    if !rest[..eq].iter().all(u8::is_ascii_whitespace) {
        return Err("invalid boundary in Content-Type (parameter name)".into());
    }
    let mut value = &rest[eq + 1..];
    flags.boundary_whitespace = eq > 0 || value.first().is_some_and(u8::is_ascii_whitespace);
    value = value.trim_ascii_start();
    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        flags.boundary_quoted = true;
        value = &value[1..value.len() - 1];
    } else if value.first() == Some(&b'"') || value.last() == Some(&b'"') {
        return Err("invalid boundary in Content-Type (quote)".into());
    }
    if value.is_empty() || value.len() > 70 {
        return Err("invalid boundary in Content-Type".into());
    }
    if params(&value.to_ascii_lowercase()) != 0 {
        return Err("invalid boundary in Content-Type (content)".into());
    }
    let valid = |(i, &c): (usize, &u8)| {
        c.is_ascii_alphanumeric()
            || b"'()+_,-./:=?".contains(&c)
            || (c == b' ' && i + 1 < value.len())
    };
    if !value.iter().enumerate().all(valid) {
        return Err("invalid boundary in Content-Type (characters)".into());
    }
    Ok(String::from_utf8_lossy(value).into_owned())
}

/// A part's `Content-Disposition: form-data; name="a"; filename="b.txt"` → (name, filename),
/// read as ModSecurity reads it: only `form-data`, only the `name` and `filename` parameters,
/// each once, values quoted (`\"` and `\\` escapes) or tokens, and nothing but `;` between
/// parameters. Anything else is an error.
fn disposition(
    value: &[u8],
    flags: &mut MultipartFlags,
) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let invalid = |code: u8| Err(format!("invalid Content-Disposition header ({code})"));
    let Some(mut p) = value.strip_prefix(b"form-data") else {
        return invalid(1);
    };
    let mut name: Option<Vec<u8>> = None;
    let mut filename: Option<Vec<u8>> = None;
    let skip_blank =
        |p: &[u8]| -> usize { p.iter().take_while(|c| matches!(c, b' ' | b'\t')).count() };
    p = &p[skip_blank(p)..];
    if p.is_empty() {
        return Ok((Vec::new(), None));
    }
    let Some(rest) = p.strip_prefix(b";") else {
        return invalid(2);
    };
    p = rest;
    while !p.is_empty() {
        p = &p[skip_blank(p)..];
        if p.is_empty() {
            return invalid(3);
        }
        let key_len = p
            .iter()
            .take_while(|c| !matches!(c, b'=' | b' ' | b'\t'))
            .count();
        let key = &p[..key_len];
        p = &p[key_len..];
        p = &p[skip_blank(p)..];
        let Some(rest) = p.strip_prefix(b"=") else {
            return invalid(if p.is_empty() { 5 } else { 13 });
        };
        p = &rest[skip_blank(rest)..];
        let mut v = Vec::new();
        match p.first() {
            None => return invalid(6),
            Some(&quote @ (b'"' | b'\'')) => {
                if quote == b'\'' {
                    flags.invalid_quoting = true;
                }
                p = &p[1..];
                if p.is_empty() {
                    return invalid(7);
                }
                loop {
                    match p {
                        [] => break,
                        [b'\\'] => return invalid(8),
                        [b'\\', next, tail @ ..] if *next == quote || *next == b'\\' => {
                            v.push(*next);
                            p = tail;
                        }
                        [c, tail @ ..] if *c == quote => {
                            p = tail;
                            break;
                        }
                        [c, tail @ ..] => {
                            v.push(*c);
                            p = tail;
                        }
                    }
                }
            }
            Some(_) => {
                let n = p.iter().take_while(|&&c| is_token_char(c)).count();
                v.extend_from_slice(&p[..n]);
                p = &p[n..];
            }
        }
        if v.contains(&b'\'') {
            flags.invalid_quoting = true;
        }
        let slot = match key {
            b"name" => &mut name,
            b"filename" => &mut filename,
            _ => return invalid(11),
        };
        if slot.as_ref().is_some_and(|old| !old.is_empty()) {
            return invalid(if key == b"name" { 14 } else { 15 });
        }
        *slot = Some(v);
        if !p.is_empty() {
            p = &p[skip_blank(p)..];
            if p.is_empty() {
                break;
            }
            let Some(rest) = p.strip_prefix(b";") else {
                return invalid(12);
            };
            p = rest;
        }
    }
    Ok((name.unwrap_or_default(), filename))
}

/// An RFC 2616 token character.
fn is_token_char(c: u8) -> bool {
    c > 32 && c < 127 && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_decodes_the_path_but_keeps_the_query_raw() {
        let l = request_line(b"GET", b"/a%20b/c.php?x=%27", b"HTTP/1.1");
        assert_eq!(l.request_filename, b"/a b/c.php");
        assert_eq!(l.request_basename, b"c.php");
        assert_eq!(l.query_string, b"x=%27");
        assert_eq!(l.request_uri, b"/a b/c.php?x='");
        assert_eq!(l.request_line, b"GET /a%20b/c.php?x=%27 HTTP/1.1");
    }

    #[test]
    fn urlencoded_pairs_are_decoded_and_names_without_values_kept() {
        let p = parse_urlencoded(b"a=1+2&b&&c=%27x%zz&d=e=f");
        assert_eq!(
            p,
            vec![
                (b"a".to_vec(), b"1 2".to_vec()),
                (b"b".to_vec(), Vec::new()),
                (b"c".to_vec(), b"'x%zz".to_vec()),
                (b"d".to_vec(), b"e=f".to_vec()),
            ]
        );
    }

    #[test]
    fn cookies_split_on_semicolons() {
        let c = parse_cookies(b"a=1; b=x%27y;c");
        assert_eq!(c[1], (b"b".to_vec(), b"x%27y".to_vec()));
        assert_eq!(c[2], (b"c".to_vec(), Vec::new()));
    }

    #[test]
    fn json_names_follow_modsecurity() {
        let p = parse_json(
            br#"{"user":{"name":"x","tags":["a",{"k":1}]},"ok":true,"n":null}"#,
            16,
        )
        .unwrap();
        let names: Vec<String> = p
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "json.user.name",
                "json.user.tags.array_0",
                "json.user.tags.array_1.k",
                "json.ok",
                "json.n"
            ]
        );
        assert_eq!(p[3].1, b"true");
        assert!(parse_json(b"[[[[1]]]]", 2).is_err());
        assert!(parse_json(b"{bad", 8).is_err());
    }

    #[test]
    fn xml_text_and_attributes_are_collected() {
        let x = parse_xml(br#"<a x="1"><b>hi</b> <c y="2">there</c></a>"#).unwrap();
        assert_eq!(x.root_text, b"hi there");
        assert_eq!(x.attribute_values, vec![b"1".to_vec(), b"2".to_vec()]);
        assert!(parse_xml(b"<a><b></a>").is_err());
    }

    #[test]
    fn multipart_fields_files_and_headers() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nhello\r\n--XX\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XX--\r\n";
        let m = parse_multipart(b"multipart/form-data; boundary=XX", body).unwrap();
        assert_eq!(m.args, vec![(b"f".to_vec(), b"hello".to_vec())]);
        assert_eq!(m.files[0].filename, b"a.php");
        assert_eq!(m.files[0].size, 5);
        assert_eq!(m.part_headers.len(), 3);
        assert!(!m.flags.strict_error());
    }

    #[test]
    fn multipart_headers_modsecurity_refuses_are_errors() {
        let part = |disposition: &str| {
            format!("--XX\r\nContent-Disposition: {disposition}\r\n\r\nv\r\n--XX--\r\n")
        };
        let ct = b"multipart/form-data; boundary=XX";
        for bad in [
            r#"form-data; name="f"; filename=""><svg onload=alert(1)>.gif""#,
            r#"form-data; name="a"; name="b""#,
            r#"form-data; name="a"; size=3"#,
            r#"form-data name="a""#,
            r#"attachment; name="a""#,
        ] {
            assert!(parse_multipart(ct, part(bad).as_bytes()).is_err(), "{bad}");
        }
        let ok = parse_multipart(
            ct,
            part(r#"form-data; name="a\"b" ; filename=x.txt"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.files[0].name, br#"a"b"#);
        assert_eq!(ok.files[0].filename, b"x.txt");
        let quoted = parse_multipart(ct, part("form-data; name='a'").as_bytes()).unwrap();
        assert!(quoted.flags.invalid_quoting);
        assert!(parse_multipart(ct, part("form-data").as_bytes()).is_err());
        let twice = "--XX\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; name=\"a\"; filename=\"x\"\r\n\r\nv\r\n--XX--\r\n";
        assert!(parse_multipart(ct, twice.as_bytes()).is_err());
        let no_file =
            parse_multipart(ct, part(r#"form-data; name="a"; filename="""#).as_bytes()).unwrap();
        assert!(no_file.files.is_empty());
        assert_eq!(no_file.args, vec![(b"a".to_vec(), b"v".to_vec())]);
    }

    #[test]
    fn multipart_boundaries_modsecurity_refuses_are_errors() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--XX--\r\n";
        for bad in [
            "multipart/form-data; boundary=XX; boundary=YY",
            "multipart/form-data; boundary=XXboundary=YY",
            "multipart/form-data; charset=utf-8; boundary=XX",
            "multipart/form-data; boundary=\"XX",
            "multipart/form-data; boundary=XX; charset=utf-8",
            "multipart/form-data; boundaryx=XX",
            "text/plain; boundary=XX",
        ] {
            assert!(parse_multipart(bad.as_bytes(), body).is_err(), "{bad}");
        }
        let quoted = parse_multipart(b"multipart/form-data; boundary=\"XX\"", body).unwrap();
        let named = b"--aBoundaryZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--aBoundaryZ--\r\n";
        assert!(parse_multipart(b"multipart/form-data; boundary=aBoundaryZ", named).is_ok());
        assert!(quoted.flags.boundary_quoted);
        let bare = parse_multipart(b"multipart/form-data boundary=XX", body).unwrap();
        assert!(bare.flags.missing_semicolon && bare.flags.strict_error());
    }

    #[test]
    fn multipart_without_a_closing_boundary_is_a_strict_error() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nhello\r\n";
        let m = parse_multipart(b"multipart/form-data; boundary=XX", body).unwrap();
        assert!(m.flags.unmatched_boundary && m.flags.strict_error());
        assert!(parse_multipart(b"multipart/form-data", body).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_urlencoded(&bytes);
            let _ = parse_cookies(&bytes);
            let _ = parse_json(&bytes, 8);
            let _ = parse_xml(&bytes);
            let _ = parse_multipart(b"multipart/form-data; boundary=a", &bytes);
            let _ = request_line(b"GET", &bytes, b"HTTP/1.1");
        }
    }
}
