//! Prometheus metrics, served by the admin API's `GET /metrics`.
//!
//! Label values come from the config (route, plugin and upstream names) or small fixed sets
//! (status class, fault kind), never from requests, so cardinality is bounded by the config.
//! The per-route handles are created when a route is built, so counting a request takes no
//! lock and allocates nothing; handles for the same labels survive reloads.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginFaultLabels {
    plugin: String,
    route: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: String,
    kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabel, Histogram, fn() -> Histogram>,
    plugin_faults: Family<PluginFaultLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("wasmgate");
    let requests = Family::<RequestLabels, Counter>::default();
    let durations =
        Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
    let plugin_faults = Family::<PluginFaultLabels, Counter>::default();
    let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
    registry.register(
        "requests",
        "Requests by route and status class",
        requests.clone(),
    );
    registry.register(
        "request_duration_seconds",
        "Time to the response head, by route",
        durations.clone(),
    );
    registry.register(
        "plugin_faults",
        "Plugin traps, timeouts and memory-limit hits",
        plugin_faults.clone(),
    );
    registry.register(
        "upstream_errors",
        "Upstream requests that failed, by kind",
        upstream_errors.clone(),
    );
    Metrics {
        registry,
        requests,
        durations,
        plugin_faults,
        upstream_errors,
    }
});

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters for one route (or for requests no route took), created once.
pub struct RouteMetrics {
    by_status: [Counter; 5],
    duration: Histogram,
}

impl RouteMetrics {
    /// The handles for `route`.
    pub fn new(route: &str) -> Self {
        let m = &*METRICS;
        Self {
            by_status: STATUS_CLASSES.map(|status| {
                m.requests
                    .get_or_create(&RequestLabels {
                        route: route.to_owned(),
                        status,
                    })
                    .clone()
            }),
            duration: m
                .durations
                .get_or_create(&RouteLabel {
                    route: route.to_owned(),
                })
                .clone(),
        }
    }

    /// Counts one request.
    pub fn observe(&self, status: http::StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_status[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// Counts a plugin fault.
pub fn plugin_fault(plugin: &str, route: &str, kind: &'static str) {
    METRICS
        .plugin_faults
        .get_or_create(&PluginFaultLabels {
            plugin: plugin.to_owned(),
            route: route.to_owned(),
            kind,
        })
        .inc();
}

/// Counts a failed upstream request (`timeout`, `unreachable`, `overloaded`).
pub fn upstream_error(upstream: &str, kind: &'static str) {
    METRICS
        .upstream_errors
        .get_or_create(&UpstreamErrorLabels {
            upstream: upstream.to_owned(),
            kind,
        })
        .inc();
}

/// Every metric in the Prometheus text format.
pub fn encode() -> String {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &METRICS.registry).is_err() {
        text.clear();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_counted_requests() {
        let route = super::RouteMetrics::new("unit");
        route.observe(http::StatusCode::OK, std::time::Duration::from_millis(3));
        let mut text = String::new();
        let result = prometheus_client::encoding::text::encode(&mut text, &super::METRICS.registry);
        assert!(result.is_ok(), "{result:?}");
        assert!(
            text.contains("wasmgate_requests_total{route=\"unit\",status=\"2xx\"} 1"),
            "{text}"
        );
    }
}
