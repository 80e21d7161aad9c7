//! `cors`: Cross-Origin Resource Sharing as browsers check it (the Fetch standard).
//!
//! - Preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by the
//!   gateway: `204` with the allowed methods, headers and max-age for an allowed origin, `403`
//!   without any CORS header for a disallowed one. Set `preflight_continue = true` to pass
//!   preflights to the upstream instead.
//! - Actual requests from an allowed origin get `Access-Control-Allow-Origin` (the origin itself,
//!   or `*` for a public API without credentials), `Access-Control-Allow-Credentials` and
//!   `Access-Control-Expose-Headers`; a disallowed origin gets no CORS header at all.
//! - `Vary: Origin` is added whenever the answer depends on the origin, so caches keep
//!   per-origin copies.

use serde::Deserialize;
use wasmgate_plugin_sdk::{
    Action, ConfigError, Context, Plugin, Reply, Request, Response, fields, plugin,
};

mod origin;

use origin::OriginRule;

const DEFAULT_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Allowed origins: `https://app.example.com`, `https://*.example.com` (any subdomain),
    /// or `*` (any origin; not with credentials).
    origins: Vec<String>,
    /// Methods allowed in preflight answers.
    #[serde(default)]
    methods: Option<Vec<String>>,
    /// Request headers allowed in preflight answers; absent means "whatever the browser asks".
    #[serde(default)]
    headers: Option<Vec<String>>,
    /// Response headers the browser may expose to scripts.
    #[serde(default)]
    expose_headers: Vec<String>,
    /// Whether cookies and HTTP auth may be sent (`Access-Control-Allow-Credentials: true`).
    #[serde(default)]
    credentials: bool,
    /// How long (seconds) a browser may cache a preflight answer.
    #[serde(default)]
    max_age: Option<u32>,
    /// Pass preflight requests to the upstream instead of answering them.
    #[serde(default)]
    preflight_continue: bool,
}

struct Cors {
    any_origin: bool,
    rules: Vec<OriginRule>,
    methods: String,
    headers: Option<String>,
    expose_headers: Option<String>,
    credentials: bool,
    max_age: Option<String>,
    preflight_continue: bool,
}

#[plugin]
impl Plugin for Cors {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if config.origins.is_empty() {
            return Err(ConfigError::at("origins", "must list at least one origin"));
        }
        let mut any_origin = false;
        let mut rules = Vec::new();
        for (i, origin) in config.origins.iter().enumerate() {
            if origin == "*" {
                any_origin = true;
                continue;
            }
            rules.push(
                OriginRule::parse(origin)
                    .map_err(|e| ConfigError::at(format!("origins[{i}]"), e))?,
            );
        }
        if any_origin && config.credentials {
            return Err(ConfigError::at(
                "origins",
                "`*` cannot be combined with `credentials = true` (browsers reject it); list the origins instead",
            ));
        }
        let methods = match &config.methods {
            Some(methods) => {
                for (i, m) in methods.iter().enumerate() {
                    if !fields::is_valid_name(m) {
                        return Err(ConfigError::at(
                            format!("methods[{i}]"),
                            format!("`{m}` is not an HTTP method"),
                        ));
                    }
                }
                methods
                    .iter()
                    .map(|m| m.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            None => DEFAULT_METHODS.join(", "),
        };
        let headers = match &config.headers {
            Some(headers) => Some(token_list("headers", headers)?),
            None => None,
        };
        let expose_headers = match config.expose_headers.is_empty() {
            true => None,
            false => Some(token_list("expose_headers", &config.expose_headers)?),
        };
        Ok(Self {
            any_origin,
            rules,
            methods,
            headers,
            expose_headers,
            credentials: config.credentials,
            max_age: config.max_age.map(|s| s.to_string()),
            preflight_continue: config.preflight_continue,
        })
    }

    fn on_request(&self, req: &Request, _ctx: &Context) -> Action {
        if self.preflight_continue || req.method() != "OPTIONS" {
            return Action::Continue;
        }
        let (Some(origin), Some(_)) = (
            req.header("origin"),
            req.header("access-control-request-method"),
        ) else {
            return Action::Continue;
        };
        let vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
        let Some(allow_origin) = self.allow_origin(&origin) else {
            return Action::respond(Reply::new(403).header("vary", vary));
        };
        let mut reply = Reply::new(204)
            .header("access-control-allow-origin", allow_origin)
            .header("access-control-allow-methods", self.methods.as_str());
        let requested = req.header("access-control-request-headers");
        if let Some(headers) = self.headers.as_deref().or(requested.as_deref()) {
            reply = reply.header("access-control-allow-headers", headers);
        }
        if self.credentials {
            reply = reply.header("access-control-allow-credentials", "true");
        }
        if let Some(max_age) = &self.max_age {
            reply = reply.header("access-control-max-age", max_age.as_str());
        }
        Action::respond(reply.header("vary", vary))
    }

    fn on_response(&self, req: &Request, resp: &Response, _ctx: &Context) {
        if self.depends_on_origin() {
            let _ = resp.append_header("vary", "Origin");
        }
        let Some(origin) = req.header("origin") else {
            return;
        };
        let Some(allow_origin) = self.allow_origin(&origin) else {
            return;
        };
        let _ = resp.set_header("access-control-allow-origin", allow_origin);
        if self.credentials {
            let _ = resp.set_header("access-control-allow-credentials", "true");
        }
        if let Some(expose) = &self.expose_headers {
            let _ = resp.set_header("access-control-expose-headers", expose);
        }
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for `origin`, or `None` if it is not allowed.
    fn allow_origin<'a>(&self, origin: &'a str) -> Option<&'a str> {
        if self.any_origin {
            return Some("*");
        }
        self.rules
            .iter()
            .any(|rule| rule.matches(origin))
            .then_some(origin)
    }

    fn depends_on_origin(&self) -> bool {
        !self.any_origin
    }
}

fn token_list(key: &str, names: &[String]) -> Result<String, ConfigError> {
    for (i, name) in names.iter().enumerate() {
        if !fields::is_valid_name(name) {
            return Err(ConfigError::at(
                format!("{key}[{i}]"),
                format!("`{name}` is not a valid header name"),
            ));
        }
    }
    Ok(names.join(", "))
}
