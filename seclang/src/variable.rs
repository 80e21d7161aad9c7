//! Variables (`ARGS`, `REQUEST_HEADERS:User-Agent`, `&TX:foo`, `!ARGS:/^json\./`): the names
//! rules use, compiled into a collection and a selector.

use regex::bytes::{Regex, RegexBuilder};

/// A collection (or single-valued variable) a rule can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collection {
    Args,
    ArgsGet,
    ArgsPost,
    ArgsNames,
    ArgsGetNames,
    ArgsPostNames,
    ArgsCombinedSize,
    RequestCookies,
    RequestCookiesNames,
    RequestHeaders,
    RequestHeadersNames,
    RequestFilename,
    RequestBasename,
    RequestUri,
    RequestUriRaw,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    QueryString,
    RequestBody,
    RequestBodyLength,
    FullRequest,
    FullRequestLength,
    ReqbodyProcessor,
    ReqbodyError,
    ReqbodyErrorMsg,
    ReqbodyProcessorError,
    InboundDataError,
    UrlencodedError,
    Files,
    FilesNames,
    FilesSizes,
    FilesCombinedSize,
    MultipartPartHeaders,
    MultipartFilename,
    MultipartName,
    /// One of the `MULTIPART_*` flags, named as in ModSecurity.
    MultipartFlag(MultipartFlag),
    Xml,
    Tx,
    /// `IP`, `GLOBAL`, `SESSION`, `USER`, `RESOURCE`: ModSecurity keeps these across
    /// requests in a store; here they live for one transaction (see the crate docs).
    Persistent(Persistent),
    Env,
    RemoteAddr,
    RemotePort,
    RemoteHost,
    RemoteUser,
    ServerName,
    ServerPort,
    ServerAddr,
    UniqueId,
    Duration,
    Time,
    TimeEpoch,
    MatchedVar,
    MatchedVars,
    MatchedVarName,
    MatchedVarsNames,
    HighestSeverity,
    AuthType,
    PathInfo,
    Rule,
    Geo,
    ResponseBody,
    ResponseHeaders,
    ResponseHeadersNames,
    ResponseStatus,
    ResponseProtocol,
    ResponseContentType,
    ResponseContentLength,
    StatusLine,
    OutboundDataError,
    WebserverErrorLog,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Persistent {
    Ip,
    Global,
    Session,
    User,
    Resource,
}

impl Persistent {
    pub fn prefix(self) -> &'static str {
        match self {
            Persistent::Ip => "ip",
            Persistent::Global => "global",
            Persistent::Session => "session",
            Persistent::User => "user",
            Persistent::Resource => "resource",
        }
    }
}

/// The `MULTIPART_*` flags ModSecurity's multipart parser sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MultipartFlag {
    StrictError,
    UnmatchedBoundary,
    BoundaryQuoted,
    BoundaryWhitespace,
    DataBefore,
    DataAfter,
    HeaderFolding,
    LfLine,
    CrlfLfLines,
    MissingSemicolon,
    InvalidQuoting,
    InvalidPart,
    InvalidHeaderFolding,
    FileLimitExceeded,
}

impl Collection {
    /// The collection named `name` (case-insensitive, as ModSecurity reads it).
    pub fn from_name(name: &str) -> Option<Collection> {
        use Collection::*;
        let upper = name.to_ascii_uppercase();
        Some(match upper.as_str() {
            "ARGS" => Args,
            "ARGS_GET" => ArgsGet,
            "ARGS_POST" => ArgsPost,
            "ARGS_NAMES" => ArgsNames,
            "ARGS_GET_NAMES" => ArgsGetNames,
            "ARGS_POST_NAMES" => ArgsPostNames,
            "ARGS_COMBINED_SIZE" => ArgsCombinedSize,
            "REQUEST_COOKIES" => RequestCookies,
            "REQUEST_COOKIES_NAMES" => RequestCookiesNames,
            "REQUEST_HEADERS" => RequestHeaders,
            "REQUEST_HEADERS_NAMES" => RequestHeadersNames,
            "REQUEST_FILENAME" => RequestFilename,
            "REQUEST_BASENAME" => RequestBasename,
            "REQUEST_URI" => RequestUri,
            "REQUEST_URI_RAW" => RequestUriRaw,
            "REQUEST_LINE" => RequestLine,
            "REQUEST_METHOD" => RequestMethod,
            "REQUEST_PROTOCOL" => RequestProtocol,
            "QUERY_STRING" => QueryString,
            "REQUEST_BODY" => RequestBody,
            "REQUEST_BODY_LENGTH" => RequestBodyLength,
            "FULL_REQUEST" => FullRequest,
            "FULL_REQUEST_LENGTH" => FullRequestLength,
            "REQBODY_PROCESSOR" => ReqbodyProcessor,
            "REQBODY_ERROR" => ReqbodyError,
            "REQBODY_ERROR_MSG" => ReqbodyErrorMsg,
            "REQBODY_PROCESSOR_ERROR" => ReqbodyProcessorError,
            "INBOUND_DATA_ERROR" => InboundDataError,
            "URLENCODED_ERROR" => UrlencodedError,
            "FILES" => Files,
            "FILES_NAMES" => FilesNames,
            "FILES_SIZES" => FilesSizes,
            "FILES_COMBINED_SIZE" => FilesCombinedSize,
            "MULTIPART_PART_HEADERS" => MultipartPartHeaders,
            "MULTIPART_FILENAME" => MultipartFilename,
            "MULTIPART_NAME" => MultipartName,
            "MULTIPART_STRICT_ERROR" => MultipartFlag(self::MultipartFlag::StrictError),
            "MULTIPART_UNMATCHED_BOUNDARY" => MultipartFlag(self::MultipartFlag::UnmatchedBoundary),
            "MULTIPART_BOUNDARY_QUOTED" => MultipartFlag(self::MultipartFlag::BoundaryQuoted),
            "MULTIPART_BOUNDARY_WHITESPACE" => {
                MultipartFlag(self::MultipartFlag::BoundaryWhitespace)
            }
            "MULTIPART_DATA_BEFORE" => MultipartFlag(self::MultipartFlag::DataBefore),
            "MULTIPART_DATA_AFTER" => MultipartFlag(self::MultipartFlag::DataAfter),
            "MULTIPART_HEADER_FOLDING" => MultipartFlag(self::MultipartFlag::HeaderFolding),
            "MULTIPART_LF_LINE" => MultipartFlag(self::MultipartFlag::LfLine),
            "MULTIPART_CRLF_LF_LINES" => MultipartFlag(self::MultipartFlag::CrlfLfLines),
            "MULTIPART_MISSING_SEMICOLON" => MultipartFlag(self::MultipartFlag::MissingSemicolon),
            "MULTIPART_INVALID_QUOTING" => MultipartFlag(self::MultipartFlag::InvalidQuoting),
            "MULTIPART_INVALID_PART" => MultipartFlag(self::MultipartFlag::InvalidPart),
            "MULTIPART_INVALID_HEADER_FOLDING" => {
                MultipartFlag(self::MultipartFlag::InvalidHeaderFolding)
            }
            "MULTIPART_FILE_LIMIT_EXCEEDED" => {
                MultipartFlag(self::MultipartFlag::FileLimitExceeded)
            }
            "XML" => Xml,
            "TX" => Tx,
            "IP" => Persistent(self::Persistent::Ip),
            "GLOBAL" => Persistent(self::Persistent::Global),
            "SESSION" => Persistent(self::Persistent::Session),
            "USER" => Persistent(self::Persistent::User),
            "RESOURCE" => Persistent(self::Persistent::Resource),
            "ENV" => Env,
            "REMOTE_ADDR" => RemoteAddr,
            "REMOTE_PORT" => RemotePort,
            "REMOTE_HOST" => RemoteHost,
            "REMOTE_USER" => RemoteUser,
            "SERVER_NAME" => ServerName,
            "SERVER_PORT" => ServerPort,
            "SERVER_ADDR" => ServerAddr,
            "UNIQUE_ID" => UniqueId,
            "DURATION" => Duration,
            "TIME" => Time,
            "TIME_EPOCH" => TimeEpoch,
            "MATCHED_VAR" => MatchedVar,
            "MATCHED_VARS" => MatchedVars,
            "MATCHED_VAR_NAME" => MatchedVarName,
            "MATCHED_VARS_NAMES" => MatchedVarsNames,
            "HIGHEST_SEVERITY" => HighestSeverity,
            "AUTH_TYPE" => AuthType,
            "PATH_INFO" => PathInfo,
            "RULE" => Rule,
            "GEO" => Geo,
            "RESPONSE_BODY" => ResponseBody,
            "RESPONSE_HEADERS" => ResponseHeaders,
            "RESPONSE_HEADERS_NAMES" => ResponseHeadersNames,
            "RESPONSE_STATUS" => ResponseStatus,
            "RESPONSE_PROTOCOL" => ResponseProtocol,
            "RESPONSE_CONTENT_TYPE" => ResponseContentType,
            "RESPONSE_CONTENT_LENGTH" => ResponseContentLength,
            "STATUS_LINE" => StatusLine,
            "OUTBOUND_DATA_ERROR" => OutboundDataError,
            "WEBSERVER_ERROR_LOG" => WebserverErrorLog,
            _ => return None,
        })
    }

    /// The name as ModSecurity prints it in `MATCHED_VAR_NAME` (`ARGS:q`).
    pub fn name(self) -> &'static str {
        use Collection::*;
        match self {
            Args => "ARGS",
            ArgsGet => "ARGS_GET",
            ArgsPost => "ARGS_POST",
            ArgsNames => "ARGS_NAMES",
            ArgsGetNames => "ARGS_GET_NAMES",
            ArgsPostNames => "ARGS_POST_NAMES",
            ArgsCombinedSize => "ARGS_COMBINED_SIZE",
            RequestCookies => "REQUEST_COOKIES",
            RequestCookiesNames => "REQUEST_COOKIES_NAMES",
            RequestHeaders => "REQUEST_HEADERS",
            RequestHeadersNames => "REQUEST_HEADERS_NAMES",
            RequestFilename => "REQUEST_FILENAME",
            RequestBasename => "REQUEST_BASENAME",
            RequestUri => "REQUEST_URI",
            RequestUriRaw => "REQUEST_URI_RAW",
            RequestLine => "REQUEST_LINE",
            RequestMethod => "REQUEST_METHOD",
            RequestProtocol => "REQUEST_PROTOCOL",
            QueryString => "QUERY_STRING",
            RequestBody => "REQUEST_BODY",
            RequestBodyLength => "REQUEST_BODY_LENGTH",
            FullRequest => "FULL_REQUEST",
            FullRequestLength => "FULL_REQUEST_LENGTH",
            ReqbodyProcessor => "REQBODY_PROCESSOR",
            ReqbodyError => "REQBODY_ERROR",
            ReqbodyErrorMsg => "REQBODY_ERROR_MSG",
            ReqbodyProcessorError => "REQBODY_PROCESSOR_ERROR",
            InboundDataError => "INBOUND_DATA_ERROR",
            UrlencodedError => "URLENCODED_ERROR",
            Files => "FILES",
            FilesNames => "FILES_NAMES",
            FilesSizes => "FILES_SIZES",
            FilesCombinedSize => "FILES_COMBINED_SIZE",
            MultipartPartHeaders => "MULTIPART_PART_HEADERS",
            MultipartFilename => "MULTIPART_FILENAME",
            MultipartName => "MULTIPART_NAME",
            MultipartFlag(f) => match f {
                self::MultipartFlag::StrictError => "MULTIPART_STRICT_ERROR",
                self::MultipartFlag::UnmatchedBoundary => "MULTIPART_UNMATCHED_BOUNDARY",
                self::MultipartFlag::BoundaryQuoted => "MULTIPART_BOUNDARY_QUOTED",
                self::MultipartFlag::BoundaryWhitespace => "MULTIPART_BOUNDARY_WHITESPACE",
                self::MultipartFlag::DataBefore => "MULTIPART_DATA_BEFORE",
                self::MultipartFlag::DataAfter => "MULTIPART_DATA_AFTER",
                self::MultipartFlag::HeaderFolding => "MULTIPART_HEADER_FOLDING",
                self::MultipartFlag::LfLine => "MULTIPART_LF_LINE",
                self::MultipartFlag::CrlfLfLines => "MULTIPART_CRLF_LF_LINES",
                self::MultipartFlag::MissingSemicolon => "MULTIPART_MISSING_SEMICOLON",
                self::MultipartFlag::InvalidQuoting => "MULTIPART_INVALID_QUOTING",
                self::MultipartFlag::InvalidPart => "MULTIPART_INVALID_PART",
                self::MultipartFlag::InvalidHeaderFolding => "MULTIPART_INVALID_HEADER_FOLDING",
                self::MultipartFlag::FileLimitExceeded => "MULTIPART_FILE_LIMIT_EXCEEDED",
            },
            Xml => "XML",
            Tx => "TX",
            Persistent(p) => match p {
                self::Persistent::Ip => "IP",
                self::Persistent::Global => "GLOBAL",
                self::Persistent::Session => "SESSION",
                self::Persistent::User => "USER",
                self::Persistent::Resource => "RESOURCE",
            },
            Env => "ENV",
            RemoteAddr => "REMOTE_ADDR",
            RemotePort => "REMOTE_PORT",
            RemoteHost => "REMOTE_HOST",
            RemoteUser => "REMOTE_USER",
            ServerName => "SERVER_NAME",
            ServerPort => "SERVER_PORT",
            ServerAddr => "SERVER_ADDR",
            UniqueId => "UNIQUE_ID",
            Duration => "DURATION",
            Time => "TIME",
            TimeEpoch => "TIME_EPOCH",
            MatchedVar => "MATCHED_VAR",
            MatchedVars => "MATCHED_VARS",
            MatchedVarName => "MATCHED_VAR_NAME",
            MatchedVarsNames => "MATCHED_VARS_NAMES",
            HighestSeverity => "HIGHEST_SEVERITY",
            AuthType => "AUTH_TYPE",
            PathInfo => "PATH_INFO",
            Rule => "RULE",
            Geo => "GEO",
            ResponseBody => "RESPONSE_BODY",
            ResponseHeaders => "RESPONSE_HEADERS",
            ResponseHeadersNames => "RESPONSE_HEADERS_NAMES",
            ResponseStatus => "RESPONSE_STATUS",
            ResponseProtocol => "RESPONSE_PROTOCOL",
            ResponseContentType => "RESPONSE_CONTENT_TYPE",
            ResponseContentLength => "RESPONSE_CONTENT_LENGTH",
            StatusLine => "STATUS_LINE",
            OutboundDataError => "OUTBOUND_DATA_ERROR",
            WebserverErrorLog => "WEBSERVER_ERROR_LOG",
        }
    }

    /// Collections whose values are request data: the ones transformation results are cached
    /// for (their values do not change during a phase).
    pub fn is_request_data(self) -> bool {
        !matches!(
            self,
            Collection::Tx
                | Collection::Persistent(_)
                | Collection::MatchedVar
                | Collection::MatchedVars
                | Collection::MatchedVarName
                | Collection::MatchedVarsNames
                | Collection::Rule
                | Collection::HighestSeverity
                | Collection::Duration
                | Collection::Time
                | Collection::TimeEpoch
        )
    }
}

/// Which members of a collection a variable takes.
#[derive(Clone, Debug)]
pub enum Selector {
    All,
    /// One key, lower-cased (keys are case-insensitive, as in ModSecurity).
    Key(String),
    /// Keys matching a regex (`ARGS:/^id_/`).
    Regex(Regex),
    /// An XPath expression (`XML:/*`).
    XPath(String),
}

impl Selector {
    pub fn matches_key(&self, key: &[u8]) -> bool {
        match self {
            Selector::All | Selector::XPath(_) => true,
            Selector::Key(k) => key.eq_ignore_ascii_case(k.as_bytes()),
            Selector::Regex(r) => r.is_match(key),
        }
    }
}

/// A compiled variable of a rule.
#[derive(Clone, Debug)]
pub struct Variable {
    pub collection: Collection,
    pub selector: Selector,
    /// `&VAR`: the number of values rather than the values.
    pub count: bool,
}

/// Compiles a selector as written after `COLLECTION:`.
pub fn selector(collection: Collection, text: Option<&str>) -> Result<Selector, String> {
    let Some(text) = text else {
        return Ok(Selector::All);
    };
    if collection == Collection::Xml {
        return Ok(Selector::XPath(text.to_owned()));
    }
    if let Some(pattern) = text.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
        let regex = RegexBuilder::new(pattern)
            .unicode(false)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("selector regex `{pattern}`: {e}"))?;
        return Ok(Selector::Regex(regex));
    }
    Ok(Selector::Key(text.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "ARGS",
            "request_headers",
            "MULTIPART_STRICT_ERROR",
            "IP",
            "XML",
        ] {
            let c = Collection::from_name(name).unwrap();
            assert!(c.name().eq_ignore_ascii_case(name));
        }
        assert!(Collection::from_name("NOT_A_VARIABLE").is_none());
    }

    #[test]
    fn key_selectors_are_case_insensitive_and_regex_selectors_match_keys() {
        let s = selector(Collection::Args, Some("Foo")).unwrap();
        assert!(s.matches_key(b"fOO"));
        let r = selector(Collection::Args, Some("/^json\\./")).unwrap();
        assert!(r.matches_key(b"json.a"));
        assert!(!r.matches_key(b"a.json.b"));
    }
}
