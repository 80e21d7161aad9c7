//! Prometheus metrics, served by the admin API's `GET /metrics`.
//!
//! Label values come from the config (route, plugin, upstream and target names) or small fixed
//! sets (method, status class, fault kind, retry reason), never from requests, so cardinality
//! is bounded by the config. Per-route and per-upstream handles are created when the route or
//! upstream is built, so counting a request takes no lock and allocates nothing; handles for
//! the same labels survive reloads. State that is read rather than counted (target health,
//! circuit state, pool sizes) is gathered from the serving snapshot at each scrape, by the
//! admin API (`admin::state_metrics`): this module depends on no other module of the gateway.
//!
//! Nothing is counted until [`enable`] is called, which the binary does when an admin
//! listener will serve the metrics: a gateway without one pays nothing for them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginLabels {
    pub(crate) plugin: String,
    pub(crate) route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginFaultLabels {
    plugin: String,
    route: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct UpstreamLabel {
    pub(crate) upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamKindLabels {
    upstream: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    upstream: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TargetLabels {
    pub(crate) upstream: String,
    pub(crate) target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedKeyLabels {
    state: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

fn plugin_histogram() -> Histogram {
    // 1 µs … ~1 s: in-memory plugins take microseconds, ones that call out (token
    // introspection, Redis) take milliseconds, and a deadline can be set to seconds.
    Histogram::new(exponential_buckets(0.000_001, 2.0, 21))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily<RouteLabel>,
    plugin_calls: HistogramFamily<PluginLabels>,
    plugin_faults: Family<PluginFaultLabels, Counter>,
    upstream_durations: HistogramFamily<UpstreamLabel>,
    upstream_errors: Family<UpstreamKindLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    retry_budget_exhausted: Family<UpstreamLabel, Counter>,
    ejections: Family<UpstreamLabel, Counter>,
    rate_limit: Family<DecisionLabels, Counter>,
    rate_limit_keys: Gauge,
    rate_limit_keys_dropped: Family<DroppedKeyLabels, Counter>,
    connections_refused: Family<LimitLabel, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("wasmgate");
    let m = Metrics {
        requests: Family::default(),
        durations: Family::new_with_constructor(latency_histogram),
        plugin_calls: Family::new_with_constructor(plugin_histogram),
        plugin_faults: Family::default(),
        upstream_durations: Family::new_with_constructor(latency_histogram),
        upstream_errors: Family::default(),
        retries: Family::default(),
        retry_budget_exhausted: Family::default(),
        ejections: Family::default(),
        rate_limit: Family::default(),
        rate_limit_keys: Gauge::default(),
        rate_limit_keys_dropped: Family::default(),
        connections_refused: Family::default(),
        registry: Registry::default(),
    };
    registry.register(
        "requests",
        "Requests by route, method and status class",
        m.requests.clone(),
    );
    registry.register(
        "request_duration_seconds",
        "Time to the response head, by route",
        m.durations.clone(),
    );
    registry.register(
        "plugin_call_duration_seconds",
        "Time of one plugin hook call, by plugin and route",
        m.plugin_calls.clone(),
    );
    registry.register(
        "plugin_faults",
        "Plugin traps, timeouts and memory-limit hits",
        m.plugin_faults.clone(),
    );
    registry.register(
        "upstream_attempt_duration_seconds",
        "Time from sending an attempt to its response head (or failure), by upstream",
        m.upstream_durations.clone(),
    );
    registry.register(
        "upstream_errors",
        "Upstream requests that failed or were refused, by kind",
        m.upstream_errors.clone(),
    );
    registry.register(
        "upstream_retries",
        "Retried attempts, by upstream and reason",
        m.retries.clone(),
    );
    registry.register(
        "upstream_retry_budget_exhausted",
        "Retries not made because the retry budget was spent",
        m.retry_budget_exhausted.clone(),
    );
    registry.register(
        "upstream_ejections",
        "Targets ejected by passive health checks",
        m.ejections.clone(),
    );
    registry.register(
        "rate_limit_decisions",
        "Rate-limit checks by outcome",
        m.rate_limit.clone(),
    );
    registry.register(
        "rate_limit_keys",
        "Keys held by the in-process rate-limit counters (at most [rate_limit] max_keys)",
        m.rate_limit_keys.clone(),
    );
    registry.register(
        "rate_limit_keys_dropped",
        "Keys dropped from full in-process rate-limit counters for new ones: `expired` ones held no debt, `live` ones had theirs forgiven",
        m.rate_limit_keys_dropped.clone(),
    );
    registry.register(
        "connections_refused",
        "Client connections closed on accept, by the limit they hit",
        m.connections_refused.clone(),
    );
    Metrics { registry, ..m }
});

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

static RECORDING: AtomicBool = AtomicBool::new(false);

/// Starts counting (for good): an admin listener will serve `/metrics`.
pub fn enable() {
    RECORDING.store(true, Ordering::Relaxed);
}

/// Whether anything is counted.
#[inline]
fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

fn method_index(method: &http::Method) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(7)
}

/// Counters for one route (or for requests no route took), created once.
pub struct RouteMetrics {
    route: String,
    /// `[method][status class]`, created on first use so unused pairs export nothing.
    requests: [[OnceLock<Counter>; 5]; 8],
    duration: Histogram,
    plugins: Vec<Histogram>,
}

impl RouteMetrics {
    /// The handles for `route`, whose chain runs `plugins` in order.
    pub fn new<'a>(route: &str, plugins: impl Iterator<Item = &'a str>) -> Self {
        let m = &*METRICS;
        Self {
            route: route.to_owned(),
            requests: Default::default(),
            duration: m
                .durations
                .get_or_create(&RouteLabel {
                    route: route.to_owned(),
                })
                .clone(),
            plugins: plugins
                .map(|plugin| {
                    m.plugin_calls
                        .get_or_create(&PluginLabels {
                            plugin: plugin.to_owned(),
                            route: route.to_owned(),
                        })
                        .clone()
                })
                .collect(),
        }
    }

    /// Counts one request.
    pub fn observe(&self, method: &http::Method, status: http::StatusCode, elapsed: Duration) {
        if !recording() {
            return;
        }
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        let method = method_index(method);
        self.requests[method][class]
            .get_or_init(|| {
                METRICS
                    .requests
                    .get_or_create(&RequestLabels {
                        route: self.route.clone(),
                        method: METHODS[method],
                        status: STATUS_CLASSES[class],
                    })
                    .clone()
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one call of the chain's plugin `i`.
    pub fn observe_plugin(&self, i: usize, elapsed: Duration) {
        if !recording() {
            return;
        }
        if let Some(h) = self.plugins.get(i) {
            h.observe(elapsed.as_secs_f64());
        }
    }
}

/// Handles for one upstream.
pub struct UpstreamMetrics {
    duration: Histogram,
}

impl UpstreamMetrics {
    /// The handles for `upstream`.
    pub fn new(upstream: &str) -> Self {
        Self {
            duration: METRICS
                .upstream_durations
                .get_or_create(&UpstreamLabel {
                    upstream: upstream.to_owned(),
                })
                .clone(),
        }
    }

    /// Counts one attempt.
    pub fn observe(&self, elapsed: Duration) {
        if !recording() {
            return;
        }
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// Counts a plugin fault.
pub fn plugin_fault(plugin: &str, route: &str, kind: &'static str) {
    if !recording() {
        return;
    }
    METRICS
        .plugin_faults
        .get_or_create(&PluginFaultLabels {
            plugin: plugin.to_owned(),
            route: route.to_owned(),
            kind,
        })
        .inc();
}

/// Counts a failed or refused upstream request (`timeout`, `unreachable`, `reset`,
/// `overloaded`, `overflow`, `circuit_open`, `no_healthy_target`).
pub fn upstream_error(upstream: &str, kind: &'static str) {
    if !recording() {
        return;
    }
    METRICS
        .upstream_errors
        .get_or_create(&UpstreamKindLabels {
            upstream: upstream.to_owned(),
            kind,
        })
        .inc();
}

/// Counts a retry (`connect`, `timeout`, `reset`, `status`).
pub fn upstream_retry(upstream: &str, reason: &'static str) {
    if !recording() {
        return;
    }
    METRICS
        .retries
        .get_or_create(&RetryLabels {
            upstream: upstream.to_owned(),
            reason,
        })
        .inc();
}

/// Counts a retry the budget did not allow.
pub fn retry_budget_exhausted(upstream: &str) {
    if !recording() {
        return;
    }
    METRICS
        .retry_budget_exhausted
        .get_or_create(&UpstreamLabel {
            upstream: upstream.to_owned(),
        })
        .inc();
}

/// Counts a passive-health ejection.
pub fn upstream_ejection(upstream: &str) {
    if !recording() {
        return;
    }
    METRICS
        .ejections
        .get_or_create(&UpstreamLabel {
            upstream: upstream.to_owned(),
        })
        .inc();
}

/// Counts a rate-limit decision.
pub fn rate_limit_decision(allowed: bool) {
    if !recording() {
        return;
    }
    static HANDLES: LazyLock<[Counter; 2]> = LazyLock::new(|| {
        ["limited", "allowed"].map(|decision| {
            METRICS
                .rate_limit
                .get_or_create(&DecisionLabels { decision })
                .clone()
        })
    });
    HANDLES[usize::from(allowed)].inc();
}

/// Counts a key taken into the in-process rate-limit counters.
pub fn rate_limit_key_added() {
    if recording() {
        METRICS.rate_limit_keys.inc();
    }
}

/// Counts a key dropped from full in-process rate-limit counters; `live` when it still had
/// debt (its client's budget starts full again).
pub fn rate_limit_key_dropped(live: bool) {
    if !recording() {
        return;
    }
    static HANDLES: LazyLock<[Counter; 2]> = LazyLock::new(|| {
        ["expired", "live"].map(|state| {
            METRICS
                .rate_limit_keys_dropped
                .get_or_create(&DroppedKeyLabels { state })
                .clone()
        })
    });
    METRICS.rate_limit_keys.dec();
    HANDLES[usize::from(live)].inc();
}

/// Counts a client connection refused by `limit`.
pub fn connection_refused(limit: &'static str) {
    if !recording() {
        return;
    }
    METRICS
        .connections_refused
        .get_or_create(&LimitLabel { limit })
        .inc();
}

/// Every counter and histogram in the Prometheus text format, without the final `# EOF`.
pub fn encode() -> String {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode_registry(&mut text, &METRICS.registry).is_err() {
        text.clear();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_counted_requests() {
        super::enable();
        let route = super::RouteMetrics::new("unit", ["p"].into_iter());
        route.observe(
            &http::Method::GET,
            http::StatusCode::OK,
            std::time::Duration::from_millis(3),
        );
        route.observe_plugin(0, std::time::Duration::from_micros(5));
        let text = super::encode();
        assert!(
            text.contains(
                "wasmgate_requests_total{route=\"unit\",method=\"GET\",status=\"2xx\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "wasmgate_plugin_call_duration_seconds_count{plugin=\"p\",route=\"unit\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("method=\"POST\",status=\"2xx\""), "{text}");
    }
}
