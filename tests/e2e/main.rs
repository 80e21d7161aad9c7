//! End-to-end tests: the real `wasmgate` binary, plugins built from `plugins/`, real upstream
//! servers and clients on loopback sockets.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod access_log;
mod admin;
mod auth;
mod authoring;
mod chain;
mod cli;
mod contract;
mod cors;
mod faults;
mod front_door;
mod limits;
// The reference WAF (nginx + ModSecurity + CRS) for differential tests.
mod modsecurity;
mod observability;
mod polyglot;
mod protocols;
mod quickstart;
mod ratelimit;
mod reload;
mod resilience;
mod routing;
mod support;
mod transform;
mod upstream_protocols;
mod validation;
mod waf;
mod waf_differential;
