//! Cost of one plugin hook call on a pooled, already configured instance: the per-request
//! price of a plugin in wasmgate. Run with `cargo bench -p wasmgate --bench plugin_call`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmgate::exchange::Exchange;
use wasmgate::plugin::{PluginPool, PluginRuntime, PluginSettings, RuntimeOptions};

fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("WASMGATE_PLUGIN_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pool(
    rt: &tokio::runtime::Runtime,
    runtime: &PluginRuntime,
    name: &str,
    config: &str,
) -> Arc<PluginPool> {
    let plugin = runtime
        .load(name, &plugin_bytes(name), PluginSettings::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    match rt.block_on(PluginPool::new(plugin, "bench", config.to_owned())) {
        Ok(Ok(pool)) => pool,
        Ok(Err(e)) => panic!("{name} refused its config: {e:?}"),
        Err(e) => panic!("{name}: {e}"),
    }
}

fn request() -> Exchange {
    let req = http::Request::builder()
        .uri("/api/users?page=2")
        .header("host", "api.example.com")
        .header("origin", "https://app.example.com")
        .header("accept", "application/json")
        .header("user-agent", "bench")
        .body(())
        .unwrap_or_default();
    let mut exchange = Exchange::idle();
    exchange.request = req.into_parts().0;
    exchange.response = Some(http::Response::new(()).into_parts().0);
    exchange
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let runtime = PluginRuntime::new(&RuntimeOptions {
        cache_dir: None,
        max_instances: 64,
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // Reads `origin`, sets `access-control-allow-origin`, appends `vary`.
    let cors = pool(
        &rt,
        &runtime,
        "cors",
        r#"{"origins":["https://app.example.com"]}"#,
    );
    // Sets one request header.
    let headers = pool(
        &rt,
        &runtime,
        "headers",
        r#"{"request":{"set":{"x-api-version":"1"}}}"#,
    );

    let mut group = c.benchmark_group("plugin_call");
    // Each iteration builds a fresh request head (measured alone by the baseline) so that no
    // header set by one call is seen by the next.
    group.bench_function("cors_response_read_origin_set_allow_origin", |b| {
        b.to_async(&rt).iter(|| {
            let cors = cors.clone();
            async move {
                let (ex, result) = cors.on_response(request()).await;
                result.unwrap_or_else(|e| panic!("{e}"));
                std::hint::black_box(ex)
            }
        })
    });
    group.bench_function("headers_request_set_one_header", |b| {
        b.to_async(&rt).iter(|| {
            let headers = headers.clone();
            async move {
                let (ex, result) = headers.on_request(request()).await;
                result.unwrap_or_else(|e| panic!("{e}"));
                std::hint::black_box(ex)
            }
        })
    });
    group.bench_function("baseline_build_request_only", |b| {
        b.iter(|| std::hint::black_box(request()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
