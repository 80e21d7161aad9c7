//! `testkit`: a plugin for wasmgate's own tests. It misbehaves on demand, to show that the
//! gateway contains broken plugins, and moves values through the per-request context.
//!
//! Request headers drive it, so one request never implies anything about the next:
//! - `x-fault` picks a failure in the request phase, `x-fault-response` in the response phase:
//!   `trap` (panics), `loop` (never returns), `grow` (allocates without end);
//! - `x-fault: set-body` replaces the request body without having declared body access (the
//!   host must refuse); `x-peek-body` reports in the request header `x-saw-body` what
//!   `body()` returned (`none`, or the length): it never declares bodies, so always `none`;
//! - `x-wasi-clock` reads the WASI wall clock (through Rust's `SystemTime`) and reports the
//!   milliseconds since the Unix epoch in the request header `x-wasi-now-ms`; `x-sleep-ms: n`
//!   sleeps `n` milliseconds through WASI (a monotonic-clock subscription the host waits on).
//!   Both need the `clock` grant, and trap without it;
//! - `x-context-set: key=value` stores `value` under `key` in the context (request phase);
//! - `x-leak-kib: n` keeps `n` KiB more for the instance's lifetime (a heap that only grows);
//!   the config's `hold_mib` is memory the instance holds from `configure` on (a large, flat
//!   footprint, as a compiled rule set has); every response carries `x-instance-calls`, the
//!   requests this instance has served, so a test sees whether instances are reused;
//! - the response phase copies each context key listed in `expose_context` into a response
//!   header `x-context-<key>`.

use std::cell::{Cell, RefCell};

use serde::Deserialize;
use wasmgate_plugin_sdk::{
    Action, ConfigError, Context, Plugin, Request, Response, fields, log, plugin,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Context keys to copy into response headers.
    #[serde(default)]
    expose_context: Vec<String>,
    /// MiB to allocate in `configure` and hold.
    #[serde(default)]
    hold_mib: usize,
}

struct Testkit {
    expose_context: Vec<String>,
    held: Vec<u8>,
    leaked: RefCell<Vec<Vec<u8>>>,
    calls: Cell<u64>,
}

fn misbehave(kind: Option<String>) {
    if let Some(kind) = &kind {
        log::warn(&format!("misbehaving as asked: {kind}"));
    }
    match kind.as_deref() {
        Some("trap") => panic!("testkit plugin asked to trap"),
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
impl Plugin for Testkit {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        for (i, key) in config.expose_context.iter().enumerate() {
            fields::check_name(&format!("x-context-{key}"))
                .map_err(|e| ConfigError::at(format!("expose_context[{i}]"), e))?;
        }
        Ok(Testkit {
            expose_context: config.expose_context,
            held: vec![1; config.hold_mib << 20],
            leaked: RefCell::default(),
            calls: Cell::new(0),
        })
    }

    fn on_request(&self, req: &Request, ctx: &Context) -> Action {
        misbehave(req.header("x-fault"));
        self.calls.set(self.calls.get() + 1);
        std::hint::black_box(&self.held);
        if let Some(kib) = req
            .header("x-leak-kib")
            .and_then(|n| n.parse::<usize>().ok())
        {
            self.leaked.borrow_mut().push(vec![1; kib << 10]);
        }
        if req.header("x-fault").as_deref() == Some("set-body") {
            req.set_body(b"smuggled");
        }
        if req.header("x-wasi-clock").is_some() {
            let since_epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let _ = req.set_header("x-wasi-now-ms", &since_epoch.to_string());
        }
        if let Some(ms) = req
            .header("x-sleep-ms")
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            log::warn(&format!("sleeping {ms} ms as asked"));
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if req.header("x-peek-body").is_some() {
            let seen = req
                .body()
                .map_or("none".to_owned(), |b| b.len().to_string());
            let _ = req.set_header("x-saw-body", &seen);
        }
        if let Some((key, value)) = req
            .header("x-context-set")
            .as_deref()
            .and_then(|kv| kv.split_once('='))
        {
            ctx.set(key, value);
        }
        Action::Continue
    }

    fn on_response(&self, req: &Request, resp: &Response, ctx: &Context) {
        misbehave(req.header("x-fault-response"));
        let _ = resp.set_header("x-instance-calls", &self.calls.get().to_string());
        for key in &self.expose_context {
            if let Some(value) = ctx.get(key) {
                let _ = resp.set_header(&format!("x-context-{key}"), &value);
            }
        }
    }
}
