//! Plugin chains: order of the two phases, short-circuit answers, per-route configs.

use crate::support::*;

fn order_plugin(tag: &str) -> String {
    format!(
        r#"{{ use = "headers", config = {{ request = {{ add = {{ "x-order" = "{tag}" }} }}, response = {{ add = {{ "x-order" = "{tag}" }} }} }} }}"#
    )
}

#[tokio::test]
async fn request_phase_runs_in_order_and_response_phase_in_reverse() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{}"]
[plugins.headers]
module = "builtin:headers"
[[routes]]
name = "chain"
upstream = "up"
plugins = [{}, {}, {}]
"#,
        up.addr,
        order_plugin("1"),
        order_plugin("2"),
        order_plugin("3")
    ))
    .await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    let order: Vec<_> = resp
        .headers()
        .get_all("x-order")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        ["3", "2", "1"],
        "response phase runs last plugin first"
    );
    let echo = json(resp).await;
    assert_eq!(
        echo["headers"]["x-order"],
        serde_json::json!(["1", "2", "3"]),
        "request phase in chain order"
    );
}

#[tokio::test]
async fn a_plugin_answer_skips_later_plugins_and_the_upstream() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{}"]
[plugins.headers]
module = "builtin:headers"
[plugins.echo]
module = "builtin:echo"
[[routes]]
name = "short"
upstream = "up"
plugins = [{}, {{ use = "echo", config = {{ status = 203 }} }}, {}]
"#,
        up.addr,
        order_plugin("before"),
        order_plugin("after")
    ))
    .await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 203);
    let order: Vec<_> = resp
        .headers()
        .get_all("x-order")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        ["before"],
        "only plugins before the answer run their response phase"
    );
    let echo = json(resp).await;
    assert_eq!(
        echo["headers"]["x-order"], "before",
        "the plugin after the answer never ran"
    );
    assert_eq!(up.hits(), 0, "upstream skipped");
}

#[tokio::test]
async fn the_same_plugin_runs_with_a_different_config_on_each_route() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{}"]
[plugins.headers]
module = "builtin:headers"
[[routes]]
name = "v1"
match = {{ path_prefix = "/v1" }}
upstream = "up"
plugins = [{{ use = "headers", config = {{ request = {{ set = {{ "x-api-version" = "1" }} }} }} }}]
[[routes]]
name = "v2"
match = {{ path_prefix = "/v2" }}
upstream = "up"
plugins = [{{ use = "headers", config = {{ request = {{ set = {{ "x-api-version" = "2" }}, remove = ["x-drop"] }}, response = {{ rename = {{ "x-upstream-header" = "x-renamed" }} }} }} }}]
"#,
        up.addr
    ))
    .await;
    let c = client();
    for _ in 0..3 {
        let v1 = c
            .get(gw.url("/v1"))
            .header("x-drop", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(v1.headers()["x-upstream-header"], "kept");
        let v1 = json(v1).await;
        assert_eq!(seen_header(&v1, "x-api-version"), Some("1"));
        assert_eq!(seen_header(&v1, "x-drop"), Some("1"));

        let v2 = c
            .get(gw.url("/v2"))
            .header("x-drop", "1")
            .send()
            .await
            .unwrap();
        assert!(v2.headers().get("x-upstream-header").is_none());
        assert_eq!(v2.headers()["x-renamed"], "kept");
        let v2 = json(v2).await;
        assert_eq!(seen_header(&v2, "x-api-version"), Some("2"));
        assert_eq!(seen_header(&v2, "x-drop"), None);
    }
}

#[tokio::test]
async fn per_request_isolation_serves_every_request_from_a_fresh_instance() {
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[plugins.echo]
module = "builtin:echo"
isolation = "per-request"
[[routes]]
name = "isolated"
plugins = [{{ use = "echo" }}]
"#
    ))
    .await;
    let c = client();
    for _ in 0..5 {
        let resp = c.get(gw.url("/x?y=1")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let echo = json(resp).await;
        assert_eq!(echo["path"], "/x");
        assert_eq!(echo["query"], "y=1");
    }
}

#[tokio::test]
async fn plugins_from_files_load_like_builtins() {
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[plugins.echo]
module = "{}"
[[routes]]
name = "file"
plugins = [{{ use = "echo" }}]
"#,
        plugin("echo")
    ))
    .await;
    let resp = client().get(gw.url("/from-file")).send().await.unwrap();
    assert_eq!(json(resp).await["path"], "/from-file");
}

#[tokio::test]
async fn the_context_carries_values_along_the_chain_and_never_to_the_next_request() {
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[plugins.testkit]
module = "{}"
[plugins.echo]
module = "builtin:echo"
[[routes]]
name = "ctx"
plugins = [{{ use = "testkit", config = {{ expose_context = ["tenant"] }} }}, {{ use = "echo", config = {{ context = ["tenant"] }} }}]
"#,
        plugin("testkit")
    ))
    .await;
    let c = client();
    let resp = c
        .get(gw.url("/"))
        .header("x-context-set", "tenant=acme")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-context-tenant"],
        "acme",
        "the response hook reads what the request hook stored"
    );
    assert_eq!(
        json(resp).await["context"]["tenant"],
        "acme",
        "a later plugin reads it"
    );

    // Same pooled instances, new request: nothing left over.
    for _ in 0..4 {
        let resp = c.get(gw.url("/")).send().await.unwrap();
        assert!(resp.headers().get("x-context-tenant").is_none());
        assert_eq!(json(resp).await["context"], serde_json::json!({}));
    }
}
