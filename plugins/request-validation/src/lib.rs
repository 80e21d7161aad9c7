//! `request-validation`: validate requests against a JSON Schema (the body) or an OpenAPI 3.0
//! or 3.1 document (path, query, header and cookie parameters and the body, per operation).
//!
//! ```toml
//! # A JSON Schema for the body, inline:
//! { use = "request-validation", config = { body_schema = { type = "object", required = ["name"] } } }
//! # An OpenAPI document (JSON or YAML), read from a file next to the config:
//! { use = "request-validation", config_files = { openapi = "specs/api.yaml" },
//!   config = { unknown_operations = "reject", base_path = "/v1" } }
//! ```
//!
//! A request that fails gets 400 with a problem document (RFC 9457) whose `errors` list every
//! failing location (`in`: path, query, header, cookie or body; `name` or JSON `pointer`;
//! `message`). A body in a media type the operation does not accept gets 415. A request for an
//! operation the document does not describe gets 404 (or 405 with `Allow`) when
//! `unknown_operations = "reject"` (the default), or passes with `"pass"`.

mod openapi;

use serde::Deserialize;
use serde_json::{Value, json};
use wasmgate_plugin_sdk::{Action, Bodies, ConfigError, Context, Plugin, Reply, Request, plugin};

use openapi::{Document, In, Lookup, Operation, Parameter, Scalar};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    body_schema: Option<Value>,
    openapi: Option<String>,
    base_path: Option<String>,
    #[serde(default)]
    unknown_operations: Unknown,
    #[serde(default = "default_max_body")]
    max_body: u64,
}

fn default_max_body() -> u64 {
    1 << 20
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Unknown {
    #[default]
    Reject,
    Pass,
}

enum Spec {
    Schema(jsonschema::Validator),
    OpenApi(Box<Document>),
}

struct Validation {
    spec: Spec,
    unknown: Unknown,
    max_body: u64,
}

/// One failing location.
struct Failure {
    location: In,
    /// Parameter name, or JSON pointer for the body.
    at: String,
    message: String,
}

#[plugin]
impl Plugin for Validation {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        let spec = match (config.body_schema, config.openapi) {
            (Some(schema), None) => {
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .map_err(|e| ConfigError::at("body_schema", e.to_string()))?;
                Spec::Schema(validator)
            }
            (None, Some(text)) => Spec::OpenApi(Box::new(
                Document::parse(&text, config.base_path)
                    .map_err(|e| ConfigError::at("openapi", e))?,
            )),
            _ => {
                return Err(ConfigError::new(
                    "give exactly one of `body_schema` (a JSON Schema) and `openapi` (a document, usually from `config_files`)",
                ));
            }
        };
        Ok(Self {
            spec,
            unknown: config.unknown_operations,
            max_body: config.max_body,
        })
    }

    fn bodies(&self) -> Bodies {
        Bodies::request(self.max_body)
    }

    fn on_request(&self, req: &Request, _ctx: &Context) -> Action {
        let mut failures = Vec::new();
        match &self.spec {
            Spec::Schema(validator) => {
                let body = Body::read(req);
                if let Err(reply) = check_body(
                    &body,
                    &[("application/json".into(), Some(validator))],
                    true,
                    &mut failures,
                ) {
                    return Action::respond(reply);
                }
            }
            Spec::OpenApi(doc) => match doc.lookup(&req.method(), &req.path()) {
                Lookup::Found {
                    operation,
                    path_params,
                } => {
                    if let Err(reply) = check_operation(req, operation, &path_params, &mut failures)
                    {
                        return Action::respond(reply);
                    }
                }
                Lookup::MethodNotAllowed(allowed) if self.unknown == Unknown::Reject => {
                    let detail = format!(
                        "{} is not allowed here; allowed: {}",
                        req.method(),
                        allowed.join(", ")
                    );
                    let reply = Reply::problem(405, "Method Not Allowed", &detail)
                        .header("allow", allowed.join(", "));
                    return Action::respond(reply);
                }
                Lookup::NotFound if self.unknown == Unknown::Reject => {
                    let detail = format!(
                        "no operation is defined for {} {}",
                        req.method(),
                        req.path()
                    );
                    return Action::respond(Reply::problem(404, "Not Found", &detail));
                }
                _ => {}
            },
        }
        if failures.is_empty() {
            return Action::Continue;
        }
        let errors: Vec<Value> = failures
            .iter()
            .map(|f| {
                let key = if f.location == In::Body {
                    "pointer"
                } else {
                    "name"
                };
                json!({ "in": f.location.as_str(), key: f.at, "message": f.message })
            })
            .collect();
        let detail = match failures.len() {
            1 => "1 problem in the request".to_owned(),
            n => format!("{n} problems in the request"),
        };
        Action::respond(Reply::problem_with(
            400,
            "Bad Request",
            &detail,
            serde_json::Map::from_iter([("errors".to_owned(), Value::Array(errors))]),
        ))
    }
}

/// The request body as validation sees it.
struct Body {
    content_type: Option<String>,
    bytes: Option<Vec<u8>>,
}

impl Body {
    fn read(req: &Request) -> Self {
        let content_type = req.header("content-type").map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        Self {
            content_type,
            bytes: req.body().filter(|b| !b.is_empty()),
        }
    }
}

fn check_operation(
    req: &Request,
    operation: &Operation,
    path_params: &[(&str, String)],
    failures: &mut Vec<Failure>,
) -> Result<(), Reply> {
    let query: Vec<(String, String)> = req
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let cookies = wasmgate_plugin_sdk::cookies::pairs(req);
    for param in &operation.parameters {
        let values: Vec<String> = match param.location {
            In::Path => path_params
                .iter()
                .filter(|(n, _)| *n == param.name)
                .map(|(_, v)| v.clone())
                .collect(),
            In::Query => query
                .iter()
                .filter(|(n, _)| *n == param.name)
                .map(|(_, v)| v.clone())
                .collect(),
            In::Header => req.header_all(&param.name),
            In::Cookie => cookies
                .iter()
                .filter(|(n, _)| *n == param.name)
                .map(|(_, v)| v.clone())
                .collect(),
            In::Body => Vec::new(),
        };
        check_parameter(param, values, failures);
    }
    if let Some(body) = &operation.body {
        let media: Vec<(String, Option<&jsonschema::Validator>)> = body
            .media
            .iter()
            .map(|(m, v)| (m.clone(), v.as_ref()))
            .collect();
        check_body(&Body::read(req), &media, body.required, failures)?;
    }
    Ok(())
}

fn check_parameter(param: &Parameter, values: Vec<String>, failures: &mut Vec<Failure>) {
    let fail = |message: String| Failure {
        location: param.location,
        at: param.name.clone(),
        message,
    };
    if values.is_empty() {
        if param.required {
            failures.push(fail("is required".into()));
        }
        return;
    }
    // A repeated scalar parameter: every copy must be valid (upstreams differ on which one
    // they read).
    let instances: Vec<Value> = match param.array {
        Some(item) => {
            let items: Vec<String> = match values.as_slice() {
                [one] => one.split(',').map(str::to_owned).collect(),
                _ => values,
            };
            vec![Value::Array(items.iter().map(|v| typed(v, item)).collect())]
        }
        None => values.iter().map(|v| typed(v, param.scalar)).collect(),
    };
    if let Some(validator) = &param.validator {
        for value in &instances {
            for error in validator.iter_errors(value) {
                failures.push(fail(error.to_string()));
            }
        }
    }
}

/// A parameter's string read as its schema's type; left a string when it does not parse, so
/// the schema reports the type error.
fn typed(text: &str, scalar: Scalar) -> Value {
    match scalar {
        Scalar::Integer => text
            .parse::<i64>()
            .map_or_else(|_| json!(text), |n| json!(n)),
        Scalar::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| json!(text), Value::Number),
        Scalar::Boolean => match text {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(text),
        },
        Scalar::String => json!(text),
    }
}

/// Validates the body against the schema of its media type. An unaccepted media type is a
/// 415 reply; schema failures are added to `failures`.
fn check_body(
    body: &Body,
    media: &[(String, Option<&jsonschema::Validator>)],
    required: bool,
    failures: &mut Vec<Failure>,
) -> Result<(), Reply> {
    let Some(bytes) = &body.bytes else {
        if required {
            failures.push(Failure {
                location: In::Body,
                at: String::new(),
                message: "a request body is required".into(),
            });
        }
        return Ok(());
    };
    let content_type = body.content_type.clone().unwrap_or_default();
    let entry = media.iter().find(|(m, _)| media_matches(m, &content_type));
    let Some((_, validator)) = entry else {
        let accepted: Vec<&str> = media.iter().map(|(m, _)| m.as_str()).collect();
        let detail = format!(
            "content type `{}` is not accepted; use {}",
            if content_type.is_empty() {
                "(none)"
            } else {
                &content_type
            },
            accepted.join(", ")
        );
        return Err(Reply::problem(415, "Unsupported Media Type", &detail));
    };
    let Some(validator) = validator else {
        return Ok(());
    };
    if !(content_type == "application/json" || content_type.ends_with("+json")) {
        return Ok(());
    }
    let instance: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            failures.push(Failure {
                location: In::Body,
                at: String::new(),
                message: format!("not valid JSON: {e}"),
            });
            return Ok(());
        }
    };
    for error in validator.iter_errors(&instance) {
        failures.push(Failure {
            location: In::Body,
            at: error.instance_path().as_str().to_owned(),
            message: error.to_string(),
        });
    }
    Ok(())
}

/// Whether a media-type key (`application/json`, `application/*`, `*/*`) accepts `actual`.
fn media_matches(key: &str, actual: &str) -> bool {
    let key = key.split(';').next().unwrap_or("").trim();
    key == actual
        || key == "*/*"
        || key
            .strip_suffix("/*")
            .is_some_and(|major| actual.split('/').next() == Some(major))
}
