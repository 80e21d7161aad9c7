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

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    raw_exchange(addr, request).await.1
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[tokio::test]
async fn a_web_page_can_neither_read_nor_change_the_admin_api() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&admin_config(
        up.addr,
        r#"allowed_hosts = ["admin.internal"]"#,
    ))
    .await;
    let admin = gw.addr_of("admin");
    let port = admin.port();
    let request = |method: &str, path: &str, host: &str, origin: Option<&str>| {
        let origin = origin.map_or(String::new(), |o| format!("origin: {o}\r\n"));
        format!(
            "{method} {path} HTTP/1.1\r\nhost: {host}\r\n{origin}content-length: 0\r\nconnection: close\r\n\r\n"
        )
    };

    // DNS rebinding: a page on evil.example whose name now points at 127.0.0.1.
    let rebound = raw(
        admin,
        &request("GET", "/status", &format!("evil.example:{port}"), None),
    )
    .await;
    assert_eq!(status_of(&rebound), 421, "{rebound}");
    assert!(
        rebound.ends_with(&format!(
            "misdirected request: this admin API does not answer to the host \"evil.example:{port}\"; list the name in [admin] allowed_hosts to use it\n"
        )),
        "{rebound}"
    );
    let reload = raw(
        admin,
        &request("POST", "/reload", &format!("evil.example:{port}"), None),
    )
    .await;
    assert_eq!(status_of(&reload), 421, "{reload}");
    // Its own names answer; the probes answer whatever the Host.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("ADMIN.internal:{port}"),
    ] {
        let ok = raw(admin, &request("GET", "/status", &host, None)).await;
        assert_eq!(status_of(&ok), 200, "{host}: {ok}");
    }
    let probe = raw(admin, &request("GET", "/healthz", "evil.example", None)).await;
    assert_eq!(status_of(&probe), 200, "{probe}");

    // A cross-origin form POST from another page, sent to the right host.
    let host = format!("127.0.0.1:{port}");
    let forged = raw(
        admin,
        &request("POST", "/reload", &host, Some("https://evil.example")),
    )
    .await;
    assert_eq!(status_of(&forged), 403, "{forged}");
    assert!(
        forged.ends_with(
            "forbidden: a request from the web origin \"https://evil.example\" cannot change the gateway\n"
        ),
        "{forged}"
    );
    let opaque = raw(admin, &request("POST", "/reload", &host, Some("null"))).await;
    assert_eq!(
        status_of(&opaque),
        403,
        "a sandboxed page's `Origin: null`: {opaque}"
    );
    let own = raw(
        admin,
        &request("POST", "/reload", &host, Some(&format!("http://{host}"))),
    )
    .await;
    assert_eq!(status_of(&own), 200, "{own}");
    let tool = raw(admin, &request("POST", "/reload", &host, None)).await;
    assert_eq!(status_of(&tool), 200, "curl sends no Origin: {tool}");

    // `/status` names files relative to the config's directory.
    let status = gw.admin_text("/status").await;
    let dir = gw
        .config_path()
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        !status.contains(&dir),
        "absolute paths in /status: {status}"
    );
}

#[tokio::test]
async fn slow_and_surplus_admin_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::echo().await;
    let gw = Gateway::start(&admin_config(
        up.addr,
        "header_timeout = \"500ms\"\nmax_connections = 2",
    ))
    .await;
    let admin = gw.addr_of("admin");

    // A client that trickles its head is closed after the header timeout.
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(admin).await.unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
        .await
        .expect("a slow head is cut off, not kept open")
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // Two connections holding their slots (each sends a request and keeps the connection)...
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        stream
            .write_all(format!("GET /healthz HTTP/1.1\r\nhost: {admin}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // ...and a third is closed on accept without an answer.
    let mut third = tokio::net::TcpStream::connect(admin).await.unwrap();
    let _ = third
        .write_all(format!("GET /healthz HTTP/1.1\r\nhost: {admin}\r\n\r\n").as_bytes())
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .expect("the surplus connection is closed");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    // A freed slot serves again.
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let response = raw(
            admin,
            &format!("GET /healthz HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n"),
        )
        .await;
        if response.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no slot came free: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
