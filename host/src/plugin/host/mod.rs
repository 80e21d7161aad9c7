//! The host side of the `wasmgate:plugin` interfaces: what a plugin's imports do.
//!
//! During a call the store holds the request's [`Exchange`]; the `request`, `response` and
//! `context` resources the plugin receives are borrows that all resolve to it. A plugin can only
//! hold them for the duration of the call (the component model ends borrows when the call
//! returns), so there is never a handle to a finished request.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::wasmgate::plugin::{asserted_headers, body_access, clock, log, types};
use super::output::{PluginOutput, Stdio};
use crate::exchange::Exchange;
use types::EditError;

mod asserted;
mod bodies;
mod clocks;
mod context;
mod logging;
mod request;
mod response;

/// Rust type behind the `request` resource: a marker, the data is the store's exchange.
pub struct RequestHandle;
/// Rust type behind the `response` resource.
pub struct ResponseHandle;
/// Rust type behind the `context` resource.
pub struct ContextHandle;

/// Names that identify a plugin instance in logs.
#[derive(Debug)]
pub struct InstanceLabel {
    /// The plugin's name in the config (`[plugins.<name>]`).
    pub plugin: Arc<str>,
    /// The route whose config this instance was configured with.
    pub route: Arc<str>,
}

/// Host services a plugin's instances share: its outbound HTTP client, the runtime's state
/// scopes.
pub struct Services {
    /// Outbound HTTP, when granted.
    pub outbound: Option<Arc<super::outbound::Outbound>>,
    /// Where each pool finds its state scope.
    pub state: Arc<super::outbound::StateStore>,
    /// Rate-limit counters.
    pub rate_limiter: Arc<super::ratelimit::RateLimiter>,
}

/// The data of one plugin instance's store.
pub struct PluginState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: MemoryLimiter,
    pub(super) label: Arc<InstanceLabel>,
    pub(super) services: Arc<Services>,
    /// The state and cached responses of this instance's pool.
    pub(super) scope: Arc<super::outbound::StateScope>,
    /// The request being handled during a hook call ([`Exchange::idle`] between calls).
    pub(super) exchange: Exchange,
    /// Set while `configure` runs: the only time body access can be declared.
    pub(super) configuring: bool,
    /// The bodies the configured plugin asked for.
    pub(super) body_limits: BodyLimits,
    /// The request headers the configured plugin asserts.
    pub(super) asserted_headers: Vec<HeaderName>,
    epoch: Instant,
}

/// The instance's memory limit, remembering the largest linear memory it has grown to.
pub struct MemoryLimiter {
    limits: StoreLimits,
    high_water: usize,
}

impl MemoryLimiter {
    /// The largest size any of the instance's memories has reached, in bytes.
    pub fn high_water(&self) -> usize {
        self.high_water
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.high_water = self.high_water.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The bodies a configured plugin reads, and up to how many bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyLimits {
    /// Request bodies, up to this size.
    pub request: Option<u64>,
    /// Response bodies, up to this size.
    pub response: Option<u64>,
}

impl PluginState {
    pub(super) fn new(
        label: Arc<InstanceLabel>,
        limits: StoreLimits,
        services: Arc<Services>,
        scope: Arc<super::outbound::StateScope>,
    ) -> Self {
        Self {
            // No preopened directories, environment, arguments, stdin or network access: the
            // WASI imports a Rust or Python guest's standard library links against resolve, but
            // reach nothing on the host (see `super::wasi`). Sockets are refused outright, not
            // only by the default address check: outbound traffic goes through `http`, which
            // has an allow-list. Output goes to the gateway's log.
            wasi: WasiCtx::builder()
                .stdout(PluginOutput::new(label.clone(), Stdio::Stdout))
                .stderr(PluginOutput::new(label.clone(), Stdio::Stderr))
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            table: ResourceTable::new(),
            limits: MemoryLimiter {
                limits,
                high_water: 0,
            },
            label,
            services,
            scope,
            exchange: Exchange::idle(),
            configuring: false,
            body_limits: BodyLimits::default(),
            asserted_headers: Vec::new(),
            epoch: Instant::now(),
        }
    }

    pub(super) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    fn exchange(&mut self) -> wasmtime::Result<&mut Exchange> {
        Ok(&mut self.exchange)
    }

    fn response_head(&mut self) -> wasmtime::Result<&mut http::response::Parts> {
        self.exchange()?
            .response
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("response used outside the response phase"))
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// `name` as a field a plugin may edit: valid, and not one the gateway manages
/// ([`crate::fields::PLUGIN_PROTECTED`]).
pub(super) fn editable_name(name: &str) -> Result<HeaderName, EditError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| EditError::InvalidName)?;
    if crate::fields::PLUGIN_PROTECTED.contains(&name) {
        return Err(EditError::Forbidden);
    }
    Ok(name)
}

/// Reading and editing a header map: shared by requests and responses.
mod fields {
    use super::*;

    pub fn first(map: &HeaderMap, name: &str) -> Option<String> {
        map.get(name)?.to_str().ok().map(str::to_owned)
    }

    pub fn all(map: &HeaderMap, name: &str) -> Vec<String> {
        map.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    pub fn names(map: &HeaderMap) -> Vec<String> {
        map.keys().map(|k| k.as_str().to_owned()).collect()
    }

    pub fn set(
        map: &mut HeaderMap,
        name: &str,
        value: &str,
        append: bool,
    ) -> Result<(), EditError> {
        let name = editable_name(name)?;
        let value = HeaderValue::from_str(value).map_err(|_| EditError::InvalidValue)?;
        if append {
            map.append(name, value);
        } else {
            map.insert(name, value);
        }
        Ok(())
    }

    pub fn remove(map: &mut HeaderMap, name: &str) -> Result<(), EditError> {
        let name = editable_name(name)?;
        map.remove(name);
        Ok(())
    }
}

/// The trap for replacing a body the plugin never declared: a plugin bug, so the instance is
/// discarded and the request fails (or skips the plugin) like any other fault.
fn undeclared(message: &str) -> wasmtime::Error {
    wasmtime::format_err!(
        "set-body on the {message} without declaring {message} bodies in configure (body-access.buffer)"
    )
}

impl types::Host for PluginState {}
