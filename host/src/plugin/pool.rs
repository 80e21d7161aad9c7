//! Pools of configured instances: one pool per (plugin, route config).
//!
//! An instance serves one hook call at a time and goes back to the pool afterwards, so a
//! request pays only for the call itself (a few microseconds), not for instantiation and
//! configuration. Hook calls are synchronous and never held across an `.await`, so a pool
//! needs at most as many instances as there are worker threads. An instance that trapped,
//! ran past its deadline or hit its memory limit is never reused: it is dropped and a fresh
//! one is configured in the background.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::Plugin;
use super::bindings::wasmgate::plugin::types::{Action, ConfigError, Hooks};
use super::host::{
    BodyLimits, ContextHandle, InstanceLabel, PluginState, RequestHandle, ResponseHandle,
};
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
    /// No instance could be created (instance limit reached, or configure failed).
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
}

/// One plugin configured for one route.
pub struct PluginPool {
    plugin: Arc<LoadedPlugin>,
    label: Arc<InstanceLabel>,
    config: String,
    hooks: Hooks,
    bodies: BodyLimits,
    asserted: Vec<http::HeaderName>,
    idle: Mutex<Vec<Instance>>,
    max_idle: usize,
}

impl PluginPool {
    /// Instantiates the plugin and configures it with `config` (JSON). A refused config comes
    /// back as the plugin's [`ConfigError`]; any other failure as the `Err` of the outer result.
    pub async fn new(
        plugin: Arc<LoadedPlugin>,
        route: &str,
        config: String,
    ) -> Result<Result<Arc<Self>, ConfigError>, PluginFault> {
        let label = Arc::new(InstanceLabel {
            plugin: plugin.name.clone(),
            route: route.into(),
        });
        let max_idle = std::thread::available_parallelism().map_or(4, |n| n.get()) * 2;
        let mut pool = Self {
            plugin,
            label,
            config,
            hooks: Hooks::empty(),
            bodies: BodyLimits::default(),
            asserted: Vec::new(),
            idle: Mutex::new(Vec::new()),
            max_idle,
        };
        let (instance, configured) = pool.instantiate().await?;
        match configured {
            Ok(hooks) => pool.hooks = hooks,
            Err(refused) => return Ok(Err(refused)),
        }
        pool.bodies = instance.store.data().body_limits;
        pool.asserted = instance.store.data().asserted_headers.clone();
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

    /// Whether this pool runs exactly `plugin`'s module and settings with `config` on `route`,
    /// so a reload can keep it (and its warm instances) instead of building a new one.
    pub fn serves(&self, plugin: &LoadedPlugin, route: &str, config: &str) -> bool {
        *self.label.route == *route
            && self.config == config
            && self.plugin.name == plugin.name
            && self.plugin.module_hash == plugin.module_hash
            && self.plugin.settings == plugin.settings
    }

    /// Runs the request hook on `exchange`.
    pub async fn on_request(
        self: &Arc<Self>,
        exchange: Exchange,
    ) -> (Exchange, Result<Action, PluginFault>) {
        let mut instance = match self.prepare().await {
            Ok(instance) => instance,
            Err(fault) => return (exchange, Err(fault)),
        };
        instance.store.data_mut().exchange = exchange;
        let (req, ctx) = (Resource::new_borrow(0), Resource::new_borrow(0));
        let result = instance
            .bindings
            .wasmgate_plugin_handler()
            .call_on_request(&mut instance.store, req, ctx)
            .await;
        self.finish(instance, result)
    }

    /// Runs the response hook on `exchange` (whose `response` must be set).
    pub async fn on_response(
        self: &Arc<Self>,
        exchange: Exchange,
    ) -> (Exchange, Result<(), PluginFault>) {
        let mut instance = match self.prepare().await {
            Ok(instance) => instance,
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
        let result = instance
            .bindings
            .wasmgate_plugin_handler()
            .call_on_response(&mut instance.store, req, resp, ctx)
            .await;
        self.finish(instance, result)
    }

    /// An instance ready for a hook call, its deadline armed.
    async fn prepare(&self) -> Result<Instance, PluginFault> {
        let mut instance = self.checkout().await?;
        instance
            .store
            .set_epoch_deadline(self.plugin.deadline_ticks());
        Ok(instance)
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
                let memory = instance.store.data().limits.high_water();
                let pooled = self.plugin.settings.isolation == Isolation::Pooled;
                if pooled && memory > self.plugin.settings.memory_limit / 4 * 3 {
                    // Garbage-collected guests (Python, JavaScript) grow their heap request after
                    // request. Recycle an instance past three quarters of its limit, before a
                    // request finds it full and traps.
                    tracing::debug!(
                        plugin = &*self.label.plugin,
                        route = &*self.label.route,
                        memory,
                        "recycling a plugin instance near its memory limit"
                    );
                    drop(instance);
                    self.replenish();
                } else if pooled {
                    self.checkin(instance);
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
        let pool = Arc::clone(self);
        runtime.spawn(async move {
            if let Ok((instance, Ok(_))) = pool.instantiate().await {
                pool.checkin(instance);
            }
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
            PluginState::new(self.label.clone(), limits, self.plugin.services.clone()),
        );
        store.limiter(|state| state.limiter());
        let ticks = u64::try_from(CONFIGURE_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        store.set_epoch_deadline(ticks);
        let bindings = self
            .plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.fault(FaultKind::Unavailable, &e))?;
        store.data_mut().configuring = true;
        let configured = bindings
            .wasmgate_plugin_handler()
            .call_configure(&mut store, &self.config)
            .await
            .map_err(|e| self.fault(classify(&e), &e))?;
        store.data_mut().configuring = false;
        Ok((Instance { store, bindings }, configured))
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

fn classify(error: &wasmtime::Error) -> FaultKind {
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return FaultKind::Timeout;
    }
    if format!("{error:#}").contains("forcing trap when growing memory") {
        return FaultKind::MemoryLimit;
    }
    FaultKind::Trap
}
