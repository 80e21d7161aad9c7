//! The access log on standard output: one line per request, JSON or Common Log Format, with
//! the consumer, upstream target, bytes and durations, and no secrets.

use serde_json::Value;

use crate::support::*;

const KEY_SHA256: &str = "c48a01f49fd0f2cc404bc3cbbc80e91457a3d41bb429a695243de4c61794155c"; // "demo-key"

fn config(upstream: std::net::SocketAddr, format: &str) -> String {
    format!(
        r#"
[server]
access_log = "{format}"
{MAIN_LISTENER}
[upstreams.up]
targets = ["{upstream}"]
[plugins.key]
module = "builtin:api-key"
[[routes]]
name = "private"
upstream = "up"
plugins = [{{ use = "key", config = {{ keys = [{{ consumer = "demo", sha256 = "{KEY_SHA256}" }}] }} }}]
"#
    )
}

async fn send_with_secrets(gw: &Gateway) -> reqwest::Response {
    client()
        .get(gw.url("/orders/7?access_token=SECRET-IN-QUERY"))
        .header("x-api-key", "demo-key")
        .header("authorization", "Bearer SECRET-IN-HEADER")
        .header("cookie", "session=SECRET-IN-COOKIE")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn json_lines_carry_the_exchange_and_no_secrets() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&config(up.addr, "json")).await;
    let resp = send_with_secrets(&gw).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body_len = resp.bytes().await.unwrap().len() as u64;

    let lines = gw.access_lines(1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    for secret in [
        "SECRET-IN-QUERY",
        "SECRET-IN-HEADER",
        "SECRET-IN-COOKIE",
        "demo-key",
    ] {
        assert!(!lines[0].contains(secret), "{secret} leaked: {}", lines[0]);
    }
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["request_id"], request_id.as_str());
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/orders/7");
    assert_eq!(line["route"], "private");
    assert_eq!(line["consumer"], "demo");
    assert_eq!(line["upstream"], "up");
    assert_eq!(line["target"], up.addr.to_string());
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes"], body_len);
    assert_eq!(line["complete"], true);
    assert!(line["duration_us"].as_u64().unwrap() >= line["head_us"].as_u64().unwrap());
    assert!(line["time"].as_str().unwrap().ends_with('Z'));

    // A refused request is logged too, without a consumer or an upstream.
    let refused = client().get(gw.url("/orders")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let lines = gw.access_lines(2);
    let line: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(line["status"], 401);
    assert_eq!(line["consumer"], Value::Null);
    assert_eq!(line["target"], Value::Null);
}

#[tokio::test]
async fn common_log_format_and_off() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&config(up.addr, "common")).await;
    let resp = send_with_secrets(&gw).await;
    let body_len = resp.bytes().await.unwrap().len();
    let lines = gw.access_lines(1);
    let line = &lines[0];
    assert!(line.starts_with("127.0.0.1 - demo ["), "{line}");
    assert!(
        line.ends_with(&format!("+0000] \"GET /orders/7 HTTP/1.1\" 200 {body_len}")),
        "{line}"
    );
    assert!(!line.contains("SECRET"), "{line}");
    drop(gw);

    let gw = Gateway::start(&config(up.addr, "off")).await;
    send_with_secrets(&gw).await;
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(gw.access_lines(0).is_empty());
}

#[tokio::test]
async fn a_client_that_gives_up_is_logged_and_counted_as_499() {
    let up = Upstream::start(Behaviour::Slow(std::time::Duration::from_secs(2))).await;
    let gw = Gateway::start(&format!(
        "{}[admin]\naddr = \"127.0.0.1:0\"\n",
        config(up.addr, "json")
    ))
    .await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(gw.url("/orders/slow?access_token=SECRET"))
        .header("x-api-key", "demo-key")
        .send()
        .await;
    assert!(gave_up.is_err());
    // The client's connection closes on this runtime: let it run before blocking on the log.
    drop(impatient);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let lines = gw.access_lines(1);
    assert!(!lines.is_empty(), "no access line; log: {:#?}", gw.logs());
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["route"], "private");
    assert_eq!(line["upstream"], "up");
    assert_eq!(line["path"], "/orders/slow");
    assert_eq!(line["complete"], false);
    assert!(line["duration_us"].as_u64().unwrap() >= 250_000, "{line}");
    let metrics = gw.admin_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"wasmgate_requests_total{route="private",method="GET",status="4xx"} 1"#),
        "{metrics}"
    );
}
