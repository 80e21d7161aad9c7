//! The `transform` plugin and body access: edits of every kind, bodies buffered only where a
//! plugin reads them, with `content-length` kept true.

use std::io::Write;

use bytes::Bytes;
use serde_json::json;

use crate::support::*;

fn transform_gateway_config(upstream: std::net::SocketAddr, config: &str) -> String {
    format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{upstream}"]
[plugins.transform]
module = "builtin:transform"
[[routes]]
name = "api"
upstream = "up"
plugins = [{{ use = "transform", config = {config} }}]
"#
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn json_request_edits_reach_the_upstream_with_a_matching_content_length() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ request = { json = [
            { op = "set", pointer = "/meta/user", value_from = "header:x-user" },
            { op = "set", pointer = "/meta/page", value_from = "query:page" },
            { op = "add", pointer = "/tags/-", value = "via-gateway" },
            { op = "add", pointer = "/name", value = "never written: the member exists" },
            { op = "remove", pointer = "/password" },
            { op = "rename", pointer = "/name", to = "/full_name" },
        ] } }"#,
    ))
    .await;
    let sent = json!({ "name": "Siobhán O'Brien", "password": "hunter2", "tags": ["a"] });
    let resp = client()
        .post(gw.url("/users?page=3"))
        .header("content-type", "application/json")
        .header("x-user", "alice")
        .body(sent.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    let body: serde_json::Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({
            "full_name": "Siobhán O'Brien",
            "tags": ["a", "via-gateway"],
            "meta": { "user": "alice", "page": "3" },
        })
    );
    let length: usize = seen_header(&echo, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, echo["body_len"].as_u64().unwrap() as usize);
    assert!(seen_header(&echo, "transfer-encoding").is_none());
}

#[tokio::test]
async fn path_query_and_header_edits_chain_in_one_plugin() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ request = {
            path = [{ regex = '^/users/(?P<id>\d+)/orders$', replace = "/v2/orders/by-user/${id}" },
                    { prefix = "/v1", replace = "/v2" }],
            query = { remove = ["debug"], rename = { q = "search" }, set = { page = "1" }, add = { src = "gw" } },
            headers = { set = { "x-api-version" = "2" }, remove = ["x-debug"] },
        } }"#,
    ))
    .await;
    let echo = json(
        client()
            .get(gw.url("/users/42/orders?q=rock%20%26%20roll&debug=1&page=7"))
            .header("x-debug", "1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        echo["uri"],
        "/v2/orders/by-user/42?search=rock+%26+roll&page=1&src=gw"
    );
    assert_eq!(seen_header(&echo, "x-api-version"), Some("2"));
    assert!(seen_header(&echo, "x-debug").is_none());

    let echo = json(client().get(gw.url("/v1/things")).send().await.unwrap()).await;
    assert_eq!(echo["uri"], "/v2/things?page=1&src=gw");
    let echo = json(client().get(gw.url("/v10/things")).send().await.unwrap()).await;
    assert_eq!(
        echo["uri"], "/v10/things?page=1&src=gw",
        "prefixes match whole segments"
    );
}

#[tokio::test]
async fn invalid_json_request_gets_400_problem_and_never_reaches_the_upstream() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ request = { json = [{ op = "remove", pointer = "/secret" }] } }"#,
    ))
    .await;
    let resp = client()
        .post(gw.url("/"))
        .header("content-type", "application/json")
        .body("{\"secret\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem = json(resp).await;
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["title"], "Bad Request");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("the request body is not valid JSON: EOF while parsing"),
        "{problem}"
    );
    assert_eq!(up.hits(), 0);

    // Not JSON by content type: passed on untouched.
    let resp = client()
        .post(gw.url("/"))
        .header("content-type", "text/plain")
        .body("{\"secret\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["body"], "{\"secret\": ");
}

#[tokio::test]
async fn request_bodies_over_the_plugin_limit_get_413_before_the_upstream() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ request = { json = [{ op = "remove", pointer = "/x" }] }, max_body = 1024 }"#,
    ))
    .await;
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(2000));
    let resp = client()
        .post(gw.url("/"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(up.hits(), 0);
    // Exactly at the limit is fine.
    let exact = format!("{{\"x\": \"{}\"}}", "a".repeat(1024 - 9));
    assert_eq!(exact.len(), 1024);
    let resp = client()
        .post(gw.url("/"))
        .header("content-type", "application/json")
        .body(exact)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["body"], "{}");
}

#[tokio::test]
async fn gzip_request_bodies_are_decoded_for_the_plugin_and_sent_on_decoded() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ request = { json = [{ op = "set", pointer = "/edited", value = true }] } }"#,
    ))
    .await;
    let resp = client()
        .post(gw.url("/"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(br#"{"a":1}"#))
        .send()
        .await
        .unwrap();
    let echo = json(resp).await;
    assert_eq!(echo["body"], r#"{"a":1,"edited":true}"#);
    assert!(seen_header(&echo, "content-encoding").is_none());

    // A coding the gateway cannot decode would hide the body from the plugin: refused.
    for coding in ["br", "gzip, gzip", "made-up"] {
        let resp = client()
            .post(gw.url("/"))
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(&b"\x0b\x03\x80{\"a\":1}\x03"[..])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415, "{coding}");
    }
    assert_eq!(up.hits(), 1);
}

/// An upstream answering every request with `body` and the given content type and encoding.
async fn fixed_upstream(
    body: Vec<u8>,
    content_type: &'static str,
    encoding: Option<&'static str>,
) -> Upstream {
    let body = Bytes::from(body);
    Upstream::raw(move |req, _body| {
        let accept = req
            .headers
            .get("accept-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut resp = http::Response::new(body.clone());
        *resp.status_mut() = http::StatusCode::NOT_FOUND;
        resp.headers_mut()
            .insert("content-type", content_type.parse().unwrap());
        resp.headers_mut().insert(
            "x-seen-accept-encoding",
            accept.unwrap_or_else(|| "none".into()).parse().unwrap(),
        );
        if let Some(encoding) = encoding {
            resp.headers_mut()
                .insert("content-encoding", encoding.parse().unwrap());
        }
        resp
    })
    .await
}

#[tokio::test]
async fn json_response_edits_and_status_mapping_keep_content_length_true() {
    let up = fixed_upstream(
        br#"{"id": 7, "internal": "x"}"#.to_vec(),
        "application/json",
        None,
    )
    .await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ response = { status = { "404" = 200 }, headers = { set = { "x-shaped" = "yes" } }, json = [
            { op = "rename", pointer = "/id", to = "/user_id" },
            { op = "remove", pointer = "/internal" },
            { op = "set", pointer = "/route", value_from = "request:route" },
            { op = "set", pointer = "/type", value_from = "header:content-type" },
        ] } }"#,
    ))
    .await;
    let resp = client()
        .get(gw.url("/"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-shaped"], "yes");
    assert_eq!(
        resp.headers()["x-seen-accept-encoding"],
        "none",
        "a route that reads response bodies asks upstreams for identity"
    );
    let length: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(length, body.len());
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({ "user_id": 7, "route": "api", "type": "application/json" })
    );
}

#[tokio::test]
async fn gzip_responses_are_decoded_edited_and_sent_without_content_encoding() {
    let up = fixed_upstream(gzip(br#"{"id": 7}"#), "application/json", Some("gzip")).await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ response = { json = [{ op = "set", pointer = "/edited", value = 1 }] } }"#,
    ))
    .await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert!(resp.headers().get("content-encoding").is_none());
    assert_eq!(resp.text().await.unwrap(), r#"{"id":7,"edited":1}"#);
}

#[tokio::test]
async fn invalid_json_responses_pass_through_or_become_502_as_configured() {
    let up = fixed_upstream(b"<html>oops</html>".to_vec(), "application/json", None).await;
    let config = |policy: &str| {
        transform_gateway_config(
            up.addr,
            &format!(
                r#"{{ response = {{ on_invalid_json = "{policy}", json = [{{ op = "remove", pointer = "/x" }}] }} }}"#
            ),
        )
    };
    let gw = Gateway::start(&config("pass")).await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 404, "passed through as the upstream sent it");
    assert_eq!(resp.text().await.unwrap(), "<html>oops</html>");
    drop(gw);

    let gw = Gateway::start(&config("error")).await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem = json(resp).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("the upstream's response body is not valid JSON"),
        "{problem}"
    );
}

#[tokio::test]
async fn responses_over_the_limit_stream_through_unedited() {
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(4000));
    let up = fixed_upstream(big.clone().into_bytes(), "application/json", None).await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ response = { json = [{ op = "remove", pointer = "/x" }], status = { "404" = 200 } }, max_body = 1024 }"#,
    ))
    .await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the response hook still runs");
    assert_eq!(resp.text().await.unwrap(), big);
}

#[tokio::test]
async fn bodies_stream_when_no_plugin_reads_them() {
    // The upstream sees the request while the client is still sending its body: nothing
    // buffers it. (A route whose plugin reads bodies would hold the request back.)
    let up = Upstream::echo().await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ request = { headers = { set = { "x-a" = "1" } } }, response = { status = { "500" = 503 } } }"#,
    ))
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let request = client().post(gw.url("/")).body(body).send();
    let sending = tokio::spawn(request);
    tx.send(Ok(Bytes::from_static(b"first chunk")))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while up.hits() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream never saw the request"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tx.send(Ok(Bytes::from_static(b", last chunk")))
        .await
        .unwrap();
    drop(tx);
    let echo = json(sending.await.unwrap().unwrap()).await;
    assert_eq!(echo["body"], "first chunk, last chunk");
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_client_that_stalls_a_body_a_plugin_reads_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::echo().await;
    let config = transform_gateway_config(
        up.addr,
        r#"{ request = { json = [{ op = "remove", pointer = "/x" }] } }"#,
    )
    .replace(
        MAIN_LISTENER,
        &format!("[server]\nbody_timeout = \"300ms\"\n{MAIN_LISTENER}"),
    );
    let gw = Gateway::start(&config).await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    conn.write_all(
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"x\":",
    )
    .await
    .unwrap();
    let mut response = vec![0; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut response))
        .await
        .expect("answered before the client finished")
        .unwrap();
    let head = String::from_utf8_lossy(&response[..read]);
    assert!(head.starts_with("HTTP/1.1 408 Request Timeout"), "{head}");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn only_plugins_that_declared_a_body_may_read_or_replace_it() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{}"]
[plugins.transform]
module = "builtin:transform"
[plugins.testkit]
module = "{}"
[[routes]]
name = "api"
upstream = "up"
plugins = [
  {{ use = "transform", config = {{ request = {{ json = [{{ op = "set", pointer = "/seen", value = true }}] }} }} }},
  {{ use = "testkit" }},
]
"#,
        up.addr,
        plugin("testkit")
    ))
    .await;
    let post = |header: (&'static str, &'static str)| {
        client()
            .post(gw.url("/"))
            .header("content-type", "application/json")
            .header(header.0, header.1)
            .body(r#"{"card": "4111 1111 1111 1111"}"#)
            .send()
    };
    // The body was buffered for transform; testkit, which never asked, does not see it.
    let echo = json(post(("x-peek-body", "1")).await.unwrap()).await;
    assert_eq!(seen_header(&echo, "x-saw-body"), Some("none"));
    assert_eq!(
        echo["body"],
        r#"{"card":"4111 1111 1111 1111","seen":true}"#
    );

    // Replacing it without having asked is a fault: 500, logged, nothing smuggled upstream.
    let resp = post(("x-fault", "set-body")).await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(up.hits(), 1);
    let fault = gw
        .find_log(|l| l["target"] == "wasmgate::plugin" && l["level"] == "ERROR")
        .expect("the fault is logged");
    assert!(
        fault["message"]
            .as_str()
            .unwrap()
            .contains("set-body on the request without declaring request bodies"),
        "{fault}"
    );
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_by_its_decoded_size() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&transform_gateway_config(
        up.addr,
        r#"{ request = { json = [{ op = "remove", pointer = "/x" }] }, max_body = 65536 }"#,
    ))
    .await;
    // 4 MiB of spaces inside a JSON string compress to a few KiB.
    let inflated = format!("{{\"x\": \"{}\"}}", " ".repeat(4 << 20));
    let bomb = gzip(inflated.as_bytes());
    assert!(bomb.len() < 65536);
    let resp = client()
        .post(gw.url("/"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(up.hits(), 0);
}
