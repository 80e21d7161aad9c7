//! The gauges `GET /metrics` adds to the counters of [`crate::metrics`]: state that is read
//! from the serving snapshot at each scrape rather than counted (target health and load,
//! circuit state, warm plugin instances).

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{PluginLabels, TargetLabels, UpstreamLabel};
use crate::snapshot::Snapshot;

/// The state of `snapshot` as gauges: target health and load, circuit state, pool sizes.
/// Ends with `# EOF`.
pub fn encode(snapshot: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("wasmgate");
    let healthy = Family::<TargetLabels, Gauge>::default();
    let outstanding = Family::<TargetLabels, Gauge>::default();
    let circuit = Family::<UpstreamLabel, Gauge>::default();
    let in_flight = Family::<UpstreamLabel, Gauge>::default();
    let pending = Family::<UpstreamLabel, Gauge>::default();
    let idle = Family::<PluginLabels, Gauge>::default();
    let now = crate::clock::now_ms();
    for (name, upstream) in &snapshot.upstreams {
        for target in upstream.targets() {
            let labels = TargetLabels {
                upstream: name.clone(),
                target: target.authority.to_string(),
            };
            healthy
                .get_or_create(&labels)
                .set(i64::from(target.health.available(now)));
            outstanding
                .get_or_create(&labels)
                .set(i64::from(target.outstanding()));
        }
        if let Some(c) = upstream.circuit() {
            let label = UpstreamLabel {
                upstream: name.clone(),
            };
            circuit.get_or_create(&label).set(c.state() as i64);
            in_flight
                .get_or_create(&label)
                .set(i64::from(c.in_flight()));
            pending.get_or_create(&label).set(i64::from(c.pending()));
        }
    }
    for route in snapshot.routes.iter() {
        for pool in &route.chain {
            idle.get_or_create(&PluginLabels {
                plugin: pool.plugin().name().to_owned(),
                route: route.name.to_string(),
            })
            .set(pool.idle_instances() as i64);
        }
    }
    registry.register(
        "upstream_target_healthy",
        "1 when the target takes requests (healthy and not ejected), else 0",
        healthy,
    );
    registry.register(
        "upstream_target_outstanding",
        "Requests in flight to the target",
        outstanding,
    );
    registry.register(
        "upstream_circuit_state",
        "Circuit breaker state: 0 closed, 1 open, 2 half-open",
        circuit,
    );
    registry.register(
        "upstream_circuit_in_flight",
        "Requests in flight counted by the circuit breaker",
        in_flight,
    );
    registry.register(
        "upstream_circuit_pending",
        "Requests waiting for a slot under max_requests",
        pending,
    );
    registry.register(
        "plugin_pool_idle_instances",
        "Warm plugin instances waiting for a request, by plugin and route",
        idle,
    );
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        text.clear();
    }
    text
}
