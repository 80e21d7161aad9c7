//! Routing on host, path, method, headers and listener; prefix stripping; forwarding headers.

use crate::support::*;

async fn routed_gateway(a: &Upstream, b: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"
[listeners.main]
addr = "127.0.0.1:0"
[listeners.internal]
addr = "127.0.0.1:0"

[upstreams.a]
targets = ["{a}"]
[upstreams.b]
targets = ["{b}"]

[[routes]]
name = "internal-only"
listeners = ["internal"]
upstream = "b"

[[routes]]
name = "exact"
match = {{ path = "/exact" }}
upstream = "b"

[[routes]]
name = "by-host"
match = {{ host = "*.tenant.example", path_prefix = "/" }}
upstream = "b"

[[routes]]
name = "by-header"
match = {{ path_prefix = "/items", headers = {{ "x-version" = "2" }} }}
upstream = "b"

[[routes]]
name = "by-method"
match = {{ path_prefix = "/items", methods = ["POST"] }}
upstream = "b"

[[routes]]
name = "stripped"
match = {{ path_prefix = "/svc/b" }}
strip_prefix = true
upstream = "b"

[[routes]]
name = "prefix"
match = {{ path_prefix = "/items" }}
upstream = "a"
"#,
        a = a.addr,
        b = b.addr
    ))
    .await
}

/// Which upstream answered, and with what URI.
async fn route_of(resp: reqwest::Response, a: &Upstream) -> (String, String) {
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    let which = if echo["upstream"] == a.addr.to_string() {
        "a"
    } else {
        "b"
    };
    (which.to_owned(), echo["uri"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn each_match_kind_selects_its_route() {
    let (a, b) = (Upstream::echo().await, Upstream::echo().await);
    let gw = routed_gateway(&a, &b).await;
    let c = client();

    let exact = c.get(gw.url("/exact")).send().await.unwrap();
    assert_eq!(route_of(exact, &a).await.0, "b", "exact path");
    let not_exact = c.get(gw.url("/exact/more")).send().await.unwrap();
    assert_eq!(
        not_exact.status(),
        404,
        "exact path does not take sub-paths"
    );

    let prefix = c.get(gw.url("/items/7")).send().await.unwrap();
    assert_eq!(
        route_of(prefix, &a).await,
        ("a".into(), "/items/7".into()),
        "prefix"
    );
    let not_prefix = c.get(gw.url("/itemsx")).send().await.unwrap();
    assert_eq!(
        not_prefix.status(),
        404,
        "prefix matches on segment boundaries"
    );

    let by_method = c.post(gw.url("/items")).send().await.unwrap();
    assert_eq!(route_of(by_method, &a).await.0, "b", "method");

    let by_header = c
        .get(gw.url("/items"))
        .header("x-version", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(route_of(by_header, &a).await.0, "b", "header value");
    let other_value = c
        .get(gw.url("/items"))
        .header("x-version", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        route_of(other_value, &a).await.0,
        "a",
        "other header value falls through"
    );

    let by_host = c
        .get(gw.url("/anything"))
        .header("host", "acme.tenant.example")
        .send()
        .await
        .unwrap();
    assert_eq!(route_of(by_host, &a).await.0, "b", "wildcard host");

    let internal = c
        .get(format!("http://{}/whatever", gw.addr_of("internal")))
        .send()
        .await
        .unwrap();
    assert_eq!(route_of(internal, &a).await.0, "b", "listener");
}

#[tokio::test]
async fn strip_prefix_rewrites_the_upstream_path_and_keeps_the_query() {
    let (a, b) = (Upstream::echo().await, Upstream::echo().await);
    let gw = routed_gateway(&a, &b).await;
    let resp = client()
        .get(gw.url("/svc/b/users/1?x=1&y=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        route_of(resp, &a).await,
        ("b".into(), "/users/1?x=1&y=2".into())
    );
    let resp = client().get(gw.url("/svc/b")).send().await.unwrap();
    assert_eq!(route_of(resp, &a).await.1, "/");
}

#[tokio::test]
async fn no_route_is_404_with_a_request_id() {
    let (a, b) = (Upstream::echo().await, Upstream::echo().await);
    let gw = routed_gateway(&a, &b).await;
    let resp = client().get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"].len(), 32);
    assert_eq!(
        resp.text().await.unwrap(),
        "no route matches this request\n"
    );
}

#[tokio::test]
async fn upstream_sees_forwarding_headers_and_no_hop_by_hop_fields() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&proxy_config(up.addr)).await;
    let resp = client()
        .get(gw.url("/x"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("x-request-id", "trace-me-123")
        .header("host", "api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-123");
    assert_eq!(resp.headers()["x-upstream-header"], "kept");
    assert!(
        resp.headers().get("keep-alive").is_none(),
        "upstream hop-by-hop header removed"
    );
    let echo = json(resp).await;
    // The client is no trusted proxy: its own X-Forwarded-For is dropped, not extended.
    assert_eq!(seen_header(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen_header(&echo, "x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen_header(&echo, "x-forwarded-host"),
        Some("api.example.com")
    );
    assert_eq!(seen_header(&echo, "host"), Some("api.example.com"));
    assert_eq!(seen_header(&echo, "x-request-id"), Some("trace-me-123"));
    assert_eq!(
        seen_header(&echo, "x-hop"),
        None,
        "field named by Connection removed"
    );

    let lines = gw.access_lines(1);
    let access: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(access["route"], "all");
    assert_eq!(access["status"], 200);
    assert_eq!(access["upstream"], "up");
    assert_eq!(access["request_id"], "trace-me-123");
}

#[tokio::test]
async fn requests_are_balanced_round_robin_over_targets() {
    let (a, b) = (Upstream::echo().await, Upstream::echo().await);
    let gw = Gateway::start(&format!(
        "{MAIN_LISTENER}[upstreams.pool]\ntargets = [\"{}\", \"{}\"]\n[[routes]]\nname = \"all\"\nupstream = \"pool\"\n",
        a.addr, b.addr
    ))
    .await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!((a.hits(), b.hits()), (5, 5));
}

#[tokio::test]
async fn large_bodies_stream_through_intact_both_ways() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&proxy_config(up.addr)).await;
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(&body))
    };
    let resp = client()
        .post(gw.url("/upload"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    assert_eq!(echo["body_len"], 5_000_000);
    assert_eq!(echo["body_sha256"], digest);
}
