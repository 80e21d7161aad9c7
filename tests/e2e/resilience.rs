//! Upstream resilience through the real binary: balancing, passive and active health checks,
//! the circuit breaker, retries with their budget and per-try timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::support::*;

const ADMIN: &str = "[admin]\naddr = \"127.0.0.1:0\"\n";

/// A gateway with one route to upstream `pool`, configured by `upstream` (TOML lines).
async fn gateway(upstream: &str) -> Gateway {
    Gateway::start(&format!(
        "{MAIN_LISTENER}{ADMIN}[upstreams.pool]\n{upstream}\n[[routes]]\nname = \"r\"\nupstream = \"pool\"\n"
    ))
    .await
}

/// An upstream answering every request with the status in `status` (a switch for tests).
async fn with_status(status: Arc<AtomicU16>) -> Upstream {
    Upstream::raw(move |_, _| {
        let mut resp = http::Response::new(Bytes::from_static(b"from upstream\n"));
        *resp.status_mut() = http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
        resp
    })
    .await
}

/// Clients sending GETs back to back until `stop`; returns (ok, failed statuses).
fn load(
    gw: &Gateway,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<u16>)> {
    let url = gw.url("/load");
    tokio::spawn(async move {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (url, stop) = (url.clone(), stop.clone());
                tokio::spawn(async move {
                    let c = client();
                    let (mut ok, mut failed) = (0, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        match c.get(&url).send().await {
                            Ok(r) if r.status() == 200 => ok += 1,
                            Ok(r) => failed.push(r.status().as_u16()),
                            Err(_) => failed.push(0),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        let mut total = (0, Vec::new());
        for t in tasks {
            let (ok, failed) = t.await.unwrap();
            total.0 += ok;
            total.1.extend(failed);
        }
        total
    })
}

/// `n` GETs sent at once: each one's status and time to answer, sorted.
async fn at_once(gw: &Gateway, n: usize) -> Vec<(u16, Duration)> {
    let c = client();
    let started = Instant::now();
    let requests = (0..n).map(|_| async {
        let status = c.get(gw.url("/")).send().await.unwrap().status().as_u16();
        (status, started.elapsed())
    });
    let mut answers = futures_util::future::join_all(requests).await;
    answers.sort();
    answers
}

fn statuses(answers: &[(u16, Duration)]) -> Vec<u16> {
    answers.iter().map(|a| a.0).collect()
}

async fn upstreams(gw: &Gateway) -> Value {
    json(
        client()
            .get(gw.admin_url("/upstreams"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Waits up to `within` for target `addr` of `pool` to be available (or not).
async fn wait_available(
    gw: &Gateway,
    addr: std::net::SocketAddr,
    available: bool,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let state = upstreams(gw).await;
        let target = state["pool"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == addr.to_string())
            .cloned()
            .unwrap();
        if target["available"] == available {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "target {addr} not available={available} in time: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn killed_target_is_ejected_and_readmitted_with_no_failed_request_when_retrying() {
    let a = Upstream::echo().await;
    let b = Upstream::echo().await;
    let gw = gateway(&format!(
        "targets = [\"{}\", \"{}\"]\nretry = {{ retries = 2 }}\noutlier_detection = {{ consecutive_failures = 3, base_ejection = \"400ms\" }}",
        a.addr, b.addr
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(&gw, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_addr = a.addr;
    a.kill().await;
    wait_available(&gw, a_addr, false, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let revived = Upstream::echo_on(a_addr).await;
    // The back-off doubles after a failure on return: at most 800 ms more.
    let deadline = Instant::now() + Duration::from_secs(3);
    while revived.hits() == 0 {
        assert!(
            Instant::now() < deadline,
            "the revived target got no traffic"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = traffic.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 100, "{ok}");
    assert!(
        gw.find_log(
            |l| l["message"] == "target ejected after consecutive failures"
                && l["upstream_target"] == a_addr.to_string()
        )
        .is_some()
    );
    assert!(
        gw.find_log(|l| l["message"] == "target back from ejection"
            && l["upstream_target"] == a_addr.to_string())
            .is_some()
    );
}

#[tokio::test]
async fn active_checks_take_a_dead_target_out_and_back_in() {
    let a = Upstream::echo().await;
    let b = Upstream::echo().await;
    // Default retries (connect failures only) and no passive checks: only requests caught in
    // flight on the dead target may fail.
    let gw = gateway(&format!(
        "targets = [\"{}\", \"{}\"]\noutlier_detection = false\nhealth_check = {{ path = \"/\", interval = \"100ms\", timeout = \"100ms\", unhealthy_threshold = 2, healthy_threshold = 2 }}",
        a.addr, b.addr
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = 4;
    let traffic = load(&gw, clients, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_addr = a.addr;
    a.kill().await;
    let killed = Instant::now();
    wait_available(&gw, a_addr, false, Duration::from_secs(2)).await;
    let detected = killed.elapsed();
    let revived = Upstream::echo_on(a_addr).await;
    wait_available(&gw, a_addr, true, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = traffic.await.unwrap();
    assert!(
        failed.len() <= clients,
        "{failed:?} failed of {}",
        ok + failed.len()
    );
    assert!(detected < Duration::from_millis(800), "{detected:?}");
    assert!(
        revived.hits() > 2,
        "probes and requests reach the revived target"
    );
    assert!(
        gw.find_log(
            |l| l["message"] == "target unhealthy: failed its health checks"
                && l["upstream_target"] == a_addr.to_string()
        )
        .is_some()
    );
    assert!(
        gw.find_log(
            |l| l["message"] == "target healthy: passed its health checks"
                && l["upstream_target"] == a_addr.to_string()
        )
        .is_some()
    );
}

#[tokio::test]
async fn no_healthy_target_is_503_at_once_until_a_check_passes() {
    let health = Arc::new(AtomicU16::new(503));
    let served = Arc::new(AtomicUsize::new(0));
    let (h, s) = (health.clone(), served.clone());
    let up = Upstream::raw(move |parts, _| {
        let status = match parts.uri.path() {
            "/health" => h.load(Ordering::SeqCst),
            _ => {
                s.fetch_add(1, Ordering::SeqCst);
                200
            }
        };
        let mut resp = http::Response::new(Bytes::new());
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        resp
    })
    .await;
    let gw = gateway(&format!(
        "targets = [\"{}\"]\nhealth_check = {{ path = \"/health\", interval = \"100ms\", unhealthy_threshold = 1, healthy_threshold = 1, expected_statuses = [\"2xx\"] }}",
        up.addr
    ))
    .await;
    wait_available(&gw, up.addr, false, Duration::from_secs(2)).await;
    let started = Instant::now();
    let resp = client().get(gw.url("/x")).send().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.text().await.unwrap(), "no healthy upstream target\n");
    assert_eq!(served.load(Ordering::SeqCst), 0);
    health.store(200, Ordering::SeqCst);
    wait_available(&gw, up.addr, true, Duration::from_secs(2)).await;
    assert_eq!(
        client().get(gw.url("/x")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn circuit_opens_at_the_threshold_and_half_opens_after_the_interval() {
    let status = Arc::new(AtomicU16::new(500));
    let up = with_status(status.clone()).await;
    let gw = gateway(&format!(
        "targets = [\"{}\"]\noutlier_detection = false\nretry = false\ncircuit_breaker = {{ failure_ratio = 0.5, min_requests = 4, open_for = \"500ms\" }}",
        up.addr
    ))
    .await;
    let c = client();
    for _ in 0..4 {
        assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 500);
    }
    let resp = c.get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "open after 4 failures of 4");
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(
        resp.text().await.unwrap(),
        "upstream circuit open, retry later\n"
    );
    assert_eq!(up.hits(), 4, "an open circuit makes no upstream call");
    assert_eq!(upstreams(&gw).await["pool"]["circuit"]["state"], "open");

    // Half-open after the interval: the probe fails, so it opens again.
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 500);
    assert_eq!(up.hits(), 5);
    assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 503);

    // The upstream recovers: the next probe closes the circuit.
    status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 200);
    assert_eq!(upstreams(&gw).await["pool"]["circuit"]["state"], "closed");
    assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 200);
    assert!(
        gw.find_log(|l| l["message"] == "circuit half-open: letting probe requests through")
            .is_some()
    );
}

#[tokio::test]
async fn max_requests_sheds_what_is_over_the_cap() {
    let up = Upstream::start(Behaviour::Slow(Duration::from_millis(400))).await;
    let gw = gateway(&format!(
        "targets = [\"{}\"]\ncircuit_breaker = {{ max_requests = 2 }}",
        up.addr
    ))
    .await;
    assert_eq!(statuses(&at_once(&gw, 4).await), [200, 200, 503, 503]);
    assert_eq!(up.hits(), 2);
}

/// Polls `/upstreams` until the pool's circuit has `n` requests in flight.
async fn wait_in_flight(gw: &Gateway, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let state = upstreams(gw).await;
        if state["pool"]["circuit"]["in_flight"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "in flight never {n}: {state:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_gives_up_frees_its_circuit_slot() {
    let up = Upstream::start(Behaviour::Slow(Duration::from_millis(1_500))).await;
    let gw = gateway(&format!(
        "targets = [\"{}\"]\ncircuit_breaker = {{ max_requests = 1 }}",
        up.addr
    ))
    .await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    for _ in 0..3 {
        assert!(impatient.get(gw.url("/")).send().await.is_err());
        wait_in_flight(&gw, 0).await;
    }
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_streaming_response_holds_its_circuit_slot_until_its_end() {
    // Sends the head and half the body, then the rest when told.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let finish = Arc::new(tokio::sync::Notify::new());
    let release = finish.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let release = release.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    let head = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345";
                    if conn.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    release.notified().await;
                    if conn.write_all(b"67890").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let gw = gateway(&format!(
        "targets = [\"{addr}\"]\ncircuit_breaker = {{ max_requests = 1 }}"
    ))
    .await;
    let c = client();
    let mut streaming = c.get(gw.url("/")).send().await.unwrap();
    assert_eq!(streaming.status(), 200);
    assert_eq!(&streaming.chunk().await.unwrap().unwrap()[..], b"12345");
    // The first response is still streaming: its slot is taken.
    assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 503);
    finish.notify_one();
    assert_eq!(&streaming.chunk().await.unwrap().unwrap()[..], b"67890");
    assert!(streaming.chunk().await.unwrap().is_none());
    wait_in_flight(&gw, 0).await;
}

#[tokio::test]
async fn max_pending_queues_requests_for_a_slot_and_sheds_the_rest() {
    let up = Upstream::start(Behaviour::Slow(Duration::from_millis(300))).await;
    let gw = gateway(&format!(
        "targets = [\"{}\"]\ncircuit_breaker = {{ max_requests = 1, max_pending = 2, pending_timeout = \"5s\" }}",
        up.addr
    ))
    .await;
    let answers = at_once(&gw, 4).await;
    // One in flight, two waiting their turn, one over the queue.
    assert_eq!(statuses(&answers), [200, 200, 200, 503], "{answers:?}");
    let slowest = answers[..3].iter().map(|a| a.1).max().unwrap();
    assert!(
        slowest >= Duration::from_millis(850),
        "served one after another: {answers:?}"
    );
    assert_eq!(up.hits(), 3);

    // A wait that runs out is a 503 too.
    let gw = gateway(&format!(
        "targets = [\"{}\"]\ncircuit_breaker = {{ max_requests = 1, max_pending = 5, pending_timeout = \"100ms\" }}",
        up.addr
    ))
    .await;
    assert_eq!(statuses(&at_once(&gw, 2).await), [200, 503]);
}

#[tokio::test]
async fn retry_budget_caps_retries() {
    let up = with_status(Arc::new(AtomicU16::new(503))).await;
    let gw = gateway(&format!(
        "targets = [\"{}\"]\noutlier_detection = false\nretry = {{ retries = 3, backoff = \"1ms\", budget_ratio = 0.1, budget_min_per_second = 0 }}",
        up.addr
    ))
    .await;
    let c = client();
    for _ in 0..50 {
        assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 503);
    }
    // 50 requests at 10 %: 5 retries, where 3 a request would have made 150.
    let retries = up.hits() - 50;
    assert!((4..=6).contains(&retries), "{retries} retries");
    let metrics = gw.admin_text("/metrics").await;
    // Every request but the four that got a retry found the budget spent.
    assert!(
        metrics.contains("wasmgate_upstream_retry_budget_exhausted_total{upstream=\"pool\"} 50"),
        "{metrics}"
    );
}

#[tokio::test]
async fn refused_connections_are_retried_without_spending_the_budget() {
    // Half the requests go to a port nobody listens on; with an empty budget every one of
    // them still reaches the live target, since a refused connection added no load.
    let live = Upstream::echo().await;
    let gw = gateway(&format!(
        "targets = [\"127.0.0.1:1\", \"{}\"]\noutlier_detection = false\nretry = {{ retries = 1, budget_ratio = 0, budget_min_per_second = 0 }}",
        live.addr
    ))
    .await;
    let c = client();
    for _ in 0..40 {
        assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(live.hits(), 40);
    let metrics = gw.admin_text("/metrics").await;
    let count = |series: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let refused = count("wasmgate_upstream_errors_total{upstream=\"pool\",kind=\"unreachable\"}");
    assert!(refused >= 20, "{metrics}");
    assert_eq!(
        count("wasmgate_upstream_retries_total{upstream=\"pool\",reason=\"connect\"}"),
        refused
    );
    assert!(
        !metrics.contains("wasmgate_upstream_retry_budget_exhausted_total{upstream=\"pool\"} "),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_dead_target_writes_a_few_warnings_a_second_and_counts_the_rest() {
    let live = Upstream::echo().await;
    let gw = gateway(&format!(
        "targets = [\"127.0.0.1:1\", \"{}\"]\noutlier_detection = false",
        live.addr
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let traffic = load(&gw, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = traffic.await.unwrap();
    let seconds = started.elapsed().as_secs() + 1;
    assert!(failed.is_empty(), "{failed:?}");
    let refused = gw
        .admin_text("/metrics")
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "wasmgate_upstream_errors_total{upstream=\"pool\",kind=\"unreachable\"}",
            )?
            .trim()
            .parse::<u64>()
            .ok()
        })
        .unwrap();
    assert!(refused * 3 > ok as u64, "{refused} refused of {ok}");
    let warnings: Vec<Value> = gw
        .logs()
        .into_iter()
        .filter(|l| {
            l["message"] == "upstream request failed" && l["upstream_target"] == "127.0.0.1:1"
        })
        .collect();
    // Five a second, in each second the failures spanned (at most one more than measured).
    assert!(
        warnings.len() as u64 <= 5 * (seconds + 1),
        "{} warnings in {seconds} s",
        warnings.len()
    );
    let suppressed: u64 = warnings
        .iter()
        .filter_map(|l| l["suppressed"].as_u64())
        .sum();
    assert!(suppressed > 0, "{warnings:?}");
    assert!(
        suppressed + warnings.len() as u64 <= refused,
        "{suppressed} + {} > {refused}",
        warnings.len()
    );
}

#[tokio::test]
async fn slow_attempt_times_out_and_is_retried_on_another_target() {
    let slow = Upstream::start(Behaviour::Slow(Duration::from_secs(3))).await;
    let fast = Upstream::echo().await;
    let gw = gateway(&format!(
        "targets = [\"{}\", \"{}\"]\noutlier_detection = false\nretry = {{ retries = 1, per_try_timeout = \"200ms\" }}",
        slow.addr, fast.addr
    ))
    .await;
    let c = client();
    for _ in 0..4 {
        let started = Instant::now();
        let resp = c.get(gw.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(json(resp).await["upstream"], fast.addr.to_string());
    }
    assert!(
        slow.hits() >= 1,
        "round-robin sent some first attempts to the slow target"
    );
}

#[tokio::test]
async fn per_try_timeout_bounds_each_attempt_on_a_single_slow_target() {
    let slow = Upstream::start(Behaviour::Hang).await;
    let gw = gateway(&format!(
        "targets = [\"{}\"]\nrequest_timeout = \"10s\"\noutlier_detection = false\nretry = {{ retries = 2, per_try_timeout = \"150ms\", backoff = \"1ms\" }}",
        slow.addr
    ))
    .await;
    let started = Instant::now();
    let resp = client().get(gw.url("/")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(slow.hits(), 3);
}

#[tokio::test]
async fn post_is_not_retried_on_a_status() {
    let up = with_status(Arc::new(AtomicU16::new(503))).await;
    let gw = gateway(&format!(
        "targets = [\"{}\"]\noutlier_detection = false\nretry = {{ retries = 2, backoff = \"1ms\", budget_min_per_second = 100 }}",
        up.addr
    ))
    .await;
    let resp = client()
        .post(gw.url("/"))
        .body("order")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(up.hits(), 1);
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(up.hits(), 4, "GET: the first attempt and two retries");
}

#[tokio::test]
async fn weights_and_consistent_hashing_spread_requests() {
    let a = Upstream::echo().await;
    let b = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.weighted]
targets = [{{ addr = "{a}", weight = 3 }}, "{b}"]
[upstreams.sticky]
targets = ["{a}", "{b}"]
balance = "consistent-hash"
hash_on = "header:x-user"
[[routes]]
name = "w"
match = {{ path_prefix = "/w" }}
upstream = "weighted"
[[routes]]
name = "s"
upstream = "sticky"
"#,
        a = a.addr,
        b = b.addr
    ))
    .await;
    let c = client();
    for _ in 0..40 {
        assert_eq!(c.get(gw.url("/w")).send().await.unwrap().status(), 200);
    }
    assert_eq!((a.hits(), b.hits()), (30, 10));
    let mut seen = std::collections::HashSet::new();
    for user in 0..20 {
        let mut targets = std::collections::HashSet::new();
        for _ in 0..4 {
            let resp = c
                .get(gw.url("/s"))
                .header("x-user", format!("user-{user}"))
                .send()
                .await
                .unwrap();
            targets.insert(json(resp).await["upstream"].as_str().unwrap().to_owned());
        }
        assert_eq!(targets.len(), 1, "user-{user} moved between targets");
        seen.extend(targets);
    }
    assert_eq!(seen.len(), 2, "20 users all hashed to one target");
}

#[tokio::test]
async fn upstream_config_errors_name_the_key() {
    let err = Gateway::refused(&format!(
        r#"{MAIN_LISTENER}
[upstreams.pool]
targets = [{{ addr = "127.0.0.1:1", weight = 0 }}]
balance = "consistent-hash"
circuit_breaker = {{ failure_ratio = 1.5 }}
retry = {{ retries = 50 }}
health_check = {{ path = "health", expected_statuses = ["7xx"] }}
[[routes]]
name = "r"
upstream = "pool"
"#
    ))
    .await;
    for expected in [
        "upstream `pool`: targets[0]: weight must be 1 to 1000, not 0",
        "upstream `pool`: balance = \"consistent-hash\" needs hash_on",
        "upstream `pool`: circuit_breaker.failure_ratio must be more than 0 and at most 1",
        "upstream `pool`: retry.retries is 50; at most 10",
        "upstream `pool`: health_check.path `health` must start with `/`",
        "upstream `pool`: health_check.expected_statuses: `7xx` is not a status",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
}
