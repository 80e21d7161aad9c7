//! `jwt-auth`: authenticates callers by a JSON Web Token, verified by the host's `jwt`
//! capability (grant `jwt`).
//!
//! - Token from `Authorization: Bearer` (or another header), a cookie, or a query parameter when
//!   configured; a request carrying two different tokens is refused.
//! - Keys: HMAC secrets, PEM public keys, an inline JWKS; the accepted algorithms are listed
//!   explicitly and each key only verifies the algorithms of its type.
//! - Checks `exp`, `nbf` (with leeway), `iss`, `aud`, required claims, and required scopes
//!   (`scope` or `scp` claim).
//! - `401` with `WWW-Authenticate: Bearer … error="invalid_token", error_description="…"` for
//!   a bad token, `401` with a bare challenge for a missing one, `403` with
//!   `error="insufficient_scope"` for missing scopes, `400` with `error="invalid_request"` for
//!   several tokens (RFC 6750).
//! - On success: the consumer (`consumer_claim`, default `sub`) and scopes go into the context,
//!   and configured claims into request headers (client-sent copies are removed first).

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wasmgate_plugin_sdk::auth::{self, OnMissing};
use wasmgate_plugin_sdk::jwt::{Algorithm, KeySet, Policy, VerifyError};
use wasmgate_plugin_sdk::{
    Action, ConfigError, Context, Plugin, Request, cookies, fields, http, log, plugin, query, state,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Accepted algorithms, e.g. `["RS256"]`.
    algorithms: Vec<String>,
    #[serde(default)]
    secrets: Vec<SecretConfig>,
    #[serde(default)]
    public_keys: Vec<PemConfig>,
    /// A JWKS document (JSON text).
    #[serde(default)]
    jwks: Option<String>,
    /// A JWKS URL (grant `http`, `state` and `clock`, and allow its host in `http_allow`).
    #[serde(default)]
    jwks_url: Option<String>,
    /// Seconds a fetched JWKS is used before it is fetched again (revoked keys disappear).
    #[serde(default = "default_jwks_ttl")]
    jwks_cache_ttl: u32,
    /// Least seconds between two fetches caused by tokens with an unknown `kid`.
    #[serde(default = "default_jwks_refresh")]
    jwks_refresh_interval: u32,
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    /// Seconds of clock skew tolerated.
    #[serde(default = "default_leeway")]
    leeway: u32,
    #[serde(default)]
    required_claims: Vec<String>,
    /// Scopes the token must all carry.
    #[serde(default)]
    scopes: Vec<String>,
    /// Header carrying the token (`Bearer` scheme when it is `authorization`).
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    cookie: Option<String>,
    /// Query parameter carrying the token (off unless set: URLs end up in logs).
    #[serde(default)]
    query: Option<String>,
    /// The claim naming the consumer.
    #[serde(default = "default_consumer_claim")]
    consumer_claim: String,
    /// Request header that tells the upstream who the consumer is (`""` for none).
    #[serde(default = "auth::default_consumer_header")]
    consumer_header: String,
    /// Claims copied into request headers, e.g. `{ email = "x-jwt-claim-email" }`.
    #[serde(default)]
    claims_to_headers: BTreeMap<String, String>,
    #[serde(default)]
    on_missing: OnMissing,
    #[serde(default = "auth::default_realm")]
    realm: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretConfig {
    value: String,
    /// Whether `value` is base64 (standard or URL-safe) rather than the raw secret.
    #[serde(default)]
    base64: bool,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PemConfig {
    pem: String,
    #[serde(default)]
    kid: Option<String>,
}

fn default_jwks_ttl() -> u32 {
    300
}
fn default_jwks_refresh() -> u32 {
    10
}
fn default_leeway() -> u32 {
    30
}
fn default_header() -> String {
    "authorization".into()
}
fn default_consumer_claim() -> String {
    "sub".into()
}

/// The configured keys, kept to rebuild the key set when the remote JWKS changes.
struct StaticKeys {
    secrets: Vec<(Vec<u8>, Option<String>)>,
    pems: Vec<(String, Option<String>)>,
    jwks: Option<String>,
}

/// A JWKS fetched from a URL, shared by all instances through the plugin's state.
struct RemoteJwks {
    url: String,
    ttl_ms: u32,
    refresh_interval_ms: u32,
    /// Version (hash) of the document this instance's key set was built from.
    version: RefCell<Vec<u8>>,
}

const JWKS_DOCUMENT: &str = "jwks:document";
const JWKS_VERSION: &str = "jwks:version";
const JWKS_FRESH: &str = "jwks:fresh";
const JWKS_REFRESH_LOCK: &str = "jwks:refresh-lock";

struct JwtAuth {
    keys: RefCell<KeySet>,
    static_keys: StaticKeys,
    remote: Option<RemoteJwks>,
    policy: Policy,
    scopes: Vec<String>,
    header: String,
    cookie: Option<String>,
    query: Option<String>,
    consumer_claim: String,
    consumer_header: Option<String>,
    claims_to_headers: Vec<(String, String)>,
    on_missing: OnMissing,
    bearer: auth::Bearer,
}

#[plugin]
impl Plugin for JwtAuth {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if config.algorithms.is_empty() {
            return Err(ConfigError::at(
                "algorithms",
                "list the accepted algorithms, e.g. [\"RS256\"]",
            ));
        }
        let mut algorithms = Vec::new();
        for (i, name) in config.algorithms.iter().enumerate() {
            let alg = Algorithm::parse(name).ok_or_else(|| {
                ConfigError::at(format!("algorithms[{i}]"), format!("`{name}` is not a supported algorithm (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"))
            })?;
            algorithms.push(alg);
        }
        let mut static_keys = StaticKeys {
            secrets: Vec::new(),
            pems: Vec::new(),
            jwks: config.jwks.clone(),
        };
        let keys = KeySet::new();
        for (i, secret) in config.secrets.iter().enumerate() {
            let bytes = match secret.base64 {
                false => secret.value.as_bytes().to_vec(),
                true => decode_base64(&secret.value).ok_or_else(|| {
                    ConfigError::at(format!("secrets[{i}].value"), "is not valid base64")
                })?,
            };
            keys.add_secret(&bytes, secret.kid.as_deref())
                .map_err(|e| ConfigError::at(format!("secrets[{i}].value"), e))?;
            static_keys.secrets.push((bytes, secret.kid.clone()));
        }
        for (i, key) in config.public_keys.iter().enumerate() {
            keys.add_pem(&key.pem, key.kid.as_deref())
                .map_err(|e| ConfigError::at(format!("public_keys[{i}].pem"), e))?;
            static_keys.pems.push((key.pem.clone(), key.kid.clone()));
        }
        if let Some(jwks) = &config.jwks {
            keys.add_jwks(jwks)
                .map_err(|e| ConfigError::at("jwks", e))?;
        }
        let remote = config.jwks_url.map(|url| RemoteJwks {
            url,
            ttl_ms: config.jwks_cache_ttl.saturating_mul(1000),
            refresh_interval_ms: config.jwks_refresh_interval.saturating_mul(1000),
            version: RefCell::new(Vec::new()),
        });
        if let Some(remote) = &remote {
            // One fetch serves every instance: later ones find the document in the state.
            if state::get(JWKS_DOCUMENT).is_none() {
                fetch_jwks(remote).map_err(|e| ConfigError::at("jwks_url", e))?;
            }
            let document = state::get(JWKS_DOCUMENT).unwrap_or_default();
            keys.add_jwks(&String::from_utf8_lossy(&document))
                .map_err(|e| ConfigError::at("jwks_url", e))?;
            *remote.version.borrow_mut() = state::get(JWKS_VERSION).unwrap_or_default();
        }
        if keys.len() == 0 {
            return Err(ConfigError::new(
                "no keys: configure `secrets`, `public_keys`, `jwks` or `jwks_url`",
            ));
        }
        let mut claims_to_headers = Vec::new();
        for (claim, header) in config.claims_to_headers {
            fields::check_name(&header)
                .map_err(|e| ConfigError::at(format!("claims_to_headers.{claim}"), e))?;
            claims_to_headers.push((claim, header));
        }
        let consumer_header = auth::consumer_header(&config.consumer_header)
            .map_err(|e| ConfigError::at("consumer_header", e))?;
        fields::check_name(&config.header).map_err(|e| ConfigError::at("header", e))?;
        Ok(Self {
            keys: RefCell::new(keys),
            static_keys,
            remote,
            policy: Policy {
                algorithms,
                leeway_secs: config.leeway,
                issuers: config.issuers,
                audiences: config.audiences,
                required_claims: config.required_claims,
            },
            scopes: config.scopes,
            header: config.header.to_ascii_lowercase(),
            cookie: config.cookie,
            query: config.query,
            consumer_claim: config.consumer_claim,
            consumer_header,
            claims_to_headers,
            on_missing: config.on_missing,
            bearer: auth::Bearer::new(&config.realm),
        })
    }

    fn asserted_headers(&self) -> Vec<String> {
        self.consumer_header
            .iter()
            .chain(self.claims_to_headers.iter().map(|(_, header)| header))
            .cloned()
            .collect()
    }

    fn on_request(&self, req: &Request, ctx: &Context) -> Action {
        if auth::is_authenticated(ctx) {
            return Action::Continue;
        }
        // Identity headers are the gateway's to set: drop whatever the client sent.
        for name in self
            .consumer_header
            .iter()
            .chain(self.claims_to_headers.iter().map(|(_, h)| h))
        {
            let _ = req.remove_header(name);
        }
        let mut tokens = self.tokens(req);
        tokens.sort();
        tokens.dedup();
        let token = match tokens.as_slice() {
            [] => {
                return match self.on_missing {
                    OnMissing::Continue => Action::Continue,
                    OnMissing::Reject => self.bearer.missing(),
                };
            }
            [token] => token,
            _ => {
                return self.bearer.refuse(
                    400,
                    "invalid_request",
                    "the request carries more than one token",
                );
            }
        };
        let claims = match self.verify(token) {
            Ok(claims) => claims,
            Err(e) => return self.bearer.refuse(401, "invalid_token", &e.describe()),
        };
        let Ok(Value::Object(claims)) = serde_json::from_str::<Value>(&claims) else {
            return self.bearer.refuse(
                401,
                "invalid_token",
                "the token's claims are not an object",
            );
        };
        let granted = scopes(&claims);
        if let Some(missing) = self.scopes.iter().find(|s| !granted.contains(s)) {
            return self.bearer.insufficient_scope(&self.scopes, missing);
        }
        let Some(consumer) = claims.get(&self.consumer_claim).and_then(claim_text) else {
            return self.bearer.refuse(
                401,
                "invalid_token",
                &format!("the token lacks the {:?} claim", self.consumer_claim),
            );
        };
        auth::set_consumer(ctx, &consumer, "jwt", &granted);
        if let Some(name) = &self.consumer_header {
            let _ = req.set_header(name, &consumer);
        }
        for (claim, header) in &self.claims_to_headers {
            if let Some(value) = claims.get(claim).and_then(claim_text) {
                let _ = req.set_header(header, &value);
            }
        }
        Action::Continue
    }
}

impl JwtAuth {
    /// Verifies with the current keys, keeping a remote JWKS fresh: refetched after its cache
    /// time, and at most once per refresh interval when a token names an unknown key (so a
    /// rotation is picked up without a restart, and junk `kid`s cannot flood the server).
    fn verify(&self, token: &str) -> Result<String, VerifyError> {
        let Some(remote) = &self.remote else {
            return self.keys.borrow().verify(token, &self.policy);
        };
        if state::get(JWKS_FRESH).is_none() {
            state::set(JWKS_FRESH, b"1", remote.ttl_ms);
            if let Err(e) = fetch_jwks(remote) {
                log::warn(&format!("keeping the previous JWKS: {e}"));
            }
        }
        self.sync_keys(remote);
        match self.keys.borrow().verify(token, &self.policy) {
            Err(VerifyError::UnknownKey(Some(_))) if state::get(JWKS_REFRESH_LOCK).is_none() => {}
            result => return result,
        }
        state::set(JWKS_REFRESH_LOCK, b"1", remote.refresh_interval_ms);
        if let Err(e) = fetch_jwks(remote) {
            log::warn(&format!("JWKS refresh for an unknown key failed: {e}"));
        }
        self.sync_keys(remote);
        self.keys.borrow().verify(token, &self.policy)
    }

    /// Rebuilds this instance's key set if the shared JWKS document changed.
    fn sync_keys(&self, remote: &RemoteJwks) {
        let version = state::get(JWKS_VERSION).unwrap_or_default();
        if version == *remote.version.borrow() {
            return;
        }
        let Some(document) = state::get(JWKS_DOCUMENT) else {
            return;
        };
        let keys = KeySet::new();
        for (secret, kid) in &self.static_keys.secrets {
            let _ = keys.add_secret(secret, kid.as_deref());
        }
        for (pem, kid) in &self.static_keys.pems {
            let _ = keys.add_pem(pem, kid.as_deref());
        }
        if let Some(jwks) = &self.static_keys.jwks {
            let _ = keys.add_jwks(jwks);
        }
        if keys.add_jwks(&String::from_utf8_lossy(&document)).is_ok() {
            *self.keys.borrow_mut() = keys;
            *remote.version.borrow_mut() = version;
        }
    }

    /// Every token the request carries, from each configured place.
    fn tokens(&self, req: &Request) -> Vec<String> {
        let mut tokens = Vec::new();
        for value in req.header_all(&self.header) {
            if self.header == "authorization" {
                tokens.extend(auth::bearer_of(&value).map(str::to_owned));
            } else {
                tokens.push(value.trim().to_owned());
            }
        }
        if let Some(name) = &self.cookie {
            tokens.extend(cookies::values(req, name));
        }
        if let Some(name) = &self.query {
            tokens.extend(query::raw_values(req, name));
        }
        tokens
    }
}

/// Scopes from the `scope` claim (space-separated) or `scp` (array or string).
fn scopes(claims: &serde_json::Map<String, Value>) -> Vec<String> {
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A claim as header text: strings as they are, numbers and booleans printed, arrays of
/// those joined with commas; objects are not copied.
fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(claim_text)
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
    .filter(|text| fields::is_valid_value(text))
}

/// Fetches the JWKS into the plugin's shared state (document and version).
fn fetch_jwks(remote: &RemoteJwks) -> Result<(), String> {
    let request = http::Request::new("GET", &remote.url).header("accept", "application/json");
    let response =
        http::send(&request).map_err(|e| format!("fetching {}: {}", remote.url, e.describe()))?;
    if response.status != 200 {
        return Err(format!(
            "fetching {}: the server answered {}",
            remote.url, response.status
        ));
    }
    let version = Sha256::digest(&response.body).to_vec();
    // Kept for a day; `jwks:fresh` decides when it is fetched again.
    state::set(JWKS_DOCUMENT, &response.body, 86_400_000);
    state::set(JWKS_VERSION, &version, 86_400_000);
    state::set(JWKS_FRESH, b"1", remote.ttl_ms);
    Ok(())
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .ok()
}
