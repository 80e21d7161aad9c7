//! `waf`: a web application firewall with OWASP-style rules, anomaly scoring and paranoia
//! levels.
//!
//! ```toml
//! { use = "waf", config = {
//!     mode = "block",            # or "detect": log, never block
//!     paranoia = 1,              # 1 (default) to 4: higher catches more, with more false positives
//!     threshold = 5,             # anomaly score that blocks; one critical match scores 5
//!     max_body = 1048576,        # bytes of request body inspected; larger bodies get 413
//!     exclusions = [{ rule = 942100, target = "args:q" }, { category = "xss", target = "body:/html" }],
//!     rules = [{ id = 100001, pattern = "(?i)sqlmap|nikto", targets = ["header:user-agent"], message = "scanner" }],
//! } }
//! ```
//!
//! Inspected: the path, query parameter names and values, header values (not credentials),
//! cookies, and the body (form fields, JSON strings and keys, or the whole body for other
//! types), each normalised first (see `normalize`). Every matching rule adds its score; at the
//! threshold the request is refused with 403 and a JSON body carrying the request id. Every
//! block and detection is written to the log as one audit line with the rule ids and the
//! targets they matched (never the values).

mod engine;
mod inspect;
mod normalize;
mod rules;

#[cfg(test)]
mod corpus;

use serde::Deserialize;
use wasmgate_plugin_sdk::{
    Action, Bodies, ConfigError, Context, Plugin, Reply, Request, log, plugin,
};

use engine::{Engine, Exclusion, Finding, UserRule};
use rules::Category;

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
    #[serde(default)]
    exclusions: Vec<ExclusionConfig>,
    #[serde(default)]
    rules: Vec<RuleConfig>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExclusionConfig {
    rule: Option<u32>,
    category: Option<Category>,
    target: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    id: u32,
    pattern: String,
    #[serde(default = "all_targets")]
    targets: Vec<String>,
    #[serde(default)]
    severity: Severity,
    #[serde(default = "default_paranoia")]
    paranoia: u8,
    message: Option<String>,
}

fn all_targets() -> Vec<String> {
    TARGET_KINDS.iter().map(|k| (*k).to_owned()).collect()
}

/// Target kinds, as written in configs.
const TARGET_KINDS: &[&str] = &[
    "path",
    "args",
    "args-names",
    "header",
    "cookie",
    "body",
    "body-names",
];

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Severity {
    #[default]
    Critical,
    Error,
    Warning,
    Notice,
}

impl Severity {
    fn score(self) -> u32 {
        match self {
            Severity::Critical => rules::CRITICAL,
            Severity::Error => rules::ERROR,
            Severity::Warning => rules::WARNING,
            Severity::Notice => rules::NOTICE,
        }
    }
}

fn check_target(key: String, target: &str) -> Result<(), ConfigError> {
    let kind = target.split(':').next().unwrap_or("");
    if TARGET_KINDS.contains(&kind) {
        return Ok(());
    }
    Err(ConfigError::at(
        key,
        format!(
            "`{target}` is not a target: use one of {} (optionally `:<name>`)",
            TARGET_KINDS.join(", ")
        ),
    ))
}

struct Waf {
    engine: Engine,
    mode: Mode,
    threshold: u32,
    max_body: u64,
}

#[plugin]
impl Plugin for Waf {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if !(1..=4).contains(&config.paranoia) {
            return Err(ConfigError::at("paranoia", "must be 1, 2, 3 or 4"));
        }
        if config.threshold == 0 {
            return Err(ConfigError::at("threshold", "must be at least 1"));
        }
        let mut exclusions = Vec::new();
        for (i, e) in config.exclusions.into_iter().enumerate() {
            if e.rule.is_none() && e.category.is_none() {
                return Err(ConfigError::at(
                    format!("exclusions[{i}]"),
                    "name a `rule` or a `category`",
                ));
            }
            if let Some(target) = &e.target {
                check_target(format!("exclusions[{i}].target"), target)?;
            }
            exclusions.push(Exclusion {
                rule: e.rule,
                category: e.category,
                target: e.target,
            });
        }
        let mut user = Vec::new();
        for (i, r) in config.rules.into_iter().enumerate() {
            let at = |field: &str| format!("rules[{i}].{field}");
            if r.id < 100_000 {
                return Err(ConfigError::at(
                    at("id"),
                    "user rule ids start at 100000 (lower ids are built-in)",
                ));
            }
            if let Err(e) = regex::bytes::RegexBuilder::new(&r.pattern)
                .unicode(false)
                .build()
            {
                return Err(ConfigError::at(at("pattern"), e.to_string()));
            }
            for (j, t) in r.targets.iter().enumerate() {
                check_target(format!("rules[{i}].targets[{j}]"), t)?;
            }
            if !(1..=4).contains(&r.paranoia) {
                return Err(ConfigError::at(at("paranoia"), "must be 1, 2, 3 or 4"));
            }
            user.push(UserRule {
                id: r.id,
                message: r.message.unwrap_or_else(|| format!("user rule {}", r.id)),
                pattern: r.pattern,
                score: r.severity.score(),
                paranoia: r.paranoia,
                targets: r.targets,
            });
        }
        let engine = Engine::new(config.paranoia, user, exclusions).map_err(ConfigError::new)?;
        Ok(Self {
            engine,
            mode: config.mode,
            threshold: config.threshold,
            max_body: config.max_body,
        })
    }

    fn bodies(&self) -> Bodies {
        Bodies::request(self.max_body)
    }

    fn on_request(&self, req: &Request, _ctx: &Context) -> Action {
        let findings = inspect::inspect(&self.engine, req);
        if findings.is_empty() {
            return Action::Continue;
        }
        let score: u32 = findings.iter().map(|f| f.score).sum();
        let block = self.mode == Mode::Block && score >= self.threshold;
        let request_id = req.header("x-request-id").unwrap_or_default();
        audit(
            &self.engine,
            &findings,
            score,
            self.threshold,
            block,
            &request_id,
            self.mode,
        );
        if !block {
            return Action::Continue;
        }
        let body = serde_json::json!({
            "error": "forbidden",
            "message": "the request was blocked by the web application firewall",
            "request_id": request_id,
        });
        Action::respond(Reply::new(403).json(&body))
    }
}

/// One audit line per request with findings: rule ids, categories and targets, never values.
fn audit(
    engine: &Engine,
    findings: &[Finding],
    score: u32,
    threshold: u32,
    blocked: bool,
    request_id: &str,
    mode: Mode,
) {
    let matched: Vec<String> = findings
        .iter()
        .map(|f| {
            let (id, category, target) = (f.rule, f.category.as_str(), &f.target);
            format!("{id} {category} \"{}\" at {target}", engine.message(id))
        })
        .collect();
    let outcome = match (blocked, mode) {
        (true, _) => "blocked",
        (false, Mode::Detect) if score >= threshold => "detected (detect mode, not blocked)",
        (false, _) => "below threshold",
    };
    let line = format!(
        "waf {outcome}: request_id={request_id} score={score} threshold={threshold} rules=[{}]",
        matched.join(", ")
    );
    if blocked || score >= threshold {
        log::warn(&line);
    } else {
        log::info(&line);
    }
}
