//! Compiled rules: variables, operator, transformations and actions, ready to evaluate.

use std::sync::Arc;

use crate::macros::MacroString;
use crate::operator::{self, Operator};
use crate::parse::{self, Origin, RawAction};
use crate::transform::Transform;
use crate::variable::{self, Collection, Selector, Variable};

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disruptive {
    Pass,
    /// `block`: whatever the phase's `SecDefaultAction` says.
    Block,
    Deny,
    Drop,
    Redirect(String),
    Allow(AllowScope),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowScope {
    /// `allow`: no more rules for this transaction (request and response).
    All,
    /// `allow:phase`: no more rules in this phase.
    Phase,
    /// `allow:request`: no more rules in the request phases.
    Request,
}

/// `setvar:` — `tx.name=value`, `tx.name=+5`, `tx.name=-5`, `!tx.name`.
#[derive(Clone, Debug)]
pub struct SetVar {
    pub collection: Collection,
    pub name: MacroString,
    pub op: SetOp,
}

#[derive(Clone, Debug)]
pub enum SetOp {
    Set(MacroString),
    Add(MacroString),
    Sub(MacroString),
    Delete,
}

/// `ctl:` — changes that apply to the rest of the transaction.
#[derive(Clone, Debug)]
pub enum Ctl {
    RuleRemoveById(Vec<(u32, u32)>),
    RuleRemoveByTag(String),
    RuleRemoveTargetById(Vec<(u32, u32)>, TargetRef),
    RuleRemoveTargetByTag(String, TargetRef),
    RuleEngine(EngineMode),
    RequestBodyProcessor(BodyProcessor),
    RequestBodyAccess(bool),
    ForceRequestBodyVariable(bool),
    /// Audit-log settings: wasmgate writes its own audit line, so these change nothing.
    AuditLog,
}

/// A target named by `ctl:ruleRemoveTarget*` or `SecRuleUpdateTarget*`: `ARGS:q` or `ARGS`.
#[derive(Clone, Debug)]
pub struct TargetRef {
    pub collection: Collection,
    pub selector: Selector,
}

impl TargetRef {
    pub fn parse(text: &str) -> Result<TargetRef, String> {
        let raw = parse::variables(text)?;
        let [v] = raw.as_slice() else {
            return Err(format!("`{text}` must name one target"));
        };
        let collection = Collection::from_name(&v.name)
            .ok_or_else(|| format!("unknown variable `{}`", v.name))?;
        Ok(TargetRef {
            collection,
            selector: variable::selector(collection, v.selector.as_deref())?,
        })
    }

    pub fn covers(&self, collection: Collection, key: &[u8]) -> bool {
        self.collection == collection && self.selector.matches_key(key)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineMode {
    /// The default of [`crate::Settings`].
    #[default]
    On,
    DetectionOnly,
    Off,
}

impl EngineMode {
    pub fn parse(v: &str) -> Result<EngineMode, String> {
        match v.to_ascii_lowercase().as_str() {
            "on" => Ok(EngineMode::On),
            "detectiononly" => Ok(EngineMode::DetectionOnly),
            "off" => Ok(EngineMode::Off),
            _ => Err(format!("`{v}` is not On, Off or DetectionOnly")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyProcessor {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
}

impl BodyProcessor {
    pub fn parse(v: &str) -> Result<BodyProcessor, String> {
        match v.to_ascii_uppercase().as_str() {
            "URLENCODED" => Ok(BodyProcessor::UrlEncoded),
            "MULTIPART" => Ok(BodyProcessor::Multipart),
            "JSON" => Ok(BodyProcessor::Json),
            "XML" => Ok(BodyProcessor::Xml),
            _ => Err(format!("unknown request body processor `{v}`")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BodyProcessor::UrlEncoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }
}

/// The operator of a rule: compiled at load time, or (when its argument has macros)
/// compiled on first use per expanded argument.
#[derive(Debug)]
pub enum RuleOperator {
    Static(Operator),
    Dynamic { name: String, arg: MacroString },
}

/// One rule (or one link of a chain).
#[derive(Debug)]
pub struct Rule {
    pub id: u32,
    pub phase: u8,
    pub origin: Origin,
    pub variables: Vec<Variable>,
    /// `!VAR` entries and `SecRuleUpdateTargetById` removals.
    pub exclusions: Vec<TargetRef>,
    pub operator: RuleOperator,
    pub negated: bool,
    pub transforms: Arc<[Transform]>,
    /// Index into the rule set's table of distinct transformation chains.
    pub chain_id: usize,
    /// The chain the literal prefilter scans values under: `chain_id` without a trailing
    /// `lowercase` (the prefilter ignores ASCII case), so `t:lowercase` rules share the scans
    /// of `t:none` ones and lower-case a value only when their operator runs.
    pub scan_chain: usize,
    /// This link's bit in its scan chain's literal prefilter (see `prefilter`), if it has one.
    pub prefilter: Option<u32>,
    /// With a prefilter: the stores of every value the link's variables can yield (see
    /// `data::stores`), so a link whose strings no value of those stores contains is
    /// skipped without collecting values. None: some variable is not from a store.
    pub stores: Option<Vec<u8>>,
    pub multi_match: bool,
    pub capture: bool,
    pub setvars: Vec<SetVar>,
    pub ctls: Vec<Ctl>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub skip_after: Option<String>,
    pub skip: u32,
    pub msg: Option<MacroString>,
    pub logdata: Option<MacroString>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    /// `log`/`nolog`; None: the phase default.
    pub log: Option<bool>,
    pub chained: Option<Box<Rule>>,
    /// `SecAction`: no variables, always matches.
    pub unconditional: bool,
}

/// The actions of one rule, before they are attached to a rule.
#[derive(Default)]
pub struct Actions {
    pub id: Option<u32>,
    pub phase: Option<u8>,
    pub transforms: Vec<Transform>,
    pub reset_transforms: bool,
    pub multi_match: bool,
    pub capture: bool,
    pub setvars: Vec<SetVar>,
    pub ctls: Vec<Ctl>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub skip_after: Option<String>,
    pub skip: u32,
    pub msg: Option<MacroString>,
    pub logdata: Option<MacroString>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub log: Option<bool>,
    pub chain: bool,
}

/// Reads an action list. Unknown actions are errors; actions that only feed ModSecurity's
/// own logs or persistent storage are accepted and have no effect (listed in the crate docs).
pub fn actions(list: &str) -> Result<Actions, String> {
    let mut a = Actions::default();
    for RawAction { name, value } in parse::actions(list)? {
        let value_or = |what: &str| {
            value
                .clone()
                .ok_or_else(|| format!("action `{name}` needs a value ({what})"))
        };
        match name.to_ascii_lowercase().as_str() {
            "id" => {
                let v = value_or("a number")?;
                a.id = Some(v.parse().map_err(|_| format!("`id:{v}` is not a number"))?);
            }
            "phase" => {
                let v = value_or("1-5")?;
                a.phase = Some(match v.to_ascii_lowercase().as_str() {
                    "request" => 2,
                    "response" => 4,
                    "logging" => 5,
                    n => n
                        .parse()
                        .ok()
                        .filter(|p| (1..=5).contains(p))
                        .ok_or_else(|| format!("`phase:{v}` is not 1-5"))?,
                });
            }
            "t" => {
                let v = value_or("a transformation")?;
                if v.eq_ignore_ascii_case("none") {
                    a.transforms.clear();
                    a.reset_transforms = true;
                } else {
                    let t = Transform::from_name(&v)
                        .ok_or_else(|| format!("unsupported transformation `t:{v}`"))?;
                    a.transforms.push(t);
                }
            }
            "multimatch" => a.multi_match = true,
            "capture" => a.capture = true,
            "chain" => a.chain = true,
            "setvar" => a.setvars.push(setvar(&value_or("tx.name=value")?)?),
            "ctl" => a.ctls.push(ctl(&value_or("setting=value")?)?),
            "pass" => a.disruptive = Some(Disruptive::Pass),
            "block" => a.disruptive = Some(Disruptive::Block),
            "deny" => a.disruptive = Some(Disruptive::Deny),
            "drop" => a.disruptive = Some(Disruptive::Drop),
            "redirect" => a.disruptive = Some(Disruptive::Redirect(value_or("a URL")?)),
            "allow" => {
                let scope = match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None => AllowScope::All,
                    Some("phase") => AllowScope::Phase,
                    Some("request") => AllowScope::Request,
                    Some(v) => return Err(format!("`allow:{v}` is not phase or request")),
                };
                a.disruptive = Some(Disruptive::Allow(scope));
            }
            "status" => {
                let v = value_or("an HTTP status")?;
                a.status = Some(
                    v.parse()
                        .map_err(|_| format!("`status:{v}` is not a status"))?,
                );
            }
            "skipafter" => a.skip_after = Some(value_or("a marker")?),
            "skip" => {
                let v = value_or("a count")?;
                a.skip = v
                    .parse()
                    .map_err(|_| format!("`skip:{v}` is not a number"))?;
            }
            "msg" => a.msg = Some(MacroString::parse(&value_or("text")?)?),
            "logdata" => a.logdata = Some(MacroString::parse(&value_or("text")?)?),
            "tag" => a.tags.push(value_or("text")?),
            "severity" => a.severity = Some(severity(&value_or("a severity")?)?),
            "log" => a.log = Some(true),
            "nolog" => a.log = Some(false),
            // Metadata and side channels with no effect on the verdict: ModSecurity's audit
            // log and persistent collections, environment variables for the web server.
            "auditlog"
            | "noauditlog"
            | "ver"
            | "rev"
            | "maturity"
            | "accuracy"
            | "expirevar"
            | "initcol"
            | "setenv"
            | "setuid"
            | "setsid"
            | "sanitisearg"
            | "sanitisematched"
            | "sanitizearg"
            | "sanitizematched"
            | "sanitisematchedbytes"
            | "sanitizematchedbytes"
            | "deprecatevar"
            | "append"
            | "prepend"
            | "xmlns"
            | "exec"
            | "proxy"
            | "pause" => {}
            other => return Err(format!("unsupported action `{other}`")),
        }
    }
    Ok(a)
}

fn severity(v: &str) -> Result<u8, String> {
    let n = match v.to_ascii_uppercase().as_str() {
        "EMERGENCY" => 0,
        "ALERT" => 1,
        "CRITICAL" => 2,
        "ERROR" => 3,
        "WARNING" => 4,
        "NOTICE" => 5,
        "INFO" => 6,
        "DEBUG" => 7,
        n => n
            .parse()
            .ok()
            .filter(|n| *n <= 7)
            .ok_or_else(|| format!("unknown severity `{v}`"))?,
    };
    Ok(n)
}

fn setvar(v: &str) -> Result<SetVar, String> {
    let (delete, body) = match v.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (target, value) = match body.split_once('=') {
        Some((t, val)) => (t, Some(val)),
        None => (body, None),
    };
    let (coll, name) = target
        .split_once('.')
        .ok_or_else(|| format!("`setvar:{v}` must name collection.variable"))?;
    let collection = Collection::from_name(coll.trim())
        .filter(|c| matches!(c, Collection::Tx | Collection::Persistent(_)))
        .ok_or_else(|| {
            format!("`setvar:{v}`: `{coll}` is not TX, IP, GLOBAL, SESSION, USER or RESOURCE")
        })?;
    let name = MacroString::parse(name.trim())?;
    let op = match (delete, value) {
        (true, _) => SetOp::Delete,
        (false, None) => SetOp::Set(MacroString::parse("1")?),
        (false, Some(val)) => {
            if let Some(n) = val.strip_prefix('+') {
                SetOp::Add(MacroString::parse(n)?)
            } else if let Some(n) = val.strip_prefix('-') {
                SetOp::Sub(MacroString::parse(n)?)
            } else {
                SetOp::Set(MacroString::parse(val)?)
            }
        }
    };
    Ok(SetVar {
        collection,
        name,
        op,
    })
}

/// `942100`, `942100-942199`, `1,2,3`.
pub fn id_ranges(v: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    for part in v.split([',', ' ']).filter(|p| !p.is_empty()) {
        let bad = || format!("`{part}` is not a rule id or id range");
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part.trim(), part.trim()),
        };
        let lo: u32 = lo.parse().map_err(|_| bad())?;
        let hi: u32 = hi.parse().map_err(|_| bad())?;
        out.push((lo.min(hi), lo.max(hi)));
    }
    if out.is_empty() {
        return Err("no rule id given".to_owned());
    }
    Ok(out)
}

fn ctl(v: &str) -> Result<Ctl, String> {
    let (key, val) = v
        .split_once('=')
        .ok_or_else(|| format!("`ctl:{v}` must be setting=value"))?;
    let on_off = |val: &str| match val.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`ctl:{v}`: expected On or Off")),
    };
    let split_target = |val: &str| -> Result<(String, TargetRef), String> {
        let (what, target) = val
            .split_once(';')
            .ok_or_else(|| format!("`ctl:{v}` must be <rule>;<target>"))?;
        Ok((what.to_owned(), TargetRef::parse(target)?))
    };
    Ok(match key.to_ascii_lowercase().as_str() {
        "ruleremovebyid" => Ctl::RuleRemoveById(id_ranges(val)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(val.to_owned()),
        "ruleremovetargetbyid" => {
            let (ids, target) = split_target(val)?;
            Ctl::RuleRemoveTargetById(id_ranges(&ids)?, target)
        }
        "ruleremovetargetbytag" => {
            let (tag, target) = split_target(val)?;
            Ctl::RuleRemoveTargetByTag(tag, target)
        }
        "ruleengine" => Ctl::RuleEngine(EngineMode::parse(val)?),
        "requestbodyprocessor" => Ctl::RequestBodyProcessor(BodyProcessor::parse(val)?),
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(val)?),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(val)?),
        "auditlogparts" | "auditengine" => Ctl::AuditLog,
        other => return Err(format!("unsupported `ctl:{other}`")),
    })
}

/// Compiles the variables of a rule into targets and exclusions.
pub fn variables(list: &str) -> Result<(Vec<Variable>, Vec<TargetRef>), String> {
    let mut vars = Vec::new();
    let mut exclusions = Vec::new();
    for raw in parse::variables(list)? {
        let collection = Collection::from_name(&raw.name)
            .ok_or_else(|| format!("unsupported variable `{}`", raw.name))?;
        let selector = variable::selector(collection, raw.selector.as_deref())?;
        if raw.exclude {
            exclusions.push(TargetRef {
                collection,
                selector,
            });
        } else {
            vars.push(Variable {
                collection,
                selector,
                count: raw.count,
            });
        }
    }
    Ok((vars, exclusions))
}

/// Compiles the operator text of a rule.
pub fn rule_operator(
    text: &str,
    load_file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(RuleOperator, bool), String> {
    let raw = parse::operator(text);
    let arg = MacroString::parse(&raw.arg);
    // A regex may legitimately contain `%{` only as a macro; anything else that fails to
    // parse as a macro is taken literally.
    let op = match arg {
        Ok(m) if m.constant().is_none() => RuleOperator::Dynamic {
            name: raw.name.clone(),
            arg: m,
        },
        _ => RuleOperator::Static(operator::compile(&raw.name, &raw.arg, load_file)?),
    };
    Ok((op, raw.negated))
}
