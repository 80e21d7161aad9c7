//! `rate-limit`: limits requests per consumer, client IP, header value, route, or globally,
//! with the host's atomic GCRA counters (grant `rate-limit`).
//!
//! ```toml
//! { use = "rate-limit", config = { limits = [{ requests = 100, per = "1m" }, { requests = 1000, per = "1h" }],
//!                                  key = ["consumer"], method_cost = { POST = 5 } } }
//! ```
//!
//! - `limits`: each admits a burst of `requests` and refills continuously over `per`; a request
//!   must fit every limit. (When a later limit refuses, the earlier ones have already counted
//!   the request: refused requests count against the budget, never the other way round.)
//! - `key`: what shares a budget: `consumer` (set by an auth plugin; unauthenticated requests
//!   share one `-` budget), `ip` (the client, or with `trusted_proxies` the first untrusted
//!   address from the right of `X-Forwarded-For`), `header:<name>`, `route`, `method`; empty for
//!   one global budget. Budgets are per route unless `name` makes several routes share one.
//! - Refused: `429` with `Retry-After` and the `RateLimit` / `RateLimit-Policy` fields of
//!   draft-ietf-httpapi-ratelimit-headers-09 (also on allowed responses with `headers = true`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use wasmgate_plugin_sdk::rate_limit::{self, Decision};
use wasmgate_plugin_sdk::{
    Action, ConfigError, Context, Hooks, Plugin, Reply, Request, Response, auth, plugin,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    limits: Vec<LimitConfig>,
    #[serde(default)]
    key: Vec<String>,
    /// Budget name shared by routes using it; default: the route.
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "default_cost")]
    cost: u64,
    #[serde(default)]
    method_cost: BTreeMap<String, u64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    /// Add the rate-limit fields to allowed responses too.
    #[serde(default)]
    headers: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitConfig {
    requests: u64,
    /// Window, e.g. `1s`, `1m`, `1h`, `1day`.
    per: String,
}

fn default_cost() -> u64 {
    1
}

enum KeyPart {
    Consumer,
    Ip,
    Header(String),
    Route,
    Method,
}

struct Limit {
    requests: u64,
    window_ms: u64,
    /// The policy's name in the `RateLimit` fields, e.g. `1m`.
    label: String,
}

struct RateLimit {
    limits: Vec<Limit>,
    key: Vec<KeyPart>,
    name: Option<String>,
    cost: u64,
    method_cost: BTreeMap<String, u64>,
    trusted_proxies: Vec<IpNet>,
    headers: bool,
    /// `RateLimit-Policy` value: fixed by the config.
    policy_field: String,
}

const CONTEXT_FIELD: &str = "rate-limit.field";

#[plugin]
impl Plugin for RateLimit {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if config.limits.is_empty() {
            return Err(ConfigError::at(
                "limits",
                "list at least one limit, e.g. [{ requests = 100, per = \"1m\" }]",
            ));
        }
        let mut limits = Vec::new();
        for (i, limit) in config.limits.iter().enumerate() {
            let window = humantime::parse_duration(&limit.per).map_err(|e| {
                ConfigError::at(
                    format!("limits[{i}].per"),
                    format!("`{}` is not a duration ({e})", limit.per),
                )
            })?;
            if window < Duration::from_millis(1) {
                return Err(ConfigError::at(
                    format!("limits[{i}].per"),
                    "must be at least 1ms",
                ));
            }
            if limit.requests == 0 {
                return Err(ConfigError::at(
                    format!("limits[{i}].requests"),
                    "must be at least 1",
                ));
            }
            limits.push(Limit {
                requests: limit.requests,
                window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
                label: limit.per.replace(' ', ""),
            });
        }
        let mut key = Vec::new();
        for (i, part) in config.key.iter().enumerate() {
            key.push(match part.as_str() {
                "consumer" => KeyPart::Consumer,
                "ip" => KeyPart::Ip,
                "route" => KeyPart::Route,
                "method" => KeyPart::Method,
                other => match other.strip_prefix("header:") {
                    Some(name) if !name.is_empty() => KeyPart::Header(name.to_ascii_lowercase()),
                    _ => {
                        return Err(ConfigError::at(
                            format!("key[{i}]"),
                            format!("`{other}` is not a key part (consumer, ip, header:<name>, route, method)"),
                        ));
                    }
                },
            });
        }
        let mut trusted_proxies = Vec::new();
        for (i, net) in config.trusted_proxies.iter().enumerate() {
            let parsed = net
                .parse::<IpNet>()
                .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::at(
                        format!("trusted_proxies[{i}]"),
                        format!("`{net}` is not an IP address or CIDR range"),
                    )
                })?;
            trusted_proxies.push(parsed);
        }
        let policy_field = limits
            .iter()
            .map(|l| {
                format!(
                    "\"{}\";q={};w={}",
                    l.label,
                    l.requests,
                    l.window_ms.div_ceil(1000)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Self {
            limits,
            key,
            name: config.name,
            cost: config.cost,
            method_cost: config
                .method_cost
                .into_iter()
                .map(|(m, c)| (m.to_ascii_uppercase(), c))
                .collect(),
            trusted_proxies,
            headers: config.headers,
            policy_field,
        })
    }

    fn hooks(&self) -> Hooks {
        match self.headers {
            true => Hooks::REQUEST | Hooks::RESPONSE,
            false => Hooks::REQUEST,
        }
    }

    fn on_request(&self, req: &Request, ctx: &Context) -> Action {
        let budget = self.budget(req, ctx);
        let cost = self
            .method_cost
            .get(&req.method())
            .copied()
            .unwrap_or(self.cost);
        let mut tightest: Option<(&Limit, Decision)> = None;
        for (i, limit) in self.limits.iter().enumerate() {
            let decision = rate_limit::check(
                &format!("{budget}|{i}"),
                limit.requests,
                limit.window_ms,
                cost,
            );
            if !decision.allowed {
                return self.refuse(limit, &decision);
            }
            if tightest
                .as_ref()
                .is_none_or(|(_, d)| decision.remaining < d.remaining)
            {
                tightest = Some((limit, decision));
            }
        }
        if self.headers
            && let Some((limit, decision)) = tightest
        {
            ctx.set(CONTEXT_FIELD, &field(limit, &decision));
        }
        Action::Continue
    }

    fn on_response(&self, _req: &Request, resp: &Response, ctx: &Context) {
        if let Some(value) = ctx.get(CONTEXT_FIELD) {
            let _ = resp.set_header("ratelimit-policy", &self.policy_field);
            let _ = resp.set_header("ratelimit", &value);
        }
    }
}

/// The `RateLimit` field for one limit's decision.
fn field(limit: &Limit, decision: &Decision) -> String {
    format!(
        "\"{}\";r={};t={}",
        limit.label,
        decision.remaining,
        decision.reset_ms.div_ceil(1000)
    )
}

impl RateLimit {
    /// The counter key: budget name, then each configured key part.
    fn budget(&self, req: &Request, ctx: &Context) -> String {
        let mut budget = self
            .name
            .clone()
            .unwrap_or_else(|| format!("route:{}", req.route()));
        for part in &self.key {
            budget.push('|');
            let value = match part {
                KeyPart::Consumer => ctx.get(auth::CONSUMER),
                KeyPart::Ip => Some(self.client_ip(req)),
                KeyPart::Header(name) => req.header(name),
                KeyPart::Route => Some(req.route()),
                KeyPart::Method => Some(req.method()),
            };
            budget.push_str(value.as_deref().unwrap_or("-"));
        }
        budget
    }

    /// The client: the connection's address, or, when it is a trusted proxy, the first address
    /// from the right of `X-Forwarded-For` that is not.
    fn client_ip(&self, req: &Request) -> String {
        let peer = req.client_ip();
        let trusted = |ip: &str| {
            ip.parse::<IpAddr>()
                .is_ok_and(|ip| self.trusted_proxies.iter().any(|net| net.contains(&ip)))
        };
        if self.trusted_proxies.is_empty() || !trusted(&peer) {
            return peer;
        }
        let forwarded = req.header_all("x-forwarded-for").join(",");
        forwarded
            .rsplit(',')
            .map(str::trim)
            .find(|hop| !trusted(hop))
            .map(str::to_owned)
            .unwrap_or(peer)
    }

    fn refuse(&self, limit: &Limit, decision: &Decision) -> Action {
        let retry_after = decision.retry_after_ms.div_ceil(1000).max(1);
        let body = serde_json::json!({
            "error": "rate_limited",
            "error_description": format!("limit of {} per {} reached", limit.requests, limit.label),
            "retry_after": retry_after,
        });
        Action::respond(
            Reply::new(429)
                .header("retry-after", retry_after.to_string())
                .header("ratelimit-policy", self.policy_field.as_str())
                .header("ratelimit", field(limit, decision))
                .json(&body),
        )
    }
}
