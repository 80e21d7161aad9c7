//! `waf`: a web application firewall that runs ModSecurity rules — the OWASP Core Rule Set
//! unchanged, or wasmgate's own small built-in set — on the `wasmgate-seclang` engine.
//!
//! ```toml
//! { use = "waf",
//!   # The OWASP CRS from Debian's modsecurity-crs package (any CRS 3.3 or 4.x directory works):
//!   config_files = { rules = ["/etc/modsecurity/crs/crs-setup.conf",
//!                             "/usr/share/modsecurity-crs/rules/*.conf",
//!                             "/usr/share/modsecurity-crs/rules/*.data"] },
//!   config = {
//!     mode = "block",            # or "detect": log, never block
//!     paranoia = 1,              # 1 (default) to 4
//!     threshold = 5,             # inbound anomaly score that blocks
//!     max_body = 1048576,        # bytes of request body inspected; larger bodies get 413
//!     exclude = [{ id = 942100, target = "ARGS:q" }, { tag = "attack-xss", target = "ARGS:html" }, { id = 920350 }],
//!     tx = { allowed_methods = "GET HEAD POST PUT PATCH DELETE OPTIONS" },
//!     rules_text = 'SecRule ARGS "@rx (?i)sqlmap" "id:100001,phase:2,deny,msg:\'scanner\'"',
//! } }
//! ```
//!
//! Without `rules`, the built-in rule set (`rules/builtin.conf`) runs. Every block and
//! detection is one audit line with the rule ids, their messages and the targets they matched
//! (never the values).

use serde::Deserialize;
use wasmgate_plugin_sdk::{
    Action, Bodies, ConfigError, Context, Plugin, Reply, Request, log, plugin,
};
use wasmgate_seclang::{Builder, Outcome, RuleSet};

mod setup;

#[cfg(test)]
mod corpus;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    mode: Mode,
    #[serde(default = "default_paranoia")]
    paranoia: u8,
    #[serde(default = "default_threshold")]
    threshold: u32,
    #[serde(default = "default_max_body")]
    max_body: u64,
    /// Rule files, in order (from `config_files`): `{ path, text }`.
    #[serde(default)]
    rules: Option<Vec<RuleFile>>,
    #[serde(default)]
    rules_text: Option<String>,
    #[serde(default)]
    exclude: Vec<setup::Exclusion>,
    /// `TX` variables set before the rules run (CRS tuning: allowed methods, content types…).
    #[serde(default)]
    tx: std::collections::BTreeMap<String, TxValue>,
    /// The API defaults (JSON and XML bodies parsed into arguments, body errors refused);
    /// on unless turned off.
    #[serde(default = "yes")]
    api_defaults: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TxValue {
    Text(String),
    Number(i64),
}

impl TxValue {
    fn text(&self) -> String {
        match self {
            TxValue::Text(t) => t.clone(),
            TxValue::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    path: String,
    text: String,
}

fn yes() -> bool {
    true
}

fn default_paranoia() -> u8 {
    1
}

fn default_threshold() -> u32 {
    5
}

fn default_max_body() -> u64 {
    1 << 20
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    #[default]
    Block,
    Detect,
}

struct Waf {
    rules: RuleSet,
    mode: Mode,
    max_body: u64,
}

/// The built-in rule set, used when no rule files are configured.
const BUILTIN: &str = include_str!("../rules/builtin.conf");

#[plugin]
impl Plugin for Waf {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        let rules = rule_set(&config).map_err(|(key, message)| ConfigError::at(key, message))?;
        for limitation in rules.limitations() {
            log::info(&format!("waf: {limitation}"));
        }
        warm_up(&rules);
        Ok(Self {
            rules,
            mode: config.mode,
            max_body: config.max_body,
        })
    }

    fn bodies(&self) -> Bodies {
        Bodies::request(self.max_body)
    }

    fn on_request(&self, req: &Request, _ctx: &Context) -> Action {
        let method = req.method();
        let target = match req.query() {
            Some(q) => format!("{}?{q}", req.path()),
            None => req.path(),
        };
        let mut owned: Vec<(String, String)> = Vec::new();
        for name in req.header_names() {
            for value in req.header_all(&name) {
                owned.push((name.clone(), value));
            }
        }
        let body = req.body();
        let client = req.client_ip();
        let request_id = req.header("x-request-id").unwrap_or_default();
        let input = wasmgate_seclang::Request {
            method: method.as_bytes(),
            target: target.as_bytes(),
            protocol: b"HTTP/1.1",
            headers: owned
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect(),
            body: body.as_deref(),
            remote_addr: &client,
            remote_port: 0,
            server_port: 0,
            unique_id: &request_id,
        };
        let outcome = self.rules.evaluate(&input);
        if outcome.matched.is_empty() && outcome.intervention.is_none() {
            return Action::Continue;
        }
        audit(&outcome, &request_id, self.mode);
        let Some(intervention) = outcome.intervention else {
            return Action::Continue;
        };
        if intervention.status == 413 {
            return Action::respond(Reply::problem(
                413,
                "Payload Too Large",
                "the request body is larger than the web application firewall inspects",
            ));
        }
        if let Some(location) = intervention.location {
            return Action::respond(Reply::new(intervention.status).header("location", location));
        }
        let status = intervention.status;
        let body = serde_json::json!({
            "error": if status == 400 { "bad_request" } else { "forbidden" },
            "message": "the request was blocked by the web application firewall",
            "request_id": request_id,
        });
        Action::respond(Reply::new(status).json(&body))
    }
}

/// Runs two ordinary requests through freshly compiled rules, so that the regex engines'
/// lazily built automata hold the states common traffic needs before the first real request
/// (whose hook call would otherwise pay for them against its deadline). Their outcome is
/// discarded and nothing is logged.
fn warm_up(rules: &RuleSet) {
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b"host", b"api.example.com"),
        (
            b"user-agent",
            b"Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
        ),
        (b"accept", b"application/json"),
        (b"content-type", b"application/json"),
    ];
    let get = wasmgate_seclang::Request {
        method: b"GET",
        target: b"/api/items?page=2&sort=name&q=blue+shoes",
        protocol: b"HTTP/1.1",
        headers: headers[..3].to_vec(),
        remote_addr: "192.0.2.1",
        ..Default::default()
    };
    let post = wasmgate_seclang::Request {
        method: b"POST",
        target: b"/api/orders",
        headers,
        body: Some(br#"{"customer":{"name":"Ada Lovelace","email":"ada@example.com"},"items":[{"sku":"A-1","qty":2,"note":"Leave it at the door, please."}]}"#),
        ..get.clone()
    };
    let _ = rules.evaluate(&get);
    let _ = rules.evaluate(&post);
}

/// Compiles the configured rule set; an error names the config key and says what is wrong.
fn rule_set(config: &Config) -> Result<RuleSet, (String, String)> {
    let err = |key: &str, message: String| (key.to_owned(), message);
    if !(1..=4).contains(&config.paranoia) {
        return Err(err("paranoia", "must be 1, 2, 3 or 4".into()));
    }
    if config.threshold == 0 {
        return Err(err("threshold", "must be at least 1".into()));
    }
    let mut tx = Vec::new();
    for (name, value) in &config.tx {
        setup::check_tx_name(name).map_err(|e| err(&format!("tx.{name}"), e))?;
        tx.push((name.clone(), value.text()));
    }
    let preamble = setup::preamble(&setup::Preamble {
        detect: config.mode == Mode::Detect,
        paranoia: config.paranoia,
        threshold: config.threshold,
        max_body: config.max_body,
        api_defaults: config.api_defaults,
        tx: &tx,
    });
    let files: &[RuleFile] = config.rules.as_deref().unwrap_or_default();
    let lookup = |path: &str| -> Result<String, String> {
        files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.text.clone())
            .ok_or_else(|| {
                format!("`{path}` is not among the rule files given (add it to config_files)")
            })
    };
    let mut builder = Builder::new(&lookup);
    let mut add = |name: &str, text: &str, key: &str| {
        builder
            .add(name, text)
            .map(|_| ())
            .map_err(|e| err(key, e.to_string()))
    };
    add("wasmgate-setup.conf", &preamble, "paranoia")?;
    let data_file = |p: &str| !p.ends_with(".conf");
    if files.iter().all(|f| data_file(&f.path)) {
        add("builtin.conf", BUILTIN, "rules")?;
    }
    for f in files.iter().filter(|f| !data_file(&f.path)) {
        add(&f.path, &f.text, "rules")?;
    }
    if let Some(text) = &config.rules_text {
        add("rules_text", text, "rules_text")?;
    }
    for (i, e) in config.exclude.iter().enumerate() {
        let key = format!("exclude[{i}]");
        let text = e.to_seclang().map_err(|m| err(&key, m))?;
        add(&key, &text, &key)?;
    }
    builder.build().map_err(|e| err("rules", e.to_string()))
}

/// One audit line per request with matches: rule ids, messages and targets, never values.
fn audit(outcome: &Outcome, request_id: &str, mode: Mode) {
    let matched: Vec<String> = outcome
        .matched
        .iter()
        .map(|m| format!("{} \"{}\" at {}", m.id, m.msg.replace('"', "'"), m.target))
        .collect();
    let verdict = match (&outcome.intervention, &outcome.would_intervene, mode) {
        (Some(i), _, _) => format!("blocked by {}", i.rule),
        (None, Some(i), _) => format!("detected (detect mode, not blocked) by {}", i.rule),
        (None, None, _) => "below threshold".to_owned(),
    };
    let line = format!(
        "waf {verdict}: request_id={request_id} score={} rules=[{}]",
        outcome.anomaly_score,
        matched.join(", ")
    );
    if outcome.intervention.is_some() || outcome.would_intervene.is_some() {
        log::warn(&line);
    } else {
        log::info(&line);
    }
}
