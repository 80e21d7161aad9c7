//! The plugin runtime: one wasmtime engine, compiled plugins, and pools of configured instances.
//!
//! - [`PluginRuntime`] owns the engine (pooling allocator, copy-on-write memory images, epoch
//!   interruption driven by a 1 ms ticker) and the on-disk cache of compiled artefacts.
//! - [`LoadedPlugin`] is one `[plugins.<name>]` entry: its compiled component, linked against
//!   exactly the capabilities the config grants.
//! - [`PluginPool`] is one plugin configured for one route: pre-configured instances reused
//!   across requests, one request at a time each.

mod builtin;
mod cache;
pub mod compat;
mod host;
mod jwt;
mod outbound;
mod output;
mod pool;
mod ratelimit;
mod wasi;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use builtin::{BUILTIN_PLUGINS, builtin};
pub use host::{BodyLimits, InstanceLabel};
pub use outbound::{HttpSettings, StateBudget};
pub use pool::{FaultKind, PluginFault, PluginPool};
pub use ratelimit::{DEFAULT_RATE_LIMIT_KEYS, RateLimitBackend};
pub use wasi::{WasiAccess, access as wasi_access};

/// Types of the plugin contract as the host sees them.
pub mod contract {
    pub use super::bindings::wasmgate::plugin::types::{Action, ConfigError, Hooks, Reply};
}

#[allow(unsafe_code, unused_doc_comments, missing_docs, clippy::all)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        // Our host functions never block and stay synchronous; WASI's are async (its streams
        // need the Tokio runtime), so hook calls are async too.
        imports: {
            "wasmgate:plugin/http-client.send": async | trappable,
            "wasmgate:plugin/rate-limit.check": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasmgate:plugin/types.request": super::host::RequestHandle,
            "wasmgate:plugin/types.response": super::host::ResponseHandle,
            "wasmgate:plugin/types.context": super::host::ContextHandle,
            "wasmgate:plugin/jwt.key-set": super::jwt::KeySet,
        },
    });
}

use host::PluginState;

/// How often the epoch advances; plugin deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Capabilities a plugin can be granted. Each is one imported WIT interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `wasmgate:plugin/log`: write to the gateway's log. Always granted; accepted in
    /// `grants` for clarity.
    Log,
    /// `wasmgate:plugin/clock`, `wasi:clocks/wall-clock` and `wasi:clocks/monotonic-clock`:
    /// wall-clock and monotonic time (and, through WASI, sleeping).
    Clock,
    /// `wasmgate:plugin/jwt`: JWT verification in native code.
    Jwt,
    /// `wasmgate:plugin/http-client`: outbound HTTP to the hosts in `http_allow`.
    Http,
    /// `wasmgate:plugin/state`: key/value state with expiry, shared by the instances of one
    /// state scope (a route's, unless route entries name a shared `state_scope`).
    State,
    /// `wasmgate:plugin/rate-limit`: atomic rate-limit counters.
    RateLimit,
}

impl Capability {
    /// Every capability, in the order they are documented.
    pub const ALL: [Capability; 6] = [
        Capability::Log,
        Capability::Clock,
        Capability::Jwt,
        Capability::Http,
        Capability::State,
        Capability::RateLimit,
    ];

    /// The config spelling, e.g. `log`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Jwt => "jwt",
            Capability::Http => "http",
            Capability::State => "state",
            Capability::RateLimit => "rate-limit",
        }
    }

    /// The contract interface it grants, e.g. `http-client` (of `wasmgate:plugin`).
    pub fn interface_name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Jwt => "jwt",
            Capability::Http => "http-client",
            Capability::State => "state",
            Capability::RateLimit => "rate-limit",
        }
    }
}

/// What a plugin does when it traps, times out or exceeds its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// The request fails with 500.
    #[default]
    Fail,
    /// The faulty plugin is skipped for this request and the chain goes on (fail-open).
    Skip,
}

/// How instances are shared between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Configured instances are reused across requests (one request at a time each).
    #[default]
    Pooled,
    /// Every hook call gets a fresh instance: nothing survives from one request to the next.
    PerRequest,
}

/// Limits and policies for one plugin, from its `[plugins.<name>]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// Capabilities linked for this plugin.
    pub grants: Vec<Capability>,
    /// Deadline for one hook call.
    pub timeout: Duration,
    /// Maximum linear memory of one instance, in bytes.
    pub memory_limit: usize,
    /// What a fault does to the request.
    pub on_error: FailurePolicy,
    /// Instance sharing.
    pub isolation: Isolation,
    /// Outbound HTTP, when granted.
    pub http: Option<HttpSettings>,
    /// Hook calls in flight at once on one route (each on its own instance).
    pub max_instances: u32,
    /// What one state scope of the plugin may hold.
    pub state: StateBudget,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            grants: Vec::new(),
            timeout: Duration::from_millis(20),
            memory_limit: 32 << 20,
            on_error: FailurePolicy::Fail,
            isolation: Isolation::Pooled,
            http: None,
            max_instances: 250,
            state: StateBudget::default(),
        }
    }
}

/// Why a plugin module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file does not start with the WebAssembly magic number.
    #[error("not a WebAssembly file (it lacks the `\\0asm` header)")]
    NotWasm,
    /// A core module was given where a component is needed.
    #[error(
        "a core WebAssembly module, not a component: build it for the wasm32-wasip2 target, or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// The bytes are not a component wasmtime can compile.
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(wasmtime::Error),
    /// The component needs a capability the config does not grant.
    #[error(
        "it imports `{interface}`, which is not granted: add \"{capability}\" to the plugin's `grants`"
    )]
    NotGranted {
        /// The imported interface.
        interface: String,
        /// The grant that would allow it.
        capability: &'static str,
    },
    /// The component was built against a contract version this gateway cannot run, or does
    /// not export the handler.
    #[error("{0}")]
    Incompatible(String),
    /// The component does not implement the contract (or imports something the host lacks).
    #[error("it does not implement the wasmgate:plugin contract: {0:#}")]
    Contract(wasmtime::Error),
}

/// Options for the engine.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Where compiled artefacts are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Maximum number of plugin instances alive at once, across all plugins and routes.
    pub max_instances: u32,
    /// Where rate-limit counters live.
    pub rate_limit: RateLimitBackend,
    /// Keys the in-process rate-limit counters track at most (default
    /// [`DEFAULT_RATE_LIMIT_KEYS`]).
    pub rate_limit_max_keys: Option<usize>,
}

/// The engine shared by every plugin, for the life of the process.
pub struct PluginRuntime {
    engine: Engine,
    cache: Option<cache::ArtifactCache>,
    state: Arc<outbound::StateStore>,
    rate_limiter: Arc<ratelimit::RateLimiter>,
    /// Components compiled by this process, by content hash: reloading an unchanged module
    /// costs one hash.
    compiled: std::sync::Mutex<HashMap<String, Component>>,
}

impl PluginRuntime {
    /// Creates the engine and starts its epoch ticker.
    pub fn new(options: &RuntimeOptions) -> anyhow::Result<Self> {
        let max = options.max_instances.max(16);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust or Python component holds a handful of core instances, memories and tables.
        pool.total_component_instances(max)
            .total_core_instances(max * 8)
            .total_memories(max * 2)
            .total_tables(max * 4)
            .max_memories_per_component(4)
            .max_tables_per_component(16);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // For profiling plugins: `perf` reads the names of compiled plugin functions from
        // /tmp/perf-<pid>.map (a plugin built without `strip` keeps its function names).
        if std::env::var_os("WASMGATE_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        spawn_epoch_ticker(&engine);
        let cache = options
            .cache_dir
            .as_ref()
            .map(|dir| cache::ArtifactCache::open(dir.clone()));
        Ok(Self {
            engine,
            cache,
            state: Default::default(),
            rate_limiter: Arc::new(
                ratelimit::RateLimiter::new(
                    &options.rate_limit,
                    options
                        .rate_limit_max_keys
                        .unwrap_or(DEFAULT_RATE_LIMIT_KEYS),
                )
                .map_err(|e| anyhow::anyhow!(e))?,
            ),
            compiled: Default::default(),
        })
    }

    /// Compiles (or loads from the cache) a plugin module and links it against the granted
    /// capabilities.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        settings: PluginSettings,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        check_component_header(bytes)?;
        let module_hash = cache::content_hash(bytes);
        let component = self.compile(&module_hash, bytes)?;
        let contract = compat::ContractUse::of(&component, &self.engine);
        if let Some(why) = contract.incompatibility() {
            return Err(LoadError::Incompatible(why));
        }
        check_grants(&contract, &settings)?;
        let linker = self.linker(&settings).map_err(LoadError::Contract)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(LoadError::Contract)?;
        let pre = bindings::PluginPre::new(pre).map_err(LoadError::Contract)?;
        let services = Arc::new(host::Services {
            outbound: settings
                .http
                .clone()
                .map(|http| Arc::new(outbound::Outbound::new(http))),
            state: self.state.clone(),
            rate_limiter: self.rate_limiter.clone(),
        });
        Ok(Arc::new(LoadedPlugin {
            name: name.into(),
            module_hash,
            pre,
            settings,
            services,
        }))
    }

    /// What `wasmgate plugin check` reports: the module's contract version, imports and
    /// exports, and whether it links with every capability granted.
    pub fn inspect(&self, bytes: &[u8]) -> Result<ModuleReport, LoadError> {
        check_component_header(bytes)?;
        let module_hash = cache::content_hash(bytes);
        let started = std::time::Instant::now();
        let component = self.compile(&module_hash, bytes)?;
        let load_time = started.elapsed();
        let contract = compat::ContractUse::of(&component, &self.engine);
        let every_grant = PluginSettings {
            grants: Capability::ALL.to_vec(),
            ..PluginSettings::default()
        };
        let link = self.load("check", bytes, every_grant).map(|_| ());
        Ok(ModuleReport {
            module_hash,
            load_time,
            contract,
            link,
        })
    }

    fn compile(&self, module_hash: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        let compiled = |map: &HashMap<String, Component>| map.get(module_hash).cloned();
        if let Some(component) = compiled(&self.lock_compiled()) {
            return Ok(component);
        }
        let component = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, module_hash, bytes),
            None => Component::new(&self.engine, bytes),
        }
        .map_err(LoadError::Compile)?;
        self.lock_compiled()
            .insert(module_hash.to_owned(), component.clone());
        Ok(component)
    }

    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        self.compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn linker(&self, settings: &PluginSettings) -> wasmtime::Result<Linker<PluginState>> {
        use bindings::wasmgate::plugin::{
            asserted_headers, body_access, clock, http_client, jwt, log, rate_limit, state, types,
        };
        let mut linker = Linker::new(&self.engine);
        // WASI only as far as the grants go: time needs `clock`; the rest is inert.
        wasi::add_to_linker(&mut linker, &settings.grants)?;
        types::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        // Logging is always available: it only writes to the gateway's own log.
        log::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        // Declaring body access is open to every plugin: it is a cost, not a capability.
        body_access::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        // Declaring asserted headers only narrows what clients may send: open to every plugin.
        asserted_headers::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        for capability in &settings.grants {
            match capability {
                Capability::Log => {}
                Capability::Clock => {
                    clock::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
                }
                Capability::Jwt => {
                    jwt::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
                }
                Capability::Http => {
                    http_client::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
                }
                Capability::State => {
                    state::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
                }
                Capability::RateLimit => {
                    rate_limit::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
                }
            }
        }
        Ok(linker)
    }
}

/// A module as `wasmgate plugin check` sees it.
pub struct ModuleReport {
    /// SHA-256 of the module, hex.
    pub module_hash: String,
    /// Time to compile it, or to load it from the compiled cache.
    pub load_time: Duration,
    /// Its contract version, imports and exports.
    pub contract: compat::ContractUse,
    /// Whether it links against this gateway with every capability granted.
    pub link: Result<(), LoadError>,
}

/// Names the grant a missing capability needs, before linking would fail less helpfully.
fn check_grants(
    contract: &compat::ContractUse,
    settings: &PluginSettings,
) -> Result<(), LoadError> {
    for (import, capability) in &contract.contract_imports {
        if let Some(capability) = capability
            && !settings.grants.contains(capability)
        {
            return Err(LoadError::NotGranted {
                interface: import.clone(),
                capability: capability.name(),
            });
        }
    }
    Ok(())
}

/// Turns a plugin's reply into a response. A status outside 100–999 or a header the host
/// refuses (invalid, or managed by the gateway such as `content-length`) makes the whole reply
/// invalid: answering with half of what the plugin meant would be worse than failing.
pub fn reply_into_response(reply: contract::Reply) -> Result<http::Response<bytes::Bytes>, String> {
    let status = http::StatusCode::from_u16(reply.status)
        .map_err(|_| format!("reply status {} is not a valid status code", reply.status))?;
    let mut response = http::Response::new(bytes::Bytes::from(reply.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        let header = host::editable_name(&name)
            .map_err(|e| format!("reply header `{name}` refused: {e:?}"))?;
        let value = http::HeaderValue::from_str(&value)
            .map_err(|_| format!("reply header `{name}` has an invalid value"))?;
        headers.append(header, value);
    }
    Ok(response)
}

/// Tells apart "not Wasm at all" and "a core module, not a component" before the compiler
/// gives a less direct answer.
fn check_component_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_LAYER: [u8; 2] = [0x01, 0x00];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotWasm);
    }
    if bytes[6..8] != COMPONENT_LAYER {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wasmgate-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the plugin deadline ticker; plugin deadlines will not fire");
    }
}

/// One `[plugins.<name>]` entry, compiled and linked.
pub struct LoadedPlugin {
    name: Arc<str>,
    module_hash: String,
    pre: bindings::PluginPre<PluginState>,
    settings: PluginSettings,
    services: Arc<host::Services>,
}

impl LoadedPlugin {
    /// The plugin's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the module, hex.
    pub fn module_hash(&self) -> &str {
        &self.module_hash
    }

    /// Its limits and policies.
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// The extra time a call may take because it waits on outbound HTTP: one request's
    /// `http_timeout` when the plugin is granted `http`, else nothing.
    fn http_allowance(&self) -> Duration {
        self.settings
            .http
            .as_ref()
            .map_or(Duration::ZERO, |http| http.timeout)
    }

    /// The wall-clock deadline of one hook call, host calls included.
    fn call_deadline(&self) -> Duration {
        self.settings.timeout + self.http_allowance()
    }

    /// The same deadline in epoch ticks. Ticks pass while the guest waits in a host call too,
    /// so this is the same budget, enforced when the guest runs.
    fn deadline_ticks(&self) -> u64 {
        let ticks = self.call_deadline().as_micros() / EPOCH_TICK.as_micros();
        // The current tick may end at any moment: one extra tick keeps the deadline from
        // firing early.
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}
