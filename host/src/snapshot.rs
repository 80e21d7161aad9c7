//! The immutable snapshot a request runs on: routes with their upstreams and configured plugin
//! pools, listener specs and server limits, built and fully validated from one config file.
//!
//! Building compiles every plugin module and runs every route's plugin config through the
//! plugin's `configure`, so a snapshot that builds will not fail on config at request time.
//! Problems are collected, not stopped at, so `wasmgate check` lists them all.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use crate::config::raw::{ConfigFiles, OnRedisError, RateLimitBackendName, RouteSection};
use crate::config::{ConfigError, ConfigFile, Problem};
use crate::plugin::{
    self, Capability, FailurePolicy, HttpSettings, LoadedPlugin, PluginPool, PluginRuntime,
    PluginSettings, StateBudget,
};
use crate::router::{HostMatch, Matcher, PathMatch, RouteTable};
use crate::tls;
use crate::upstream::Upstream;

/// Gateway-wide limits.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Time allowed to receive a request head.
    pub header_timeout: Duration,
    /// Time allowed to receive a request body a plugin reads.
    pub body_timeout: Duration,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Keep well-formed client request ids.
    pub trust_request_id: bool,
    /// Worker threads.
    pub workers: usize,
    /// Access log format.
    pub access_log: crate::access_log::AccessLogFormat,
    /// Client connections open at once.
    pub max_connections: usize,
    /// Client connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Idle time after which an upgraded connection is closed.
    pub upgrade_idle_timeout: Duration,
}

/// A listener to bind.
pub struct ListenerSpec {
    /// Its name in the config.
    pub name: String,
    /// Address to bind.
    pub addr: std::net::SocketAddr,
    /// TLS settings, when the listener terminates TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether its peers are trusted to assert identity and forwarding headers.
    pub internal: bool,
}

/// One route, resolved.
pub struct Route {
    /// The route's name.
    pub name: Arc<str>,
    /// Where requests go after the chain.
    pub upstream: Option<Arc<Upstream>>,
    /// Prefix removed from the path before forwarding.
    pub strip_prefix: Option<String>,
    /// Whether the path matches (and the prefix strips) without regard to ASCII case.
    pub case_insensitive: bool,
    /// Protocols a client may `Upgrade` to on this route, lower case.
    pub upgrades: Vec<String>,
    /// The plugin chain, in order.
    pub chain: Vec<Arc<PluginPool>>,
    /// Request counters and latency histogram.
    pub metrics: crate::metrics::RouteMetrics,
    /// What the chain needs from every request, worked out once when the route is built.
    needs: ChainNeeds,
}

/// What a route's plugin chain needs from each request.
struct ChainNeeds {
    response_hooks: bool,
    request_body_limit: Option<u64>,
    response_bodies: bool,
}

impl Route {
    /// A route over `chain`; `max_body` caps the body limits its plugins declare.
    pub fn new(
        name: Arc<str>,
        upstream: Option<Arc<Upstream>>,
        strip_prefix: Option<String>,
        chain: Vec<Arc<PluginPool>>,
        max_body: u64,
    ) -> Self {
        let needs = ChainNeeds {
            response_hooks: chain.iter().any(|p| p.wants_response()),
            // The smallest limit a plugin that reads request bodies declared: each plugin sees
            // bodies up to its own limit, never beyond.
            request_body_limit: chain
                .iter()
                .filter_map(|p| p.bodies().request)
                .min()
                .map(|limit| limit.min(max_body)),
            response_bodies: chain
                .iter()
                .any(|p| p.wants_response() && p.bodies().response.is_some()),
        };
        Self {
            metrics: crate::metrics::RouteMetrics::new(
                &name,
                chain.iter().map(|p| p.plugin().name()),
            ),
            name,
            upstream,
            strip_prefix,
            case_insensitive: false,
            upgrades: Vec::new(),
            chain,
            needs,
        }
    }

    /// Whether any plugin on the route wants the response hook.
    pub fn has_response_hooks(&self) -> bool {
        self.needs.response_hooks
    }

    /// The request body limit on the route (the smallest declared, capped at the gateway's
    /// body limit); `None` when no plugin reads request bodies.
    pub fn request_body_limit(&self) -> Option<u64> {
        self.needs.request_body_limit
    }

    /// Whether a plugin on the route reads response bodies.
    pub fn reads_response_bodies(&self) -> bool {
        self.needs.response_bodies
    }
}

/// Everything a request needs, immutable once built.
pub struct Snapshot {
    /// SHA-256 of the config file it was built from, hex.
    pub config_hash: String,
    /// Every `[plugins.<name>]` entry, by name.
    pub plugins: std::collections::BTreeMap<String, Arc<LoadedPlugin>>,
    /// Routes in match order.
    pub routes: RouteTable<Arc<Route>>,
    /// Listeners, in name order (route `listeners` refer to their indices).
    pub listeners: Vec<ListenerSpec>,
    /// Limits.
    pub server: ServerSettings,
    /// How client requests are made canonical before routing.
    pub ingress: crate::ingress::IngressRules,
    /// Every `[upstreams.<name>]` entry, by name.
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// Span export, when configured (set up at start; a reload cannot change it).
    pub tracing: Option<crate::telemetry::TracingSettings>,
    /// The admin API, when configured (bound at start; a reload cannot change it).
    pub admin: Option<AdminSettings>,
}

/// `[admin]` as the admin listener was started with. No `Debug`: it holds the token.
#[derive(Clone, PartialEq)]
pub struct AdminSettings {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// The bearer token, when one is required.
    pub token: Option<String>,
    /// Extra names (or `name:port`) the API answers to, lower-cased.
    pub allowed_hosts: Vec<String>,
    /// How long a client may take to send a request head.
    pub header_timeout: std::time::Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl AdminSettings {
    /// The settings `[admin]` asks for.
    pub fn from_raw(raw: &crate::config::raw::AdminSection) -> Self {
        Self {
            addr: raw.addr,
            token: raw.token.clone(),
            allowed_hosts: raw
                .allowed_hosts
                .iter()
                .map(|h| h.as_str().to_owned())
                .collect(),
            header_timeout: raw.header_timeout,
            max_connections: raw.max_connections.get(),
        }
    }
}

/// Runtime options derived from a config, needed before any snapshot is built.
pub fn runtime_options(file: &ConfigFile) -> plugin::RuntimeOptions {
    let rt = &file.raw.runtime;
    let cache_dir = match (rt.cache, &rt.cache_dir) {
        (false, _) => None,
        (true, Some(dir)) => Some(file.base_dir().join(dir)),
        (true, None) => default_cache_dir(),
    };
    let limits = &file.raw.rate_limit;
    let rate_limit = match (limits.backend, &limits.redis_url) {
        (RateLimitBackendName::Redis, Some(url)) => plugin::RateLimitBackend::Redis {
            url: url.clone(),
            timeout: limits.redis_timeout,
            fallback_local: limits.on_redis_error == OnRedisError::Local,
        },
        // Validated in `Snapshot::build`; local until then.
        _ => plugin::RateLimitBackend::Local,
    };
    plugin::RuntimeOptions {
        cache_dir,
        max_instances: rt.max_instances,
        rate_limit,
        rate_limit_max_keys: Some(limits.max_keys.get()),
    }
}

/// The `[tracing]` table as settings.
pub fn tracing_settings(
    t: &crate::config::raw::TracingSection,
) -> crate::telemetry::TracingSettings {
    crate::telemetry::TracingSettings {
        otlp_endpoint: t.otlp_endpoint.clone(),
        service_name: t.service_name.clone(),
        sample_ratio: t.sample_ratio,
    }
}

/// Where compiled plugins are cached unless the config says otherwise: `$WASMGATE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/wasmgate` or `~/.cache/wasmgate`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WASMGATE_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasmgate"))
}

impl Snapshot {
    /// Starts what runs beside the requests (active health checks), once the snapshot is the
    /// one serving. Call on a Tokio runtime; upstreams kept from the last snapshot keep theirs.
    pub fn activate(&self) {
        for upstream in self.upstreams.values() {
            upstream.start_health_checks();
        }
    }

    /// Builds and validates a snapshot from `file`. Plugin pools of `previous` whose module,
    /// settings, route and config are unchanged are kept, warm instances and all.
    pub async fn build(
        runtime: &Arc<PluginRuntime>,
        file: &ConfigFile,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        let mut builder = Builder {
            file,
            problems: Vec::new(),
        };
        let raw = &file.raw;
        let listeners = builder.listeners();
        let listener_index: HashMap<&str, usize> = raw
            .listeners
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        let workers = raw
            .server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let upstreams = builder.upstreams(workers, previous);
        let plugins = builder.plugins(runtime).await;
        let mut routes = Vec::new();
        let mut seen = HashMap::new();
        for route in &raw.routes {
            let name = route.get_ref().name.get_ref();
            if let Some(first) = seen.insert(name.clone(), route.get_ref().name.span()) {
                let (line, _) = builder.file.problem(first, "").position.unwrap_or((0, 0));
                builder.problem(
                    route.get_ref().name.span(),
                    format!("route `{name}` is defined twice (first at line {line}); route names must be unique"),
                );
                continue;
            }
            if let Some(route) = builder
                .route(
                    route.get_ref(),
                    &listener_index,
                    &upstreams,
                    &plugins,
                    previous,
                )
                .await
            {
                routes.push(route);
            }
        }
        if raw.rate_limit.backend == RateLimitBackendName::Redis
            && raw.rate_limit.redis_url.is_none()
        {
            builder.problems.push(Problem::whole_file(
                "rate_limit.backend = \"redis\" needs rate_limit.redis_url (e.g. \"redis://127.0.0.1:6379\")".into(),
            ));
        }
        if let Some(t) = &raw.tracing {
            let scheme = t.otlp_endpoint.parse::<http::Uri>().ok().and_then(|u| {
                u.scheme_str()
                    .filter(|s| *s == "http" || *s == "https")
                    .map(str::to_owned)
            });
            if scheme.is_none() {
                builder.problems.push(Problem::whole_file(format!(
                    "tracing.otlp_endpoint `{}` is not an http:// or https:// URL",
                    t.otlp_endpoint
                )));
            }
            if !(0.0..=1.0).contains(&t.sample_ratio) {
                builder.problems.push(Problem::whole_file(
                    "tracing.sample_ratio must be 0 to 1".into(),
                ));
            }
        }
        if raw
            .admin
            .as_ref()
            .is_some_and(|a| a.token.as_ref().is_some_and(|t| t.trim().is_empty()))
        {
            builder.problems.push(Problem::whole_file(
                "admin.token is empty: set a token, or remove the key to leave the admin API open on its address".into(),
            ));
        }
        if builder.problems.is_empty() && raw.listeners.is_empty() {
            builder.problems.push(Problem::whole_file(
                "no listeners: add a [listeners.<name>] table with an `addr`".into(),
            ));
        }
        if !builder.problems.is_empty() {
            // File order reads best; problems without a place come first.
            builder.problems.sort_by_key(|p| p.position);
            return Err(file.error(builder.problems));
        }
        let ingress = builder.ingress(&routes);
        if !builder.problems.is_empty() {
            builder.problems.sort_by_key(|p| p.position);
            return Err(file.error(builder.problems));
        }
        let s = &raw.server;
        Ok(Snapshot {
            ingress,
            config_hash: file.content_hash(),
            plugins: plugins.into_iter().collect(),
            routes: RouteTable::new(routes),
            upstreams: upstreams.into_iter().collect(),
            tracing: raw.tracing.as_ref().map(tracing_settings),
            admin: raw.admin.as_ref().map(AdminSettings::from_raw),
            listeners,
            server: ServerSettings {
                max_header_bytes: usize::try_from(s.max_header_bytes.as_u64())
                    .unwrap_or(usize::MAX),
                max_body_bytes: s.max_body_bytes.as_u64(),
                header_timeout: s.header_timeout,
                body_timeout: s.body_timeout,
                shutdown_grace: s.shutdown_grace,
                trust_request_id: s.trust_request_id,
                workers,
                access_log: s.access_log,
                max_connections: s.max_connections,
                max_connections_per_ip: s.max_connections_per_ip,
                upgrade_idle_timeout: s.upgrade_idle_timeout,
            },
        })
    }
}

struct Builder<'a> {
    file: &'a ConfigFile,
    problems: Vec<Problem>,
}

impl Builder<'_> {
    fn problem(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let problem = self.file.problem(span, message);
        self.problems.push(problem);
    }

    fn listeners(&mut self) -> Vec<ListenerSpec> {
        let mut specs = Vec::new();
        for (name, listener) in &self.file.raw.listeners {
            let tls = match &listener.tls {
                None => None,
                Some(t) => {
                    let base = self.file.base_dir();
                    match tls::server_config(&base.join(&t.cert), &base.join(&t.key)) {
                        Ok(config) => Some(config),
                        Err(e) => {
                            self.problems
                                .push(Problem::whole_file(format!("listener `{name}`: {e}")));
                            None
                        }
                    }
                }
            };
            specs.push(ListenerSpec {
                name: name.clone(),
                addr: listener.addr,
                tls,
                internal: listener.internal,
            });
        }
        specs
    }

    /// The upstreams; those whose config is unchanged since `previous` are kept, with their
    /// target health, circuit state, retry budget and pooled connections.
    fn upstreams(
        &mut self,
        workers: usize,
        previous: Option<&Snapshot>,
    ) -> HashMap<String, Arc<Upstream>> {
        let mut upstreams = HashMap::new();
        for (name, section) in &self.file.raw.upstreams {
            let span = section.span();
            let resolved =
                match crate::config::upstream::resolve(section.get_ref(), self.file.base_dir()) {
                    Ok(resolved) => resolved,
                    Err(problems) => {
                        for problem in problems {
                            self.problem(span.clone(), format!("upstream `{name}`: {problem}"));
                        }
                        continue;
                    }
                };
            let kept = previous
                .and_then(|p| p.upstreams.get(name))
                .filter(|u| u.fingerprint() == resolved.fingerprint);
            let upstream = match kept {
                Some(upstream) => upstream.clone(),
                None => Arc::new(Upstream::new(
                    name,
                    resolved.fingerprint,
                    resolved.targets,
                    resolved.settings,
                    workers,
                )),
            };
            upstreams.insert(name.clone(), upstream);
        }
        upstreams
    }

    async fn plugins(
        &mut self,
        runtime: &Arc<PluginRuntime>,
    ) -> HashMap<String, Arc<LoadedPlugin>> {
        let mut plugins = HashMap::new();
        for (name, section) in &self.file.raw.plugins {
            let section = section.get_ref();
            let module = section.module.get_ref();
            let bytes = match module.strip_prefix("builtin:") {
                Some(builtin) => {
                    match plugin::builtin(builtin) {
                        Some(bytes) => std::borrow::Cow::Borrowed(bytes),
                        None => {
                            let known: Vec<_> =
                                plugin::BUILTIN_PLUGINS.iter().map(|(n, _)| *n).collect();
                            self.problem(
                            section.module.span(),
                            format!("plugin `{name}`: no built-in plugin `{builtin}` (built-ins: {})", known.join(", ")),
                        );
                            continue;
                        }
                    }
                }
                None => {
                    let path = self.file.base_dir().join(module);
                    match std::fs::read(&path) {
                        Ok(bytes) => std::borrow::Cow::Owned(bytes),
                        Err(e) => {
                            self.problem(
                                section.module.span(),
                                format!(
                                    "plugin `{name}`: cannot read module {}: {e}",
                                    path.display()
                                ),
                            );
                            continue;
                        }
                    }
                }
            };
            if let Some(why) = refused_fail_open(name, section) {
                self.problem(section.module.span(), why);
                continue;
            }
            let global = self.file.raw.runtime.max_instances;
            let max_instances = match &section.max_instances {
                None => (global / 4).max(1),
                Some(max) if *max.get_ref() == 0 || *max.get_ref() > global => {
                    self.problem(
                        max.span(),
                        format!(
                            "plugin `{name}`: max_instances must be 1 to {global} ([runtime] max_instances)"
                        ),
                    );
                    continue;
                }
                Some(max) => *max.get_ref(),
            };
            let settings = PluginSettings {
                max_instances,
                state: StateBudget {
                    entries: section.state_max_entries,
                    bytes: usize::try_from(section.state_max_bytes.as_u64()).unwrap_or(usize::MAX),
                },
                grants: section.grants.clone(),
                timeout: section.timeout,
                memory_limit: usize::try_from(section.memory_limit.as_u64()).unwrap_or(usize::MAX),
                on_error: section.on_error,
                isolation: section.isolation,
                http: section
                    .grants
                    .contains(&Capability::Http)
                    .then(|| HttpSettings {
                        allow: section.http_allow.clone(),
                        timeout: section.http_timeout,
                        max_response: usize::try_from(section.http_max_response.as_u64())
                            .unwrap_or(usize::MAX),
                    }),
            };

            // Compiling takes milliseconds to seconds: keep it off this thread.
            let load = {
                let (runtime, name) = (runtime.clone(), name.clone());
                tokio::task::spawn_blocking(move || runtime.load(&name, &bytes, settings))
            };
            let loaded = match load.await {
                Ok(loaded) => loaded,
                Err(e) => {
                    self.problem(
                        section.module.span(),
                        format!("plugin `{name}`: loading failed: {e}"),
                    );
                    continue;
                }
            };
            match loaded {
                Ok(loaded) => {
                    plugins.insert(name.clone(), loaded);
                }
                Err(e) => self.problem(
                    section.module.span(),
                    format!("plugin `{name}` (module `{module}`): {e}"),
                ),
            }
        }
        plugins
    }

    async fn route(
        &mut self,
        section: &RouteSection,
        listener_index: &HashMap<&str, usize>,
        upstreams: &HashMap<String, Arc<Upstream>>,
        plugins: &HashMap<String, Arc<LoadedPlugin>>,
        previous: Option<&Snapshot>,
    ) -> Option<(Matcher, Arc<Route>)> {
        let name = section.name.get_ref().as_str();
        let before = self.problems.len();
        let matcher = self.matcher(name, section, listener_index);
        let upstream = match &section.upstream {
            None => None,
            Some(up) => match upstreams.get(up.get_ref()) {
                Some(u) => Some(u.clone()),
                // Defined, with its own problems already reported.
                None if self.file.raw.upstreams.contains_key(up.get_ref()) => None,
                None => {
                    let known: BTreeMap<_, _> = upstreams.iter().collect();
                    let known: Vec<_> = known.keys().map(|k| k.as_str()).collect();
                    self.problem(
                        up.span(),
                        format!(
                            "route `{name}`: unknown upstream `{}` (defined: {})",
                            up.get_ref(),
                            list(&known)
                        ),
                    );
                    None
                }
            },
        };
        if section.upstream.is_none() && section.plugins.is_empty() {
            self.problem(
                section.name.span(),
                format!(
                    "route `{name}` has neither an `upstream` nor `plugins`: it could never answer"
                ),
            );
        }
        let mut chain = Vec::new();
        for entry in &section.plugins {
            let entry_span = entry.span();
            let entry = entry.get_ref();
            let plugin_name = entry.plugin.get_ref();
            let Some(loaded) = plugins.get(plugin_name) else {
                if !self.file.raw.plugins.contains_key(plugin_name) {
                    let known: Vec<_> = self.file.raw.plugins.keys().map(String::as_str).collect();
                    self.problem(
                        entry.plugin.span(),
                        format!(
                            "route `{name}`: unknown plugin `{plugin_name}` (defined: {})",
                            list(&known)
                        ),
                    );
                }
                continue;
            };
            let (mut config, config_span) = match &entry.config {
                Some(c) => (c.get_ref().clone(), c.span()),
                None => (toml::Table::new(), entry_span.clone()),
            };
            if let Some(files) = &entry.config_files
                && !self.read_config_files(name, plugin_name, files, &mut config)
            {
                continue;
            }
            let json = match serde_json::to_string(&config) {
                Ok(json) => json,
                Err(e) => {
                    self.problem(config_span, format!("route `{name}`, plugin `{plugin_name}`: config cannot be passed to the plugin: {e}"));
                    continue;
                }
            };
            let scope = entry.state_scope.as_ref().map(|s| s.get_ref().trim());
            if let (Some(""), Some(span)) = (scope, entry.state_scope.as_ref().map(|s| s.span())) {
                self.problem(
                    span,
                    format!("route `{name}`, plugin `{plugin_name}`: state_scope is empty: name the scope, or remove the key to keep the state to this route"),
                );
                continue;
            }
            let kept = previous.and_then(|p| {
                p.routes
                    .iter()
                    .flat_map(|r| r.chain.iter())
                    .find(|pool| pool.serves(loaded, name, &json, scope))
            });
            if let Some(pool) = kept {
                chain.push(pool.clone());
                continue;
            }
            let scope = scope.map(str::to_owned);
            match PluginPool::new(loaded.clone(), name, json, scope).await {
                Ok(Ok(pool)) => chain.push(pool),
                Ok(Err(refused)) => {
                    let at = refused
                        .key
                        .map(|k| format!(" key `{k}`"))
                        .unwrap_or_default();
                    self.problem(
                        config_span,
                        format!(
                            "route `{name}`, plugin `{plugin_name}`: invalid config{at}: {}",
                            refused.message
                        ),
                    );
                }
                Err(fault) => self.problem(
                    entry_span,
                    format!(
                        "route `{name}`, plugin `{plugin_name}`: could not be configured: {}",
                        fault.detail
                    ),
                ),
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let strip_prefix = match (&section.matcher.path_prefix, section.strip_prefix) {
            (Some(prefix), true) => Some(prefix.get_ref().trim_end_matches('/').to_string()),
            _ => None,
        };
        let upgrades = self.upgrades(name, section);
        let max_body = self.file.raw.server.max_body_bytes.as_u64();
        let route = Route {
            case_insensitive: section.matcher.case_insensitive,
            upgrades,
            ..Route::new(name.into(), upstream, strip_prefix, chain, max_body)
        };
        Some((matcher?, Arc::new(route)))
    }

    /// Fills `config` keys from `config_files`; false (with problems recorded) if a file
    /// cannot be read, a pattern matches nothing, or a key is also given inline.
    fn read_config_files(
        &mut self,
        route: &str,
        plugin: &str,
        files: &toml::Spanned<BTreeMap<String, ConfigFiles>>,
        config: &mut toml::Table,
    ) -> bool {
        let mut ok = true;
        for (key, spec) in files.get_ref() {
            let context = format!("route `{route}`, plugin `{plugin}`, config_files.{key}");
            if config.contains_key(key) {
                let message = format!("{context}: `{key}` is also set in `config`; keep one");
                self.problem(files.span(), message);
                ok = false;
                continue;
            }
            let paths = match crate::config::expand_config_files(self.file.base_dir(), spec) {
                Ok(paths) => paths,
                Err(e) => {
                    self.problem(files.span(), format!("{context}: {e}"));
                    ok = false;
                    continue;
                }
            };
            let mut texts = Vec::new();
            for path in &paths {
                match std::fs::read_to_string(path) {
                    Ok(text) => texts.push((path, text)),
                    Err(e) => {
                        let shown = path.display();
                        self.problem(files.span(), format!("{context}: cannot read {shown}: {e}"));
                        ok = false;
                    }
                }
            }
            let value = match spec {
                ConfigFiles::One(_) => texts.pop().map(|(_, text)| toml::Value::String(text)),
                ConfigFiles::Many(_) => Some(toml::Value::Array(
                    texts
                        .into_iter()
                        .map(|(path, text)| {
                            let mut entry = toml::Table::new();
                            entry.insert("path".into(), path.display().to_string().into());
                            entry.insert("text".into(), text.into());
                            toml::Value::Table(entry)
                        })
                        .collect(),
                )),
            };
            if let Some(value) = value {
                config.insert(key.clone(), value);
            }
        }
        ok
    }

    fn matcher(
        &mut self,
        name: &str,
        section: &RouteSection,
        listener_index: &HashMap<&str, usize>,
    ) -> Option<Matcher> {
        let m = &section.matcher;
        let before = self.problems.len();
        let mut listeners = Vec::new();
        if let Some(names) = &section.listeners {
            for l in names.get_ref() {
                match listener_index.get(l.as_str()) {
                    Some(i) => listeners.push(*i),
                    None => {
                        let known: Vec<_> = listener_index.keys().copied().collect();
                        self.problem(
                            names.span(),
                            format!(
                                "route `{name}`: unknown listener `{l}` (defined: {})",
                                list(&known)
                            ),
                        );
                    }
                }
            }
        }
        let host = match &m.host {
            None => HostMatch::Any,
            Some(h) => HostMatch::parse(h.get_ref()).unwrap_or_else(|e| {
                self.problem(h.span(), format!("route `{name}`: match.host {e}"));
                HostMatch::Any
            }),
        };
        let path = match (&m.path, &m.path_prefix) {
            (Some(p), Some(_)) => {
                self.problem(
                    p.span(),
                    format!("route `{name}`: use either match.path or match.path_prefix, not both"),
                );
                PathMatch::Any
            }
            (Some(p), None) => self
                .path(name, "path", p)
                .map_or(PathMatch::Any, PathMatch::Exact),
            (None, Some(p)) => self
                .path(name, "path_prefix", p)
                .map_or(PathMatch::Any, PathMatch::Prefix),
            (None, None) => PathMatch::Any,
        };
        if section.strip_prefix && m.path_prefix.is_none() {
            self.problem(
                section.name.span(),
                format!("route `{name}`: strip_prefix needs match.path_prefix"),
            );
        }
        let mut methods = Vec::new();
        for method in m.methods.iter().flatten() {
            match Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => self.problem(
                    section.name.span(),
                    format!("route `{name}`: `{method}` is not an HTTP method"),
                ),
            }
        }
        let mut headers = Vec::new();
        for (header, value) in &m.headers {
            match (
                HeaderName::from_bytes(header.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(h), Ok(v)) => headers.push((h, v)),
                _ => self.problem(
                    section.name.span(),
                    format!(
                        "route `{name}`: match.headers has an invalid header `{header}: {value}`"
                    ),
                ),
            }
        }
        (self.problems.len() == before).then_some(Matcher {
            listeners,
            host,
            path,
            case_insensitive: m.case_insensitive,
            methods,
            headers,
        })
    }

    fn path(&mut self, route: &str, key: &str, path: &toml::Spanned<String>) -> Option<String> {
        let p = path.get_ref();
        if !p.starts_with('/') {
            self.problem(
                path.span(),
                format!("route `{route}`: match.{key} must start with `/`"),
            );
            return None;
        }
        // Requests are matched in canonical form, so a pattern in any other form would never
        // match what it seems to.
        match crate::ingress::path::canonical(p, self.path_rules()) {
            Ok(canonical) if canonical == *p => Some(p.clone()),
            Ok(canonical) => {
                self.problem(
                    path.span(),
                    format!("route `{route}`: match.{key} `{p}` is not in canonical form, so no request would match it: write `{canonical}`"),
                );
                None
            }
            Err(e) => {
                self.problem(
                    path.span(),
                    format!("route `{route}`: match.{key} `{p}` can never match: {e}, and such requests are refused"),
                );
                None
            }
        }
    }

    fn path_rules(&self) -> crate::ingress::PathRules {
        let server = &self.file.raw.server;
        crate::ingress::PathRules {
            merge_slashes: server.merge_slashes,
            allow_path_params: server.allow_path_params,
        }
    }

    /// A route's `upgrades`, checked: `h2c` is refused.
    fn upgrades(&mut self, route: &str, section: &RouteSection) -> Vec<String> {
        let Some(upgrades) = &section.upgrades else {
            return Vec::new();
        };
        let mut protocols = Vec::new();
        for protocol in upgrades.get_ref() {
            let lower = protocol.trim().to_ascii_lowercase();
            if lower == "h2c" {
                self.problem(
                    upgrades.span(),
                    format!("route `{route}`: upgrades cannot include `h2c`: an HTTP/2 session opened with the upstream would carry requests no route or plugin sees"),
                );
            } else if lower.is_empty()
                || !lower
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b',' && b != b'/')
            {
                self.problem(
                    upgrades.span(),
                    format!("route `{route}`: `{protocol}` is not an upgrade protocol token (e.g. \"websocket\")"),
                );
            } else {
                protocols.push(lower);
            }
        }
        protocols
    }

    /// `[server]`'s ingress settings, with the headers every route's plugins assert.
    fn ingress(&mut self, routes: &[(Matcher, Arc<Route>)]) -> crate::ingress::IngressRules {
        let server = &self.file.raw.server;
        let mut strip = Vec::new();
        for name in &server.strip_request_headers {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(header) => strip.push(header),
                Err(_) => self.problems.push(Problem::whole_file(format!(
                    "server.strip_request_headers: `{name}` is not a header name"
                ))),
            }
        }
        for (_, route) in routes {
            for pool in &route.chain {
                strip.extend(pool.asserted_headers().iter().cloned());
            }
        }
        let mut trusted = Vec::new();
        for entry in &server.trusted_proxies {
            let parsed = entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => trusted.push(net),
                Err(_) => self.problems.push(Problem::whole_file(format!(
                    "server.trusted_proxies: `{entry}` is not an IP address or CIDR range (e.g. \"10.0.0.0/8\")"
                ))),
            }
        }
        crate::ingress::IngressRules {
            path: self.path_rules(),
            owned: crate::ingress::OwnedHeaders::new(strip, trusted),
        }
    }
}

/// The modules that authenticate: with `on_error = "skip"` a fault in one of them lets the
/// request through unauthenticated.
const AUTH_BUILTINS: [&str; 3] = [
    "builtin:jwt-auth",
    "builtin:api-key",
    "builtin:oauth2-introspection",
];

/// Whether a plugin makes authentication decisions: a built-in auth plugin, or one granted
/// `jwt` (verifying tokens is what that grant is for).
pub fn is_auth_plugin(section: &crate::config::raw::PluginSection) -> bool {
    AUTH_BUILTINS.contains(&section.module.get_ref().as_str())
        || section.grants.contains(&Capability::Jwt)
}

/// Why an authentication plugin's `on_error = "skip"` is refused, unless `fail_open = true`
/// says it is meant.
fn refused_fail_open(name: &str, section: &crate::config::raw::PluginSection) -> Option<String> {
    (section.on_error == FailurePolicy::Skip && !section.fail_open && is_auth_plugin(section))
        .then(|| {
            format!(
                "plugin `{name}` authenticates requests and has on_error = \"skip\": whenever it faults (a trap, a timeout, no free instance) requests would pass unauthenticated. Use on_error = \"fail\", or add fail_open = true to [plugins.{name}] to accept that"
            )
        })
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let mut names = names.to_vec();
    names.sort_unstable();
    names.join(", ")
}
