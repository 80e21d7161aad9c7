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

/// Header fields the gateway manages itself; plugins may not edit them.
const HOST_MANAGED: &[HeaderName] = &[
    http::header::CONNECTION,
    http::header::CONTENT_LENGTH,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

pub(super) fn editable_name(name: &str) -> Result<HeaderName, EditError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| EditError::InvalidName)?;
    let managed = HOST_MANAGED.contains(&name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection";
    if managed {
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

impl types::Host for PluginState {}

impl types::HostRequest for PluginState {
    fn method(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.exchange()?.request.method.as_str().to_owned())
    }

    fn scheme(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        let tls = self.exchange()?.tls;
        Ok(if tls { "https" } else { "http" }.to_owned())
    }

    fn authority(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        let req = &self.exchange()?.request;
        Ok(match req.uri.authority() {
            Some(authority) => Some(authority.as_str().to_owned()),
            None => fields::first(&req.headers, "host"),
        })
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.exchange()?.request.uri.path().to_owned())
    }

    fn set_path(
        &mut self,
        _: Resource<RequestHandle>,
        path: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        let uri = &mut self.exchange()?.request.uri;
        // The upstream only ever sees canonical paths, whoever wrote them: a rewrite built from
        // client input cannot smuggle a dot segment, an encoded slash or a query past the route.
        let rules = crate::ingress::PathRules {
            merge_slashes: true,
            allow_path_params: true,
        };
        let Ok(path) = crate::ingress::path::canonical_rewrite(&path, rules) else {
            return Ok(Err(EditError::InvalidValue));
        };
        let query = uri.query();
        let pq = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        Ok(replace_path_and_query(uri, &pq))
    }

    fn query(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        Ok(self.exchange()?.request.uri.query().map(str::to_owned))
    }

    fn set_query(
        &mut self,
        _: Resource<RequestHandle>,
        query: Option<String>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        let uri = &mut self.exchange()?.request.uri;
        let pq = match query {
            Some(q) => format!("{}?{q}", uri.path()),
            None => uri.path().to_owned(),
        };
        Ok(replace_path_and_query(uri, &pq))
    }

    fn client_ip(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.exchange()?.client_ip.to_string())
    }

    fn route(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.exchange()?.route.to_string())
    }

    fn header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(fields::first(&self.exchange()?.request.headers, &name))
    }

    fn header_all(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(fields::all(&self.exchange()?.request.headers, &name))
    }

    fn header_names(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(fields::names(&self.exchange()?.request.headers))
    }

    fn set_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::set(
            &mut self.exchange()?.request.headers,
            &name,
            &value,
            false,
        ))
    }

    fn append_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::set(
            &mut self.exchange()?.request.headers,
            &name,
            &value,
            true,
        ))
    }

    fn remove_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::remove(&mut self.exchange()?.request.headers, &name))
    }

    fn body(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<Vec<u8>>> {
        // Only for a plugin that asked for request bodies: the others never see one.
        if self.body_limits.request.is_none() {
            return Ok(None);
        }
        Ok(self.exchange()?.request_body.as_deref().map(<[u8]>::to_vec))
    }

    fn set_body(&mut self, _: Resource<RequestHandle>, body: Vec<u8>) -> wasmtime::Result<()> {
        if self.body_limits.request.is_none() {
            return Err(undeclared("request"));
        }
        let exchange = self.exchange()?;
        // The new body is what the plugin wrote, not in the client's coding.
        exchange
            .request
            .headers
            .remove(http::header::CONTENT_ENCODING);
        exchange.request_body = Some(body.into());
        Ok(())
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

fn replace_path_and_query(uri: &mut http::Uri, path_and_query: &str) -> Result<(), EditError> {
    let pq =
        http::uri::PathAndQuery::try_from(path_and_query).map_err(|_| EditError::InvalidValue)?;
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(pq);
    // Scheme and authority are unchanged and were valid together, so this cannot fail; keep
    // the original URI's shape if it ever did.
    *uri = http::Uri::from_parts(parts).map_err(|_| EditError::InvalidValue)?;
    Ok(())
}

impl types::HostResponse for PluginState {
    fn status(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<u16> {
        Ok(self.response_head()?.status.as_u16())
    }

    fn set_status(
        &mut self,
        _: Resource<ResponseHandle>,
        status: u16,
    ) -> wasmtime::Result<Result<(), EditError>> {
        let head = self.response_head()?;
        Ok(match http::StatusCode::from_u16(status) {
            Ok(status) => {
                head.status = status;
                Ok(())
            }
            Err(_) => Err(EditError::InvalidValue),
        })
    }

    fn header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(fields::first(&self.response_head()?.headers, &name))
    }

    fn header_all(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(fields::all(&self.response_head()?.headers, &name))
    }

    fn header_names(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(fields::names(&self.response_head()?.headers))
    }

    fn set_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::set(
            &mut self.response_head()?.headers,
            &name,
            &value,
            false,
        ))
    }

    fn append_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::set(
            &mut self.response_head()?.headers,
            &name,
            &value,
            true,
        ))
    }

    fn remove_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::remove(&mut self.response_head()?.headers, &name))
    }

    fn body(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.response_head()?;
        if self.body_limits.response.is_none() {
            return Ok(None);
        }
        Ok(self
            .exchange()?
            .response_body
            .as_deref()
            .map(<[u8]>::to_vec))
    }

    fn set_body(&mut self, _: Resource<ResponseHandle>, body: Vec<u8>) -> wasmtime::Result<()> {
        if self.body_limits.response.is_none() {
            return Err(undeclared("response"));
        }
        self.response_head()?
            .headers
            .remove(http::header::CONTENT_ENCODING);
        self.exchange()?.response_body = Some(body.into());
        Ok(())
    }

    fn drop(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl types::HostContext for PluginState {
    fn get(&mut self, _: Resource<ContextHandle>, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.exchange()?.context.get(&key).cloned())
    }

    fn set(
        &mut self,
        _: Resource<ContextHandle>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.exchange()?.context.insert(key, value);
        Ok(())
    }

    fn remove(&mut self, _: Resource<ContextHandle>, key: String) -> wasmtime::Result<()> {
        self.exchange()?.context.remove(&key);
        Ok(())
    }

    fn drop(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl log::Host for PluginState {
    fn enabled(&mut self, level: log::Level) -> wasmtime::Result<bool> {
        Ok(match level {
            log::Level::Trace => {
                tracing::enabled!(target: "wasmgate::plugin", tracing::Level::TRACE)
            }
            log::Level::Debug => {
                tracing::enabled!(target: "wasmgate::plugin", tracing::Level::DEBUG)
            }
            log::Level::Info => tracing::enabled!(target: "wasmgate::plugin", tracing::Level::INFO),
            log::Level::Warn => tracing::enabled!(target: "wasmgate::plugin", tracing::Level::WARN),
            log::Level::Error => {
                tracing::enabled!(target: "wasmgate::plugin", tracing::Level::ERROR)
            }
        })
    }

    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let (plugin, route) = (&*self.label.plugin, &*self.label.route);
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
        }
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

impl body_access::Host for PluginState {
    fn buffer(&mut self, message: body_access::Message, max_bytes: u64) -> wasmtime::Result<()> {
        if self.configuring {
            let limit = match message {
                body_access::Message::Request => &mut self.body_limits.request,
                body_access::Message::Response => &mut self.body_limits.response,
            };
            *limit = Some(limit.map_or(max_bytes, |before| before.max(max_bytes)));
        }
        Ok(())
    }
}

impl asserted_headers::Host for PluginState {
    fn declare(&mut self, name: String) -> wasmtime::Result<()> {
        // Only names a plugin may set itself: a declaration cannot strip `host` and the like.
        if self.configuring
            && let Ok(name) = editable_name(&name)
            && name != http::header::HOST
            && !self.asserted_headers.contains(&name)
        {
            self.asserted_headers.push(name);
        }
        Ok(())
    }
}

impl clock::Host for PluginState {
    fn now_millis(&mut self) -> wasmtime::Result<u64> {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_nanos(&mut self) -> wasmtime::Result<u64> {
        Ok(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}
