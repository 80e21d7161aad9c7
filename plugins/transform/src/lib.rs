//! `transform`: reshape requests and responses: headers, path, query parameters, JSON bodies
//! and status codes.
//!
//! ```toml
//! { use = "transform", config = {
//!     request = {
//!       path = [{ regex = '^/users/(\d+)$', replace = "/v2/people/$1" }, { prefix = "/v1", replace = "/v2" }],
//!       query = { remove = ["debug"], rename = { q = "search" }, set = { "page" = "1" }, add = { "src" = "gw" } },
//!       headers = { set = { "x-api-version" = "2" } },
//!       json = [{ op = "set", pointer = "/meta/consumer", value_from = "context:consumer" },
//!               { op = "remove", pointer = "/password" }],
//!     },
//!     response = {
//!       status = { "404" = 410 },
//!       json = [{ op = "rename", pointer = "/id", to = "/user_id" }],
//!       on_invalid_json = "pass",
//!     },
//!     max_body = 1048576 } }
//! ```
//!
//! Order: the request phase edits the JSON body first (values read from the request as it
//! arrived), then the path (first matching rule), the query, and the headers. The response
//! phase maps the status, edits the headers, then the JSON body.
//!
//! JSON edits apply to bodies with a JSON content type (`application/json`, `*/*+json`) up to
//! `max_body` bytes; other bodies pass untouched. A request body that claims JSON but does not
//! parse gets 400 with a problem document (RFC 9457); a response body that does not parse passes
//! through (`on_invalid_json = "pass"`) or becomes a 502 (`"error"`). Bodies over `max_body`
//! are refused with 413 (requests) or passed through unedited (responses).

mod json;
mod rewrite;

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use wasmgate_plugin_sdk::header_edits::{HeaderEdits, HeaderEditsConfig};
use wasmgate_plugin_sdk::{
    Action, Bodies, ConfigError, Context, Hooks, Plugin, Reply, Request, Response, plugin,
};

use json::{Edit, Pointer};
use rewrite::{PathRule, QueryEdits};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    request: RequestConfig,
    #[serde(default)]
    response: ResponseConfig,
    /// Largest body the JSON edits read, in bytes.
    #[serde(default = "default_max_body")]
    max_body: u64,
}

fn default_max_body() -> u64 {
    1 << 20
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestConfig {
    #[serde(default)]
    headers: HeaderEditsConfig,
    #[serde(default)]
    path: Vec<PathRuleConfig>,
    #[serde(default)]
    query: QueryConfig,
    #[serde(default)]
    json: Vec<JsonEditConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResponseConfig {
    #[serde(default)]
    headers: HeaderEditsConfig,
    #[serde(default)]
    status: BTreeMap<String, u16>,
    #[serde(default)]
    json: Vec<JsonEditConfig>,
    #[serde(default)]
    on_invalid_json: InvalidJson,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum InvalidJson {
    /// Send the response on unedited.
    #[default]
    Pass,
    /// Answer 502 instead.
    Error,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathRuleConfig {
    prefix: Option<String>,
    regex: Option<String>,
    replace: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QueryConfig {
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    add: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEditConfig {
    op: Op,
    pointer: String,
    to: Option<String>,
    value: Option<Value>,
    value_from: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Op {
    Set,
    Add,
    Remove,
    Rename,
}

/// Where an edited value comes from.
#[derive(Debug)]
enum Source {
    Literal(Value),
    /// A header of the message being edited.
    Header(String),
    /// A header of the request (also in the response phase).
    RequestHeader(String),
    /// A query parameter of the request, decoded.
    Query(String),
    /// A per-request context value (e.g. `consumer`).
    Context(String),
    Method,
    Path,
    ClientIp,
    Route,
}

impl Source {
    fn parse(text: &str) -> Result<Self, String> {
        let (kind, name) = text.split_once(':').unwrap_or((text, ""));
        let need_name = |source: fn(String) -> Source| match name {
            "" => Err(format!("`{kind}:` needs a name after the colon")),
            name => Ok(source(name.to_ascii_lowercase())),
        };
        match kind {
            "header" => need_name(Source::Header),
            "request-header" => need_name(Source::RequestHeader),
            "query" => match name {
                "" => Err("`query:` needs a parameter name after the colon".into()),
                name => Ok(Source::Query(name.to_owned())),
            },
            "context" => match name {
                "" => Err("`context:` needs a key after the colon".into()),
                name => Ok(Source::Context(name.to_owned())),
            },
            "request" => match name {
                "method" => Ok(Source::Method),
                "path" => Ok(Source::Path),
                "client-ip" => Ok(Source::ClientIp),
                "route" => Ok(Source::Route),
                _ => Err(format!(
                    "`request:{name}` is unknown: use request:method, request:path, request:client-ip or request:route"
                )),
            },
            _ => Err(format!(
                "`{text}` is not a value source: use header:<name>, request-header:<name>, query:<name>, context:<key> or request:<method|path|client-ip|route>"
            )),
        }
    }

    fn resolve(&self, req: &Request, resp: Option<&Response>, ctx: &Context) -> Option<Value> {
        let text = match self {
            Source::Literal(value) => return Some(value.clone()),
            Source::Header(name) => match resp {
                Some(resp) => resp.header(name),
                None => req.header(name),
            },
            Source::RequestHeader(name) => req.header(name),
            Source::Query(name) => req.query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.into_owned())
            }),
            Source::Context(key) => ctx.get(key),
            Source::Method => Some(req.method()),
            Source::Path => Some(req.path()),
            Source::ClientIp => Some(req.client_ip()),
            Source::Route => Some(req.route()),
        };
        text.map(Value::String)
    }
}

/// A JSON edit with its value source.
struct JsonEdit {
    edit: Edit,
    source: Option<Source>,
}

fn parse_json_edits(key: &str, configs: Vec<JsonEditConfig>) -> Result<Vec<JsonEdit>, ConfigError> {
    configs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let at = |field: &str| format!("{key}[{i}].{field}");
            let pointer =
                Pointer::parse(&c.pointer).map_err(|e| ConfigError::at(at("pointer"), e))?;
            let takes_value = matches!(c.op, Op::Set | Op::Add);
            let source = match (c.value, c.value_from) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::at(
                        at("value"),
                        "give `value` or `value_from`, not both",
                    ));
                }
                (Some(value), None) => Some(Source::Literal(value)),
                (None, Some(from)) => {
                    Some(Source::parse(&from).map_err(|e| ConfigError::at(at("value_from"), e))?)
                }
                (None, None) => None,
            };
            match (takes_value, source.is_some()) {
                (true, false) => {
                    return Err(ConfigError::at(
                        at("value"),
                        "`set` and `add` need `value` or `value_from`",
                    ));
                }
                (false, true) => {
                    return Err(ConfigError::at(
                        at("value"),
                        "only `set` and `add` take a value",
                    ));
                }
                _ => {}
            }
            if c.op != Op::Rename && c.to.is_some() {
                return Err(ConfigError::at(at("to"), "only `rename` takes `to`"));
            }
            let edit = match c.op {
                Op::Set => Edit::Set(pointer),
                Op::Add => Edit::Add(pointer),
                Op::Remove => Edit::Remove(pointer),
                Op::Rename => {
                    let to =
                        c.to.ok_or_else(|| ConfigError::at(at("to"), "`rename` needs `to`"))?;
                    let to = Pointer::parse(&to).map_err(|e| ConfigError::at(at("to"), e))?;
                    Edit::Rename { from: pointer, to }
                }
            };
            Ok(JsonEdit { edit, source })
        })
        .collect()
}

struct Transform {
    request_json: Vec<JsonEdit>,
    path: Vec<PathRule>,
    query: QueryEdits,
    request_headers: HeaderEdits,
    status: Vec<(u16, u16)>,
    response_headers: HeaderEdits,
    response_json: Vec<JsonEdit>,
    on_invalid_json: InvalidJson,
    max_body: u64,
}

#[plugin]
impl Plugin for Transform {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        let req = config.request;
        let resp = config.response;
        let path = req
            .path
            .into_iter()
            .enumerate()
            .map(|(i, rule)| parse_path_rule(i, rule))
            .collect::<Result<Vec<_>, _>>()?;
        let mut status = Vec::new();
        for (from, to) in resp.status {
            let key = format!("response.status.{from}");
            let from: u16 = from
                .parse()
                .ok()
                .filter(|s| (100..=999).contains(s))
                .ok_or_else(|| ConfigError::at(&key, "is not a status code (100–999)"))?;
            if !(100..=999).contains(&to) {
                return Err(ConfigError::at(
                    key,
                    format!("{to} is not a status code (100–999)"),
                ));
            }
            status.push((from, to));
        }
        let transform = Self {
            request_json: parse_json_edits("request.json", req.json)?,
            path,
            query: QueryEdits {
                remove: req.query.remove,
                rename: req.query.rename.into_iter().collect(),
                set: req.query.set.into_iter().collect(),
                add: req.query.add.into_iter().collect(),
            },
            request_headers: HeaderEdits::parse("request.headers", req.headers)?,
            status,
            response_headers: HeaderEdits::parse("response.headers", resp.headers)?,
            response_json: parse_json_edits("response.json", resp.json)?,
            on_invalid_json: resp.on_invalid_json,
            max_body: config.max_body,
        };
        if transform.hooks().is_empty() {
            return Err(ConfigError::new(
                "no edits configured: set `request` and/or `response`",
            ));
        }
        Ok(transform)
    }

    fn hooks(&self) -> Hooks {
        let mut hooks = Hooks::empty();
        let request = !(self.request_json.is_empty()
            && self.path.is_empty()
            && self.query.is_empty()
            && self.request_headers.is_empty());
        if request {
            hooks |= Hooks::REQUEST;
        }
        let response = !(self.status.is_empty()
            && self.response_headers.is_empty()
            && self.response_json.is_empty());
        if response {
            hooks |= Hooks::RESPONSE;
        }
        hooks
    }

    fn bodies(&self) -> Bodies {
        Bodies {
            request: (!self.request_json.is_empty()).then_some(self.max_body),
            response: (!self.response_json.is_empty()).then_some(self.max_body),
        }
    }

    fn on_request(&self, req: &Request, ctx: &Context) -> Action {
        if !self.request_json.is_empty()
            && is_json(req.header("content-type"))
            && let Some(body) = req.body().filter(|b| !b.is_empty())
        {
            let mut doc: Value = match serde_json::from_slice(&body) {
                Ok(doc) => doc,
                Err(e) => {
                    let detail = format!("the request body is not valid JSON: {e}");
                    return Action::respond(Reply::problem(400, "Bad Request", &detail));
                }
            };
            let mut changed = false;
            for edit in &self.request_json {
                let value = edit.source.as_ref().and_then(|s| s.resolve(req, None, ctx));
                changed |= json::apply(&mut doc, &edit.edit, value);
            }
            // Untouched bodies go on byte for byte.
            if changed {
                req.set_body(&serde_json::to_vec(&doc).unwrap_or(body));
            }
        }
        let path = req.path();
        if let Some(new) = self.path.iter().find_map(|rule| rule.rewrite(&path))
            && req.set_path(&new).is_err()
        {
            let detail = format!("the path rewrite produced an invalid path `{new}`");
            return Action::respond(Reply::problem(500, "Internal Server Error", &detail));
        }
        if !self.query.is_empty() {
            let query = self.query.apply(req.query().as_deref());
            // Parameters are re-encoded by the serializer; the result is always valid.
            let _ = req.set_query(query.as_deref());
        }
        self.request_headers.apply(req);
        Action::Continue
    }

    fn on_response(&self, req: &Request, resp: &Response, ctx: &Context) {
        let status = resp.status();
        if let Some((_, to)) = self.status.iter().find(|(from, _)| *from == status) {
            let _ = resp.set_status(*to);
        }
        self.response_headers.apply(resp);
        if self.response_json.is_empty() || !is_json(resp.header("content-type")) {
            return;
        }
        let Some(body) = resp.body().filter(|b| !b.is_empty()) else {
            return;
        };
        let mut doc: Value = match serde_json::from_slice(&body) {
            Ok(doc) => doc,
            Err(e) => {
                if self.on_invalid_json == InvalidJson::Error {
                    let detail = format!("the upstream's response body is not valid JSON: {e}");
                    let reply = Reply::problem(502, "Bad Gateway", &detail);
                    let _ = resp.set_status(502);
                    let _ = resp.set_header("content-type", "application/problem+json");
                    resp.set_body(&reply.body);
                }
                return;
            }
        };
        let mut changed = false;
        for edit in &self.response_json {
            let value = edit
                .source
                .as_ref()
                .and_then(|s| s.resolve(req, Some(resp), ctx));
            changed |= json::apply(&mut doc, &edit.edit, value);
        }
        if changed {
            resp.set_body(&serde_json::to_vec(&doc).unwrap_or(body));
        }
    }
}

fn parse_path_rule(i: usize, rule: PathRuleConfig) -> Result<PathRule, ConfigError> {
    let key = format!("request.path[{i}]");
    if !rule.replace.starts_with('/') {
        return Err(ConfigError::at(
            format!("{key}.replace"),
            "must start with `/`",
        ));
    }
    match (rule.prefix, rule.regex) {
        (Some(from), None) if from.starts_with('/') => Ok(PathRule::Prefix {
            from,
            to: rule.replace,
        }),
        (Some(_), None) => Err(ConfigError::at(
            format!("{key}.prefix"),
            "must start with `/`",
        )),
        (None, Some(pattern)) => {
            let pattern = Regex::new(&pattern)
                .map_err(|e| ConfigError::at(format!("{key}.regex"), e.to_string()))?;
            Ok(PathRule::Regex {
                pattern,
                replace: rule.replace,
            })
        }
        _ => Err(ConfigError::at(
            key,
            "give exactly one of `prefix` and `regex`",
        )),
    }
}

/// Whether a content type is JSON (`application/json` or a `+json` suffix type).
fn is_json(content_type: Option<String>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.contains('/') && essence.ends_with("+json"))
}
