//! The config file as written: serde types that mirror the TOML one to one.
//!
//! Unknown keys are errors everywhere (`deny_unknown_fields`), so a misspelt key is reported
//! with its line instead of being silently ignored. Cross-references (a route's upstream, a
//! plugin name) are checked in [`super::resolve`], which needs the spans kept here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;
use toml::Spanned;

use crate::plugin::{Capability, FailurePolicy, Isolation};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Gateway-wide limits and timeouts.
    #[serde(default)]
    pub server: ServerSection,
    /// Plugin engine settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// `[rate_limit]`: where rate-limit counters live.
    #[serde(default)]
    pub rate_limit: RateLimitSection,
    /// `[admin]`: the admin API (status, reload); off unless the table is present.
    pub admin: Option<AdminSection>,
    /// `[tracing]`: export spans over OTLP; off unless the table is present.
    pub tracing: Option<TracingSection>,
    /// `[listeners.<name>]`: addresses to serve on.
    #[serde(default)]
    pub listeners: BTreeMap<String, Listener>,
    /// `[upstreams.<name>]`: pools of backend servers.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSection>>,
    /// `[plugins.<name>]`: Wasm modules and what they may do.
    #[serde(default)]
    pub plugins: BTreeMap<String, Spanned<PluginSection>>,
    /// `[[routes]]`, matched in file order.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteSection>>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Largest request head (request line and headers) accepted; larger gets 431.
    #[serde(deserialize_with = "size")]
    pub max_header_bytes: ByteSize,
    /// Largest request body accepted; larger gets 413.
    #[serde(deserialize_with = "size")]
    pub max_body_bytes: ByteSize,
    /// Time a client has to send a complete request head.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time a client has to send a whole request body that a plugin reads (bodies that stream
    /// to the upstream are bounded by the upstream's timeout instead).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM/SIGINT before connections are closed.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Keep a client's `X-Request-Id` (when well-formed) instead of always minting one.
    pub trust_request_id: bool,
    /// Worker threads serving requests (default: one per CPU core).
    pub workers: Option<usize>,
    /// The access log on standard output: `json`, `common` or `off`.
    pub access_log: crate::access_log::AccessLogFormat,
    /// Client connections open at once, over all listeners; more are closed on accept.
    pub max_connections: usize,
    /// Client connections open at once from one IP address; more are closed on accept.
    /// 0 (the default) sets no per-address limit: behind a load balancer every client
    /// shares its address.
    pub max_connections_per_ip: usize,
    /// How long an upgraded connection (WebSocket and the like) may carry no bytes either
    /// way before the gateway closes it.
    #[serde(with = "humantime_serde")]
    pub upgrade_idle_timeout: Duration,
    /// Merge repeated slashes in request paths (`/a//b` → `/a/b`) before routing.
    pub merge_slashes: bool,
    /// Accept `;` path parameters (`/a;v=1/b`); refused with 400 by default, because servers
    /// behind the gateway read them differently (`/x/..;/admin` is `/admin` to Tomcat).
    pub allow_path_params: bool,
    /// Header fields removed from every client request, besides the ones the gateway always
    /// removes and those its plugins assert (e.g. `["x-user-role"]`).
    pub strip_request_headers: Vec<String>,
    /// Peers (`10.0.0.0/8`, `192.0.2.7`) whose `X-Forwarded-*`, `Forwarded` and `X-Real-IP`
    /// are kept and whose `X-Forwarded-For` names the client; from any other peer they are
    /// removed and rebuilt from the connection.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            max_header_bytes: ByteSize::kib(32),
            max_body_bytes: ByteSize::mib(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            trust_request_id: true,
            workers: None,
            access_log: Default::default(),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            upgrade_idle_timeout: Duration::from_secs(300),
            merge_slashes: true,
            allow_path_params: false,
            strip_request_headers: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Where compiled plugins are cached (default: `$XDG_CACHE_HOME/wasmgate`).
    pub cache_dir: Option<PathBuf>,
    /// Set to `false` to compile plugins at every start.
    pub cache: bool,
    /// Plugin instances alive at once, across all plugins and routes. Each plugin on each
    /// route may use at most its own `[plugins.<name>] max_instances` of them.
    pub max_instances: u32,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache: true,
            max_instances: 1000,
        }
    }
}

/// `[rate_limit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// `local` (in this process) or `redis` (shared by every gateway on the same server).
    #[serde(default)]
    pub backend: RateLimitBackendName,
    /// With `redis`: the server, `redis://host:port/db`.
    pub redis_url: Option<String>,
    /// With `redis`: deadline for one check.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// With `redis`, when it cannot answer: `local` counters (fail open) or `deny` (fail closed).
    #[serde(default)]
    pub on_redis_error: OnRedisError,
    /// Keys the in-process counters track at most (also when they stand in for Redis); when
    /// full, the key closest to a full budget is dropped for a new one. Set at start.
    #[serde(default = "default_rate_limit_max_keys")]
    pub max_keys: std::num::NonZeroUsize,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            backend: RateLimitBackendName::default(),
            redis_url: None,
            redis_timeout: default_redis_timeout(),
            on_redis_error: OnRedisError::default(),
            max_keys: default_rate_limit_max_keys(),
        }
    }
}

fn default_rate_limit_max_keys() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::MIN.saturating_add(crate::plugin::DEFAULT_RATE_LIMIT_KEYS - 1)
}

/// Rate-limit backends.
#[derive(Debug, Deserialize, Default, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimitBackendName {
    /// In this process.
    #[default]
    Local,
    /// In Redis.
    Redis,
}

/// What rate limiting does when Redis cannot answer.
#[derive(Debug, Deserialize, Default, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum OnRedisError {
    /// Fall back to this gateway's local counters.
    #[default]
    Local,
    /// Refuse requests (429 with `Retry-After: 1`).
    Deny,
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

/// `[admin]`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Where the admin API listens: loopback unless you say otherwise.
    #[serde(default = "default_admin_addr")]
    pub addr: SocketAddr,
    /// When set, every endpoint but `/healthz` and `/readyz` wants
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Names the admin API answers to besides the address a client connected to (and
    /// `localhost` when that is a loopback address), e.g. `["admin.internal"]` or
    /// `["admin.internal:9901"]`: a request with another `Host` gets `421`, so a web page
    /// whose DNS name was rebound to this address cannot use the API.
    #[serde(default)]
    pub allowed_hosts: Vec<AdminHost>,
    /// How long a client may take to send a request head; the connection is closed after.
    #[serde(default = "default_admin_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Admin connections open at once; more are closed on accept.
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: std::num::NonZeroUsize,
}

/// One `[admin] allowed_hosts` entry: a host name or `host:port`, lower-cased.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct AdminHost(String);

impl AdminHost {
    /// The entry, lower-cased.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AdminHost {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let plain = !value.is_empty()
            && !value.contains(['/', '@', '?', '#'])
            && value.parse::<http::uri::Authority>().is_ok();
        if !plain {
            return Err(format!(
                "`{value}` is not a host name or host:port (no scheme, path or user)"
            ));
        }
        Ok(Self(value.to_ascii_lowercase()))
    }
}

fn default_admin_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_admin_max_connections() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::MIN.saturating_add(63)
}

/// `[tracing]`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// OTLP/HTTP (protobuf) traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: String,
    /// `service.name` on the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces recorded, 0 to 1; traces a client started follow its decision.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

fn default_service_name() -> String {
    "wasmgate".into()
}
fn default_sample_ratio() -> f64 {
    1.0
}

fn default_admin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

/// `[listeners.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `ip:port` to bind; port 0 picks a free port (logged at start).
    pub addr: SocketAddr,
    /// Terminate TLS with this certificate chain and key (PEM files).
    pub tls: Option<Tls>,
    /// Requests here come from your own infrastructure (another wasmgate tier, a sidecar):
    /// the identity and forwarding headers they carry are kept instead of removed. Never set
    /// it on a listener clients can reach.
    #[serde(default)]
    pub internal: bool,
}

/// A listener's `tls` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[upstreams.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Each server: `"host:port"` or `{ addr = "host:port", weight = 3 }`.
    pub targets: Vec<TargetEntry>,
    /// How requests are spread: `round-robin` (default; weights apply), `weighted` (the
    /// same), `least-outstanding` or `consistent-hash`.
    #[serde(default)]
    pub balance: crate::upstream::balance::Strategy,
    /// With `consistent-hash`: `"header:<name>"`, `"cookie:<name>"` or `"client-ip"`.
    pub hash_on: Option<String>,
    /// Time allowed to establish a connection; past it the request gets 504.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for the response head once the request is sent, over all attempts;
    /// past it 504.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Idle connections kept per target.
    #[serde(default = "default_max_idle")]
    pub max_idle_per_target: usize,
    /// Shed load with 503 when the upstream slows down (AIMD concurrency limit).
    pub adaptive_concurrency: Option<AdaptiveSection>,
    /// Active health checks: a `GET` to each target every interval.
    pub health_check: Option<HealthCheckSection>,
    /// Passive health checks (on by default): `false` turns them off, a table tunes them.
    pub outlier_detection: Option<Toggle<OutlierSection>>,
    /// Caps on requests in flight and a breaker that opens on a failure ratio.
    pub circuit_breaker: Option<CircuitSection>,
    /// Retries of failed attempts. Without it, a connect failure is tried once more on
    /// another target; `false` turns retries off.
    pub retry: Option<Toggle<RetrySection>>,
    /// TLS to the targets: `true` (system roots) or a table.
    pub tls: Option<Toggle<UpstreamTlsSection>>,
    /// Speak HTTP/2 to the targets: by ALPN with `tls`, with prior knowledge (h2c) without.
    #[serde(default)]
    pub http2: bool,
}

/// A target as written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TargetEntry {
    /// `"host:port"`, weight 1.
    Addr(String),
    /// `{ addr = "host:port", weight = 3 }`.
    Weighted {
        /// `host:port`.
        addr: String,
        /// Share of requests relative to the other targets (1–1000).
        weight: u32,
    },
}

/// `true`/`false`, or a table of settings (`true` means the defaults).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Toggle<T> {
    /// On with defaults, or off.
    Switch(bool),
    /// On with these settings.
    Settings(T),
}

/// An upstream's `health_check` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// Path probed with `GET`.
    pub path: String,
    /// Time between probes.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Time a probe may take.
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Passing probes in a row that make an unhealthy target healthy.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Failing probes in a row that make a healthy target unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Passing statuses: numbers, `"2xx"` or `"200-299"` (default `["200-399"]`).
    #[serde(default)]
    pub expected_statuses: Vec<StatusEntry>,
}

/// A status or a range of statuses.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusEntry {
    /// `204`.
    Code(u16),
    /// `"2xx"` or `"200-299"`.
    Range(String),
}

fn default_check_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// An upstream's `outlier_detection` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSection {
    /// Failures in a row (connect errors, timeouts, 5xx) that eject a target.
    pub consecutive_failures: Option<u32>,
    /// The first ejection's length; each further one adds as much again.
    #[serde(default, with = "humantime_serde")]
    pub base_ejection: Option<Duration>,
    /// The longest ejection.
    #[serde(default, with = "humantime_serde")]
    pub max_ejection: Option<Duration>,
    /// At most this share of the targets is ejected at once.
    pub max_ejection_percent: Option<u8>,
}

/// An upstream's `circuit_breaker` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSection {
    /// Requests in flight to the upstream at once; more wait in the queue or get 503.
    pub max_requests: Option<u32>,
    /// Requests that may wait for a slot when `max_requests` are in flight.
    #[serde(default)]
    pub max_pending: u32,
    /// How long a request may wait for a slot.
    #[serde(default = "default_pending_timeout", with = "humantime_serde")]
    pub pending_timeout: Duration,
    /// Share of failed requests (0–1) in the window that opens the circuit.
    pub failure_ratio: Option<f64>,
    /// Requests the window must hold before the ratio counts.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// The sliding window.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// How long an open circuit refuses requests before it lets probes through.
    #[serde(default = "default_open_for", with = "humantime_serde")]
    pub open_for: Duration,
    /// Probe requests let through while half-open.
    #[serde(default = "default_half_open")]
    pub half_open_requests: u32,
}

fn default_pending_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_min_requests() -> u32 {
    20
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}
fn default_open_for() -> Duration {
    Duration::from_secs(30)
}
fn default_half_open() -> u32 {
    1
}

/// An upstream's `retry` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Further attempts after the first.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Statuses retried (idempotent methods only).
    #[serde(default = "default_retry_statuses")]
    pub statuses: Vec<u16>,
    /// Also retry POST and PATCH on statuses and timeouts.
    #[serde(default)]
    pub non_idempotent: bool,
    /// Time one attempt may take to its response head.
    #[serde(default, with = "humantime_serde")]
    pub per_try_timeout: Option<Duration>,
    /// First back-off between attempts (doubling, with jitter).
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Retries may add this share of requests…
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f64,
    /// …plus this many a second.
    #[serde(default = "default_budget_min")]
    pub budget_min_per_second: u32,
}

fn default_retries() -> u32 {
    2
}
fn default_retry_statuses() -> Vec<u16> {
    vec![502, 503, 504]
}
fn default_backoff() -> Duration {
    Duration::from_millis(25)
}
fn default_budget_ratio() -> f64 {
    0.2
}
fn default_budget_min() -> u32 {
    10
}

/// An upstream's `tls` table.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// PEM file of the CAs to trust instead of the system's web PKI roots.
    pub ca: Option<PathBuf>,
    /// Name sent in SNI and checked against the certificate (default: the target's host).
    pub server_name: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS; needs `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

/// An upstream's `adaptive_concurrency` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveSection {
    /// Starting limit on requests in flight.
    #[serde(default = "default_adaptive_initial")]
    pub initial: u32,
    /// Lowest limit.
    #[serde(default = "default_adaptive_min")]
    pub min: u32,
    /// Highest limit.
    #[serde(default = "default_adaptive_max")]
    pub max: u32,
    /// Response heads slower than this count as overload.
    #[serde(with = "humantime_serde")]
    pub latency_threshold: Duration,
}

fn default_adaptive_initial() -> u32 {
    100
}
fn default_adaptive_min() -> u32 {
    1
}
fn default_adaptive_max() -> u32 {
    1000
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_max_idle() -> usize {
    1024
}

/// `[plugins.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// `builtin:<name>` or a path to a `.wasm` component (relative to the config file).
    pub module: Spanned<String>,
    /// Capabilities the plugin may import beyond logging, which every plugin has:
    /// `clock`, `jwt`, `http`, `state`.
    #[serde(default)]
    pub grants: Vec<Capability>,
    /// Deadline for one hook call.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Linear-memory cap of one instance.
    #[serde(default = "default_memory_limit", deserialize_with = "size")]
    pub memory_limit: ByteSize,
    /// `fail` (500) or `skip` (fail open) when the plugin traps, times out or runs out of memory.
    #[serde(default)]
    pub on_error: FailurePolicy,
    /// Confirms `on_error = "skip"` on an authentication plugin (a built-in auth plugin, or one
    /// granted `jwt`): without it such a config is refused, because every fault would let
    /// unauthenticated requests through.
    #[serde(default)]
    pub fail_open: bool,
    /// Hook calls in flight at once on each route using the plugin (each on its own
    /// instance); a call over it waits up to `timeout` for one to finish, then fails on that
    /// route alone. Default: a quarter of `[runtime] max_instances`.
    pub max_instances: Option<Spanned<u32>>,
    /// Entries one state scope of the plugin may hold (with the `state` grant).
    #[serde(default = "default_state_max_entries")]
    pub state_max_entries: usize,
    /// Bytes of keys and values one state scope of the plugin may hold.
    #[serde(default = "default_state_max_bytes", deserialize_with = "size")]
    pub state_max_bytes: ByteSize,
    /// `pooled` (instances reused) or `per-request` (a fresh instance for every call).
    #[serde(default)]
    pub isolation: Isolation,
    /// Hosts the plugin may call with the `http` capability: `host` (ports 80 and 443) or
    /// `host:port`.
    #[serde(default)]
    pub http_allow: Vec<String>,
    /// Deadline for one outbound request.
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub http_timeout: Duration,
    /// Largest outbound response body accepted.
    #[serde(default = "default_http_max_response", deserialize_with = "size")]
    pub http_max_response: ByteSize,
}

fn default_state_max_entries() -> usize {
    10_000
}
fn default_state_max_bytes() -> ByteSize {
    ByteSize::mib(16)
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_http_max_response() -> ByteSize {
    ByteSize::mib(1)
}

fn default_timeout() -> Duration {
    Duration::from_millis(20)
}
fn default_memory_limit() -> ByteSize {
    ByteSize::mib(32)
}

/// A size: a number of bytes or a string such as `"16 KiB"` or `"10MB"`.
fn size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(n) => Ok(ByteSize::b(n)),
        Size::Text(text) => text.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "`{text}` is not a size (write e.g. \"16 KiB\", \"10 MiB\" or a number of bytes)"
            ))
        }),
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Unique name, used in logs and errors.
    pub name: Spanned<String>,
    /// Listeners this route serves on (default: all).
    #[serde(default)]
    pub listeners: Option<Spanned<Vec<String>>>,
    /// What requests the route takes.
    #[serde(rename = "match", default)]
    pub matcher: MatchSection,
    /// With `path_prefix`: remove the prefix before forwarding (`/api/users` → `/users`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Protocols a client may switch to with `Upgrade` on this route, e.g. `["websocket"]`.
    /// Others are not forwarded (the request is served without them); `h2c` never is.
    #[serde(default)]
    pub upgrades: Option<Spanned<Vec<String>>>,
    /// Where requests go after the plugin chain; without one, a plugin must answer.
    pub upstream: Option<Spanned<String>>,
    /// The plugin chain, in order.
    #[serde(default)]
    pub plugins: Vec<Spanned<PluginUse>>,
}

/// A route's `match` table. Every condition given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    /// `api.example.com` or `*.example.com`; compared without the port.
    pub host: Option<Spanned<String>>,
    /// The path, exactly.
    pub path: Option<Spanned<String>>,
    /// A path prefix, on segment boundaries: `/api` takes `/api` and `/api/x`, not `/apix`.
    pub path_prefix: Option<Spanned<String>>,
    /// Compare `path`/`path_prefix` without regard to ASCII case.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Allowed methods.
    pub methods: Option<Vec<String>>,
    /// Headers that must be present with exactly these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// One entry of a route's plugin chain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginUse {
    /// Name of a `[plugins.<name>]` entry.
    #[serde(rename = "use")]
    pub plugin: Spanned<String>,
    /// The plugin's config for this route, passed to its `configure`.
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    /// The plugin's state (and cached outbound responses) are kept per route and config
    /// unless entries name the same scope here: those of the same plugin then share one.
    #[serde(default)]
    pub state_scope: Option<Spanned<String>>,
    /// Config keys whose value is the text of a file, resolved against the config file's
    /// directory: `{ openapi = "specs/api.yaml" }`; or a list of files and glob patterns,
    /// whose value is then an array of `{ path, text }` in the order given (each pattern's
    /// matches sorted by name): `{ rules = ["crs-setup.conf", "rules/*.conf"] }`. The files
    /// are watched like modules.
    #[serde(default)]
    pub config_files: Option<Spanned<BTreeMap<String, ConfigFiles>>>,
}

/// One `config_files` entry: a single file, or a list of files and glob patterns.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigFiles {
    One(String),
    Many(Vec<String>),
}

impl ConfigFiles {
    /// The paths or patterns as written.
    pub fn patterns(&self) -> &[String] {
        match self {
            ConfigFiles::One(p) => std::slice::from_ref(p),
            ConfigFiles::Many(ps) => ps,
        }
    }
}
