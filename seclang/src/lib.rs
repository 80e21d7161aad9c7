//! A SecLang engine: loads ModSecurity rule files (the OWASP Core Rule Set among them)
//! unchanged, compiles them once and evaluates requests against them with ModSecurity v3's
//! semantics.
//!
//! ```text
//! rule files ──parse──► directives ──ruleset──► RuleSet (compiled once, shared)
//! request ──data──► collections ──eval: phase 1, body processor, phase 2──► Outcome
//! ```
//!
//! Values are bytes throughout, as in ModSecurity: a request may carry any octets and the
//! rules are written against octets.
//!
//! What differs from ModSecurity, by design:
//! - Regexes run on the `regex` crate (linear time); see `operator` for the few patterns
//!   that need more and how they are handled.
//! - `IP`, `GLOBAL`, `SESSION`, `USER` and `RESOURCE` live for one transaction: there is no
//!   persistent store, so rules that count across requests (CRS's DoS and brute-force
//!   plugins) cannot carry state from one request to the next.
//! - Operators that need the network or a database (`@rbl`, `@geoLookup`) load and never
//!   match; [`RuleSet::limitations`] lists the rules that use them.
//! - Directives for ModSecurity's own audit and debug logs, storage and web-server
//!   integration are accepted and change nothing (the embedding writes its own audit line).

// `data::collect` is one table of collections; nested conditions read better than guards.
#[allow(clippy::collapsible_match)]
mod data;
pub mod eval;
mod macros;
pub mod operator;
pub mod parse;
mod prefilter;
pub mod request;
pub mod rule;
pub mod ruleset;
pub mod transform;
mod triggers;
pub mod variable;

pub use eval::{Intervention, Matched, Outcome, Request};
pub use ruleset::{Builder, FileSource, LoadError, RuleSet, Settings};
