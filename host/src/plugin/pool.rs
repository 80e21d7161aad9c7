//! Pools of configured instances: one pool per (plugin, route config).
//!
//! An instance serves one hook call at a time and goes back to the pool afterwards, so a
//! request pays only for the call itself (a few microseconds), not for instantiation and
//! configuration. An instance that trapped, ran past its deadline or hit its memory limit is
//! never reused: it is dropped and a fresh one is configured in the background.
//!
//! Deadlines are wall-clock time. The epoch deadline stops a guest that computes too long, but
//! it only fires while guest code runs: a guest waiting in an async host call (outbound HTTP, a
//! WASI sleep) would never see it. So every call is also bounded by `tokio::time::timeout`;
//! dropping the call future cancels the call, and the instance is discarded like any other
//! that hit its deadline.
//!
//! A hook can wait in a host call, so a pool can have many calls in flight at once. Each pool
//! caps them (`max_instances` of the plugin, per route), so a flood on one route cannot take
//! every instance slot of the engine from the others: a call over the cap waits up to the
//! plugin's `timeout` for a slot, then fails as `unavailable` on that route alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use wasmtime::component::Resource;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::Plugin;
use super::bindings::wasmgate::plugin::types::{Action, ConfigError, Hooks};
use super::host::{
    BodyLimits, ContextHandle, InstanceLabel, PluginState, RequestHandle, ResponseHandle,
};
use super::outbound::StateScope;
use super::{Isolation, LoadedPlugin};
use crate::exchange::Exchange;

/// Deadline for instantiation and `configure`, which may do more work than a hook (compile
/// rules, parse keys).
const CONFIGURE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a plugin call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The guest trapped (panic, unreachable, out-of-bounds access…).
    Trap,
    /// The call ran past the plugin's deadline.
    Timeout,
    /// The instance tried to grow its memory past the plugin's limit.
    MemoryLimit,
    /// No instance could be had: every instance the route may use was busy, the engine's
    /// instance limit was reached, or configure failed.
    Unavailable,
}

impl FaultKind {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Timeout => "timeout",
            FaultKind::MemoryLimit => "memory-limit",
            FaultKind::Unavailable => "unavailable",
        }
    }
}

/// A failed plugin call.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` on route `{route}` failed ({}): {detail}", kind.as_str())]
pub struct PluginFault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// The route.
    pub route: Arc<str>,
    /// The engine's description.
    pub detail: String,
}

struct Instance {
    store: Store<PluginState>,
    bindings: Plugin,
    /// Its linear memory once configured: what the plugin needs before any request.
    fresh: usize,
}

impl Instance {
    /// Whether the instance has grown through three quarters of the headroom it had when
    /// fresh. Garbage-collected guests (Python, JavaScript) grow their heap request after
    /// request; recycling them here comes before a request finds the memory full and traps.
    /// The measure is headroom, not the limit: an instance that needs most of its limit from
    /// the start (a compiled rule set) but stays flat is kept, since its replacement would be
    /// no smaller.
    fn outgrown(&self, limit: usize) -> bool {
        let memory = self.store.data().limits.high_water();
        let headroom = limit.saturating_sub(self.fresh);
        memory > self.fresh + headroom / 4 * 3
    }
}

/// Why a call was cut off at its wall-clock deadline (classified as [`FaultKind::Timeout`]).
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its {} deadline", humantime::format_duration(*.0))]
struct WallDeadline(Duration);

/// One plugin configured for one route.
pub struct PluginPool {
    plugin: Arc<LoadedPlugin>,
    label: Arc<InstanceLabel>,
    config: String,
    /// The `state_scope` the route's entry named, if any.
    shared_scope: Option<String>,
    scope: Arc<StateScope>,
    hooks: Hooks,
    bodies: BodyLimits,
    asserted: Vec<http::HeaderName>,
    idle: Mutex<Vec<Instance>>,
    max_idle: usize,
    /// One permit per call in flight (and per instance being configured in the background).
    slots: Arc<Semaphore>,
    /// Linear memory of the first instance once configured.
    footprint: usize,
}

impl PluginPool {
    /// Instantiates the plugin and configures it with `config` (JSON). Its state lives in the
    /// scope `shared_scope` names, or else in one of its own. A refused config comes back as
    /// the plugin's [`ConfigError`]; any other failure as the `Err` of the outer result.
    pub async fn new(
        plugin: Arc<LoadedPlugin>,
        route: &str,
        config: String,
        shared_scope: Option<String>,
    ) -> Result<Result<Arc<Self>, ConfigError>, PluginFault> {
        let label = Arc::new(InstanceLabel {
            plugin: plugin.name.clone(),
            route: route.into(),
        });
        let scope = plugin.services.state.scope(
            &plugin.name,
            route,
            &config,
            shared_scope.as_deref(),
            plugin.settings.state,
        );
        let slots = usize::try_from(plugin.settings.max_instances)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        let mut pool = Self {
            plugin,
            label,
            config,
            shared_scope,
            scope,
            hooks: Hooks::empty(),
            bodies: BodyLimits::default(),
            asserted: Vec::new(),
            idle: Mutex::new(Vec::new()),
            max_idle: (cores * 2).min(slots),
            slots: Arc::new(Semaphore::new(slots)),
            footprint: 0,
        };
        let (instance, configured) = pool.instantiate().await?;
        match configured {
            Ok(hooks) => pool.hooks = hooks,
            Err(refused) => return Ok(Err(refused)),
        }
        pool.bodies = instance.store.data().body_limits;
        pool.asserted = instance.store.data().asserted_headers.clone();
        pool.footprint = instance.fresh;
        let limit = pool.plugin.settings.memory_limit;
        if instance.fresh > limit / 4 * 3 {
            tracing::warn!(
                plugin = &*pool.label.plugin,
                route = &*pool.label.route,
                memory = instance.fresh,
                memory_limit = limit,
                "a configured instance already uses most of its memory_limit; \
                 requests may exhaust the rest: raise the plugin's memory_limit"
            );
        }
        pool.checkin(instance);
        Ok(Ok(Arc::new(pool)))
    }

    /// Whether the configured plugin asked for its request hook.
    pub fn wants_request(&self) -> bool {
        self.hooks.contains(Hooks::REQUEST)
    }

    /// Whether the configured plugin asked for its response hook.
    pub fn wants_response(&self) -> bool {
        self.hooks.contains(Hooks::RESPONSE)
    }

    /// The route this pool serves.
    pub fn route(&self) -> &str {
        &self.label.route
    }

    /// Configured instances waiting for a request.
    pub fn idle_instances(&self) -> usize {
        self.lock_idle().len()
    }

    /// Linear memory an instance holds once configured, before any request.
    pub fn footprint(&self) -> usize {
        self.footprint
    }

    /// The bodies the configured plugin reads, and up to what size.
    pub fn bodies(&self) -> BodyLimits {
        self.bodies
    }

    /// Request headers the configured plugin asserts (a consumer, claims): the gateway removes
    /// them from every client request, on every route.
    pub fn asserted_headers(&self) -> &[http::HeaderName] {
        &self.asserted
    }

    /// The plugin this pool runs.
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// Whether this pool runs exactly `plugin`'s module and settings with `config` and state
    /// scope on `route`, so a reload can keep it (and its warm instances) instead of building
    /// a new one.
    pub fn serves(
        &self,
        plugin: &LoadedPlugin,
        route: &str,
        config: &str,
        shared_scope: Option<&str>,
    ) -> bool {
        *self.label.route == *route
            && self.config == config
            && self.shared_scope.as_deref() == shared_scope
            && self.plugin.name == plugin.name
            && self.plugin.module_hash == plugin.module_hash
            && self.plugin.settings == plugin.settings
    }

    /// Runs the request hook on `exchange`.
    pub async fn on_request(
        self: &Arc<Self>,
        exchange: Exchange,
    ) -> (Exchange, Result<Action, PluginFault>) {
        let (mut instance, _slot) = match self.prepare().await {
            Ok(prepared) => prepared,
            Err(fault) => return (exchange, Err(fault)),
        };
        instance.store.data_mut().exchange = exchange;
        let (req, ctx) = (Resource::new_borrow(0), Resource::new_borrow(0));
        let call = instance.bindings.wasmgate_plugin_handler().call_on_request(
            &mut instance.store,
            req,
            ctx,
        );
        let result = within(self.plugin.call_deadline(), call).await;
        self.finish(instance, result)
    }

    /// Runs the response hook on `exchange` (whose `response` must be set).
    pub async fn on_response(
        self: &Arc<Self>,
        exchange: Exchange,
    ) -> (Exchange, Result<(), PluginFault>) {
        let (mut instance, _slot) = match self.prepare().await {
            Ok(prepared) => prepared,
            Err(fault) => return (exchange, Err(fault)),
        };
        instance.store.data_mut().exchange = exchange;
        let (req, resp, ctx): (
            Resource<RequestHandle>,
            Resource<ResponseHandle>,
            Resource<ContextHandle>,
        ) = (
            Resource::new_borrow(0),
            Resource::new_borrow(0),
            Resource::new_borrow(0),
        );
        let call = instance
            .bindings
            .wasmgate_plugin_handler()
            .call_on_response(&mut instance.store, req, resp, ctx);
        let result = within(self.plugin.call_deadline(), call).await;
        self.finish(instance, result)
    }

    /// An instance ready for a hook call, its epoch deadline armed, and the slot it holds
    /// until the call is over.
    async fn prepare(&self) -> Result<(Instance, OwnedSemaphorePermit), PluginFault> {
        let slot = self.slot().await?;
        let mut instance = self.checkout().await?;
        instance
            .store
            .set_epoch_deadline(self.plugin.deadline_ticks());
        Ok((instance, slot))
    }

    /// Waits up to the plugin's `timeout` for one of the pool's call slots.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, PluginFault> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let wait = self.plugin.settings.timeout;
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            // The semaphore is never closed; treat it like a full pool all the same.
            Ok(Err(_)) | Err(_) => Err(PluginFault {
                kind: FaultKind::Unavailable,
                plugin: self.label.plugin.clone(),
                route: self.label.route.clone(),
                detail: format!(
                    "all {} instances this route may use are busy (max_instances); waited {}",
                    self.plugin.settings.max_instances,
                    humantime::format_duration(wait)
                ),
            }),
        }
    }

    /// Takes the exchange back from a finished call; returns the instance to the pool, or
    /// discards it if the call failed.
    fn finish<R>(
        self: &Arc<Self>,
        mut instance: Instance,
        result: wasmtime::Result<R>,
    ) -> (Exchange, Result<R, PluginFault>) {
        let exchange = std::mem::replace(&mut instance.store.data_mut().exchange, Exchange::idle());
        match result {
            Ok(value) => {
                if self.plugin.settings.isolation == Isolation::Pooled {
                    if instance.outgrown(self.plugin.settings.memory_limit) {
                        tracing::debug!(
                            plugin = &*self.label.plugin,
                            route = &*self.label.route,
                            memory = instance.store.data().limits.high_water(),
                            "recycling a plugin instance that outgrew its headroom"
                        );
                        drop(instance);
                        self.replenish();
                    } else {
                        self.checkin(instance);
                    }
                }
                (exchange, Ok(value))
            }
            Err(error) => {
                let fault = self.fault(classify(&error), &error);
                // The instance may be in any state now: never reuse it.
                drop(instance);
                self.replenish();
                (exchange, Err(fault))
            }
        }
    }

    async fn checkout(&self) -> Result<Instance, PluginFault> {
        if let Some(instance) = self.lock_idle().pop() {
            return Ok(instance);
        }
        match self.instantiate().await? {
            (instance, Ok(_)) => Ok(instance),
            (_, Err(refused)) => Err(PluginFault {
                kind: FaultKind::Unavailable,
                plugin: self.label.plugin.clone(),
                route: self.label.route.clone(),
                detail: format!(
                    "configure refused a config it accepted before: {}",
                    refused.message
                ),
            }),
        }
    }

    fn checkin(&self, instance: Instance) {
        let mut idle = self.lock_idle();
        if idle.len() < self.max_idle {
            idle.push(instance);
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        // A panic while holding the lock cannot leave the Vec inconsistent: recover it.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Configures a replacement for a discarded instance off the request path.
    fn replenish(self: &Arc<Self>) {
        if self.plugin.settings.isolation == Isolation::PerRequest {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A replacement counts against the pool's cap while it is being configured.
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return;
        };
        let pool = Arc::clone(self);
        runtime.spawn(async move {
            if let Ok((instance, Ok(_))) = pool.instantiate().await {
                pool.checkin(instance);
            }
            drop(slot);
        });
    }

    async fn instantiate(&self) -> Result<(Instance, Result<Hooks, ConfigError>), PluginFault> {
        let settings = &self.plugin.settings;
        let limits = StoreLimitsBuilder::new()
            .memory_size(settings.memory_limit)
            .trap_on_grow_failure(true)
            .build();
        let engine = self.plugin.pre.engine();
        let mut store = Store::new(
            engine,
            PluginState::new(
                self.label.clone(),
                limits,
                self.plugin.services.clone(),
                self.scope.clone(),
            ),
        );
        store.limiter(|state| state.limiter());
        // `configure` may fetch over HTTP (a JWKS document, say): it gets the time one
        // outbound request may take on top, in epoch ticks and in wall-clock time alike.
        let budget = CONFIGURE_TIMEOUT + self.plugin.http_allowance();
        let ticks = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
        store.set_epoch_deadline(ticks);
        let bindings = self
            .plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.fault(FaultKind::Unavailable, &e))?;
        store.data_mut().configuring = true;
        let call = bindings
            .wasmgate_plugin_handler()
            .call_configure(&mut store, &self.config);
        let configured = within(budget, call)
            .await
            .map_err(|e| self.fault(classify(&e), &e))?;
        store.data_mut().configuring = false;
        let fresh = store.data().limits.high_water();
        Ok((
            Instance {
                store,
                bindings,
                fresh,
            },
            configured,
        ))
    }

    fn fault(&self, kind: FaultKind, error: &wasmtime::Error) -> PluginFault {
        PluginFault {
            kind,
            plugin: self.label.plugin.clone(),
            route: self.label.route.clone(),
            detail: format!("{error:#}"),
        }
    }
}

/// Runs a call for at most `deadline` of wall-clock time. On expiry the call is dropped
/// (which cancels it, wherever the guest was) and the caller must discard the instance.
async fn within<R>(
    deadline: Duration,
    call: impl std::future::Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(WallDeadline(deadline))),
    }
}

fn classify(error: &wasmtime::Error) -> FaultKind {
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return FaultKind::Timeout;
    }
    if error.downcast_ref::<WallDeadline>().is_some() {
        return FaultKind::Timeout;
    }
    if format!("{error:#}").contains("forcing trap when growing memory") {
        return FaultKind::MemoryLimit;
    }
    FaultKind::Trap
}
