//! The rule engine: every pattern of the configured paranoia level compiled into one
//! `RegexSet` at configure time (bytes, ASCII semantics: the lazy DFA handles every input),
//! run once per view of each inspected value.

use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::normalize::Views;
use crate::rules::{Category, RuleDef, builtin_rules, target};

/// A rule as the engine runs it.
pub struct Rule {
    pub id: u32,
    pub category: Category,
    pub score: u32,
    /// Target kinds (see [`target`]).
    targets: u8,
    /// For user rules: exact target names or kinds it is limited to (empty: `targets`).
    names: Vec<String>,
    pub message: String,
}

/// A rule switched off, for every target or for one.
#[derive(Debug, Clone)]
pub struct Exclusion {
    pub rule: Option<u32>,
    pub category: Option<Category>,
    /// `args:q`, `header:user-agent`, `body:/comment`… or a whole kind (`args`, `body`).
    pub target: Option<String>,
}

impl Exclusion {
    fn covers(&self, rule: u32, category: Category, target_name: &str) -> bool {
        let rule_hit = self.rule.is_none_or(|r| r == rule);
        let category_hit = self.category.is_none_or(|c| c == category);
        rule_hit
            && category_hit
            && self
                .target
                .as_deref()
                .is_none_or(|t| covers_target(t, target_name))
    }
}

/// Whether a target pattern (`args` or `args:q`) names `name` (`args:q`).
pub fn covers_target(pattern: &str, name: &str) -> bool {
    pattern == name || name.split(':').next() == Some(pattern)
}

/// A user-defined rule from the config.
pub struct UserRule {
    pub id: u32,
    pub pattern: String,
    pub score: u32,
    pub paranoia: u8,
    pub targets: Vec<String>,
    pub message: String,
}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: u32,
    pub category: Category,
    pub score: u32,
    pub target: String,
}

/// The compiled rules and exclusions.
pub struct Engine {
    set: RegexSet,
    /// The built-in patterns in multi-line mode, run once over every value of a request
    /// joined by line feeds: anything a value matches alone, the joined text matches too, so a
    /// miss here clears the whole request with one scan. `None` with user rules, whose anchors
    /// (`\A`, `\z`) would not survive the joining.
    prefilter: Option<RegexSet>,
    rules: Vec<Rule>,
    exclusions: Vec<Exclusion>,
    /// Built-in non-pattern rules (protocol checks) and their scores.
    pub paranoia: u8,
}

impl Engine {
    /// Compiles the built-in rules up to `paranoia` and the user's rules.
    pub fn new(
        paranoia: u8,
        user: Vec<UserRule>,
        exclusions: Vec<Exclusion>,
    ) -> Result<Self, String> {
        let mut patterns: Vec<String> = Vec::new();
        let mut rules = Vec::new();
        let builtin = builtin_rules();
        for def in builtin.into_iter().filter(|r| r.paranoia <= paranoia) {
            let RuleDef {
                id,
                category,
                score,
                targets,
                message,
                pattern,
                ..
            } = def;
            patterns.push(pattern.to_owned());
            rules.push(Rule {
                id,
                category,
                score,
                targets,
                names: Vec::new(),
                message: message.to_owned(),
            });
        }
        let builder = |patterns: &[String], multi_line: bool| {
            // ASCII classes and word boundaries: values are lower-cased already, and Unicode
            // word boundaries would keep the lazy DFA from running on any non-ASCII input.
            RegexSetBuilder::new(patterns)
                .unicode(false)
                .multi_line(multi_line)
                .size_limit(64 << 20)
                .dfa_size_limit(16 << 20)
                .build()
                .map_err(|e| format!("rules did not compile: {e}"))
        };
        let user: Vec<UserRule> = user
            .into_iter()
            .filter(|r| r.paranoia <= paranoia)
            .collect();
        let prefilter = match user.is_empty() {
            true => Some(builder(&patterns, true)?),
            false => None,
        };
        for rule in user {
            patterns.push(rule.pattern);
            rules.push(Rule {
                id: rule.id,
                category: Category::Custom,
                score: rule.score,
                targets: target::ALL,
                names: rule.targets,
                message: rule.message,
            });
        }
        let set = builder(&patterns, false)?;
        Ok(Self {
            set,
            prefilter,
            rules,
            exclusions,
            paranoia,
        })
    }

    /// Whether some value among `joined` (views joined by line feeds) may match a rule; `true`
    /// when that cannot be known from the joined text (user rules).
    pub fn may_match(&self, joined: &str) -> bool {
        self.prefilter
            .as_ref()
            .is_none_or(|set| set.is_match(joined.as_bytes()))
    }

    /// Whether a prefilter scan of `haystack` proves that nothing in it matches a rule (only
    /// possible without user rules).
    pub fn clears(&self, haystack: &str) -> bool {
        self.prefilter
            .as_ref()
            .is_some_and(|set| !set.is_match(haystack.as_bytes()))
    }

    /// Whether `rule` in `category` is excluded for `target_name`.
    pub fn excluded(&self, rule: u32, category: Category, target_name: &str) -> bool {
        self.exclusions
            .iter()
            .any(|e| e.covers(rule, category, target_name))
    }

    /// Runs the rules over one value's views, adding what matched to `findings`.
    pub fn inspect(&self, views: &Views, kind: u8, target_name: &str, findings: &mut Vec<Finding>) {
        self.run(&views.plain, None, kind, target_name, findings);
        if let Some(sql) = &views.sql {
            self.run(sql, Some(Category::Sqli), kind, target_name, findings);
        }
        if let Some(shell) = &views.shell {
            self.run(shell, Some(Category::Rce), kind, target_name, findings);
        }
    }

    fn run(
        &self,
        text: &str,
        only: Option<Category>,
        kind: u8,
        target_name: &str,
        findings: &mut Vec<Finding>,
    ) {
        let text = text.as_bytes();
        // Most values match nothing: `is_match` stops early and skips match bookkeeping.
        if !self.set.is_match(text) {
            return;
        }
        for index in self.set.matches(text).iter() {
            let rule = &self.rules[index];
            if only.is_some_and(|c| c != rule.category)
                || findings.iter().any(|f| f.rule == rule.id)
            {
                continue;
            }
            let applies = match rule.names.is_empty() {
                true => rule.targets & kind != 0,
                false => rule.names.iter().any(|n| covers_target(n, target_name)),
            };
            if applies && !self.excluded(rule.id, rule.category, target_name) {
                findings.push(Finding {
                    rule: rule.id,
                    category: rule.category,
                    score: rule.score,
                    target: target_name.to_owned(),
                });
            }
        }
    }

    /// What a rule detects, for the audit log.
    pub fn message(&self, id: u32) -> &str {
        let protocol = crate::inspect::PROTOCOL_RULES
            .iter()
            .find(|(r, ..)| *r == id);
        match protocol {
            Some((.., message)) => message,
            None => self
                .rules
                .iter()
                .find(|r| r.id == id)
                .map_or("", |r| r.message.as_str()),
        }
    }
}
