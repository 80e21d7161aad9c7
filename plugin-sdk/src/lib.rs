//! Write wasmgate plugins in Rust.
//!
//! A plugin is a type with a serde config struct and the hooks it needs; `#[plugin]` on its
//! `impl Plugin` block exports it as a WebAssembly component implementing the
//! `wasmgate:plugin` contract:
//!
//! ```
//! use serde::Deserialize;
//! use wasmgate_plugin_sdk::{plugin, Action, ConfigError, Context, Plugin, Reply, Request};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     header: String,
//! }
//!
//! struct RequireHeader {
//!     header: String,
//! }
//!
//! #[plugin]
//! impl Plugin for RequireHeader {
//!     type Config = Config;
//!
//!     fn configure(config: Config) -> Result<Self, ConfigError> {
//!         Ok(Self { header: config.header })
//!     }
//!
//!     fn on_request(&self, req: &Request, _ctx: &Context) -> Action {
//!         match req.header(&self.header) {
//!             Some(_) => Action::Continue,
//!             None => Action::respond(Reply::new(400).text("missing header\n")),
//!         }
//!     }
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component to name in the gateway config.
//!
//! The config is parsed once per route, when the gateway loads it: a field that does not fit
//! `Config` becomes a [`ConfigError`] naming the key (e.g. `origins[2]`), and the gateway refuses
//! the config with that message. Hooks run once per request on an already configured plugin.
#![deny(missing_docs)]

// The `#[plugin]` expansion and the generated bindings name this crate by its absolute path.
extern crate self as wasmgate_plugin_sdk;

use std::any::Any;
use std::cell::RefCell;

use serde::de::DeserializeOwned;

pub use wasmgate_plugin_sdk_macro::plugin;

pub mod cookies;
pub mod header_edits;
pub mod query;

/// Bindings generated from the `wasmgate:plugin` WIT package.
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "::wasmgate_plugin_sdk::bindings",
        runtime_path: "::wasmgate_plugin_sdk::__private::wit_bindgen::rt",
        bitflags_path: "::wasmgate_plugin_sdk::__private::wit_bindgen::rt::bitflags",
    });
}

pub use bindings::wasmgate::plugin::types::{
    Action, ConfigError, Context, EditError, Hooks, Reply, Request, Response,
};

/// A wasmgate plugin: its config type, how it is built from that config, and its hooks.
///
/// Every hook has a default that does nothing; the `#[plugin]` attribute tells the gateway which
/// hooks the `impl` block defines, so hooks left out are never called.
pub trait Plugin: Sized + 'static {
    /// The route's `config` table, deserialized with serde. Use
    /// `#[serde(deny_unknown_fields)]` so a misspelt key is an error at load time.
    type Config: DeserializeOwned;

    /// Builds the plugin from its parsed config, once per route, when the gateway loads the
    /// config. Check everything here (return [`ConfigError::at`] naming the key): request-time
    /// code should never find the config wrong.
    fn configure(config: Self::Config) -> Result<Self, ConfigError>;

    /// The hooks this configured plugin needs, out of those its `impl` block defines. Narrow it
    /// when a config makes a hook a no-op (e.g. no response edits configured) so the gateway
    /// skips the call. The default keeps every defined hook.
    fn hooks(&self) -> Hooks {
        Hooks::all()
    }

    /// The bodies this configured plugin reads or replaces, and up to what size. The default
    /// reads none: bodies stream past the plugin and [`Request::body`] returns `None`. Ask only
    /// when the config needs it (e.g. a JSON edit is configured): buffering costs memory and
    /// latency on every request of the route.
    fn bodies(&self) -> Bodies {
        Bodies::default()
    }

    /// Request headers this configured plugin sets to assert something the upstream trusts (a
    /// consumer, claims). The gateway removes them from every client request on every route,
    /// so the upstream knows only a plugin set them. The default asserts none.
    fn asserted_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Request phase, in chain order. The default continues to the next plugin.
    fn on_request(&self, req: &Request, ctx: &Context) -> Action {
        let _ = (req, ctx);
        Action::Continue
    }

    /// Response phase, in reverse chain order. The default leaves the response as it is.
    fn on_response(&self, req: &Request, resp: &Response, ctx: &Context) {
        let _ = (req, resp, ctx);
    }
}

/// The bodies a plugin reads, with a size limit each (see [`Plugin::bodies`]).
///
/// The route's limit is the smallest its plugins declared: request bodies over it are refused
/// with 413; response bodies over it stream through unchanged and the response hook sees no
/// body. `gzip` and `deflate` bodies arrive decoded; requests in other codings are refused with
/// 415. Only a plugin that declared a body sees it (`body()`) or may replace it (`set_body`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bodies {
    /// Read request bodies up to this many bytes.
    pub request: Option<u64>,
    /// Read response bodies up to this many bytes.
    pub response: Option<u64>,
}

impl Bodies {
    /// Request bodies up to `max_bytes`.
    pub fn request(max_bytes: u64) -> Self {
        Self {
            request: Some(max_bytes),
            response: None,
        }
    }

    /// Response bodies up to `max_bytes`.
    pub fn response(max_bytes: u64) -> Self {
        Self {
            request: None,
            response: Some(max_bytes),
        }
    }

    /// Adds response bodies up to `max_bytes`.
    pub fn and_response(mut self, max_bytes: u64) -> Self {
        self.response = Some(max_bytes);
        self
    }
}

impl ConfigError {
    /// An error about one key of the config, e.g. `ConfigError::at("origins[1]", "not a URL")`.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// An error about the config as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            key: None,
            message: message.into(),
        }
    }
}

impl Action {
    /// Answers the client with `reply` instead of calling the upstream.
    pub fn respond(reply: Reply) -> Self {
        Action::Respond(reply)
    }
}

impl Reply {
    /// A reply with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a `text/plain; charset=utf-8` body.
    pub fn text(self, body: impl Into<String>) -> Self {
        self.header("content-type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// Sets an `application/json` body.
    pub fn json(self, body: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string().into_bytes())
    }

    /// A problem document (RFC 9457, `application/problem+json`) with this status, title and
    /// detail.
    pub fn problem(status: u16, title: &str, detail: &str) -> Self {
        Self::problem_with(status, title, detail, serde_json::Map::new())
    }

    /// A problem document with extension members, e.g. `errors` listing what failed.
    pub fn problem_with(
        status: u16,
        title: &str,
        detail: &str,
        extensions: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        let mut body = serde_json::json!({
            "type": "about:blank", "title": title, "status": status, "detail": detail,
        });
        if let Some(members) = body.as_object_mut() {
            members.extend(extensions);
        }
        Self::new(status)
            .header("content-type", "application/problem+json")
            .body(body.to_string().into_bytes())
    }
}

/// Logging into the gateway's log; records carry the route and plugin names.
pub mod log {
    use crate::bindings::wasmgate::plugin::log::{self as host, Level};

    fn write(level: Level, message: &str) {
        host::log(level, message);
    }

    /// Whether debug records are written (to skip building expensive messages).
    pub fn debug_enabled() -> bool {
        host::enabled(Level::Debug)
    }

    /// Writes a debug record.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }

    /// Writes an info record.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }

    /// Writes a warning.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }

    /// Writes an error record.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

/// Time, through the host's `clock` capability (grant `clock` to the plugin in the config).
pub mod clock {
    use crate::bindings::wasmgate::plugin::clock as host;

    /// Milliseconds since the Unix epoch.
    pub fn now_millis() -> u64 {
        host::now_millis()
    }

    /// A monotonic clock in nanoseconds.
    pub fn monotonic_nanos() -> u64 {
        host::monotonic_nanos()
    }
}

/// Outbound HTTP through the host's `http-client` capability (grant `http` and list the hosts
/// in `http_allow`). Calls are made by the host asynchronously; the gateway keeps serving
/// other requests while a plugin waits.
pub mod http {
    pub use crate::bindings::wasmgate::plugin::http_client::{Error, Request, Response, send};

    impl Request {
        /// A request without headers, body or caching.
        pub fn new(method: &str, url: &str) -> Self {
            Self {
                method: method.to_owned(),
                url: url.to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
                cache_ttl_ms: 0,
            }
        }

        /// Adds a header.
        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }

        /// Sets the body.
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = body.into();
            self
        }

        /// Lets the host answer identical requests from its cache for `ttl_ms` milliseconds.
        pub fn cache_for_ms(mut self, ttl_ms: u32) -> Self {
            self.cache_ttl_ms = ttl_ms;
            self
        }
    }

    impl Error {
        /// A short description for logs.
        pub fn describe(&self) -> String {
            match self {
                Error::NotAllowed(host) => format!("{host} is not in http_allow"),
                Error::InvalidRequest(why) => format!("invalid request: {why}"),
                Error::Timeout => "timed out".into(),
                Error::Connection(why) => format!("connection failed: {why}"),
                Error::TooLarge => "response too large".into(),
            }
        }
    }
}

/// Rate-limit counters (grant `rate-limit`): GCRA, atomic, shared by all instances.
pub mod rate_limit {
    pub use crate::bindings::wasmgate::plugin::rate_limit::{Decision, check};
}

/// Key/value state with expiry, shared by all instances of the plugin (grant `state`).
pub mod state {
    pub use crate::bindings::wasmgate::plugin::state::{delete, get, set};
}

/// JWT verification through the host's `jwt` capability (grant `jwt` to the plugin).
pub mod jwt {
    pub use crate::bindings::wasmgate::plugin::jwt::{Algorithm, KeySet, Policy, VerifyError};

    impl Algorithm {
        /// Parses a JOSE algorithm name such as `RS256` or `EdDSA`.
        pub fn parse(name: &str) -> Option<Self> {
            Some(match name {
                "HS256" => Self::Hs256,
                "HS384" => Self::Hs384,
                "HS512" => Self::Hs512,
                "RS256" => Self::Rs256,
                "RS384" => Self::Rs384,
                "RS512" => Self::Rs512,
                "PS256" => Self::Ps256,
                "PS384" => Self::Ps384,
                "PS512" => Self::Ps512,
                "ES256" => Self::Es256,
                "ES384" => Self::Es384,
                "EdDSA" => Self::Eddsa,
                _ => return None,
            })
        }
    }

    impl VerifyError {
        /// A short description for an `error_description`, safe to show to the client.
        pub fn describe(&self) -> String {
            match self {
                Self::Malformed(_) => "the token is malformed".into(),
                Self::AlgorithmNotAllowed(alg) => {
                    format!("the signing algorithm {alg} is not accepted")
                }
                Self::UnknownKey(Some(kid)) => format!("the signing key {kid:?} is unknown"),
                Self::UnknownKey(None) => "no key can verify this token".into(),
                Self::BadSignature => "the signature is invalid".into(),
                Self::Expired => "the token has expired".into(),
                Self::NotYetValid => "the token is not valid yet".into(),
                Self::WrongIssuer => "the token has the wrong issuer".into(),
                Self::WrongAudience => "the token has the wrong audience".into(),
                Self::MissingClaim(claim) => format!("the token lacks the {claim:?} claim"),
            }
        }
    }
}

/// Conventions shared by authentication plugins: who the caller is, in the per-request context.
///
/// An auth plugin that recognises the caller stores the consumer under [`CONSUMER`]; later
/// plugins (rate limiting, logging) read it. Several auth plugins on one route express
/// "either": each earlier one is configured `on_missing = "continue"`, and a plugin that finds
/// the request already authenticated steps aside.
pub mod auth {
    use crate::{Context, Reply};

    /// Context key: the consumer's identity (e.g. the token's `sub`, the API key's consumer).
    pub const CONSUMER: &str = "consumer";
    /// Context key: the consumer's scopes, space-separated.
    pub const SCOPES: &str = "consumer.scopes";
    /// Context key: which plugin authenticated the request (`jwt`, `api-key`, …).
    pub const METHOD: &str = "consumer.auth";

    /// What to do when a request carries no credential for this plugin.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum OnMissing {
        /// Answer 401.
        #[default]
        Reject,
        /// Let the request through unauthenticated, for a later auth plugin (or an anonymous
        /// route) to decide.
        Continue,
    }

    /// Whether an earlier plugin already authenticated the request.
    pub fn is_authenticated(ctx: &Context) -> bool {
        ctx.get(CONSUMER).is_some()
    }

    /// Records the authenticated consumer.
    pub fn set_consumer(ctx: &Context, consumer: &str, method: &str, scopes: &[String]) {
        ctx.set(CONSUMER, consumer);
        ctx.set(METHOD, method);
        if !scopes.is_empty() {
            ctx.set(SCOPES, &scopes.join(" "));
        }
    }

    /// A JSON error reply with a `WWW-Authenticate` challenge.
    pub fn challenge_reply(
        status: u16,
        www_authenticate: &str,
        error: &str,
        description: &str,
    ) -> Reply {
        let body = serde_json::json!({ "error": error, "error_description": description });
        Reply::new(status)
            .header("www-authenticate", www_authenticate)
            .header("cache-control", "no-store")
            .json(&body)
    }

    /// The default header telling the upstream who the consumer is.
    pub fn default_consumer_header() -> String {
        "x-consumer-id".into()
    }

    /// The default realm of challenges.
    pub fn default_realm() -> String {
        "api".into()
    }

    /// Validates a configured consumer header name; `""` means none.
    pub fn consumer_header(name: &str) -> Result<Option<String>, String> {
        match name {
            "" => Ok(None),
            name => crate::fields::check_name(name).map(|()| Some(name.to_owned())),
        }
    }

    /// The token of an `Authorization: Bearer <token>` header, if any.
    pub fn bearer_token(req: &crate::Request) -> Option<String> {
        bearer_of(&req.header("authorization")?).map(str::to_owned)
    }

    /// The token in one `Authorization` value with the `Bearer` scheme (any case). A bare
    /// `Bearer` carries no token: it is treated as no credential at all, as
    /// [`bearer_token`] treats it.
    pub fn bearer_of(value: &str) -> Option<&str> {
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }

    /// RFC 6750 answers for bearer-token plugins, in one realm.
    pub struct Bearer {
        realm: String,
    }

    impl Bearer {
        /// Challenges in `realm`.
        pub fn new(realm: &str) -> Self {
            Self {
                realm: quoted(realm),
            }
        }

        /// 401 for a request without a token: a bare challenge, no error code (RFC 6750 §3.1).
        pub fn missing(&self) -> crate::Action {
            let challenge = format!("Bearer realm={}", self.realm);
            crate::Action::respond(challenge_reply(
                401,
                &challenge,
                "invalid_request",
                "no bearer token in the request",
            ))
        }

        /// A refusal with an error code, e.g. 401 `invalid_token` or 400 `invalid_request`.
        pub fn refuse(&self, status: u16, error: &str, description: &str) -> crate::Action {
            let challenge = format!(
                "Bearer realm={}, error={}, error_description={}",
                self.realm,
                quoted(error),
                quoted(description)
            );
            crate::Action::respond(challenge_reply(status, &challenge, error, description))
        }

        /// 403 `insufficient_scope`, naming the scopes the route requires.
        pub fn insufficient_scope(&self, required: &[String], missing: &str) -> crate::Action {
            let challenge = format!(
                "Bearer realm={}, error=\"insufficient_scope\", scope={}",
                self.realm,
                quoted(&required.join(" "))
            );
            let description = format!("the token lacks the {missing:?} scope");
            crate::Action::respond(challenge_reply(
                403,
                &challenge,
                "insufficient_scope",
                &description,
            ))
        }
    }

    /// Quotes a value for an HTTP auth-param (`realm="..."`).
    pub fn quoted(value: &str) -> String {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    }
}

/// HTTP field rules shared by plugins that take header names and values from their config.
pub mod fields {
    /// Fields the gateway manages itself (framing and hop-by-hop): edits to them are refused
    /// with [`EditError::Forbidden`](crate::EditError::Forbidden). The host's
    /// `fields::PLUGIN_PROTECTED` is the same list; a host test keeps them equal.
    pub const HOST_MANAGED: &[&str] = &[
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];

    /// Whether `name` is a valid field name (an RFC 9110 token).
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }

    /// Whether `value` is a valid field value (visible ASCII, spaces and tabs; no line breaks).
    pub fn is_valid_value(value: &str) -> bool {
        value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    }

    /// Checks a header name from a config: valid and not managed by the gateway.
    pub fn check_name(name: &str) -> Result<(), String> {
        if !is_valid_name(name) {
            return Err(format!("`{name}` is not a valid header name"));
        }
        if HOST_MANAGED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{name}` is managed by the gateway and cannot be edited"
            ));
        }
        Ok(())
    }
}

/// Glue used by the `#[plugin]` expansion. Not a public API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub use crate::bindings::exports::wasmgate::plugin::handler::Guest;
    pub use wit_bindgen;

    pub type RequestParam<'a> = &'a Request;
    pub type ResponseParam<'a> = &'a Response;
    pub type ContextParam<'a> = &'a Context;

    thread_local! {
        /// The configured plugin of this instance (a component instance is single-threaded).
        static CONFIGURED: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    pub fn configure<P: Plugin>(config: &str, hooks: Hooks) -> Result<Hooks, ConfigError> {
        let parsed: P::Config = parse_config(config)?;
        let plugin = P::configure(parsed)?;
        let hooks = hooks & plugin.hooks();
        let bodies = plugin.bodies();
        use crate::bindings::wasmgate::plugin::body_access::{Message, buffer};
        if let Some(max) = bodies.request {
            buffer(Message::Request, max);
        }
        if let Some(max) = bodies.response {
            buffer(Message::Response, max);
        }
        for name in plugin.asserted_headers() {
            crate::bindings::wasmgate::plugin::asserted_headers::declare(&name);
        }
        CONFIGURED.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(hooks)
    }

    fn with_plugin<P: Plugin, R>(f: impl FnOnce(&P) -> R) -> R {
        CONFIGURED.with(|slot| {
            let slot = slot.borrow();
            match slot.as_ref().and_then(|p| p.downcast_ref::<P>()) {
                Some(plugin) => f(plugin),
                // The host always configures an instance before calling a hook.
                None => panic!("wasmgate plugin hook called before configure"),
            }
        })
    }

    pub fn on_request<P: Plugin>(req: &Request, ctx: &Context) -> Action {
        with_plugin::<P, _>(|p| p.on_request(req, ctx))
    }

    pub fn on_response<P: Plugin>(req: &Request, resp: &Response, ctx: &Context) {
        with_plugin::<P, _>(|p| p.on_response(req, resp, ctx))
    }

    /// Parses the JSON config, naming the key that does not fit.
    pub fn parse_config<C: DeserializeOwned>(json: &str) -> Result<C, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let message = strip_position(&err.inner().to_string());
            ConfigError {
                key: (path != ".").then_some(path),
                message,
            }
        })
    }

    /// serde_json appends "at line L column C"; the JSON is generated by the host, so the
    /// position means nothing to the operator, who reads the key instead.
    fn strip_position(message: &str) -> String {
        match message.rfind(" at line ") {
            Some(at) => message[..at].to_string(),
            None => message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::__private::parse_config;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        origins: Vec<String>,
        #[serde(default)]
        max_age: u32,
    }

    #[test]
    fn wrong_type_names_the_key_and_index() {
        let err = parse_config::<Cfg>(r#"{"origins":["a", 7]}"#).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("origins[1]"));
        assert_eq!(err.message, "invalid type: integer `7`, expected a string");
    }

    #[test]
    fn missing_field_is_reported_without_json_positions() {
        let err = parse_config::<Cfg>("{}").unwrap_err();
        assert_eq!(err.key, None);
        assert_eq!(err.message, "missing field `origins`");
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse_config::<Cfg>(r#"{"origins":[],"max_agee":1}"#).unwrap_err();
        assert!(err.message.contains("unknown field `max_agee`"), "{err:?}");
    }
}
