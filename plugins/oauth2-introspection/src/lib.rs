//! `oauth2-introspection`: authenticates bearer tokens by asking the authorization server
//! (RFC 7662 token introspection), with client credentials.
//!
//! Grants: `http` (with the endpoint's host in `http_allow`), `state` and `clock`.
//!
//! - `active: true` → the consumer (`sub`, else `username`, else `client_id`) and scopes go into
//!   the context and the consumer header; required `scopes` are checked (403).
//! - `active: false` → 401 `invalid_token`.
//! - Endpoint unreachable, slow or answering an error → **503** `temporarily_unavailable`
//!   (fail closed: no request passes unverified).
//! - Results are cached in the plugin's shared state, keyed by the token's SHA-256 (never the
//!   token itself): active ones until their `exp`, at most `cache_ttl` seconds; inactive ones
//!   for `negative_cache_ttl` seconds.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wasmgate_plugin_sdk::auth::{self, OnMissing};
use wasmgate_plugin_sdk::{
    Action, ConfigError, Context, Plugin, Request, clock, fields, http, log, plugin, state,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The introspection endpoint URL.
    endpoint: String,
    client_id: String,
    client_secret: String,
    /// Longest time (seconds) an active result is reused.
    #[serde(default = "default_cache_ttl")]
    cache_ttl: u32,
    /// Time (seconds) an inactive result is reused.
    #[serde(default = "default_negative_ttl")]
    negative_cache_ttl: u32,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "auth::default_consumer_header")]
    consumer_header: String,
    #[serde(default)]
    on_missing: OnMissing,
    #[serde(default = "auth::default_realm")]
    realm: String,
}

fn default_cache_ttl() -> u32 {
    300
}
fn default_negative_ttl() -> u32 {
    10
}

struct Introspection {
    endpoint: String,
    authorization: String,
    cache_ttl_ms: u64,
    negative_ttl_ms: u64,
    scopes: Vec<String>,
    consumer_header: Option<String>,
    on_missing: OnMissing,
    bearer: auth::Bearer,
}

#[plugin]
impl Plugin for Introspection {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if !(config.endpoint.starts_with("https://") || config.endpoint.starts_with("http://")) {
            return Err(ConfigError::at(
                "endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        let credentials = format!("{}:{}", config.client_id, config.client_secret);
        let consumer_header = auth::consumer_header(&config.consumer_header)
            .map_err(|e| ConfigError::at("consumer_header", e))?;
        Ok(Self {
            endpoint: config.endpoint,
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
            cache_ttl_ms: u64::from(config.cache_ttl) * 1000,
            negative_ttl_ms: u64::from(config.negative_cache_ttl) * 1000,
            scopes: config.scopes,
            consumer_header,
            on_missing: config.on_missing,
            bearer: auth::Bearer::new(&config.realm),
        })
    }

    fn asserted_headers(&self) -> Vec<String> {
        self.consumer_header.iter().cloned().collect()
    }

    fn on_request(&self, req: &Request, ctx: &Context) -> Action {
        if auth::is_authenticated(ctx) {
            return Action::Continue;
        }
        if let Some(name) = &self.consumer_header {
            let _ = req.remove_header(name);
        }
        let Some(token) = auth::bearer_token(req) else {
            return match self.on_missing {
                OnMissing::Continue => Action::Continue,
                OnMissing::Reject => self.bearer.missing(),
            };
        };
        let result = match self.introspect(&token) {
            Ok(result) => result,
            Err(why) => {
                log::error(&format!(
                    "token introspection failed, refusing the request: {why}"
                ));
                let body = serde_json::json!({ "error": "temporarily_unavailable", "error_description": "the token cannot be verified right now" });
                return Action::respond(
                    wasmgate_plugin_sdk::Reply::new(503)
                        .header("retry-after", "1")
                        .json(&body),
                );
            }
        };
        let now_secs = clock::now_millis() / 1000;
        let expired = result
            .get("exp")
            .and_then(Value::as_u64)
            .is_some_and(|exp| exp <= now_secs);
        if result.get("active") != Some(&Value::Bool(true)) || expired {
            return self
                .bearer
                .refuse(401, "invalid_token", "the token is not active");
        }
        let granted: Vec<String> = result
            .get("scope")
            .and_then(Value::as_str)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(missing) = self.scopes.iter().find(|s| !granted.contains(s)) {
            return self.bearer.insufficient_scope(&self.scopes, missing);
        }
        let consumer = ["sub", "username", "client_id"]
            .iter()
            .find_map(|claim| result.get(*claim).and_then(Value::as_str))
            .filter(|c| fields::is_valid_value(c))
            .unwrap_or("anonymous")
            .to_owned();
        auth::set_consumer(ctx, &consumer, "oauth2-introspection", &granted);
        if let Some(name) = &self.consumer_header {
            let _ = req.set_header(name, &consumer);
        }
        Action::Continue
    }
}

impl Introspection {
    /// The introspection result for `token`, from the shared cache or the endpoint.
    fn introspect(&self, token: &str) -> Result<serde_json::Map<String, Value>, String> {
        let key = format!("token:{:x}", Sha256::digest(token.as_bytes()));
        if let Some(cached) = state::get(&key)
            && let Ok(Value::Object(result)) = serde_json::from_slice(&cached)
        {
            return Ok(result);
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let request = http::Request::new("POST", &self.endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("authorization", &self.authorization)
            .body(body);
        let response = http::send(&request).map_err(|e| e.describe())?;
        if response.status != 200 {
            return Err(format!("the endpoint answered {}", response.status));
        }
        let Ok(Value::Object(result)) = serde_json::from_slice::<Value>(&response.body) else {
            return Err("the endpoint's answer is not a JSON object".into());
        };
        let now_ms = clock::now_millis();
        let ttl_ms = match result.get("active") {
            Some(Value::Bool(true)) => {
                let until_exp = result
                    .get("exp")
                    .and_then(Value::as_u64)
                    .map_or(self.cache_ttl_ms, |exp| (exp * 1000).saturating_sub(now_ms));
                until_exp.min(self.cache_ttl_ms)
            }
            _ => self.negative_ttl_ms,
        };
        if ttl_ms > 0 {
            let ttl = u32::try_from(ttl_ms).unwrap_or(u32::MAX);
            state::set(&key, &serde_json::to_vec(&result).unwrap_or_default(), ttl);
        }
        Ok(result)
    }
}
