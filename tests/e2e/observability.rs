//! What operators see: Prometheus metrics after real traffic, W3C trace context through the
//! gateway, and spans for the request, each plugin call and the upstream call at an OTLP
//! collector.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

use crate::support::*;

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format strictly: every line is a comment, `# EOF`, or a sample.
fn parse_metrics(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end");
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("`{line}`"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in `{line}`"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("`{line}`"));
                let labels = body
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("`{line}`"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name `{name}`"
        );
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

#[tokio::test]
async fn metrics_expose_the_expected_series_after_traffic() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[admin]
addr = "127.0.0.1:0"
[upstreams.pool]
targets = ["{up}", "127.0.0.1:1"]
circuit_breaker = {{ max_requests = 100 }}
[plugins.limit]
module = "builtin:rate-limit"
grants = ["rate-limit"]
[plugins.headers]
module = "builtin:headers"
[[routes]]
name = "api"
upstream = "pool"
plugins = [
  {{ use = "headers", config = {{ response = {{ set = {{ "x-via" = "wasmgate" }} }} }} }},
  {{ use = "limit", config = {{ name = "api", limits = [{{ requests = 15, per = "1h" }}] }} }},
]
"#,
        up = up.addr
    ))
    .await;
    let c = client();
    let mut statuses = BTreeMap::new();
    for i in 0..20 {
        // Raw paths never become labels: twenty paths, one route.
        let resp = c.get(gw.url(&format!("/items/{i}"))).send().await.unwrap();
        *statuses.entry(resp.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(200, 15), (429, 5)]));
    c.post(gw.url("/items")).send().await.unwrap();
    let text = gw.admin_text("/metrics").await;
    let samples = parse_metrics(&text);
    let value = |name: &str, labels: &[(&str, &str)]| {
        find(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
            .value
    };
    let api = ("route", "api");
    assert_eq!(
        value(
            "wasmgate_requests_total",
            &[api, ("method", "GET"), ("status", "2xx")]
        ),
        15.0
    );
    assert_eq!(
        value(
            "wasmgate_requests_total",
            &[api, ("method", "GET"), ("status", "4xx")]
        ),
        5.0
    );
    assert_eq!(
        value(
            "wasmgate_requests_total",
            &[api, ("method", "POST"), ("status", "4xx")]
        ),
        1.0
    );
    assert_eq!(
        value("wasmgate_request_duration_seconds_count", &[api]),
        21.0
    );
    assert_eq!(
        value(
            "wasmgate_request_duration_seconds_bucket",
            &[api, ("le", "+Inf")]
        ),
        21.0
    );
    assert_eq!(
        value(
            "wasmgate_plugin_call_duration_seconds_count",
            &[("plugin", "limit"), api]
        ),
        21.0
    );
    // The header plugin edits responses only: one call per request, on the way back (also
    // for the requests the rate limit answered).
    assert_eq!(
        value(
            "wasmgate_plugin_call_duration_seconds_count",
            &[("plugin", "headers"), api]
        ),
        21.0
    );
    assert_eq!(
        value(
            "wasmgate_rate_limit_decisions_total",
            &[("decision", "allowed")]
        ),
        15.0
    );
    assert_eq!(
        value(
            "wasmgate_rate_limit_decisions_total",
            &[("decision", "limited")]
        ),
        6.0
    );
    assert!(
        value(
            "wasmgate_upstream_attempt_duration_seconds_count",
            &[("upstream", "pool")]
        ) >= 15.0
    );
    // Half the first attempts went to the dead target and were retried on the live one.
    assert!(
        value(
            "wasmgate_upstream_retries_total",
            &[("upstream", "pool"), ("reason", "connect")]
        ) >= 1.0
    );
    assert_eq!(
        value(
            "wasmgate_upstream_target_healthy",
            &[("upstream", "pool"), ("target", &up.addr.to_string())]
        ),
        1.0
    );
    assert_eq!(
        value("wasmgate_upstream_circuit_state", &[("upstream", "pool")]),
        0.0
    );
    for idle in [
        "wasmgate_upstream_circuit_in_flight",
        "wasmgate_upstream_circuit_pending",
    ] {
        assert_eq!(value(idle, &[("upstream", "pool")]), 0.0, "{idle}");
    }
    assert!(
        find(
            &samples,
            "wasmgate_plugin_pool_idle_instances",
            &[("plugin", "limit"), api]
        )
        .is_some()
    );
    assert_eq!(value("wasmgate_reloads_total", &[("result", "ok")]), 0.0);
    assert_eq!(value("wasmgate_config_generation", &[]), 1.0);
    let request_series = samples
        .iter()
        .filter(|s| s.name == "wasmgate_requests_total")
        .count();
    assert!(request_series <= 4, "{request_series} request series");
    assert!(!text.contains("/items/"), "a raw path became a label");
}

#[tokio::test]
async fn traceparent_is_passed_on_or_started_without_a_collector() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&proxy_config(up.addr)).await;
    let c = client();
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let echo = json(
        c.get(gw.url("/"))
            .header("traceparent", given)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen_header(&echo, "traceparent"), Some(given));
    // None (or a malformed one): a new trace starts here.
    for sent in [None, Some("00-zzz-bad-01")] {
        let mut req = c.get(gw.url("/"));
        if let Some(v) = sent {
            req = req.header("traceparent", v);
        }
        let echo = json(req.send().await.unwrap()).await;
        let started = seen_header(&echo, "traceparent").expect("a traceparent upstream");
        let parts: Vec<&str> = started.split('-').collect();
        assert_eq!(parts.len(), 4, "{started}");
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
    }
    let lines = gw.access_lines(3);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

/// An OTLP/HTTP collector on a loopback port that keeps the spans it receives.
async fn collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<Span>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let sink = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        let body = req.into_body().collect().await?.to_bytes();
                        let export = ExportTraceServiceRequest::decode(body).unwrap();
                        for resource in export.resource_spans {
                            for scope in resource.scope_spans {
                                sink.lock().unwrap().extend(scope.spans);
                            }
                        }
                        Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::new(),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_for_the_request_each_plugin_and_the_upstream_reach_the_collector() {
    let up = Upstream::echo().await;
    let (otlp, spans) = collector().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[tracing]
otlp_endpoint = "http://{otlp}/v1/traces"
service_name = "edge"
[upstreams.pool]
targets = ["{up}"]
[plugins.headers]
module = "builtin:headers"
[[routes]]
name = "api"
upstream = "pool"
plugins = [{{ use = "headers", config = {{ request = {{ set = {{ "x-a" = "1" }} }}, response = {{ set = {{ "x-b" = "2" }} }} }} }}]
"#,
        up = up.addr
    ))
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = client()
        .get(gw.url("/orders"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let echo = json(resp).await;
    let upstream_tp = seen_header(&echo, "traceparent").unwrap().to_owned();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let spans = loop {
        let got = spans.lock().unwrap().clone();
        if got.len() >= 4 || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let by_name: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    let request = by_name
        .get("GET api")
        .unwrap_or_else(|| panic!("{by_name:#?}"));
    let plugin_req = by_name["plugin headers request"];
    let plugin_resp = by_name["plugin headers response"];
    let upstream = by_name["upstream pool"];
    for span in [request, plugin_req, plugin_resp, upstream] {
        assert_eq!(hex(&span.trace_id), trace_id, "{}", span.name);
    }
    assert_eq!(hex(&request.parent_span_id), "00f067aa0ba902b7");
    for child in [plugin_req, plugin_resp, upstream] {
        assert_eq!(child.parent_span_id, request.span_id, "{}", child.name);
    }
    // The upstream saw the upstream span as its parent.
    assert_eq!(
        upstream_tp,
        format!("00-{trace_id}-{}-01", hex(&upstream.span_id))
    );
    assert!(plugin_req.start_time_unix_nano >= request.start_time_unix_nano);
    assert!(upstream.end_time_unix_nano <= request.end_time_unix_nano);
}

#[tokio::test]
async fn tracing_config_errors_are_reported() {
    let err = Gateway::refused(&format!(
        "{MAIN_LISTENER}[tracing]\notlp_endpoint = \"collector:4318\"\nsample_ratio = 2.0\n[[routes]]\nname = \"r\"\nplugins = []\n"
    ))
    .await;
    assert!(err.contains("tracing.sample_ratio must be 0 to 1"), "{err}");
}
