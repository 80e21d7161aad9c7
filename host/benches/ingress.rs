//! What making a request canonical costs before routing: the path (clean, and with escapes and
//! dot segments to normalise), the authority and the gateway-owned header fields. Run with
//! `cargo bench -p wasmgate --bench ingress`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmgate::ingress::{self, IngressRules, OwnedHeaders, PathRules, Peer};

fn path(c: &mut Criterion) {
    let rules = PathRules::default();
    for (label, path) in [
        ("clean, short", "/orders/42"),
        (
            "clean, typical API path",
            "/api/v1/users/8f14e45f-ceea-467f-a0e6-4b8e1b9c5a77/orders",
        ),
        ("to normalise: escapes", "/api/v1/users/%7ealice/caf%c3%a9"),
        ("to normalise: dot segments", "/api/v1/../v2/./users//42/"),
    ] {
        c.bench_function(&format!("canonical path: {label}"), |b| {
            b.iter(|| ingress::path::canonical(black_box(path), rules).map(|p| p.len()))
        });
    }
}

fn request(c: &mut Criterion) {
    let rules = IngressRules {
        path: PathRules::default(),
        owned: OwnedHeaders::new([http::HeaderName::from_static("x-jwt-claim-email")], vec![]),
    };
    let peer = Peer {
        addr: "203.0.113.9".parse().expect("an address"),
        internal: false,
    };
    let (head, ()) = http::Request::builder()
        .uri("/api/v1/users/42/orders?limit=10")
        .header("host", "api.example.com")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .header("origin", "https://app.example.com")
        .header("authorization", format!("Bearer {}", "x".repeat(200)))
        .body(())
        .expect("a request")
        .into_parts();
    c.bench_function(
        "canonicalise a request (clean path, Host, 5 headers, 10 owned names)",
        |b| {
            b.iter_batched_ref(
                || head.clone(),
                |parts| ingress::canonicalise(parts, peer, &rules),
                criterion::BatchSize::SmallInput,
            )
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = path, request
}
criterion_main!(benches);
