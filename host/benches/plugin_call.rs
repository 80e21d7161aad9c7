//! Cost of one plugin hook call on a pooled, already configured instance: the per-request
//! price of a plugin in wasmgate. Run with `cargo bench -p wasmgate --bench plugin_call`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmgate::exchange::Exchange;
use wasmgate::plugin::{Capability, PluginPool, PluginRuntime, PluginSettings, RuntimeOptions};

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
    let settings = PluginSettings {
        grants: vec![
            Capability::Jwt,
            Capability::Http,
            Capability::State,
            Capability::RateLimit,
        ],
        ..PluginSettings::default()
    };
    let plugin = runtime
        .load(name, &plugin_bytes(name), settings)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    match rt.block_on(PluginPool::new(plugin, "bench", config.to_owned(), None)) {
        Ok(Ok(pool)) => pool,
        Ok(Err(e)) => panic!("{name} refused its config: {e:?}"),
        Err(e) => panic!("{name}: {e}"),
    }
}

fn request() -> Exchange {
    request_with(None)
}

fn request_with(header: Option<(&str, &str)>) -> Exchange {
    let mut req = http::Request::builder()
        .uri("/api/users?page=2")
        .header("host", "api.example.com")
        .header("origin", "https://app.example.com")
        .header("accept", "application/json")
        .header("user-agent", "bench");
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let req = req.body(()).unwrap_or_default();
    let mut exchange = Exchange::idle();
    exchange.request = req.into_parts().0;
    exchange.response = Some(http::Response::new(()).into_parts().0);
    exchange
}

/// A typical API request body: a user profile and order lines, about `len` bytes of JSON.
fn json_body(len: usize) -> bytes::Bytes {
    let mut items = Vec::new();
    let mut doc = serde_json::json!({});
    for i in 0.. {
        doc = serde_json::json!({
            "user": {
                "name": "Siobhán O'Brien",
                "email": "siobhan.obrien@example.com",
                "address": { "street": "12 Harbour Rd", "city": "Cork", "country": "IE" },
                "bio": "Product designer; I like \"clean\" APIs, 3/4 of my time is spent on research & testing.",
            },
            "items": items,
            "note": "Please deliver after 5 pm, ring twice.",
        });
        if doc.to_string().len() >= len {
            break;
        }
        items.push(serde_json::json!({
            "sku": format!("SKU-{i:05}"),
            "title": "Stainless steel water bottle, 750 ml",
            "qty": 1 + i % 3,
            "price": 19.95,
            "gift_message": "Happy birthday! Don't drink it all at once :)",
        }));
    }
    bytes::Bytes::from(doc.to_string())
}

fn request_with_body(body: &bytes::Bytes) -> Exchange {
    let mut exchange = request_with(Some(("content-type", "application/json")));
    exchange.request.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    exchange.request.method = http::Method::POST;
    exchange.request_body = Some(body.clone());
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
        ..RuntimeOptions::default()
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
    // Authentication: the whole request hook, verification included.
    let secret = "a-bench-secret-of-at-least-32-bytes!!";
    let rsa_private = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/rsa-test-private.pem"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let rsa_public = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/rsa-test-public.pem"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let claims = serde_json::json!({ "sub": "user-42", "exp": 4_102_444_800u64, "scope": "read" });
    let sign = |alg, key: &jsonwebtoken::EncodingKey| {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let hs_token = format!(
        "Bearer {}",
        sign(
            jsonwebtoken::Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())
        )
    );
    let rsa_key = jsonwebtoken::EncodingKey::from_rsa_pem(rsa_private.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let rs_token = format!("Bearer {}", sign(jsonwebtoken::Algorithm::RS256, &rsa_key));
    let hs = pool(
        &rt,
        &runtime,
        "jwt_auth",
        &serde_json::json!({ "algorithms": ["HS256"], "secrets": [{ "value": secret }] })
            .to_string(),
    );
    let rs = pool(
        &rt,
        &runtime,
        "jwt_auth",
        &serde_json::json!({ "algorithms": ["RS256"], "public_keys": [{ "pem": rsa_public }] })
            .to_string(),
    );
    // sha256("bench-key")
    let key_hash = "b0962662e937d44c699c8305d90cbf190b3150c59b13863d1380b5cc3c711bb7";
    let api_key = pool(
        &rt,
        &runtime,
        "api_key",
        &serde_json::json!({ "keys": [{ "consumer": "bench", "sha256": key_hash }] }).to_string(),
    );
    let limit = pool(
        &rt,
        &runtime,
        "rate_limit",
        &serde_json::json!({ "limits": [{ "requests": 1_000_000_000u64, "per": "1s" }], "key": ["ip"] }).to_string(),
    );
    let auth_cases = [
        ("rate_limit_local_request", &limit, ("x-unused", "-")),
        (
            "jwt_auth_hs256_request",
            &hs,
            ("authorization", hs_token.as_str()),
        ),
        (
            "jwt_auth_rs256_request",
            &rs,
            ("authorization", rs_token.as_str()),
        ),
        (
            "api_key_request_valid_key",
            &api_key,
            ("x-api-key", "bench-key"),
        ),
    ];
    for (name, pool, header) in auth_cases {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let pool = pool.clone();
                async move {
                    let (ex, result) = pool.on_request(request_with(Some(header))).await;
                    result.unwrap_or_else(|e| panic!("{e}"));
                    std::hint::black_box(ex)
                }
            })
        });
    }
    // Body plugins: the request body is already buffered, as the driver hands it over.
    let waf = pool(&rt, &runtime, "waf", r#"{"paranoia":1}"#);
    let transform = pool(
        &rt,
        &runtime,
        "transform",
        r#"{"request":{"json":[{"op":"set","pointer":"/meta/source","value":"gateway"}]}}"#,
    );
    let small = json_body(1024);
    let large = json_body(64 << 10);
    let body_cases = [
        ("waf_request_1kb_json_paranoia_1", &waf, &small),
        ("waf_request_64kb_json_paranoia_1", &waf, &large),
        ("transform_request_1kb_json_one_edit", &transform, &small),
    ];
    for (name, pool, body) in body_cases {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let pool = pool.clone();
                async move {
                    let (ex, result) = pool.on_request(request_with_body(body)).await;
                    match result {
                        Ok(wasmgate::plugin::contract::Action::Continue) => {}
                        _ => panic!("{name}: the benign request was not passed on"),
                    }
                    std::hint::black_box(ex)
                }
            })
        });
    }
    group.bench_function("baseline_build_request_only", |b| {
        b.iter(|| std::hint::black_box(request()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
