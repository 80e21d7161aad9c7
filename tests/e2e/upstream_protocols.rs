//! What the gateway speaks to upstreams: TLS with a private CA, SNI and a client certificate,
//! HTTP/2 by ALPN or with prior knowledge, and WebSocket through an `Upgrade`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// A server on a new loopback port that hands each connection to `serve` on its own task;
/// it stops when the handle is dropped or aborted.
async fn accept_each<F, Fut>(serve: F) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    (addr, task)
}

/// A private CA, a server certificate for `upstream.test` and a client certificate, as PEM
/// files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![usage];
        (params.signed_by(&key, &ca).unwrap(), key)
    };
    let (server, server_key) = leaf("upstream.test", ExtendedKeyUsagePurpose::ServerAuth);
    let (client, client_key) = leaf("gateway.test", ExtendedKeyUsagePurpose::ClientAuth);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
    std::fs::write(
        dir.path().join("client-key.pem"),
        client_key.serialize_pem(),
    )
    .unwrap();
    Pki {
        dir,
        ca: ca.der().clone(),
        server: (
            server.der().clone(),
            PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
        ),
    }
}

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A TLS upstream that wants a client certificate from `pki`'s CA, speaks h2 and HTTP/1.1 by
/// ALPN, and answers with the HTTP version it saw.
/// A TLS upstream that wants a client certificate and offers `alpn`; it answers with the
/// version, SNI and path it saw.
async fn tls_upstream(
    pki: &Pki,
    alpn: &[&[u8]],
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    accept_each(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let body = serde_json::json!({
                    "version": format!("{:?}", req.version()),
                    "sni": sni,
                    "path": req.uri().path(),
                });
                async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        bytes::Bytes::from(body.to_string()),
                    )))
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        }
    })
    .await
}

fn tls_config(pki: &Pki, addr: std::net::SocketAddr, ca: &str, client_cert: bool) -> String {
    let dir = pki.dir.path().display();
    let client = match client_cert {
        true => format!(", cert = \"{dir}/client.pem\", key = \"{dir}/client-key.pem\""),
        false => String::new(),
    };
    format!(
        r#"{MAIN_LISTENER}
[upstreams.secure]
targets = ["{addr}"]
http2 = true
outlier_detection = false
tls = {{ ca = "{ca}", server_name = "upstream.test"{client} }}
[[routes]]
name = "r"
upstream = "secure"
"#
    )
}

#[tokio::test]
async fn h2_over_tls_to_an_upstream_with_a_private_ca_sni_and_client_certificate() {
    let pki = pki();
    let (addr, _server) = tls_upstream(&pki, H2_AND_H1).await;
    let ca = format!("{}/ca.pem", pki.dir.path().display());
    let gw = Gateway::start(&tls_config(&pki, addr, &ca, true)).await;
    let resp = client().get(gw.url("/over/tls")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(seen["sni"], "upstream.test");
    assert_eq!(seen["path"], "/over/tls");
}

#[tokio::test]
async fn http2_falls_back_to_http1_when_the_upstream_offers_only_http1() {
    let pki = pki();
    let (addr, _server) = tls_upstream(&pki, &[b"http/1.1"]).await;
    let ca = format!("{}/ca.pem", pki.dir.path().display());
    let gw = Gateway::start(&tls_config(&pki, addr, &ca, true)).await;
    let c = client();
    for _ in 0..3 {
        let resp = c.get(gw.url("/over/tls")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(json(resp).await["version"], "HTTP/1.1");
    }
}

#[tokio::test]
async fn upstream_tls_failures_are_502_and_logged() {
    let pki = pki();
    let (addr, _server) = tls_upstream(&pki, H2_AND_H1).await;
    // Without the client certificate the upstream refuses the handshake.
    let ca = format!("{}/ca.pem", pki.dir.path().display());
    let gw = Gateway::start(&tls_config(&pki, addr, &ca, false)).await;
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        502
    );
    // A CA that did not sign the upstream's certificate: not trusted.
    let other = pki_other_ca();
    let gw = Gateway::start(&tls_config(&pki, addr, &other.1, true)).await;
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        502
    );
    let log = gw
        .find_log(|l| l["message"] == "upstream request failed")
        .expect("the TLS failure is logged");
    assert!(
        log["error"].as_str().unwrap().contains("certificate"),
        "{log}"
    );
}

fn pki_other_ca() -> (tempfile::TempDir, String) {
    let other = pki();
    let path = format!("{}/ca.pem", other.dir.path().display());
    (other.dir, path)
}

#[tokio::test]
async fn upstream_tls_config_errors_name_the_file() {
    let err = Gateway::refused(&format!(
        r#"{MAIN_LISTENER}
[upstreams.secure]
targets = ["127.0.0.1:1"]
tls = {{ ca = "missing-ca.pem", cert = "client.pem" }}
[[routes]]
name = "r"
upstream = "secure"
"#
    ))
    .await;
    assert!(
        err.contains("upstream `secure`: tls: a client certificate needs both `cert` and `key`"),
        "{err}"
    );
}

#[tokio::test]
async fn h2c_to_an_upstream_with_prior_knowledge() {
    let (addr, _server) = accept_each(|stream| async move {
        let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let version = format!("{:?}", req.version());
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::from(
                version,
            ))))
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await;
    let gw = Gateway::start(&format!(
        "{MAIN_LISTENER}[upstreams.h2c]\ntargets = [\"{addr}\"]\nhttp2 = true\n[[routes]]\nname = \"r\"\nupstream = \"h2c\"\n"
    ))
    .await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "HTTP/2.0");
}

/// A WebSocket server echoing text and binary messages.
async fn websocket_echo() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    accept_each(|stream| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() || message.is_binary() {
                let _ = ws.send(message).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let (addr, _server) = websocket_echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.ws]
targets = ["{addr}"]
[plugins.headers]
module = "builtin:headers"
[[routes]]
name = "ws"
upstream = "ws"
upgrades = ["websocket"]
plugins = [{{ use = "headers", config = {{ request = {{ set = {{ "x-via" = "wasmgate" }} }} }} }}]
"#
    ))
    .await;
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr()))
        .await
        .expect("the handshake passes through the gateway");
    assert_eq!(response.status(), 101);
    for text in ["hello", "second message", &"x".repeat(70_000)] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        [0u8, 1, 2, 255]
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn websockets_count_against_the_connection_caps_and_close_when_idle() {
    let (addr, _server) = websocket_echo().await;
    let gw = Gateway::start(&format!(
        r#"[server]
max_connections_per_ip = 2
upgrade_idle_timeout = "1s"
{MAIN_LISTENER}
[upstreams.ws]
targets = ["{addr}"]
[[routes]]
name = "ws"
upstream = "ws"
upgrades = ["websocket"]
"#
    ))
    .await;
    let url = format!("ws://{}/chat", gw.addr());
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(
            ws.next()
                .await
                .unwrap()
                .unwrap()
                .into_text()
                .unwrap()
                .as_str(),
            "hi"
        );
        sockets.push(ws);
    }
    // Two open WebSockets are this address's two connections: a third is refused.
    assert!(client().get(gw.url("/")).send().await.is_err());
    // A second of silence both ways: the gateway closes them, and the address has room again.
    let started = Instant::now();
    for ws in &mut sockets {
        let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap();
        assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Any answer shows the connection was accepted (the WebSocket server refuses plain GETs).
    assert!(client().get(gw.url("/")).send().await.is_ok());
}
