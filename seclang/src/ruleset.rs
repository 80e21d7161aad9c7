//! Loading: directives from rule files into one compiled [`RuleSet`], with every
//! configuration-time exception (`SecRuleRemoveById`, `SecRuleUpdateTargetById`, …) applied.
//!
//! A directive, variable, operator, transformation or action the engine does not support is a
//! load error naming the file and line: a rule set never loads with a rule silently missing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::operator::Operator;
use crate::parse::{self, Directive, Origin};
use crate::prefilter::Prefilter;
use crate::rule::{self, Actions, Disruptive, EngineMode, Rule, RuleOperator, TargetRef};
use crate::transform::Transform;

/// A load error: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub origin: Option<Origin>,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            Some(o) => write!(f, "{o}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// One entry of a phase's rule list.
#[derive(Debug)]
pub(crate) enum Entry {
    Rule(usize),
    Marker(String),
}

/// The phase defaults set by `SecDefaultAction`.
#[derive(Clone, Debug)]
pub(crate) struct PhaseDefaults {
    pub disruptive: Disruptive,
    pub log: bool,
    pub transforms: Vec<Transform>,
}

impl Default for PhaseDefaults {
    fn default() -> Self {
        // ModSecurity's built-in default: phase:2,log,auditlog,pass.
        PhaseDefaults {
            disruptive: Disruptive::Pass,
            log: true,
            transforms: Vec::new(),
        }
    }
}

/// Engine-wide settings the rule files can set.
#[derive(Clone, Debug)]
pub struct Settings {
    pub engine: EngineMode,
    pub request_body_access: bool,
    pub request_body_limit: usize,
    pub request_body_no_files_limit: usize,
    /// `SecRequestBodyLimitAction`: `Reject` (true) or `ProcessPartial`.
    pub reject_over_limit: bool,
    pub json_depth_limit: usize,
    pub arguments_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            engine: EngineMode::On,
            request_body_access: true,
            request_body_limit: 13_107_200,
            request_body_no_files_limit: 131_072,
            reject_over_limit: true,
            json_depth_limit: 512,
            arguments_limit: 1000,
        }
    }
}

/// Operators compiled per (name, expanded argument).
pub(crate) type DynamicOperators = HashMap<(String, Vec<u8>), Arc<Operator>>;

/// A compiled rule set, shared by every transaction.
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) phases: [Vec<Entry>; 5],
    pub(crate) defaults: [PhaseDefaults; 5],
    pub settings: Settings,
    /// Distinct transformation chains, indexed by `Rule::chain_id`.
    pub(crate) chains: Vec<Arc<[Transform]>>,
    /// The literal prefilter over the required strings of every prefiltered link.
    pub(crate) prefilter: Option<Prefilter>,
    /// Off only to compare against evaluation without prefilters.
    pub(crate) use_prefilters: bool,
    /// Operators whose argument had macros, compiled per expanded argument.
    pub(crate) dynamic: Mutex<DynamicOperators>,
    limitations: Vec<String>,
}

/// Reads files named by `Include` and data files named by `@pmFromFile`. Paths are as written
/// in the rules (absolute, or relative to the directory of the file naming them).
pub type FileSource<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Builds a rule set from rule files in order (as ModSecurity reads `Include`d files).
pub struct Builder<'a> {
    files: FileSource<'a>,
    directives: Vec<(Directive, String)>,
}

impl<'a> Builder<'a> {
    pub fn new(files: FileSource<'a>) -> Builder<'a> {
        Builder {
            files,
            directives: Vec::new(),
        }
    }

    /// Adds the text of one rules file; `name` is its path, used for errors and to resolve
    /// relative data-file names.
    pub fn add(&mut self, name: &str, text: &str) -> Result<&mut Self, LoadError> {
        let list = parse::directives(text, name).map_err(|message| LoadError {
            origin: None,
            message,
        })?;
        let dir = match name.rfind('/') {
            Some(i) => name[..i].to_owned(),
            None => String::new(),
        };
        for d in list {
            if d.name.eq_ignore_ascii_case("Include") {
                let Some(path) = d.args.first() else {
                    return Err(at(&d.origin, "Include needs a file name"));
                };
                let path = resolve(&dir, path);
                let text = (self.files)(&path).map_err(|e| at(&d.origin, e))?;
                self.add(&path, &text)?;
                continue;
            }
            self.directives.push((d, dir.clone()));
        }
        Ok(self)
    }

    pub fn build(self) -> Result<RuleSet, LoadError> {
        let mut set = RuleSet {
            rules: Vec::new(),
            phases: Default::default(),
            defaults: Default::default(),
            settings: Settings::default(),
            chains: Vec::new(),
            prefilter: None,
            use_prefilters: true,
            dynamic: Mutex::new(HashMap::new()),
            limitations: Vec::new(),
        };
        let mut chain_ids: HashMap<Vec<Transform>, usize> = HashMap::new();
        let mut removals: Vec<Removal> = Vec::new();
        let mut open_chain: Option<Vec<Rule>> = None;
        let files = self.files;
        for (d, dir) in &self.directives {
            let load = |path: &str| files(&resolve(dir, path));
            let name = d.name.to_ascii_lowercase();
            if open_chain.is_some() && name != "secrule" {
                return Err(at(
                    &d.origin,
                    "a chained rule must be followed by a SecRule",
                ));
            }
            let arg = |i: usize| {
                d.args
                    .get(i)
                    .map(String::as_str)
                    .ok_or_else(|| at(&d.origin, format!("{} needs more arguments", d.name)))
            };
            match name.as_str() {
                "secrule" | "secaction" => {
                    let (vars, op, acts) = if name == "secrule" {
                        (
                            Some(arg(0)?),
                            Some(arg(1)?),
                            d.args.get(2).map(String::as_str),
                        )
                    } else {
                        (None, None, d.args.first().map(String::as_str))
                    };
                    let in_chain = open_chain.is_some();
                    let actions =
                        rule::actions(acts.unwrap_or("")).map_err(|e| at(&d.origin, e))?;
                    let mut r = compile_rule(&set, d, vars, op, actions, in_chain, &load)?;
                    let key: Vec<Transform> = r.transforms.to_vec();
                    let next = set.chains.len();
                    r.chain_id = *chain_ids.entry(key).or_insert(next);
                    if r.chain_id == next {
                        set.chains.push(r.transforms.clone());
                    }
                    if let RuleOperator::Static(op) = &r.operator
                        && let Some(why) = op.limitation()
                    {
                        set.limitations
                            .push(format!("{}: rule {}: {why}", d.origin, r.id));
                    }
                    let continues = r.chained.is_some();
                    // `chained` is used as a marker while parsing; links are assembled below.
                    r.chained = None;
                    let links = open_chain.get_or_insert_with(Vec::new);
                    links.push(r);
                    if !continues {
                        let links = open_chain.take().unwrap_or_default();
                        let head = assemble(links);
                        let phase = head.phase;
                        let index = set.rules.len();
                        set.rules.push(head);
                        set.phases[usize::from(phase - 1)].push(Entry::Rule(index));
                    }
                }
                "secmarker" => {
                    let m = arg(0)?.to_owned();
                    for p in &mut set.phases {
                        p.push(Entry::Marker(m.clone()));
                    }
                }
                "secdefaultaction" => {
                    let a = rule::actions(arg(0)?).map_err(|e| at(&d.origin, e))?;
                    let phase = a
                        .phase
                        .ok_or_else(|| at(&d.origin, "SecDefaultAction must name a phase"))?;
                    let disruptive = match a.disruptive {
                        Some(Disruptive::Block) | None => {
                            return Err(at(
                                &d.origin,
                                "SecDefaultAction must name a disruptive action (pass, deny, …)",
                            ));
                        }
                        Some(d) => d,
                    };
                    set.defaults[usize::from(phase - 1)] = PhaseDefaults {
                        disruptive,
                        log: a.log.unwrap_or(true),
                        transforms: a.transforms,
                    };
                }
                "secruleengine" => {
                    set.settings.engine =
                        EngineMode::parse(arg(0)?).map_err(|e| at(&d.origin, e))?;
                }
                "secrequestbodyaccess" => {
                    set.settings.request_body_access =
                        on_off(arg(0)?).map_err(|e| at(&d.origin, e))?;
                }
                "secrequestbodylimit" => set.settings.request_body_limit = number(d, arg(0)?)?,
                "secrequestbodynofileslimit" => {
                    set.settings.request_body_no_files_limit = number(d, arg(0)?)?;
                }
                "secrequestbodyjsondepthlimit" => {
                    set.settings.json_depth_limit = number(d, arg(0)?)?;
                }
                "secargumentslimit" => set.settings.arguments_limit = number(d, arg(0)?)?,
                "secrequestbodylimitaction" => {
                    set.settings.reject_over_limit = match arg(0)?.to_ascii_lowercase().as_str() {
                        "reject" => true,
                        "processpartial" => false,
                        other => {
                            return Err(at(
                                &d.origin,
                                format!("`{other}` is not Reject or ProcessPartial"),
                            ));
                        }
                    };
                }
                "secruleremovebyid" => {
                    for a in &d.args {
                        let ids = rule::id_ranges(a).map_err(|e| at(&d.origin, e))?;
                        removals.push(Removal::Ids(ids));
                    }
                }
                "secruleremovebytag" => removals.push(Removal::Tag(arg(0)?.to_owned())),
                "secruleremovebymsg" => removals.push(Removal::Msg(arg(0)?.to_owned())),
                "secruleupdatetargetbyid" | "secruleupdatetargetbytag" => {
                    let which = arg(0)?;
                    let (vars, excl) = rule::variables(arg(1)?).map_err(|e| at(&d.origin, e))?;
                    let by = if name == "secruleupdatetargetbyid" {
                        Select::Ids(rule::id_ranges(which).map_err(|e| at(&d.origin, e))?)
                    } else {
                        Select::Tag(which.to_owned())
                    };
                    removals.push(Removal::UpdateTarget(by, vars, excl));
                }
                // Directives that configure ModSecurity's own logs, storage and web-server
                // integration: wasmgate has its own audit line, no persistent storage and no
                // files, so they change nothing here.
                "seccomponentsignature"
                | "seccollectiontimeout"
                | "secauditengine"
                | "secauditlog"
                | "secauditlog2"
                | "secauditlogparts"
                | "secauditlogtype"
                | "secauditlogformat"
                | "secauditlogstoragedir"
                | "secauditlogdirmode"
                | "secauditlogfilemode"
                | "secauditlogrelevantstatus"
                | "secdebuglog"
                | "secdebugloglevel"
                | "sectmpdir"
                | "secdatadir"
                | "secuploaddir"
                | "secuploadkeepfiles"
                | "secuploadfilemode"
                | "secuploadfilelimit"
                | "secresponsebodyaccess"
                | "secresponsebodymimetype"
                | "secresponsebodylimit"
                | "secresponsebodylimitaction"
                | "secpcrematchlimit"
                | "secpcrematchlimitrecursion"
                | "secunicodemapfile"
                | "secstatusengine"
                | "secserversignature"
                | "secargumentseparator"
                | "seccookieformat"
                | "sectmpsaveuploadedfiles"
                | "secinterceptonerror"
                | "sechttpblkey"
                | "secgeolookupdb"
                | "secconnengine"
                | "secremoterules"
                | "secremoterulesfailaction"
                | "secwebappid"
                | "secsensorid" => {}
                _ => {
                    return Err(at(&d.origin, format!("unsupported directive `{}`", d.name)));
                }
            }
        }
        if open_chain.is_some() {
            return Err(LoadError {
                origin: None,
                message: "the last rule is chained but no rule follows it".to_owned(),
            });
        }
        apply_removals(&mut set, removals);
        build_prefilters(&mut set);
        Ok(set)
    }
}

/// Gives every `@rx` and short `@pm` link with a required literal set a bit in the rule
/// set's literal prefilter, and every link its scan chain.
fn build_prefilters(set: &mut RuleSet) {
    let mut chain_ids: HashMap<Vec<Transform>, usize> = set
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_vec(), i))
        .collect();
    let mut sets: Vec<Vec<Vec<u8>>> = Vec::new();
    for rule in &mut set.rules {
        let mut link = Some(rule);
        while let Some(l) = link {
            let mut scan = l.transforms.to_vec();
            while scan.last() == Some(&Transform::Lowercase) {
                scan.pop();
            }
            let next = set.chains.len();
            l.scan_chain = *chain_ids.entry(scan.clone()).or_insert(next);
            if l.scan_chain == next {
                set.chains.push(scan.into());
            }
            if let RuleOperator::Static(op) = &l.operator
                && !l.multi_match
                && let Some(strings) = op.required_literals()
                && let Ok(bit) = u32::try_from(sets.len())
            {
                l.prefilter = Some(bit);
                sets.push(strings);
                l.stores = l
                    .variables
                    .iter()
                    .map(|v| {
                        (!v.count)
                            .then(|| crate::data::stores(v.collection))
                            .flatten()
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(|s| {
                        let mut all: Vec<u8> = s.concat();
                        all.sort_unstable();
                        all.dedup();
                        all
                    });
            }
            link = l.chained.as_deref_mut();
        }
    }
    set.prefilter = (!sets.is_empty()).then(|| Prefilter::new(&sets)).flatten();
    // Without an automaton (none could be built), every regex runs.
    if set.prefilter.is_none() {
        for rule in &mut set.rules {
            let mut link = Some(rule);
            while let Some(l) = link {
                l.prefilter = None;
                l.stores = None;
                link = l.chained.as_deref_mut();
            }
        }
    }
}

fn compile_rule(
    set: &RuleSet,
    d: &Directive,
    vars: Option<&str>,
    op: Option<&str>,
    mut actions: Actions,
    in_chain: bool,
    load: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Rule, LoadError> {
    let err = |e: String| at(&d.origin, e);
    let id = match (actions.id, in_chain) {
        (Some(id), false) => id,
        (None, true) => 0,
        (None, false) => return Err(err("a rule needs an `id`".to_owned())),
        (Some(_), true) => return Err(err("a chained rule cannot have an `id`".to_owned())),
    };
    let phase = actions.phase.unwrap_or(2);
    let defaults = &set.defaults[usize::from(phase - 1)];
    let mut transforms = if actions.reset_transforms {
        Vec::new()
    } else {
        defaults.transforms.clone()
    };
    transforms.append(&mut actions.transforms);
    let (variables, exclusions) = match vars {
        Some(v) => rule::variables(v).map_err(err)?,
        None => (Vec::new(), Vec::new()),
    };
    let (operator, negated) = match op {
        Some(o) => rule::rule_operator(o, load).map_err(err)?,
        None => (
            RuleOperator::Static(
                crate::operator::compile("unconditionalMatch", "", load).map_err(err)?,
            ),
            false,
        ),
    };
    Ok(Rule {
        id,
        phase,
        origin: d.origin.clone(),
        variables,
        exclusions,
        operator,
        negated,
        transforms: transforms.into(),
        chain_id: 0,
        scan_chain: 0,
        prefilter: None,
        stores: None,
        multi_match: actions.multi_match,
        capture: actions.capture,
        setvars: actions.setvars,
        ctls: actions.ctls,
        disruptive: actions.disruptive,
        status: actions.status,
        skip_after: actions.skip_after,
        skip: actions.skip,
        msg: actions.msg,
        logdata: actions.logdata,
        tags: actions.tags,
        severity: actions.severity,
        log: actions.log,
        chained: actions.chain.then(|| Box::new(placeholder(&d.origin))),
        unconditional: vars.is_none(),
    })
}

/// Stands in for "a chained rule follows" while a chain is being read.
fn placeholder(origin: &Origin) -> Rule {
    Rule {
        id: 0,
        phase: 2,
        origin: origin.clone(),
        variables: Vec::new(),
        exclusions: Vec::new(),
        operator: RuleOperator::Dynamic {
            name: String::new(),
            arg: Default::default(),
        },
        negated: false,
        transforms: Arc::from(Vec::new()),
        chain_id: 0,
        scan_chain: 0,
        prefilter: None,
        stores: None,
        multi_match: false,
        capture: false,
        setvars: Vec::new(),
        ctls: Vec::new(),
        disruptive: None,
        status: None,
        skip_after: None,
        skip: 0,
        msg: None,
        logdata: None,
        tags: Vec::new(),
        severity: None,
        log: None,
        chained: None,
        unconditional: false,
    }
}

/// Links the rules of a chain: the first carries id, phase and metadata; each following rule
/// runs in the first one's phase.
fn assemble(mut links: Vec<Rule>) -> Rule {
    let mut tail: Option<Box<Rule>> = None;
    let phase = links.first().map_or(2, |r| r.phase);
    let id = links.first().map_or(0, |r| r.id);
    while let Some(mut r) = links.pop() {
        r.chained = tail.take();
        if links.is_empty() {
            return r;
        }
        r.phase = phase;
        r.id = id;
        tail = Some(Box::new(r));
    }
    // Unreachable with a non-empty chain; an empty one never gets here (see `build`).
    placeholder(&Origin {
        file: String::new(),
        line: 0,
    })
}

enum Select {
    Ids(Vec<(u32, u32)>),
    Tag(String),
}

enum Removal {
    Ids(Vec<(u32, u32)>),
    Tag(String),
    Msg(String),
    UpdateTarget(Select, Vec<crate::variable::Variable>, Vec<TargetRef>),
}

fn in_ranges(ranges: &[(u32, u32)], id: u32) -> bool {
    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&id))
}

/// Configuration-time exceptions apply to every rule they name, wherever it is defined.
fn apply_removals(set: &mut RuleSet, removals: Vec<Removal>) {
    let mut removed = vec![false; set.rules.len()];
    for removal in removals {
        for (i, r) in set.rules.iter_mut().enumerate() {
            match &removal {
                Removal::Ids(ids) => removed[i] |= in_ranges(ids, r.id),
                Removal::Tag(t) => removed[i] |= r.tags.iter().any(|x| x == t),
                Removal::Msg(m) => {
                    removed[i] |= r.msg.as_ref().and_then(|s| s.constant()).as_deref() == Some(m);
                }
                Removal::UpdateTarget(by, vars, excl) => {
                    let hit = match by {
                        Select::Ids(ids) => in_ranges(ids, r.id),
                        Select::Tag(t) => r.tags.iter().any(|x| x == t),
                    };
                    if hit {
                        r.variables.extend(vars.iter().cloned());
                        r.exclusions.extend(excl.iter().cloned());
                    }
                }
            }
        }
    }
    for phase in &mut set.phases {
        phase.retain(|e| !matches!(e, Entry::Rule(i) if removed[*i]));
    }
}

fn resolve(dir: &str, path: &str) -> String {
    if path.starts_with('/') || dir.is_empty() {
        path.to_owned()
    } else {
        format!("{dir}/{path}")
    }
}

fn at(origin: &Origin, message: impl Into<String>) -> LoadError {
    LoadError {
        origin: Some(origin.clone()),
        message: message.into(),
    }
}

fn on_off(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{v}` is not On or Off")),
    }
}

fn number(d: &Directive, v: &str) -> Result<usize, LoadError> {
    v.parse()
        .map_err(|_| at(&d.origin, format!("`{v}` is not a number")))
}

impl RuleSet {
    /// Rules that loaded but cannot do their job here (e.g. `@rbl` needs DNS), one line each.
    /// Turns the literal prefilters off (they never change an outcome; this is for tests and
    /// benchmarks that show so).
    pub fn disable_prefilters(&mut self) {
        self.use_prefilters = false;
    }

    /// How many `@rx` and `@pm` rule links have a literal prefilter, of how many.
    pub fn prefiltered(&self) -> (usize, usize) {
        let (mut with, mut all) = (0, 0);
        for rule in &self.rules {
            let mut link = Some(rule);
            while let Some(l) = link {
                if let RuleOperator::Static(op) = &l.operator
                    && matches!(op.name(), "rx" | "pm")
                {
                    all += 1;
                    with += usize::from(l.prefilter.is_some());
                }
                link = l.chained.as_deref();
            }
        }
        (with, all)
    }

    pub fn limitations(&self) -> &[String] {
        &self.limitations
    }

    /// Number of rules (chains count once).
    pub fn len(&self) -> usize {
        self.phases
            .iter()
            .flatten()
            .filter(|e| matches!(e, Entry::Rule(_)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rule with this id, for messages.
    pub fn rule(&self, id: u32) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}
