//! The `rate-limit` plugin on the local backend: exact under concurrency, per key, with the
//! standard response fields.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

async fn limited_gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"[server]
trusted_proxies = ["127.0.0.0/8"]
{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]
[plugins.limit]
module = "builtin:rate-limit"
grants = ["rate-limit"]
[plugins.key]
module = "builtin:api-key"

[[routes]]
name = "exact"
match = {{ path_prefix = "/exact" }}
upstream = "up"
plugins = [{{ use = "limit", config = {{ limits = [{{ requests = 50, per = "1h" }}], key = ["ip"], headers = true }} }}]

[[routes]]
name = "consumers"
match = {{ path_prefix = "/consumers" }}
upstream = "up"
plugins = [
  {{ use = "key", config = {{ keys = [{{ consumer = "alice", sha256 = "{alice}" }}, {{ consumer = "bob", sha256 = "{bob}" }}] }} }},
  {{ use = "limit", config = {{ limits = [{{ requests = 3, per = "1h" }}], key = ["consumer"] }} }},
]

[[routes]]
name = "fast"
match = {{ path_prefix = "/fast" }}
upstream = "up"
plugins = [{{ use = "limit", config = {{ limits = [{{ requests = 2, per = "1s" }}] }} }}]

[[routes]]
name = "weighted"
match = {{ path_prefix = "/weighted" }}
upstream = "up"
plugins = [{{ use = "limit", config = {{ limits = [{{ requests = 10, per = "1h" }}], method_cost = {{ POST = 5 }} }} }}]

[[routes]]
name = "behind-proxy"
match = {{ path_prefix = "/behind-proxy" }}
upstream = "up"
plugins = [{{ use = "limit", config = {{ limits = [{{ requests = 1, per = "1h" }}], key = ["ip"], trusted_proxies = ["127.0.0.0/8"] }} }}]

[[routes]]
name = "shared-a"
match = {{ path_prefix = "/shared-a" }}
upstream = "up"
plugins = [{{ use = "limit", config = {{ name = "shared", limits = [{{ requests = 2, per = "1h" }}] }} }}]

[[routes]]
name = "shared-b"
match = {{ path_prefix = "/shared-b" }}
upstream = "up"
plugins = [{{ use = "limit", config = {{ name = "shared", limits = [{{ requests = 2, per = "1h" }}] }} }}]
"#,
        up = up.addr,
        alice = sha256("alice-key"),
        bob = sha256("bob-key"),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_passes_under_concurrency() {
    let up = Upstream::echo().await;
    let gw = limited_gateway(&up).await;
    let url = gw.url("/exact");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (c, url) = (client(), url.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..10 {
                    statuses.push(c.get(&url).send().await.unwrap().status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 50);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 150);
    assert_eq!(up.hits(), 50);
}

#[tokio::test]
async fn a_refusal_says_when_to_retry_in_the_standard_fields() {
    let up = Upstream::echo().await;
    let gw = limited_gateway(&up).await;
    let c = client();
    let first = c.get(gw.url("/exact")).send().await.unwrap();
    assert_eq!(first.headers()["ratelimit-policy"], "\"1h\";q=50;w=3600");
    assert_eq!(first.headers()["ratelimit"], "\"1h\";r=49;t=72");
    for _ in 0..49 {
        c.get(gw.url("/exact")).send().await.unwrap();
    }
    let refused = c.get(gw.url("/exact")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "72");
    assert_eq!(refused.headers()["ratelimit"], "\"1h\";r=0;t=3600");
    let body = json(refused).await;
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["retry_after"], 72);
}

#[tokio::test]
async fn each_consumer_has_its_own_budget() {
    let up = Upstream::echo().await;
    let gw = limited_gateway(&up).await;
    let c = client();
    let call = |key: &'static str| c.get(gw.url("/consumers")).header("x-api-key", key).send();
    for _ in 0..3 {
        assert_eq!(call("alice-key").await.unwrap().status(), 200);
    }
    assert_eq!(
        call("alice-key").await.unwrap().status(),
        429,
        "alice is out"
    );
    for _ in 0..3 {
        assert_eq!(call("bob-key").await.unwrap().status(), 200, "bob is not");
    }
}

#[tokio::test]
async fn the_budget_refills_after_the_window() {
    let up = Upstream::echo().await;
    let gw = limited_gateway(&up).await;
    let c = client();
    assert_eq!(c.get(gw.url("/fast")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(gw.url("/fast")).send().await.unwrap().status(), 200);
    let refused = c.get(gw.url("/fast")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.get(gw.url("/fast")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(gw.url("/fast")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(gw.url("/fast")).send().await.unwrap().status(), 429);
}

#[tokio::test]
async fn methods_can_cost_more() {
    let up = Upstream::echo().await;
    let gw = limited_gateway(&up).await;
    let c = client();
    assert_eq!(
        c.post(gw.url("/weighted")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.post(gw.url("/weighted")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.post(gw.url("/weighted")).send().await.unwrap().status(),
        429,
        "2 × 5 = 10 used"
    );
    assert_eq!(
        c.get(gw.url("/weighted")).send().await.unwrap().status(),
        429
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_the_key() {
    let up = Upstream::echo().await;
    let gw = limited_gateway(&up).await;
    let c = client();
    let from = |ip: &'static str| {
        c.get(gw.url("/behind-proxy"))
            .header("x-forwarded-for", ip)
            .send()
    };
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(
        from("203.0.113.2").await.unwrap().status(),
        200,
        "another client, another budget"
    );
    // A client cannot escape by prepending addresses: the rightmost untrusted hop counts.
    assert_eq!(
        from("198.51.100.7, 203.0.113.2").await.unwrap().status(),
        429
    );
}

#[tokio::test]
async fn routes_naming_the_same_budget_share_it() {
    let up = Upstream::echo().await;
    let gw = limited_gateway(&up).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/shared-a")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(gw.url("/shared-b")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(gw.url("/shared-a")).send().await.unwrap().status(),
        429
    );
    assert_eq!(
        json(c.get(gw.url("/shared-b")).send().await.unwrap()).await["error"],
        json!("rate_limited")
    );
}

fn redis_config(up: &Upstream, redis: &RedisServer, on_error: &str, requests: u32) -> String {
    format!(
        r#"{MAIN_LISTENER}
[rate_limit]
backend = "redis"
redis_url = "{url}"
redis_timeout = "200ms"
on_redis_error = "{on_error}"
[upstreams.up]
targets = ["{up}"]
[plugins.limit]
module = "builtin:rate-limit"
grants = ["rate-limit"]
# A Redis round trip on a loaded test machine can outlast the default 20 ms hook deadline.
timeout = "2s"
[[routes]]
name = "api"
upstream = "up"
plugins = [{{ use = "limit", config = {{ name = "cluster", limits = [{{ requests = {requests}, per = "1h" }}] }} }}]
"#,
        url = redis.url(),
        up = up.addr,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_enforce_one_limit() {
    let redis = RedisServer::start();
    let up = Upstream::echo().await;
    // A slow (loaded) machine must not push checks past the timeout into local counting.
    let config = redis_config(&up, &redis, "local", 50)
        .replace("redis_timeout = \"200ms\"", "redis_timeout = \"5s\"");
    let (a, b) = (Gateway::start(&config).await, Gateway::start(&config).await);
    // 20 concurrent clients, half on each gateway, 10 requests each, against one limit of 50.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = if i % 2 == 0 { a.url("/") } else { b.url("/") };
            let c = client();
            tokio::spawn(async move {
                let mut passed = 0;
                for _ in 0..10 {
                    if c.get(&url).send().await.unwrap().status() == 200 {
                        passed += 1;
                    }
                }
                passed
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += task.await.unwrap();
    }
    assert_eq!(passed, 50, "one budget across both gateways");
    assert_eq!(up.hits(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_dies_limits_fall_back_to_local_counters_without_hanging_and_recover() {
    let mut redis = RedisServer::start();
    let up = Upstream::echo().await;
    let gw = Gateway::start(&redis_config(&up, &redis, "local", 3)).await;
    let c = client();
    let status = |c: &reqwest::Client| {
        let url = gw.url("/");
        let c = c.clone();
        async move {
            let started = std::time::Instant::now();
            let status = c.get(url).send().await.unwrap().status().as_u16();
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "a check never waits long for Redis"
            );
            status
        }
    };
    for _ in 0..3 {
        assert_eq!(status(&c).await, 200);
    }
    assert_eq!(status(&c).await, 429, "Redis budget spent");

    redis.kill();
    let during: Vec<u16> = futures_collect(&c, &status, 5).await;
    assert_eq!(
        during,
        [200, 200, 200, 429, 429],
        "local fallback: its own budget of 3"
    );
    assert!(
        gw.find_log(|l| l["target"] == "wasmgate::rate_limit")
            .is_some(),
        "the failure is logged"
    );

    redis.restart();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The restarted Redis has no state (no persistence): a fresh shared budget.
    let after: Vec<u16> = futures_collect(&c, &status, 4).await;
    assert_eq!(after, [200, 200, 200, 429], "back on Redis");
}

async fn futures_collect<F, Fut>(c: &reqwest::Client, status: &F, n: usize) -> Vec<u16>
where
    F: Fn(&reqwest::Client) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(status(c).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_quickly_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let up = Upstream::echo().await;
    let gw = Gateway::start(&redis_config(&up, &redis, "deny", 100)).await;
    redis.kill();
    let c = client();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let resp = c.get(gw.url("/")).send().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "1");
    }
    assert_eq!(up.hits(), 0);
}

/// Runs `clients` concurrent request loops for `duration`; returns (2xx, 503) counts.
async fn load(url: &str, clients: usize, duration: Duration) -> (usize, usize) {
    let deadline = std::time::Instant::now() + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (c, url) = (client(), url.to_owned());
            tokio::spawn(async move {
                let (mut ok, mut shed) = (0, 0);
                while std::time::Instant::now() < deadline {
                    match c.get(&url).send().await.unwrap().status().as_u16() {
                        200 => ok += 1,
                        503 => {
                            shed += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
                (ok, shed)
            })
        })
        .collect();
    let mut total = (0, 0);
    for task in tasks {
        let (ok, shed) = task.await.unwrap();
        total.0 += ok;
        total.1 += shed;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_makes_the_gateway_shed_and_recovery_lifts_the_limit() {
    let delay = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let up = Upstream::start(Behaviour::Variable(delay.clone())).await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{}"]
adaptive_concurrency = {{ initial = 20, min = 2, max = 200, latency_threshold = "50ms" }}
[[routes]]
name = "adaptive"
upstream = "up"
"#,
        up.addr
    ))
    .await;
    let url = gw.url("/");

    // Healthy: 30 clients fit under a limit that grows past them.
    let (ok, shed) = load(&url, 30, Duration::from_millis(800)).await;
    assert!(ok > 100, "{ok}");
    let healthy_shed = shed;

    // The upstream slows to 200 ms a request: the limit collapses and the gateway sheds.
    delay.store(200, std::sync::atomic::Ordering::SeqCst);
    let (_, shed) = load(&url, 30, Duration::from_millis(1500)).await;
    assert!(
        shed > 50,
        "only {shed} requests shed against a slow upstream"
    );

    // Recovery: fast again, the limit grows back and shedding stops.
    delay.store(0, std::sync::atomic::Ordering::SeqCst);
    load(&url, 30, Duration::from_millis(1500)).await;
    let (ok, shed) = load(&url, 30, Duration::from_millis(800)).await;
    assert!(ok > 100, "{ok}");
    assert_eq!(
        shed, 0,
        "still shedding after recovery (healthy phase shed {healthy_shed})"
    );
}
