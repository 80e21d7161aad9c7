//! Contract versioning: a plugin built against an older `0.1` contract keeps running, and one
//! built against an incompatible contract is refused with the version it names.

use crate::support::*;

fn contract_gateway(upstream: std::net::SocketAddr, module: &str) -> String {
    format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{upstream}"]
[plugins.old]
module = "{module}"
[[routes]]
name = "r"
upstream = "up"
plugins = [{{ use = "old" }}]
"#
    )
}

#[tokio::test]
async fn a_plugin_built_for_contract_0_1_0_runs_on_the_current_gateway() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&contract_gateway(up.addr, &plugin("contract_0_1_0"))).await;
    let resp = client().get(gw.url("/orders/7")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-seen-path"],
        "/orders/7",
        "context carried to the response hook"
    );
    let echo = json(resp).await;
    assert_eq!(
        seen_header(&echo, "x-built-for"),
        Some("wasmgate:plugin@0.1.0")
    );
}

#[tokio::test]
async fn a_plugin_built_for_an_incompatible_contract_is_refused_by_version() {
    let up = Upstream::echo().await;
    let refused = Gateway::refused(&contract_gateway(up.addr, &plugin("contract_0_2_0"))).await;
    assert!(
        refused.contains(
            "plugin `old` (module `"
        ) && refused.contains(
            "it was built for wasmgate:plugin@0.2.0, which is not compatible: this gateway runs plugins built for wasmgate:plugin@0.1.0 to 0.1.2"
        ),
        "{refused}"
    );
}
