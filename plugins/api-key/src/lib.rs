//! `api-key`: authenticates callers by an API key in a header or a query parameter.
//!
//! Keys are configured as SHA-256 hashes (`printf %s "$KEY" | sha256sum`), never in plain text,
//! each mapped to a consumer name. The presented key is hashed and compared with every
//! configured hash in constant time. On success the consumer goes into the request context
//! (`consumer`) and, if configured, into a request header for the upstream; a client-sent copy
//! of that header is always removed first, so it cannot be spoofed.
//!
//! ```toml
//! { use = "api-key", config = { keys = [{ consumer = "alice", sha256 = "9f86d0…" }] } }
//! ```

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wasmgate_plugin_sdk::auth::{self, OnMissing};
use wasmgate_plugin_sdk::{Action, ConfigError, Context, Plugin, Request, fields, plugin, query};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The accepted keys.
    keys: Vec<KeyConfig>,
    /// Header carrying the key.
    #[serde(default = "default_header")]
    header: String,
    /// Query parameter carrying the key (off unless set: URLs end up in logs).
    #[serde(default)]
    query: Option<String>,
    /// Request header that tells the upstream who the consumer is (`""` for none).
    #[serde(default = "auth::default_consumer_header")]
    consumer_header: String,
    /// Remove the key from the request before it goes upstream.
    #[serde(default = "default_true")]
    hide_credentials: bool,
    /// What to do without a key: `reject` (401) or `continue`.
    #[serde(default)]
    on_missing: OnMissing,
    /// Realm in the `WWW-Authenticate` challenge.
    #[serde(default = "auth::default_realm")]
    realm: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfig {
    consumer: String,
    /// Hex SHA-256 of the key.
    sha256: String,
}

fn default_header() -> String {
    "x-api-key".into()
}
fn default_true() -> bool {
    true
}

struct ApiKey {
    keys: Vec<([u8; 32], String)>,
    header: String,
    query: Option<String>,
    consumer_header: Option<String>,
    hide_credentials: bool,
    on_missing: OnMissing,
    challenge: String,
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[plugin]
impl Plugin for ApiKey {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if config.keys.is_empty() {
            return Err(ConfigError::at("keys", "list at least one key"));
        }
        let mut keys = Vec::new();
        for (i, key) in config.keys.into_iter().enumerate() {
            let hash = parse_hash(&key.sha256).ok_or_else(|| {
                ConfigError::at(format!("keys[{i}].sha256"), "must be 64 hex digits: the SHA-256 of the key (printf %s \"$KEY\" | sha256sum)")
            })?;
            if key.consumer.is_empty() {
                return Err(ConfigError::at(
                    format!("keys[{i}].consumer"),
                    "must not be empty",
                ));
            }
            keys.push((hash, key.consumer));
        }
        fields::check_name(&config.header).map_err(|e| ConfigError::at("header", e))?;
        let consumer_header = auth::consumer_header(&config.consumer_header)
            .map_err(|e| ConfigError::at("consumer_header", e))?;
        Ok(Self {
            keys,
            header: config.header,
            query: config.query,
            consumer_header,
            hide_credentials: config.hide_credentials,
            on_missing: config.on_missing,
            challenge: format!("ApiKey realm={}", auth::quoted(&config.realm)),
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
        let presented = req.header(&self.header).or_else(|| self.key_in_query(req));
        let Some(presented) = presented.filter(|k| !k.is_empty()) else {
            return match self.on_missing {
                OnMissing::Continue => Action::Continue,
                OnMissing::Reject => Action::respond(auth::challenge_reply(
                    401,
                    &self.challenge,
                    "missing_api_key",
                    "no API key in the request",
                )),
            };
        };
        let Some(consumer) = self.consumer_of(&presented) else {
            return Action::respond(auth::challenge_reply(
                401,
                &self.challenge,
                "invalid_api_key",
                "the API key is not valid",
            ));
        };
        auth::set_consumer(ctx, consumer, "api-key", &[]);
        if let Some(name) = &self.consumer_header {
            let _ = req.set_header(name, consumer);
        }
        if self.hide_credentials {
            let _ = req.remove_header(&self.header);
        }
        Action::Continue
    }
}

impl ApiKey {
    /// The consumer whose key hashes to the presented key's hash. Every configured hash is
    /// compared, in constant time, so timing reveals neither the key nor its position.
    fn consumer_of(&self, presented: &str) -> Option<&str> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (candidate, consumer) in &self.keys {
            if bool::from(candidate.ct_eq(&hash)) {
                found = Some(consumer.as_str());
            }
        }
        found
    }

    fn key_in_query(&self, req: &Request) -> Option<String> {
        let name = self.query.as_deref()?;
        query::raw_values(req, name).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_parse_from_hex() {
        let h =
            super::parse_hash("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
                .unwrap();
        assert_eq!(h[0], 0x9f);
        assert_eq!(h[31], 0x08);
        assert!(super::parse_hash("9f86").is_none());
        assert!(super::parse_hash(&"zz".repeat(32)).is_none());
    }
}
