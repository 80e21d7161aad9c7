//! What the gateway's own bookkeeping costs per request, apart from plugins and I/O: metrics,
//! trace context with span export off, target choice, the circuit breaker and the retry
//! budget. Run with `cargo bench -p wasmgate --bench request_bookkeeping`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use wasmgate::metrics::{RouteMetrics, UpstreamMetrics};
use wasmgate::upstream::balance::{Balancer, Pick, Strategy, hash_key};
use wasmgate::upstream::circuit::{Circuit, CircuitSettings};
use wasmgate::upstream::retry::{RetryBudget, RetrySettings};

fn metrics(c: &mut Criterion) {
    let route = RouteMetrics::new("bench", ["cors", "headers"].into_iter());
    let upstream = UpstreamMetrics::new("bench");
    let one_request = || {
        route.observe(&Method::GET, StatusCode::OK, Duration::from_micros(900));
        upstream.observe(Duration::from_micros(700));
        route.observe_plugin(0, Duration::from_micros(2));
        route.observe_plugin(1, Duration::from_micros(2));
    };
    // Without an admin listener nothing is counted.
    c.bench_function("metrics off: one request", |b| b.iter(one_request));
    wasmgate::metrics::enable();
    c.bench_function(
        "metrics on: one request (counter, 2 histograms, 2 plugin calls)",
        |b| b.iter(one_request),
    );
}

fn trace_context(c: &mut Criterion) {
    let path = "/orders/42";
    c.bench_function("trace context, export off: start a trace", |b| {
        b.iter(|| {
            let mut headers = HeaderMap::new();
            wasmgate::telemetry::start(&mut headers, &Method::GET, path)
        })
    });
    let given = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    c.bench_function("trace context, export off: pass one on", |b| {
        b.iter(|| {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", given.clone());
            wasmgate::telemetry::start(&mut headers, &Method::GET, path)
        })
    });
}

fn upstream_choice(c: &mut Criterion) {
    for (name, strategy) in [
        ("round-robin", Strategy::RoundRobin),
        ("least-outstanding", Strategy::LeastOutstanding),
        ("consistent-hash", Strategy::ConsistentHash),
    ] {
        let balancer = Balancer::new(strategy, vec![1; 8]);
        c.bench_function(&format!("pick 1 of 8 targets: {name}"), |b| {
            b.iter(|| {
                balancer.pick(&Pick {
                    available: &|i| i != 3,
                    outstanding: &|i| i as u32,
                    key: Some(hash_key(b"user-42")),
                    avoid: None,
                })
            })
        });
    }
    let circuit = std::sync::Arc::new(Circuit::new(CircuitSettings {
        max_requests: Some(1000),
        max_pending: 0,
        pending_timeout: Duration::from_secs(1),
        failure_ratio: Some(0.5),
        min_requests: 20,
        window: Duration::from_secs(10),
        open_for: Duration::from_secs(30),
        half_open_requests: 1,
    }));
    c.bench_function("circuit breaker: admit and record", |b| {
        b.iter(|| {
            let mut admission = circuit.admit().expect("the circuit is closed");
            admission.report(true);
        })
    });
    let budget = RetryBudget::new(&RetrySettings::connect_failures());
    c.bench_function("retry budget: deposit", |b| b.iter(|| budget.deposit()));
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = metrics, trace_context, upstream_choice
}
criterion_main!(benches);
