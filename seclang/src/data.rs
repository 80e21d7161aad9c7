//! A request's collections: built once from the request line and headers before phase 1,
//! completed by the body processor before phase 2, read-only while rules run.

use std::borrow::Cow;

use crate::eval::Request;
use crate::request::{self, FilePart, MultipartFlags, Pairs, RequestLine, XmlBody};
use crate::rule::BodyProcessor;
use crate::ruleset::Settings;
use crate::variable::{Collection, MultipartFlag, Selector};

/// Identifies a stored request value for the transformation cache: (storage, index).
pub(crate) type Ident = (u8, u32);

/// The values a variable yields for one rule (most yield a few).
pub(crate) type Values<'a> = smallvec::SmallVec<[Value<'a>; 8]>;

/// The values of one store, with their identities (most stores hold a few).
pub(crate) type StoreValues<'a> = smallvec::SmallVec<[(Ident, &'a [u8]); 16]>;

/// One value a variable yields.
#[derive(Debug, Clone)]
pub(crate) struct Value<'a> {
    pub collection: Collection,
    pub key: Cow<'a, [u8]>,
    pub value: Cow<'a, [u8]>,
    pub ident: Option<Ident>,
}

impl Value<'_> {
    /// Appends the value's name to `out`: `ARGS:q`, or `REQUEST_URI` for single-valued
    /// variables.
    pub fn write_full_name(&self, out: &mut String) {
        out.push_str(self.collection.name());
        if !self.key.is_empty() {
            out.push(':');
            out.push_str(&String::from_utf8_lossy(&self.key));
        }
    }
}

// Storage identities for the cache.
const GET: u8 = 1;
const POST: u8 = 2;
const COOKIES: u8 = 3;
const HEADERS: u8 = 4;
const GET_NAMES: u8 = 5;
const POST_NAMES: u8 = 6;
const COOKIE_NAMES: u8 = 7;
const HEADER_NAMES: u8 = 8;
const SCALAR: u8 = 9;
const FILES: u8 = 10;
const PART_HEADERS: u8 = 11;
const XML: u8 = 12;
const BODY: u8 = 13;

pub(crate) struct Data {
    line: RequestLine,
    headers: Pairs,
    args_get: Pairs,
    args_post: Pairs,
    cookies: Pairs,
    body: Vec<u8>,
    pub body_processed: bool,
    reqbody_error: Option<String>,
    files: Vec<FilePart>,
    part_headers: Pairs,
    multipart: Option<MultipartFlags>,
    xml: Option<XmlBody>,
    remote_addr: Vec<u8>,
    remote_port: Vec<u8>,
    server_port: Vec<u8>,
    unique_id: Vec<u8>,
    content_type: Vec<u8>,
    urlencoded_error: bool,
    /// Where each store's values start in the dense numbering of all stored values (see
    /// [`Data::dense`]), by store identity; the last entry is the count.
    bases: [u32; 15],
}

/// The stores a collection's values come from, for collections whose every value has an
/// identity (scalars are stores of their own: `SCALAR_STORE + slot`).
pub(crate) fn stores(collection: Collection) -> Option<&'static [u8]> {
    use Collection as C;
    Some(match collection {
        C::Args => &[GET, POST],
        C::ArgsGet => &[GET],
        C::ArgsPost => &[POST],
        C::ArgsNames => &[GET_NAMES, POST_NAMES],
        C::ArgsGetNames => &[GET_NAMES],
        C::ArgsPostNames => &[POST_NAMES],
        C::RequestCookies => &[COOKIES],
        C::RequestCookiesNames => &[COOKIE_NAMES],
        C::RequestHeaders => &[HEADERS],
        C::RequestHeadersNames => &[HEADER_NAMES],
        C::RequestFilename | C::PathInfo => &[SCALAR_STORE],
        C::RequestBasename => &[SCALAR_STORE + 1],
        C::RequestUri => &[SCALAR_STORE + 2],
        C::RequestUriRaw => &[SCALAR_STORE + 3],
        C::RequestLine => &[SCALAR_STORE + 4],
        C::QueryString => &[SCALAR_STORE + 5],
        C::RequestBody => &[BODY],
        C::Files => &[FILES],
        C::MultipartPartHeaders => &[PART_HEADERS],
        C::Xml => &[XML],
        _ => return None,
    })
}

const SCALAR_STORE: u8 = 32;
/// Scalars with an identity (`SCALAR`, slot): see `store_values`.
const SCALAR_SLOTS: usize = 6;

impl Data {
    /// Every value of a store with its identity: a superset of what any selector of the
    /// collections reading it yields.
    pub fn store_values<'a>(&'a self, store: u8, out: &mut StoreValues<'a>) {
        let pairs = |out: &mut StoreValues<'a>, p: &'a Pairs, id: u8, names: bool| {
            for (i, (k, v)) in p.iter().enumerate() {
                if let Ok(i) = u32::try_from(i) {
                    out.push(((id, i), if names { k } else { v }));
                }
            }
        };
        match store {
            GET => pairs(out, &self.args_get, GET, false),
            POST => pairs(out, &self.args_post, POST, false),
            COOKIES => pairs(out, &self.cookies, COOKIES, false),
            HEADERS => pairs(out, &self.headers, HEADERS, false),
            GET_NAMES => pairs(out, &self.args_get, GET_NAMES, true),
            POST_NAMES => pairs(out, &self.args_post, POST_NAMES, true),
            COOKIE_NAMES => pairs(out, &self.cookies, COOKIE_NAMES, true),
            HEADER_NAMES => pairs(out, &self.headers, HEADER_NAMES, true),
            PART_HEADERS => pairs(out, &self.part_headers, PART_HEADERS, false),
            FILES => {
                for (i, f) in self.files.iter().enumerate() {
                    if let Ok(i) = u32::try_from(i) {
                        out.push(((FILES, i), &f.filename));
                    }
                }
            }
            XML => {
                if let Some(x) = &self.xml {
                    out.push(((XML, 0), &x.root_text));
                    for (i, a) in x.attribute_values.iter().enumerate() {
                        if let Ok(i) = u32::try_from(i + 1) {
                            out.push(((XML, i), a));
                        }
                    }
                }
            }
            BODY => out.push(((BODY, 0), &self.body)),
            s if s >= SCALAR_STORE => {
                let l = &self.line;
                let slot = s - SCALAR_STORE;
                let v: &[u8] = match slot {
                    0 => &l.request_filename,
                    1 => &l.request_basename,
                    2 => &l.request_uri,
                    3 => &l.request_uri_raw,
                    4 => &l.request_line,
                    5 => &l.query_string,
                    _ => return,
                };
                out.push(((SCALAR, u32::from(slot)), v));
            }
            _ => {}
        }
    }

    pub fn from_headers(req: &Request<'_>, settings: &Settings) -> Data {
        let line = request::request_line(req.method, req.target, req.protocol);
        let mut args_get = request::parse_urlencoded(&line.query_string);
        args_get.truncate(settings.arguments_limit);
        let headers: Pairs = req
            .headers
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        let mut cookies = Pairs::new();
        let mut content_type = Vec::new();
        for (n, v) in &headers {
            if n.eq_ignore_ascii_case(b"cookie") {
                cookies.extend(request::parse_cookies(v));
            } else if n.eq_ignore_ascii_case(b"content-type") && content_type.is_empty() {
                content_type = v.clone();
            }
        }
        let mut data = Data {
            line,
            headers,
            args_get,
            args_post: Pairs::new(),
            cookies,
            body: Vec::new(),
            body_processed: false,
            reqbody_error: None,
            files: Vec::new(),
            part_headers: Pairs::new(),
            multipart: None,
            xml: None,
            remote_addr: req.remote_addr.as_bytes().to_vec(),
            remote_port: req.remote_port.to_string().into_bytes(),
            server_port: req.server_port.to_string().into_bytes(),
            unique_id: req.unique_id.as_bytes().to_vec(),
            content_type,
            urlencoded_error: false,
            bases: [0; 15],
        };
        data.number_values();
        data
    }

    /// How many values the stores hold: [`Data::dense`] numbers them `0..count`.
    pub fn value_count(&self) -> usize {
        self.bases[14] as usize
    }

    /// The dense number of a stored value (for tables indexed by value).
    pub fn dense(&self, (store, index): Ident) -> Option<usize> {
        let s = usize::from(store);
        let (start, end) = (*self.bases.get(s)?, *self.bases.get(s + 1)?);
        let at = start.checked_add(index)?;
        (at < end).then_some(at as usize)
    }

    fn store_len(&self, store: u8) -> usize {
        match store {
            GET | GET_NAMES => self.args_get.len(),
            POST | POST_NAMES => self.args_post.len(),
            COOKIES | COOKIE_NAMES => self.cookies.len(),
            HEADERS | HEADER_NAMES => self.headers.len(),
            SCALAR => SCALAR_SLOTS,
            FILES => self.files.len(),
            PART_HEADERS => self.part_headers.len(),
            XML => self
                .xml
                .as_ref()
                .map_or(0, |x| 1 + x.attribute_values.len()),
            BODY => 1,
            _ => 0,
        }
    }

    fn number_values(&mut self) {
        let mut at = 0u32;
        for store in 0..14u8 {
            self.bases[usize::from(store)] = at;
            at = at.saturating_add(u32::try_from(self.store_len(store)).unwrap_or(u32::MAX));
        }
        self.bases[14] = at;
    }

    /// The processor ModSecurity picks from `Content-Type` alone (JSON and XML are chosen
    /// by rules, with `ctl:requestBodyProcessor`).
    pub fn default_processor(&self) -> Option<BodyProcessor> {
        let ct = self.content_type.to_ascii_lowercase();
        if ct.starts_with(b"application/x-www-form-urlencoded") {
            Some(BodyProcessor::UrlEncoded)
        } else if ct.starts_with(b"multipart/form-data") {
            Some(BodyProcessor::Multipart)
        } else {
            None
        }
    }

    pub fn process_body(
        &mut self,
        body: Option<&[u8]>,
        processor: Option<BodyProcessor>,
        settings: &Settings,
    ) {
        self.parse_body(body, processor, settings);
        self.number_values();
    }

    fn parse_body(
        &mut self,
        body: Option<&[u8]>,
        processor: Option<BodyProcessor>,
        settings: &Settings,
    ) {
        let Some(body) = body else { return };
        self.body_processed = true;
        self.body = body.to_vec();
        if body.is_empty() {
            return;
        }
        let no_files_limited = matches!(
            processor,
            Some(BodyProcessor::UrlEncoded | BodyProcessor::Json | BodyProcessor::Xml)
        ) && body.len() > settings.request_body_no_files_limit;
        if no_files_limited {
            self.reqbody_error = Some(
                "Request body excluding files is bigger than the maximum expected.".to_owned(),
            );
            return;
        }
        match processor {
            Some(BodyProcessor::UrlEncoded) => {
                self.args_post = request::parse_urlencoded(body);
            }
            Some(BodyProcessor::Json) => match request::parse_json(body, settings.json_depth_limit)
            {
                Ok(args) => self.args_post = args,
                Err(e) => self.reqbody_error = Some(format!("JSON parsing error: {e}")),
            },
            Some(BodyProcessor::Xml) => match request::parse_xml(body) {
                Ok(x) => self.xml = Some(x),
                Err(e) => self.reqbody_error = Some(format!("XML parsing error: {e}")),
            },
            Some(BodyProcessor::Multipart) => {
                match request::parse_multipart(&self.content_type, body) {
                    Ok(m) => {
                        self.args_post = m.args;
                        self.files = m.files;
                        self.part_headers = m.part_headers;
                        self.multipart = Some(m.flags);
                    }
                    Err(e) => {
                        self.reqbody_error = Some(format!("Multipart parsing error: {e}"));
                        self.multipart = Some(request::MultipartFlags {
                            error: true,
                            ..Default::default()
                        });
                    }
                }
            }
            None => {}
        }
        let room = settings.arguments_limit.saturating_sub(self.args_get.len());
        self.args_post.truncate(room);
    }

    pub fn collect<'a>(
        &'a self,
        collection: Collection,
        selector: &Selector,
        out: &mut Values<'a>,
    ) {
        use Collection as C;
        let pairs =
            |out: &mut Values<'a>, store: &'a Pairs, id: u8, names: bool, coll: Collection| {
                for (i, (k, v)) in store.iter().enumerate() {
                    if selector.matches_key(k) {
                        out.push(Value {
                            collection: coll,
                            key: Cow::Borrowed(k),
                            value: Cow::Borrowed(if names { k } else { v }),
                            ident: u32::try_from(i).ok().map(|i| (id, i)),
                        });
                    }
                }
            };
        let scalar = |out: &mut Values<'a>, v: Cow<'a, [u8]>| {
            out.push(Value {
                collection,
                key: Cow::Borrowed(b""),
                value: v,
                ident: None,
            });
        };
        let flag = |b: bool| Cow::Borrowed(if b { &b"1"[..] } else { &b"0"[..] });
        match collection {
            C::Args => {
                pairs(out, &self.args_get, GET, false, C::Args);
                pairs(out, &self.args_post, POST, false, C::Args);
            }
            C::ArgsGet => pairs(out, &self.args_get, GET, false, collection),
            C::ArgsPost => pairs(out, &self.args_post, POST, false, collection),
            C::ArgsNames => {
                pairs(out, &self.args_get, GET_NAMES, true, C::ArgsNames);
                pairs(out, &self.args_post, POST_NAMES, true, C::ArgsNames);
            }
            C::ArgsGetNames => pairs(out, &self.args_get, GET_NAMES, true, collection),
            C::ArgsPostNames => pairs(out, &self.args_post, POST_NAMES, true, collection),
            C::ArgsCombinedSize => {
                let n: usize = self
                    .args_get
                    .iter()
                    .chain(&self.args_post)
                    .map(|(k, v)| k.len() + v.len())
                    .sum();
                scalar(out, Cow::Owned(n.to_string().into_bytes()));
            }
            C::RequestCookies => pairs(out, &self.cookies, COOKIES, false, collection),
            C::RequestCookiesNames => pairs(out, &self.cookies, COOKIE_NAMES, true, collection),
            C::RequestHeaders => pairs(out, &self.headers, HEADERS, false, collection),
            C::RequestHeadersNames => pairs(out, &self.headers, HEADER_NAMES, true, collection),
            C::RequestFilename | C::PathInfo => {
                self.scalar_cached(out, collection, &self.line.request_filename, 0)
            }
            C::RequestBasename => {
                self.scalar_cached(out, collection, &self.line.request_basename, 1)
            }
            C::RequestUri => self.scalar_cached(out, collection, &self.line.request_uri, 2),
            C::RequestUriRaw => self.scalar_cached(out, collection, &self.line.request_uri_raw, 3),
            C::RequestLine => self.scalar_cached(out, collection, &self.line.request_line, 4),
            C::RequestMethod => scalar(out, Cow::Borrowed(&self.line.request_method)),
            C::RequestProtocol => scalar(out, Cow::Borrowed(&self.line.request_protocol)),
            C::QueryString => self.scalar_cached(out, collection, &self.line.query_string, 5),
            C::RequestBody => {
                if self.body_processed && !self.body.is_empty() {
                    out.push(Value {
                        collection,
                        key: Cow::Borrowed(b""),
                        value: Cow::Borrowed(&self.body),
                        ident: Some((BODY, 0)),
                    });
                }
            }
            C::RequestBodyLength => {
                if self.body_processed && !self.body.is_empty() {
                    scalar(out, Cow::Owned(self.body.len().to_string().into_bytes()));
                }
            }
            C::FullRequest => {
                let mut full = Vec::new();
                for (k, v) in &self.headers {
                    full.extend_from_slice(k);
                    full.extend_from_slice(b": ");
                    full.extend_from_slice(v);
                    full.push(b'\n');
                }
                full.extend_from_slice(b"\n\n");
                full.extend_from_slice(&self.body);
                scalar(out, Cow::Owned(full));
            }
            C::FullRequestLength => {
                let n: usize = self
                    .headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 3)
                    .sum::<usize>()
                    + 2
                    + self.body.len();
                scalar(out, Cow::Owned(n.to_string().into_bytes()));
            }
            C::ReqbodyError | C::ReqbodyProcessorError | C::InboundDataError => {
                if self.body_processed || collection == C::InboundDataError {
                    scalar(out, flag(self.reqbody_error.is_some()));
                }
            }
            C::ReqbodyErrorMsg => {
                if let Some(e) = &self.reqbody_error {
                    scalar(out, Cow::Borrowed(e.as_bytes()));
                }
            }
            C::UrlencodedError => scalar(out, flag(self.urlencoded_error)),
            C::Files => {
                for (i, f) in self.files.iter().enumerate() {
                    if selector.matches_key(&f.name) {
                        out.push(Value {
                            collection,
                            key: Cow::Borrowed(&f.name),
                            value: Cow::Borrowed(&f.filename),
                            ident: u32::try_from(i).ok().map(|i| (FILES, i)),
                        });
                    }
                }
            }
            C::FilesNames | C::MultipartName => {
                for f in &self.files {
                    if selector.matches_key(&f.name) {
                        out.push(Value {
                            collection,
                            key: Cow::Borrowed(&f.name),
                            value: Cow::Borrowed(&f.name),
                            ident: None,
                        });
                    }
                }
            }
            C::MultipartFilename => {
                for f in &self.files {
                    if selector.matches_key(&f.name) {
                        out.push(Value {
                            collection,
                            key: Cow::Borrowed(&f.name),
                            value: Cow::Borrowed(&f.filename),
                            ident: None,
                        });
                    }
                }
            }
            C::FilesSizes => {
                for f in &self.files {
                    if selector.matches_key(&f.name) {
                        out.push(Value {
                            collection,
                            key: Cow::Borrowed(&f.name),
                            value: Cow::Owned(f.size.to_string().into_bytes()),
                            ident: None,
                        });
                    }
                }
            }
            C::FilesCombinedSize => {
                let n: usize = self.files.iter().map(|f| f.size).sum();
                scalar(out, Cow::Owned(n.to_string().into_bytes()));
            }
            C::MultipartPartHeaders => {
                pairs(out, &self.part_headers, PART_HEADERS, false, collection)
            }
            C::MultipartFlag(f) => {
                if let Some(m) = &self.multipart {
                    scalar(out, flag(multipart_flag(m, f)));
                }
            }
            C::Xml => {
                if let Some(x) = &self.xml {
                    let path = match selector {
                        Selector::XPath(p) => p.as_str(),
                        _ => "/*",
                    };
                    if path.contains('@') {
                        for (i, a) in x.attribute_values.iter().enumerate() {
                            out.push(Value {
                                collection,
                                key: Cow::Owned(path.as_bytes().to_vec()),
                                value: Cow::Borrowed(a),
                                ident: u32::try_from(i + 1).ok().map(|i| (XML, i)),
                            });
                        }
                    } else {
                        out.push(Value {
                            collection,
                            key: Cow::Owned(path.as_bytes().to_vec()),
                            value: Cow::Borrowed(&x.root_text),
                            ident: Some((XML, 0)),
                        });
                    }
                }
            }
            C::RemoteAddr => scalar(out, Cow::Borrowed(&self.remote_addr)),
            C::RemotePort => scalar(out, Cow::Borrowed(&self.remote_port)),
            C::ServerPort => scalar(out, Cow::Borrowed(&self.server_port)),
            C::ServerName => {
                for (k, v) in &self.headers {
                    if k.eq_ignore_ascii_case(b"host") {
                        let host = v.split(|b| *b == b':').next().unwrap_or(v);
                        scalar(out, Cow::Borrowed(host));
                        break;
                    }
                }
            }
            C::ServerAddr => scalar(out, Cow::Borrowed(b"127.0.0.1")),
            C::UniqueId => scalar(out, Cow::Borrowed(&self.unique_id)),
            C::Duration => scalar(out, Cow::Borrowed(b"0")),
            // Response data and facilities wasmgate does not have (no geo database, no
            // environment, no web-server error log): these variables are empty.
            _ => {}
        }
    }

    fn scalar_cached<'a>(
        &'a self,
        out: &mut Values<'a>,
        collection: Collection,
        v: &'a [u8],
        slot: u32,
    ) {
        out.push(Value {
            collection,
            key: Cow::Borrowed(b""),
            value: Cow::Borrowed(v),
            ident: Some((SCALAR, slot)),
        });
    }
}

fn multipart_flag(m: &MultipartFlags, f: MultipartFlag) -> bool {
    match f {
        MultipartFlag::StrictError => m.strict_error(),
        MultipartFlag::UnmatchedBoundary => m.unmatched_boundary,
        MultipartFlag::BoundaryQuoted => m.boundary_quoted,
        MultipartFlag::BoundaryWhitespace => m.boundary_whitespace,
        MultipartFlag::DataBefore => m.data_before,
        MultipartFlag::DataAfter => m.data_after,
        MultipartFlag::HeaderFolding => m.header_folding,
        MultipartFlag::LfLine => m.lf_line,
        MultipartFlag::CrlfLfLines => m.crlf_lf_lines,
        MultipartFlag::MissingSemicolon => m.missing_semicolon,
        MultipartFlag::InvalidQuoting => m.invalid_quoting,
        MultipartFlag::InvalidPart => m.invalid_part,
        MultipartFlag::InvalidHeaderFolding => m.invalid_header_folding,
        MultipartFlag::FileLimitExceeded => m.file_limit_exceeded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value a store yields has its own dense number, below the count: the
    /// transformation cache is indexed by it.
    #[test]
    fn every_stored_value_has_a_distinct_dense_number() {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"Host", b"localhost"),
            (b"Cookie", b"a=1; b=2"),
            (b"Content-Type", b"application/x-www-form-urlencoded"),
        ];
        let req = Request {
            method: b"POST",
            target: b"/p/a?x=1&y=2&z=3",
            protocol: b"HTTP/1.1",
            headers,
            body: Some(b"p=1&q=2"),
            ..Default::default()
        };
        let settings = Settings::default();
        let mut data = Data::from_headers(&req, &settings);
        let before = data.value_count();
        data.process_body(req.body, data.default_processor(), &settings);
        assert!(
            data.value_count() > before,
            "the body's arguments are numbered too"
        );
        let mut seen = std::collections::HashSet::new();
        let stores = (1..=13u8).chain((0..6).map(|s| SCALAR_STORE + s));
        for store in stores {
            let mut values = StoreValues::new();
            data.store_values(store, &mut values);
            for (ident, _) in values {
                let dense = data.dense(ident).expect("numbered");
                assert!(dense < data.value_count());
                assert!(seen.insert(dense), "{ident:?} shares {dense}");
            }
        }
        assert_eq!(data.dense((GET, 3)), None, "past the end of its store");
    }
}
