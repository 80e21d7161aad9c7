//! `fault`: misbehaves on demand, to test how the gateway contains broken plugins.
//!
//! The request header `x-fault` picks the failure in the request phase, `x-fault-response` in
//! the response phase: `trap` (panics), `loop` (never returns), `grow` (allocates without end).
//! Requests without those headers pass untouched, so one bad request never implies the next.

use serde::Deserialize;
use wasmgate_plugin_sdk::{Action, ConfigError, Context, Plugin, Request, Response, log, plugin};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {}

struct Fault;

fn misbehave(kind: Option<String>) {
    if let Some(kind) = &kind {
        log::warn(&format!("misbehaving as asked: {kind}"));
    }
    match kind.as_deref() {
        Some("trap") => panic!("fault plugin asked to trap"),
        Some("loop") => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Some("grow") => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => {}
    }
}

#[plugin]
impl Plugin for Fault {
    type Config = Config;

    fn configure(_config: Config) -> Result<Self, ConfigError> {
        Ok(Fault)
    }

    fn on_request(&self, req: &Request, _ctx: &Context) -> Action {
        misbehave(req.header("x-fault"));
        Action::Continue
    }

    fn on_response(&self, req: &Request, _resp: &Response, _ctx: &Context) {
        misbehave(req.header("x-fault-response"));
    }
}
