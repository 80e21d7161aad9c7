//! Evaluation: one request through the rule set's phases, with ModSecurity v3's semantics.
//!
//! - Rules run in file order per phase; `SecMarker`s sit in every phase, `skipAfter` skips to
//!   the marker (across phases, as in ModSecurity).
//! - A rule matches when its operator matches any value of any of its variables (after
//!   exclusions and `ctl` removals). `setvar` runs once per matching value — as in
//!   ModSecurity v3, so a rule that matches three arguments adds its score three times.
//! - A chain matches when every link matches; then each link's `ctl`, `skip` and
//!   `skipAfter` run, the chain is logged (unless `nolog`) and its disruptive action applies.
//! - Transformation results are cached per (value, transformation chain) for request data,
//!   so twenty rules with the same `t:` list transform each argument once.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::data::{Data, StoreValues, Value, Values};
use crate::operator::Operator;
use crate::prefilter;
use crate::rule::{
    AllowScope, BodyProcessor, Ctl, Disruptive, EngineMode, Rule, RuleOperator, SetOp, TargetRef,
};
use crate::ruleset::{Entry, RuleSet};
use crate::transform::Transform;
use crate::triggers::{ByteSet, apply_chain};
use crate::variable::{Collection, Selector};

/// One request as the engine sees it.
#[derive(Debug, Default, Clone)]
pub struct Request<'a> {
    pub method: &'a [u8],
    /// The request-target as sent (`/path?query`).
    pub target: &'a [u8],
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'a [u8],
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// The whole body, when there is one and it is inspected.
    pub body: Option<&'a [u8]>,
    pub remote_addr: &'a str,
    pub remote_port: u16,
    pub server_port: u16,
    pub unique_id: &'a str,
}

/// A rule that matched and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub id: u32,
    pub msg: String,
    /// The variable that matched last (`ARGS:q`): a name, never the value.
    pub target: String,
    pub severity: Option<u8>,
    pub tags: Vec<String>,
}

/// What a disruptive rule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervention {
    pub status: u16,
    pub rule: u32,
    /// `redirect:` target.
    pub location: Option<String>,
}

/// The result of evaluating a request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Set when a rule denied the request (and the engine is not in detection-only mode).
    pub intervention: Option<Intervention>,
    /// Set in detection-only mode when a rule would have denied the request.
    pub would_intervene: Option<Intervention>,
    pub matched: Vec<Matched>,
    /// `TX:anomaly_score` (CRS 3) or `TX:blocking_inbound_anomaly_score` (CRS 4), if set.
    pub anomaly_score: i64,
}

#[derive(Default)]
pub(crate) struct State {
    pub tx: FxHashMap<String, Vec<u8>>,
    pub persistent: FxHashMap<String, Vec<u8>>,
    pub matched_var: (String, Vec<u8>),
    pub matched_vars: MatchedVars,
    pub highest_severity: Option<u8>,
    removed_ids: Vec<(u32, u32)>,
    removed_tags: Vec<String>,
    removed_targets_by_id: Vec<(Vec<(u32, u32)>, TargetRef)>,
    removed_targets_by_tag: Vec<(String, TargetRef)>,
    pub engine: EngineMode,
    pub processor: Option<BodyProcessor>,
    pub body_access: bool,
    skip_until: Option<String>,
    skip_next: u32,
    allow: Option<AllowScope>,
    /// Transformation cache: (value, chain) → transformed value and prefilter hits.
    cache: TransformCache,
    /// (store, chain) → the prefilter hits of all the store's values.
    unions: FxHashMap<u64, u32>,
    /// The words of the cache's prefilter hits.
    hits: prefilter::HitsArena,
    captures: Vec<Vec<u8>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<State>> = const { std::cell::RefCell::new(None) };
}

impl State {
    /// Ready for a new transaction; the tables keep their capacity.
    fn reset(&mut self, settings: &crate::ruleset::Settings) {
        self.tx.clear();
        self.persistent.clear();
        self.matched_var.0.clear();
        self.matched_var.1.clear();
        self.matched_vars.clear();
        self.highest_severity = None;
        self.removed_ids.clear();
        self.removed_tags.clear();
        self.removed_targets_by_id.clear();
        self.removed_targets_by_tag.clear();
        self.engine = settings.engine;
        self.processor = None;
        self.body_access = settings.request_body_access;
        self.skip_until = None;
        self.skip_next = 0;
        self.allow = None;
        self.cache.reset(0, 0);
        self.unions.clear();
        self.hits.clear();
        self.captures.clear();
    }
}

impl RuleSet {
    /// Runs the request phases (1 and 2) of the rule set against `req`.
    pub fn evaluate(&self, req: &Request<'_>) -> Outcome {
        let mut outcome = Outcome::default();
        if self.settings.engine == EngineMode::Off {
            return outcome;
        }
        // The scratch state of an earlier evaluation on this thread keeps its tables'
        // capacity: a request then allocates little beyond its own values.
        let mut state = SCRATCH.with(|s| s.borrow_mut().take()).unwrap_or_default();
        state.reset(&self.settings);
        self.evaluate_in(req, &mut state, &mut outcome);
        state.reset(&self.settings);
        SCRATCH.with(|s| *s.borrow_mut() = Some(state));
        outcome
    }

    fn evaluate_in(&self, req: &Request<'_>, state: &mut State, outcome: &mut Outcome) {
        let mut data = Data::from_headers(req, &self.settings);
        state.cache.reset(data.value_count(), self.chains.len());
        state.processor = data.default_processor();
        let body_too_large = req
            .body
            .is_some_and(|b| b.len() > self.settings.request_body_limit);
        if !self.run_phase(1, &data, state, outcome) {
            if state.engine != EngineMode::Off {
                self.finish(state, outcome);
            }
            return;
        }
        if body_too_large && self.settings.reject_over_limit && state.engine == EngineMode::On {
            outcome.intervention = Some(Intervention {
                status: 413,
                rule: 0,
                location: None,
            });
            self.finish(state, outcome);
            return;
        }
        if state.body_access {
            data.process_body(req.body, state.processor, &self.settings);
        }
        // The body added values: cached transformations and prefilter summaries of the
        // stores are stale.
        state.cache.reset(data.value_count(), self.chains.len());
        state.unions.clear();
        state.hits.clear();
        self.run_phase(2, &data, state, outcome);
        self.finish(state, outcome);
    }

    fn finish(&self, state: &State, outcome: &mut Outcome) {
        let score = |k: &str| state.tx.get(k).map(|v| atoi(v));
        outcome.anomaly_score = score("blocking_inbound_anomaly_score")
            .or_else(|| score("anomaly_score"))
            .unwrap_or(0);
    }

    /// Runs one phase; false when evaluation must stop (an intervention, or the engine was
    /// switched off).
    fn run_phase(&self, phase: u8, data: &Data, state: &mut State, outcome: &mut Outcome) -> bool {
        match state.allow {
            Some(AllowScope::All) | Some(AllowScope::Request) => return true,
            Some(AllowScope::Phase) => state.allow = None,
            None => {}
        }
        for entry in &self.phases[usize::from(phase - 1)] {
            let index = match entry {
                Entry::Marker(m) => {
                    if state.skip_until.as_deref() == Some(m.as_str()) {
                        state.skip_until = None;
                    }
                    continue;
                }
                Entry::Rule(i) => *i,
            };
            if state.skip_until.is_some() {
                continue;
            }
            if state.skip_next > 0 {
                state.skip_next -= 1;
                continue;
            }
            if state.allow.is_some() {
                continue;
            }
            let rule = &self.rules[index];
            if in_ranges(&state.removed_ids, rule.id)
                || rule.tags.iter().any(|t| state.removed_tags.contains(t))
            {
                continue;
            }
            state.matched_vars.clear();
            if !self.eval_link(rule, rule, data, state) {
                continue;
            }
            // The whole chain matched: each link's after-match actions, last link first.
            let mut links = SmallVec::<[&Rule; 4]>::new();
            let mut link = Some(rule);
            while let Some(l) = link {
                links.push(l);
                link = l.chained.as_deref();
            }
            for l in links.iter().rev() {
                for ctl in &l.ctls {
                    apply_ctl(ctl, state);
                }
                if let Some(m) = &l.skip_after {
                    state.skip_until = Some(m.clone());
                }
                if l.skip > 0 {
                    state.skip_next = l.skip;
                }
            }
            if let Some(s) = rule.severity {
                state.highest_severity = Some(state.highest_severity.map_or(s, |h| h.min(s)));
            }
            let defaults = &self.defaults[usize::from(phase - 1)];
            if rule.log.unwrap_or(defaults.log) {
                let msg = rule
                    .msg
                    .as_ref()
                    .map(|m| {
                        String::from_utf8_lossy(
                            &m.expand(&mut |c, k| resolve_first(c, k, data, state, rule)),
                        )
                        .into_owned()
                    })
                    .unwrap_or_default();
                outcome.matched.push(Matched {
                    id: rule.id,
                    msg,
                    target: state.matched_var.0.clone(),
                    severity: rule.severity,
                    tags: rule.tags.clone(),
                });
            }
            if state.engine == EngineMode::Off {
                return false;
            }
            let disruptive = match &rule.disruptive {
                Some(Disruptive::Block) | None => &defaults.disruptive,
                Some(d) => d,
            };
            let intervention = match disruptive {
                Disruptive::Pass | Disruptive::Block => None,
                Disruptive::Allow(scope) => {
                    state.allow = Some(*scope);
                    None
                }
                Disruptive::Deny | Disruptive::Drop => Some(Intervention {
                    status: rule.status.unwrap_or(403),
                    rule: rule.id,
                    location: None,
                }),
                Disruptive::Redirect(url) => Some(Intervention {
                    status: rule
                        .status
                        .filter(|s| (300..400).contains(s))
                        .unwrap_or(302),
                    rule: rule.id,
                    location: Some(url.clone()),
                }),
            };
            if let Some(i) = intervention {
                if state.engine == EngineMode::On {
                    outcome.intervention = Some(i);
                    return false;
                }
                if outcome.would_intervene.is_none() {
                    outcome.would_intervene = Some(i);
                }
            }
        }
        true
    }

    /// Evaluates one link of a chain (and the links after it); true when they all match.
    fn eval_link(&self, link: &Rule, head: &Rule, data: &Data, state: &mut State) -> bool {
        let mut matched = false;
        if link.unconditional {
            matched = true;
            for sv in &link.setvars {
                setvar(sv, data, state, head);
            }
        } else {
            let dynamic;
            let op: &Operator = match &link.operator {
                RuleOperator::Static(op) => op,
                RuleOperator::Dynamic { name, arg } => {
                    let expanded = arg.expand(&mut |c, k| resolve_first(c, k, data, state, head));
                    match self.dynamic_operator(name, expanded) {
                        Some(op) => {
                            dynamic = op;
                            &dynamic
                        }
                        None => return false,
                    }
                }
            };
            if let (Some(bit), Some(stores)) = (link.prefilter, &link.stores)
                && !link.negated
                && self.use_prefilters
                && !stores
                    .iter()
                    .any(|s| self.store_may_match(*s, link.scan_chain, bit, data, state))
            {
                return false;
            }
            let mut values = Values::new();
            for var in &link.variables {
                let start = values.len();
                collect(
                    var.collection,
                    &var.selector,
                    data,
                    state,
                    head,
                    &mut values,
                );
                // Only exclusions of this variable's collection can cover its values.
                let excluded = link
                    .exclusions
                    .iter()
                    .any(|e| e.collection == var.collection)
                    || !state.removed_targets_by_id.is_empty()
                    || !state.removed_targets_by_tag.is_empty();
                values.retain_from(start, excluded, |v| {
                    !link
                        .exclusions
                        .iter()
                        .any(|e| e.covers(v.collection, &v.key))
                        && !state.removed_targets_by_id.iter().any(|(ids, t)| {
                            in_ranges(ids, head.id) && t.covers(v.collection, &v.key)
                        })
                        && !state.removed_targets_by_tag.iter().any(|(tag, t)| {
                            head.tags.contains(tag) && t.covers(v.collection, &v.key)
                        })
                });
                if var.count {
                    let n = values.len() - start;
                    values.truncate(start);
                    values.push(Value {
                        collection: var.collection,
                        key: Cow::Borrowed(b""),
                        value: Cow::Owned(n.to_string().into_bytes()),
                        ident: None,
                    });
                }
            }
            let want_captures = link.capture;
            for v in &values {
                if link.multi_match {
                    for candidate in transform_each(&link.transforms, &v.value) {
                        let mut caps = std::mem::take(&mut state.captures);
                        let hit = op.matches(&candidate, want_captures.then_some(&mut caps))
                            != link.negated;
                        if hit {
                            record(link, head, v, &candidate, &caps, data, state);
                            matched = true;
                        }
                        state.captures = caps;
                    }
                    continue;
                }
                let (candidate, may_match) = self.candidate(link, v, data, state);
                let mut caps = std::mem::take(&mut state.captures);
                let op_matched =
                    may_match && op.matches(&candidate, want_captures.then_some(&mut caps));
                if op_matched != link.negated {
                    record(link, head, v, &candidate, &caps, data, state);
                    matched = true;
                }
                state.captures = caps;
            }
        }
        if !matched {
            return false;
        }
        match &link.chained {
            Some(next) => self.eval_link(next, head, data, state),
            None => true,
        }
    }

    /// Whether any value of `store`, transformed by `chain`, contains one of the strings of
    /// prefilter bit `bit`. Computed once per (store, chain) and transaction; fills the
    /// per-value cache as it goes.
    fn store_may_match(
        &self,
        store: u8,
        chain: usize,
        bit: u32,
        data: &Data,
        state: &mut State,
    ) -> bool {
        let Some(pf) = &self.prefilter else {
            return true;
        };
        let key = (u64::from(store) << 32) | chain as u64;
        if let Some(&at) = state.unions.get(&key) {
            return prefilter::has(state.hits.get(at, pf.words()), bit);
        }
        let mut values = StoreValues::new();
        data.store_values(store, &mut values);
        let all = state.hits.alloc(pf.words());
        for (ident, original) in values {
            let Some(dense) = data.dense(ident) else {
                // Not numbered (cannot happen): the store's values may all match.
                return true;
            };
            let at = self.hits(pf, dense, chain, original, state);
            state.hits.union(all, at, pf.words());
        }
        let may = prefilter::has(state.hits.get(all, pf.words()), bit);
        state.unions.insert(key, all);
        may
    }

    /// Where the prefilter hits of value `dense` (`original` before transformation) under
    /// `chain` are in `state.hits`. A chain that leaves the value as it is shares the scan of
    /// the original with every other such chain.
    fn hits(
        &self,
        pf: &prefilter::Prefilter,
        dense: usize,
        chain: usize,
        original: &[u8],
        state: &mut State,
    ) -> u32 {
        let bytes = state.cache.byte_set(dense, original);
        let slot = state.cache.slot(dense, chain).get_or_insert_with(|| Slot {
            value: shared(apply_chain(&self.chains[chain], original, bytes)),
            hits: None,
        });
        if let Some(at) = slot.hits {
            return at;
        }
        let at = match &slot.value {
            Some(changed) => pf.scan_into(changed, &mut state.hits),
            None => match state.cache.original_hits(dense) {
                Some(at) => at,
                None => {
                    let at = pf.scan_into(original, &mut state.hits);
                    state.cache.set_original_hits(dense, at);
                    at
                }
            },
        };
        if let Some(slot) = state.cache.slot(dense, chain) {
            slot.hits = Some(at);
        }
        at
    }

    /// The value the operator sees for `v` (its transformation, cached per value and chain),
    /// and whether the operator may match it at all: false when the scan chain's literal
    /// prefilter found none of the strings every match of this link's regex contains (then
    /// the value is not transformed further).
    fn candidate<'v>(
        &self,
        link: &Rule,
        v: &'v Value<'_>,
        data: &Data,
        state: &mut State,
    ) -> (Bytes<'v>, bool) {
        let Some(dense) = v.ident.and_then(|i| data.dense(i)) else {
            return (Bytes::from(transform_all(&link.transforms, &v.value)), true);
        };
        if let Some(bit) = link.prefilter
            && self.use_prefilters
            && !link.negated
            && let Some(pf) = &self.prefilter
        {
            let at = self.hits(pf, dense, link.scan_chain, &v.value, state);
            if !prefilter::has(state.hits.get(at, pf.words()), bit) {
                return (Bytes::Borrowed(&v.value), false);
            }
        }
        let bytes = state.cache.byte_set(dense, &v.value);
        let Slot { value, .. } = state
            .cache
            .slot(dense, link.chain_id)
            .get_or_insert_with(|| Slot {
                value: shared(apply_chain(&link.transforms, &v.value, bytes)),
                hits: None,
            });
        let out = match value {
            Some(t) => Bytes::Shared(t.clone()),
            None => Bytes::Borrowed(&v.value),
        };
        (out, true)
    }

    fn dynamic_operator(&self, name: &str, arg: Vec<u8>) -> Option<Arc<Operator>> {
        let key = (name.to_owned(), arg);
        if let Ok(cache) = self.dynamic.lock()
            && let Some(op) = cache.get(&key)
        {
            return Some(op.clone());
        }
        let text = String::from_utf8_lossy(&key.1).into_owned();
        let op =
            Arc::new(crate::operator::compile(name, &text, &|_| Err("no files".to_owned())).ok()?);
        if let Ok(mut cache) = self.dynamic.lock() {
            // Expanded arguments come from the configuration in practice; bound the cache in
            // case a rule expands request data into an operator.
            if cache.len() > 1024 {
                cache.clear();
            }
            cache.insert(key, op.clone());
        }
        Some(op)
    }
}

/// A transformed value: the original, a fresh result, or one shared with the cache.
enum Bytes<'v> {
    Borrowed(&'v [u8]),
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
}

impl<'v> From<Cow<'v, [u8]>> for Bytes<'v> {
    fn from(c: Cow<'v, [u8]>) -> Self {
        match c {
            Cow::Borrowed(b) => Bytes::Borrowed(b),
            Cow::Owned(o) => Bytes::Owned(o),
        }
    }
}

impl std::ops::Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(o) => o,
            Bytes::Shared(s) => s,
        }
    }
}

/// One cached transformation of a request value.
pub(crate) struct Slot {
    /// None: the chain left the value as it was.
    value: Option<Rc<[u8]>>,
    /// Where the chain's prefilter result for the value is (in `State::hits`), once a rule
    /// asked.
    hits: Option<u32>,
}

/// The cached transformations of one transaction's values: per value (by its dense number,
/// see `Data::dense`) a row with a slot per transformation chain, made when the value is
/// first transformed. Indexing, not hashing: rules ask for a (value, chain) thousands of
/// times per request.
#[derive(Default)]
pub(crate) struct TransformCache {
    /// Per value: where its row starts in `slots`, or `u32::MAX` before it has one.
    rows: Vec<u32>,
    /// Per value: where the prefilter hits of the value as it is are, or `u32::MAX`.
    originals: Vec<u32>,
    /// Per value: the bytes it holds, once a chain transformed it.
    byte_sets: Vec<Option<ByteSet>>,
    slots: Vec<Option<Slot>>,
    chains: usize,
}

impl TransformCache {
    /// Empties the cache for `values` values and `chains` chains; keeps the capacity.
    fn reset(&mut self, values: usize, chains: usize) {
        self.rows.clear();
        self.rows.resize(values, u32::MAX);
        self.originals.clear();
        self.originals.resize(values, u32::MAX);
        self.byte_sets.clear();
        self.byte_sets.resize(values, None);
        self.slots.clear();
        self.chains = chains;
    }

    /// The bytes value `value` (`original`) holds.
    fn byte_set(&mut self, value: usize, original: &[u8]) -> ByteSet {
        match self.byte_sets.get_mut(value) {
            Some(Some(set)) => *set,
            Some(slot) => *slot.insert(ByteSet::of(original)),
            None => ByteSet::of(original),
        }
    }

    fn original_hits(&self, value: usize) -> Option<u32> {
        self.originals
            .get(value)
            .copied()
            .filter(|&at| at != u32::MAX)
    }

    fn set_original_hits(&mut self, value: usize, at: u32) {
        if let Some(o) = self.originals.get_mut(value) {
            *o = at;
        }
    }

    fn slot(&mut self, value: usize, chain: usize) -> &mut Option<Slot> {
        let row = match self.rows.get(value) {
            Some(&row) if row != u32::MAX => row as usize,
            _ => {
                let row = self.slots.len();
                self.slots.resize_with(row + self.chains, || None);
                if let Some(r) = self.rows.get_mut(value) {
                    *r = u32::try_from(row).unwrap_or(u32::MAX);
                }
                row
            }
        };
        &mut self.slots[row + chain]
    }
}

fn shared(t: Cow<'_, [u8]>) -> Option<Rc<[u8]>> {
    match t {
        Cow::Borrowed(_) => None,
        Cow::Owned(t) => Some(Rc::from(t)),
    }
}

fn transform_all<'v>(chain: &[Transform], input: &'v [u8]) -> Cow<'v, [u8]> {
    let mut cur = Cow::Borrowed(input);
    for t in chain {
        if let Some(next) = t.apply(&cur) {
            cur = Cow::Owned(next);
        }
    }
    cur
}

/// `multiMatch`: the value before and after every transformation that changed it.
fn transform_each<'v>(chain: &[Transform], input: &'v [u8]) -> SmallVec<[Cow<'v, [u8]>; 4]> {
    let mut out = SmallVec::new();
    out.push(Cow::Borrowed(input));
    let mut cur: Cow<'_, [u8]> = Cow::Borrowed(input);
    for t in chain {
        if let Some(next) = t.apply(&cur) {
            cur = Cow::Owned(next);
            out.push(cur.clone());
        }
    }
    out
}

/// A link matched value `v` (as `candidate`): captures, `MATCHED_VAR(S)`, `setvar`.
fn record(
    link: &Rule,
    head: &Rule,
    v: &Value<'_>,
    candidate: &[u8],
    caps: &[Vec<u8>],
    data: &Data,
    state: &mut State,
) {
    if link.capture {
        for (i, c) in caps.iter().enumerate().take(10) {
            state.tx.insert(i.to_string(), c.clone());
        }
    }
    let (name, value) = &mut state.matched_var;
    name.clear();
    v.write_full_name(name);
    value.clear();
    value.extend_from_slice(candidate);
    state.matched_vars.push(name, candidate);
    for sv in &link.setvars {
        setvar(sv, data, state, head);
    }
}

/// `MATCHED_VARS` of the rule being evaluated; its buffers are kept from rule to rule.
#[derive(Default)]
pub(crate) struct MatchedVars {
    items: Vec<(String, Vec<u8>)>,
    len: usize,
}

impl MatchedVars {
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, name: &str, value: &[u8]) {
        if let Some((n, v)) = self.items.get_mut(self.len) {
            n.clear();
            n.push_str(name);
            v.clear();
            v.extend_from_slice(value);
        } else {
            self.items.push((name.to_owned(), value.to_vec()));
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &(String, Vec<u8>)> {
        self.items[..self.len].iter()
    }
}

trait RetainFrom<T> {
    fn retain_from(&mut self, start: usize, any: bool, keep: impl FnMut(&T) -> bool);
}

impl<A: smallvec::Array> RetainFrom<A::Item> for SmallVec<A> {
    fn retain_from(&mut self, start: usize, any: bool, mut keep: impl FnMut(&A::Item) -> bool) {
        if !any {
            return;
        }
        let mut kept = start;
        for i in start..self.len() {
            if keep(&self[i]) {
                self.swap(kept, i);
                kept += 1;
            }
        }
        self.truncate(kept);
    }
}

fn in_ranges(ranges: &[(u32, u32)], id: u32) -> bool {
    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&id))
}

fn apply_ctl(ctl: &Ctl, state: &mut State) {
    match ctl {
        Ctl::RuleRemoveById(ids) => state.removed_ids.extend(ids.iter().copied()),
        Ctl::RuleRemoveByTag(tag) => state.removed_tags.push(tag.clone()),
        Ctl::RuleRemoveTargetById(ids, t) => {
            state.removed_targets_by_id.push((ids.clone(), t.clone()));
        }
        Ctl::RuleRemoveTargetByTag(tag, t) => {
            state.removed_targets_by_tag.push((tag.clone(), t.clone()));
        }
        Ctl::RuleEngine(mode) => state.engine = *mode,
        Ctl::RequestBodyProcessor(p) => state.processor = Some(*p),
        Ctl::RequestBodyAccess(on) => state.body_access = *on,
        Ctl::ForceRequestBodyVariable(_) | Ctl::AuditLog => {}
    }
}

/// ModSecurity's integer reading: optional sign, leading digits, anything else 0.
pub(crate) fn atoi(v: &[u8]) -> i64 {
    let s = std::str::from_utf8(v).unwrap_or("").trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let n: i64 = digits[..end].parse().unwrap_or(0);
    if neg { -n } else { n }
}

fn setvar(sv: &crate::rule::SetVar, data: &Data, state: &mut State, head: &Rule) {
    let name = sv
        .name
        .expand(&mut |c, k| resolve_first(c, k, data, state, head));
    let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
    let key = match sv.collection {
        Collection::Persistent(p) => format!("{}.{name}", p.prefix()),
        _ => name,
    };
    let value = match &sv.op {
        SetOp::Delete => {
            match sv.collection {
                Collection::Tx => state.tx.remove(&key),
                _ => state.persistent.remove(&key),
            };
            return;
        }
        SetOp::Set(m) => m.expand(&mut |c, k| resolve_first(c, k, data, state, head)),
        SetOp::Add(m) | SetOp::Sub(m) => {
            let delta = atoi(&m.expand(&mut |c, k| resolve_first(c, k, data, state, head)));
            let store = match sv.collection {
                Collection::Tx => &state.tx,
                _ => &state.persistent,
            };
            let current = store.get(&key).map_or(0, |v| atoi(v));
            let next = if matches!(sv.op, SetOp::Add(_)) {
                current.saturating_add(delta)
            } else {
                current.saturating_sub(delta)
            };
            next.to_string().into_bytes()
        }
    };
    match sv.collection {
        Collection::Tx => state.tx.insert(key, value),
        _ => state.persistent.insert(key, value),
    };
}

/// The first value of a variable, for macro expansion.
fn resolve_first(
    c: Collection,
    key: Option<&str>,
    data: &Data,
    state: &State,
    rule: &Rule,
) -> Vec<u8> {
    match c {
        Collection::Rule => match key.unwrap_or("") {
            "id" => rule.id.to_string().into_bytes(),
            "msg" => rule
                .msg
                .as_ref()
                .and_then(|m| m.constant())
                .unwrap_or_default()
                .into_bytes(),
            "severity" => rule
                .severity
                .map(|s| s.to_string())
                .unwrap_or_default()
                .into_bytes(),
            "phase" => rule.phase.to_string().into_bytes(),
            _ => Vec::new(),
        },
        // The common case (`%{tx.critical_anomaly_score}`), without building a selector.
        Collection::Tx if key.is_some() => key
            .and_then(|k| state.tx.get(k))
            .cloned()
            .unwrap_or_default(),
        _ => {
            let selector = match key {
                Some(k) => Selector::Key(k.to_owned()),
                None => Selector::All,
            };
            let mut values = Values::new();
            collect(c, &selector, data, state, rule, &mut values);
            values
                .into_iter()
                .next()
                .map(|v| v.value.into_owned())
                .unwrap_or_default()
        }
    }
}

/// Every value of `collection` that `selector` takes.
pub(crate) fn collect<'a>(
    collection: Collection,
    selector: &Selector,
    data: &'a Data,
    state: &State,
    rule: &Rule,
    out: &mut Values<'a>,
) {
    let owned = |out: &mut Values<'a>, key: &str, value: Vec<u8>| {
        out.push(Value {
            collection,
            key: Cow::Owned(key.as_bytes().to_vec()),
            value: Cow::Owned(value),
            ident: None,
        })
    };
    match collection {
        Collection::Tx | Collection::Persistent(_) => {
            let prefix = match collection {
                Collection::Persistent(p) => format!("{}.", p.prefix()),
                _ => String::new(),
            };
            let store = if collection == Collection::Tx {
                &state.tx
            } else {
                &state.persistent
            };
            if let Selector::Key(k) = selector {
                let found = if prefix.is_empty() {
                    store.get(k.as_str())
                } else {
                    store.get(&format!("{prefix}{k}"))
                };
                if let Some(v) = found {
                    owned(out, k, v.clone());
                }
                return;
            }
            let mut keys: Vec<&String> = store
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .filter(|k| selector.matches_key(&k.as_bytes()[prefix.len()..]))
                .collect();
            keys.sort();
            for k in keys {
                owned(out, &k[prefix.len()..], store[k].clone());
            }
        }
        Collection::MatchedVar => owned(out, "", state.matched_var.1.clone()),
        Collection::MatchedVarName => owned(out, "", state.matched_var.0.clone().into_bytes()),
        Collection::MatchedVars => {
            for (name, value) in state.matched_vars.iter() {
                if selector.matches_key(name.as_bytes()) {
                    owned(out, name, value.clone());
                }
            }
        }
        Collection::MatchedVarsNames => {
            for (name, _) in state.matched_vars.iter() {
                if selector.matches_key(name.as_bytes()) {
                    owned(out, name, name.clone().into_bytes());
                }
            }
        }
        Collection::HighestSeverity => owned(
            out,
            "",
            state
                .highest_severity
                .map_or(255, u16::from)
                .to_string()
                .into_bytes(),
        ),
        Collection::ReqbodyProcessor => {
            if let Some(p) = state.processor {
                owned(out, "", p.name().as_bytes().to_vec());
            }
        }
        Collection::Rule => {
            let key = match selector {
                Selector::Key(k) => k.as_str(),
                _ => "id",
            };
            let v = resolve_first(Collection::Rule, Some(key), data, state, rule);
            owned(out, key, v);
        }
        _ => data.collect(collection, selector, out),
    }
}
