//! The admin API beyond reloads and metrics: routes, plugins and their pools, probes, and the
//! optional bearer token.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn admin_config(upstream: std::net::SocketAddr, admin_extra: &str) -> String {
    format!(
        r#"
[admin]
addr = "127.0.0.1:0"
{admin_extra}
[listeners.main]
addr = "127.0.0.1:0"
[upstreams.up]
targets = ["{upstream}"]
[plugins.waf]
module = "builtin:waf"
[plugins.headers]
module = "builtin:headers"
grants = ["clock"]
[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
upstream = "up"
plugins = [{{ use = "waf" }}, {{ use = "headers", config = {{ response = {{ set = {{ "x-a" = "1" }} }} }} }}]
[[routes]]
name = "rest"
upstream = "up"
"#
    )
}

#[tokio::test]
async fn routes_and_plugins_describe_what_serves_with_the_token_required() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&admin_config(up.addr, r#"token = "s3cret-admin-token""#)).await;
    let c = client();
    for probe in ["/healthz", "/readyz"] {
        let resp = c.get(gw.admin_url(probe)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{probe} needs no token");
    }
    let resp = c.get(gw.admin_url("/routes")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"wasmgate-admin\""
    );
    let wrong = c
        .get(gw.admin_url("/status"))
        .bearer_auth("s3cret-admin-tokeN")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let get = |path: &'static str| {
        c.get(gw.admin_url(path))
            .bearer_auth("s3cret-admin-token")
            .send()
    };
    let routes = json(get("/routes").await.unwrap()).await;
    assert_eq!(
        routes,
        serde_json::json!([
            { "name": "api", "upstream": "up", "plugins": ["waf", "headers"] },
            { "name": "rest", "upstream": "up", "plugins": [] },
        ])
    );

    let plugins = json(get("/plugins").await.unwrap()).await;
    let waf = &plugins["waf"];
    assert_eq!(waf["module_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(waf["on_error"], "fail");
    assert_eq!(waf["isolation"], "pooled");
    let pool = &waf["pools"][0];
    assert_eq!(pool["route"], "api");
    assert!(pool["idle_instances"].as_u64().unwrap() >= 1, "{pool}");
    assert_eq!(
        pool["hooks"],
        serde_json::json!({ "request": true, "response": false })
    );
    assert_eq!(pool["bodies"]["request"], 1 << 20);
    assert_eq!(plugins["headers"]["grants"], serde_json::json!(["clock"]));
    assert_eq!(plugins["headers"]["pools"][0]["hooks"]["request"], false);
}

#[tokio::test]
async fn readyz_turns_503_while_the_gateway_drains() {
    let slow = Upstream::start(Behaviour::Slow(Duration::from_secs(2))).await;
    let gw = Gateway::start(&admin_config(slow.addr, "")).await;
    let ready = client().get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready\n");

    // A request in flight keeps the gateway draining for a while after SIGTERM.
    let in_flight = tokio::spawn({
        let url = gw.url("/rest");
        async move { client().get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let draining: Value = loop {
        let resp = client().get(gw.admin_url("/readyz")).send().await.unwrap();
        if resp.status() == 503 {
            break Value::String(resp.text().await.unwrap());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz never reported draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(draining, "draining\n");
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the in-flight request still finishes"
    );
}
