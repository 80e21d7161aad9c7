//! Upstream failures and request limits: the right status, quickly, and nothing else disturbed.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn gateway_to(targets: &str, extra: &str) -> Gateway {
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[server]
max_header_bytes = "16KiB"
max_body_bytes = "1MiB"
{extra}
[upstreams.up]
targets = [{targets}]
request_timeout = "300ms"
connect_timeout = "300ms"
[[routes]]
name = "r"
upstream = "up"
"#
    ))
    .await
}

#[tokio::test]
async fn refused_upstream_connection_is_502() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway_to(&format!("\"{dead}\""), "").await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.text().await.unwrap(), "upstream unreachable\n");
    let log = gw
        .find_log(|l| l["target"] == "wasmgate::upstream")
        .expect("upstream fault logged");
    assert_eq!(log["upstream"], "up");
}

#[tokio::test]
async fn hanging_upstream_is_504_at_the_request_timeout() {
    let hang = Upstream::start(Behaviour::Hang).await;
    let gw = gateway_to(&format!("\"{}\"", hang.addr), "").await;
    let started = Instant::now();
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "took {took:?}"
    );
}

#[tokio::test]
async fn oversized_request_head_is_431() {
    let up = Upstream::echo().await;
    let gw = gateway_to(&format!("\"{}\"", up.addr), "").await;
    let resp = client()
        .get(gw.url("/"))
        .header("x-big", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(up.hits(), 0);
    // The limit leaves room for ordinary large headers.
    let resp = client()
        .get(gw.url("/"))
        .header("x-big", "a".repeat(8_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn declared_oversized_body_is_413_without_reaching_the_upstream() {
    let up = Upstream::echo().await;
    let gw = gateway_to(&format!("\"{}\"", up.addr), "").await;
    let resp = client()
        .post(gw.url("/"))
        .body(vec![b'x'; 1_048_577])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(up.hits(), 0);
    let resp = client()
        .post(gw.url("/"))
        .body(vec![b'x'; 1_048_576])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "exactly the limit is accepted");
}

#[tokio::test]
async fn streamed_oversized_body_is_413() {
    let up = Upstream::echo().await;
    let gw = gateway_to(&format!("\"{}\"", up.addr), "").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'x'; 100_000])).collect();
    let body = reqwest::Body::wrap_stream(futures_stream(chunks));
    // The gateway answers 413 as soon as the limit is passed, and reads on (discarding) what
    // the client is still sending, so the client reads the answer instead of a reset. (The
    // streamed part went upstream and was cut there at the limit.)
    let resp = client()
        .post(gw.url("/"))
        .body(body)
        .send()
        .await
        .expect("the client reads the answer, not a reset");
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn a_body_over_the_limit_that_a_plugin_reads_is_413_without_a_reset() {
    let up = Upstream::echo().await;
    // A plugin that reads the body makes the gateway buffer it (up to the limit).
    let gw = gateway_to(
        &format!("\"{}\"", up.addr),
        &format!(
            "[plugins.waf]\nmodule = \"{}\"\n\
             [[routes]]\nname = \"inspected\"\nmatch = {{ path_prefix = \"/waf\" }}\n\
             upstream = \"up\"\nplugins = [{{ use = \"waf\" }}]\n",
            plugin("waf")
        ),
    )
    .await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'x'; 100_000])).collect();
    let body = reqwest::Body::wrap_stream(futures_stream(chunks));
    let resp = client()
        .post(gw.url("/waf"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .expect("the client reads the answer, not a reset");
    assert_eq!(resp.status(), 413);
    assert_eq!(
        up.hits(),
        0,
        "nothing of a refused body reaches the upstream"
    );
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

#[tokio::test]
async fn malformed_http_gets_400_and_the_gateway_keeps_serving() {
    let up = Upstream::echo().await;
    let gw = gateway_to(&format!("\"{}\"", up.addr), "").await;
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n"[..],
        b"NOT-HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    ] {
        let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
        conn.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{garbage:?} got {answer:?}"
        );
    }
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_cut_off() {
    let up = Upstream::echo().await;
    let gw = gateway_to(&format!("\"{}\"", up.addr), "header_timeout = \"500ms\"").await;
    let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "connection closed by the gateway, not left open"
    );
}

#[tokio::test]
async fn slowloris_clients_are_dropped_at_the_header_timeout_while_others_are_served() {
    let up = Upstream::echo().await;
    let gw = gateway_to(&format!("\"{}\"", up.addr), "header_timeout = \"500ms\"").await;
    // Ten clients dribbling a head one byte every 100 ms, and ten that send nothing at all.
    let mut attackers = Vec::new();
    for dribble in [true, false] {
        for _ in 0..10 {
            let addr = gw.addr();
            attackers.push(tokio::spawn(async move {
                let started = std::time::Instant::now();
                let mut conn = TcpStream::connect(addr).await.unwrap();
                if dribble {
                    for byte in
                        b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    {
                        if conn.write_all(&[*byte]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
                    .await;
                started.elapsed()
            }));
        }
    }
    // Meanwhile ordinary clients are served promptly.
    let c = client();
    for _ in 0..10 {
        let started = std::time::Instant::now();
        assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 200);
        assert!(started.elapsed() < Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client that sent one request and then goes quiet is not kept either.
    let mut idle = TcpStream::connect(gw.addr()).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    let quiet = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "an idle keep-alive connection was kept open"
    );
    assert!(
        quiet.elapsed() < Duration::from_secs(2),
        "{:?}",
        quiet.elapsed()
    );
    for attacker in attackers {
        let held = attacker.await.unwrap();
        assert!(
            held < Duration::from_secs(2),
            "a slow client held its connection for {held:?}"
        );
    }
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_closed_on_accept() {
    let up = Upstream::echo().await;
    let gw = gateway_to(&format!("\"{}\"", up.addr), "max_connections_per_ip = 2").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(conn);
    }
    // The third connection from this address is accepted and closed at once.
    let mut third = TcpStream::connect(gw.addr()).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), third.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok() && answer.is_empty(),
        "over the cap: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // Closing one makes room again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn idle_http2_connections_are_closed_after_the_header_timeout() {
    let up = Upstream::start(Behaviour::Slow(Duration::from_millis(1_200))).await;
    let gw = Gateway::start(&format!(
        "{MAIN_LISTENER}[server]\nheader_timeout = \"500ms\"\n[upstreams.up]\ntargets = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"up\"\n",
        up.addr
    ))
    .await;
    // The whole preface and then nothing, or only part of it: both are closed in time.
    for sent in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n",
    ] {
        let started = Instant::now();
        let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
        conn.write_all(sent).await.unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "an idle HTTP/2 connection was held open");
        let held = started.elapsed();
        assert!(
            held >= Duration::from_millis(400),
            "closed too early: {held:?}"
        );
    }
    // A request in flight for longer than the timeout is not cut off.
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2c.get(gw.url("/slow")).send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}
