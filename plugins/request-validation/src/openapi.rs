//! An OpenAPI 3.0/3.1 document compiled for request validation: its operations with their
//! parameter and body validators, and a path matcher.

use std::collections::BTreeMap;

use jsonschema::{Draft, Resource, Validator};
use serde_json::{Value, json};

/// Where the whole document is registered for `$ref` resolution.
const DOC_URI: &str = "urn:wasmgate:openapi";

/// Where a parameter travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
    Cookie,
    /// The request body (failures only).
    Body,
}

impl In {
    pub fn as_str(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
            In::Header => "header",
            In::Cookie => "cookie",
            In::Body => "body",
        }
    }
}

/// The JSON type a parameter's string value is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Integer,
    Number,
    Boolean,
}

pub struct Parameter {
    pub name: String,
    pub location: In,
    pub required: bool,
    /// Read as an array (repeated `name=` or comma-separated values).
    pub array: Option<Scalar>,
    pub scalar: Scalar,
    pub validator: Option<Validator>,
}

pub struct Body {
    pub required: bool,
    /// Media types with a schema (a `None` validator accepts anything of that type).
    pub media: Vec<(String, Option<Validator>)>,
}

pub struct Operation {
    pub parameters: Vec<Parameter>,
    pub body: Option<Body>,
}

/// One segment of a path template.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// A parameter, possibly with literal text around it (`{name}.json`).
    Param {
        prefix: String,
        suffix: String,
    },
}

/// A path template split into segments.
struct PathTemplate {
    segments: Vec<Segment>,
    names: Vec<String>,
    /// By method, upper case.
    operations: BTreeMap<String, Operation>,
}

pub struct Document {
    base_path: String,
    paths: Vec<PathTemplate>,
}

/// What a request's method and path found in the document.
pub enum Lookup<'a> {
    Found {
        operation: &'a Operation,
        path_params: Vec<(&'a str, String)>,
    },
    /// The path exists, not with this method.
    MethodNotAllowed(Vec<&'a str>),
    NotFound,
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl Document {
    /// Parses and compiles `text` (JSON or YAML). `base_path` overrides the first server's path.
    pub fn parse(text: &str, base_path: Option<String>) -> Result<Self, String> {
        let mut doc: Value = match serde_json::from_str(text) {
            Ok(doc) => doc,
            Err(_) => {
                serde_norway::from_str(text).map_err(|e| format!("neither JSON nor YAML: {e}"))?
            }
        };
        let version = doc["openapi"].as_str().unwrap_or_default().to_owned();
        let draft = if version.starts_with("3.0") {
            // 3.0 schemas are a JSON Schema draft 4/5 dialect with `nullable`.
            rewrite_nullable(&mut doc);
            Draft::Draft4
        } else if version.starts_with("3.1") {
            Draft::Draft202012
        } else {
            return Err(format!(
                "`openapi: {version}` is not supported: use an OpenAPI 3.0 or 3.1 document"
            ));
        };
        let base_path = base_path
            .or_else(|| doc["servers"][0]["url"].as_str().map(server_path))
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let compiler = Compiler { doc: &doc, draft };
        let mut paths = Vec::new();
        let Some(items) = doc["paths"].as_object() else {
            return Err("the document has no `paths`".into());
        };
        for (template, item) in items {
            let item = compiler.deref(item);
            let mut operations = BTreeMap::new();
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                let at = format!("paths.{template}.{method}");
                let operation = compiler
                    .operation(item, op)
                    .map_err(|e| format!("{at}: {e}"))?;
                operations.insert(method.to_ascii_uppercase(), operation);
            }
            let (segments, names) =
                split_template(template).map_err(|e| format!("paths.{template}: {e}"))?;
            paths.push(PathTemplate {
                segments,
                names,
                operations,
            });
        }
        // Concrete segments win over templated ones (`/users/me` before `/users/{id}`, and
        // `/files/{name}.json` before `/files/{name}`).
        paths.sort_by_key(|p| {
            let literal = p.segments.iter().filter(|s| matches!(s, Segment::Literal(_)));
            let framed = p.segments.iter().filter(
                |s| matches!(s, Segment::Param { prefix, suffix } if !(prefix.is_empty() && suffix.is_empty())),
            );
            std::cmp::Reverse((literal.count(), framed.count()))
        });
        Ok(Self { base_path, paths })
    }

    pub fn lookup(&self, method: &str, path: &str) -> Lookup<'_> {
        let Some(rest) = path.strip_prefix(&self.base_path) else {
            return Lookup::NotFound;
        };
        let rest = if rest.is_empty() { "/" } else { rest };
        if !self.base_path.is_empty() && !rest.starts_with('/') {
            return Lookup::NotFound;
        }
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        for template in &self.paths {
            let Some(values) = template.matches(&parts) else {
                continue;
            };
            return match template.operations.get(method) {
                Some(operation) => Lookup::Found {
                    operation,
                    path_params: template
                        .names
                        .iter()
                        .map(String::as_str)
                        .zip(values)
                        .collect(),
                },
                None => Lookup::MethodNotAllowed(
                    template.operations.keys().map(String::as_str).collect(),
                ),
            };
        }
        Lookup::NotFound
    }
}

impl PathTemplate {
    fn matches(&self, parts: &[&str]) -> Option<Vec<String>> {
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut values = Vec::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Literal(_) => return None,
                Segment::Param { prefix, suffix } => {
                    let value = part
                        .strip_prefix(prefix.as_str())?
                        .strip_suffix(suffix.as_str())?;
                    if value.is_empty() {
                        return None;
                    }
                    values.push(percent_decode(value));
                }
            }
        }
        Some(values)
    }
}

struct Compiler<'a> {
    doc: &'a Value,
    draft: Draft,
}

impl Compiler<'_> {
    /// Follows a local `$ref` (`#/components/...`).
    fn deref<'v>(&'v self, value: &'v Value) -> &'v Value {
        let mut value = value;
        for _ in 0..16 {
            match value
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
            {
                Some(pointer) => value = self.doc.pointer(pointer).unwrap_or(&Value::Null),
                None => break,
            }
        }
        value
    }

    fn validator(&self, pointer: &str) -> Result<Validator, String> {
        let schema = json!({ "$ref": format!("{DOC_URI}#{}", fragment(pointer)) });
        let resource = Resource::from_contents(self.doc.clone());
        jsonschema::options()
            .with_draft(self.draft)
            .with_resource(DOC_URI, resource)
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| format!("schema at {pointer}: {e}"))
    }

    fn operation(&self, item: &Value, op: &Value) -> Result<Operation, String> {
        let mut parameters: Vec<Parameter> = Vec::new();
        let lists = [
            (item.get("parameters"), "/parameters"),
            (op.get("parameters"), ""),
        ];
        for (list, _) in lists {
            let Some(list) = list.and_then(Value::as_array) else {
                continue;
            };
            for raw in list {
                let param = self.parameter(raw)?;
                // Operation-level parameters override path-level ones with the same name/in.
                parameters.retain(|p| !(p.name == param.name && p.location == param.location));
                parameters.push(param);
            }
        }
        let body = match op.get("requestBody") {
            None => None,
            Some(raw) => {
                let body = self.deref(raw);
                // Where the body really sits (behind `$ref`s, or in a referenced path item).
                let body_pointer =
                    find_pointer(self.doc, body).ok_or("request body outside the document")?;
                let mut media = Vec::new();
                if let Some(content) = body["content"].as_object() {
                    for (media_type, entry) in content {
                        let validator = match entry.get("schema") {
                            Some(_) => Some(self.validator(&format!(
                                "{body_pointer}/content/{}/schema",
                                escape(media_type)
                            ))?),
                            None => None,
                        };
                        media.push((media_type.to_ascii_lowercase(), validator));
                    }
                }
                Some(Body {
                    required: body["required"].as_bool().unwrap_or(false),
                    media,
                })
            }
        };
        Ok(Operation { parameters, body })
    }

    fn parameter(&self, raw: &Value) -> Result<Parameter, String> {
        let param = self.deref(raw);
        let name = param["name"]
            .as_str()
            .ok_or("a parameter without a `name`")?
            .to_owned();
        let location = match param["in"].as_str() {
            Some("path") => In::Path,
            Some("query") => In::Query,
            Some("header") => In::Header,
            Some("cookie") => In::Cookie,
            other => return Err(format!("parameter `{name}`: unknown `in: {other:?}`")),
        };
        let schema = self.deref(&param["schema"]);
        // `type` may be a list (`[integer, "null"]`, OpenAPI 3.1 and rewritten 3.0 `nullable`).
        let type_of = |s: &Value| -> Option<String> {
            match &self.deref(s)["type"] {
                Value::String(t) => Some(t.clone()),
                Value::Array(types) => types
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|t| *t != "null")
                    .map(str::to_owned),
                _ => None,
            }
        };
        let ty = |s: &Value| match type_of(s).as_deref() {
            Some("integer") => Scalar::Integer,
            Some("number") => Scalar::Number,
            Some("boolean") => Scalar::Boolean,
            _ => Scalar::String,
        };
        let array = (type_of(schema).as_deref() == Some("array")).then(|| ty(&schema["items"]));
        let validator = match param.get("schema") {
            Some(_) => {
                // Compile the parameter's schema on its own, with the document for `$ref`s.
                let pointer = find_pointer(self.doc, param).map(|p| format!("{p}/schema"));
                match pointer {
                    Some(pointer) => Some(self.validator(&pointer)?),
                    None => None,
                }
            }
            None => None,
        };
        Ok(Parameter {
            location,
            required: location == In::Path || param["required"].as_bool().unwrap_or(false),
            array,
            scalar: ty(schema),
            name: if location == In::Header {
                name.to_ascii_lowercase()
            } else {
                name
            },
            validator,
        })
    }
}

/// Finds the JSON pointer of `target` (by identity) inside `doc`.
fn find_pointer(doc: &Value, target: &Value) -> Option<String> {
    fn walk(node: &Value, target: &Value, path: &mut String) -> bool {
        if std::ptr::eq(node, target) {
            return true;
        }
        match node {
            Value::Object(map) => map.iter().any(|(k, v)| {
                let len = path.len();
                path.push('/');
                path.push_str(&escape(k));
                let found = walk(v, target, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Array(items) => items.iter().enumerate().any(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                let found = walk(v, target, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(doc, target, &mut path).then_some(path)
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: the type also admits `null`.
fn rewrite_nullable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                map.remove("nullable");
                if let Some(Value::String(ty)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([ty, "null"]));
                }
                if let Some(Value::Array(choices)) = map.get_mut("enum") {
                    choices.push(Value::Null);
                }
            }
            map.values_mut().for_each(rewrite_nullable);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_nullable),
        _ => {}
    }
}

/// A JSON pointer as a URI fragment: characters a fragment cannot hold percent-encoded.
fn fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for b in pointer.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn server_path(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match url.contains("://") {
        true => without_scheme
            .find('/')
            .map_or(String::new(), |i| without_scheme[i..].to_owned()),
        false => url.to_owned(),
    }
}

/// Splits `/files/{name}.json` into segments and parameter names. A segment holds at most one
/// parameter (`{a}-{b}` is refused: where one value ends would be a guess).
fn split_template(template: &str) -> Result<(Vec<Segment>, Vec<String>), String> {
    let mut names = Vec::new();
    let mut segments = Vec::new();
    for s in template.trim_start_matches('/').split('/') {
        let (Some(open), Some(close)) = (s.find('{'), s.find('}')) else {
            segments.push(Segment::Literal(s.to_owned()));
            continue;
        };
        if close < open || s[close + 1..].contains('{') {
            return Err(format!(
                "path segment `{s}` holds more than one parameter, which cannot be matched unambiguously"
            ));
        }
        names.push(s[open + 1..close].to_owned());
        segments.push(Segment::Param {
            prefix: s[..open].to_owned(),
            suffix: s[close + 1..].to_owned(),
        });
    }
    Ok((segments, names))
}

pub fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETSTORE: &str = r##"
openapi: 3.0.3
servers: [{ url: "https://api.example.com/v1" }]
paths:
  /pets/{petId}:
    parameters:
      - { name: petId, in: path, required: true, schema: { type: integer, minimum: 1 } }
    get: {}
  /pets/mine:
    get: {}
  /pets:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: "#/components/schemas/Pet" }
components:
  schemas:
    Pet:
      type: object
      required: [name]
      properties:
        name: { type: string, minLength: 1 }
        tag: { type: string, nullable: true }
"##;

    #[test]
    fn paths_match_templates_with_concrete_segments_first() {
        let doc = Document::parse(PETSTORE, None).unwrap();
        assert!(
            matches!(doc.lookup("GET", "/v1/pets/mine"), Lookup::Found { path_params, .. } if path_params.is_empty())
        );
        match doc.lookup("GET", "/v1/pets/42") {
            Lookup::Found {
                path_params,
                operation,
            } => {
                assert_eq!(path_params, vec![("petId", "42".to_owned())]);
                assert_eq!(operation.parameters.len(), 1);
            }
            _ => panic!("not found"),
        }
        assert!(
            matches!(doc.lookup("DELETE", "/v1/pets/42"), Lookup::MethodNotAllowed(m) if m == ["GET"])
        );
        assert!(matches!(doc.lookup("GET", "/v2/pets/42"), Lookup::NotFound));
        assert!(matches!(
            doc.lookup("GET", "/v1/pets/42/x"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn body_schemas_resolve_refs_and_nullable() {
        let doc = Document::parse(PETSTORE, None).unwrap();
        let Lookup::Found { operation, .. } = doc.lookup("POST", "/v1/pets") else {
            panic!("not found");
        };
        let body = operation.body.as_ref().unwrap();
        let validator = body.media[0].1.as_ref().unwrap();
        assert!(validator.is_valid(&json!({ "name": "Rex", "tag": null })));
        assert!(!validator.is_valid(&json!({ "tag": "x" })));
    }

    #[test]
    fn a_parameter_may_share_its_segment_with_text() {
        let spec = r#"{"openapi": "3.1.0", "paths": {
            "/files/{name}.json": {"get": {"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]}},
            "/files/{name}": {"get": {}}}}"#;
        let doc = Document::parse(spec, None).unwrap();
        match doc.lookup("GET", "/files/report.json") {
            Lookup::Found { path_params, .. } => {
                assert_eq!(path_params, vec![("name", "report".to_owned())])
            }
            _ => panic!("not found"),
        }
        assert!(matches!(
            doc.lookup("GET", "/files/report.csv"),
            Lookup::Found { .. }
        ));
        let err = Document::parse(r#"{"openapi": "3.1.0", "paths": {"/r/{a}-{b}": {}}}"#, None)
            .err()
            .unwrap();
        assert!(err.contains("more than one parameter"), "{err}");
    }

    #[test]
    fn unsupported_versions_are_refused() {
        let err = Document::parse(r#"{"swagger": "2.0", "paths": {}}"#, None)
            .err()
            .unwrap();
        assert!(err.contains("OpenAPI 3.0 or 3.1"), "{err}");
    }
}
