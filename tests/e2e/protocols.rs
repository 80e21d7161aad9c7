//! TLS termination with ALPN, HTTP/2 with and without TLS, graceful shutdown.

use std::time::Duration;

use crate::support::*;

struct SelfSigned {
    dir: tempfile::TempDir,
    cert_pem: String,
}

fn self_signed() -> SelfSigned {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    SelfSigned { dir, cert_pem }
}

async fn tls_gateway(up: &Upstream, certs: &SelfSigned) -> Gateway {
    let dir = certs.dir.path().display();
    Gateway::start(&format!(
        r#"
[listeners.main]
addr = "127.0.0.1:0"
tls = {{ cert = "{dir}/cert.pem", key = "{dir}/key.pem" }}
[upstreams.up]
targets = ["{}"]
[plugins.headers]
module = "builtin:headers"
[[routes]]
name = "r"
upstream = "up"
plugins = [{{ use = "headers", config = {{ response = {{ set = {{ "x-via" = "wasmgate" }} }} }} }}]
"#,
        up.addr
    ))
    .await
}

fn tls_client(certs: &SelfSigned, gw: &Gateway, http1_only: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(certs.cert_pem.as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve("localhost", gw.addr());
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn tls_listener_serves_http1_and_h2_by_alpn() {
    let up = Upstream::echo().await;
    let certs = self_signed();
    let gw = tls_gateway(&up, &certs).await;
    let url = format!("https://localhost:{}/secure", gw.addr().port());

    let h2 = tls_client(&certs, &gw, false)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), 200);
    assert_eq!(h2.headers()["x-via"], "wasmgate");
    let echo = json(h2).await;
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen_header(&echo, "host"),
        Some(&*format!("localhost:{}", gw.addr().port()))
    );

    let h1 = tls_client(&certs, &gw, true)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), 200);
    assert_eq!(h1.headers()["x-via"], "wasmgate");
}

#[tokio::test]
async fn plain_listener_serves_h2c_with_prior_knowledge() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&proxy_config(up.addr)).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = c
        .post(gw.url("/h2c?q=1"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    assert_eq!(echo["uri"], "/h2c?q=1");
    assert_eq!(echo["body_len"], 5);
}

#[tokio::test]
async fn tls_config_errors_name_the_listener_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.toml"), "[listeners.secure]\naddr = \"127.0.0.1:0\"\ntls = { cert = \"missing.pem\", key = \"missing-key.pem\" }\n").unwrap();
    let (code, _, err) = run_cli(&["check", "gw.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.starts_with("gw.toml: listener `secure`: cannot read certificate chain missing.pem:"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let slow = Upstream::start(Behaviour::Slow(Duration::from_millis(800))).await;
    let mut gw = Gateway::start(&proxy_config(slow.addr)).await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.terminate();
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(resp.status(), 200);
    let status =
        tokio::task::block_in_place(|| gw.wait(Duration::from_secs(10))).expect("gateway exits");
    assert!(status.success(), "{status:?}");
    assert!(
        std::net::TcpStream::connect(gw.addr()).is_err(),
        "no longer accepting"
    );
}
