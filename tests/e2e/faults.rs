//! Broken plugins are contained: the request gets its status within the deadline, the instance
//! is replaced, and every other request keeps being served.

use std::time::{Duration, Instant};

use crate::support::*;

async fn fault_gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]

[plugins.testkit]
module = "{fault}"
timeout = "50ms"
memory_limit = "16MiB"

[plugins.fault-open]
module = "{fault}"
timeout = "50ms"
memory_limit = "16MiB"
on_error = "skip"

[plugins.headers]
module = "builtin:headers"

[[routes]]
name = "faulty"
match = {{ path_prefix = "/faulty" }}
upstream = "up"
plugins = [
  {{ use = "headers", config = {{ response = {{ set = {{ "x-outer" = "ran" }} }} }} }},
  {{ use = "testkit" }},
]

[[routes]]
name = "fail-open"
match = {{ path_prefix = "/open" }}
upstream = "up"
plugins = [{{ use = "fault-open" }}]

[[routes]]
name = "healthy"
match = {{ path_prefix = "/healthy" }}
upstream = "up"
plugins = [{{ use = "headers", config = {{ request = {{ set = {{ "x-ok" = "1" }} }} }} }}]
"#,
        up = up.addr,
        fault = plugin("testkit"),
    ))
    .await
}

async fn assert_contained(kind: &str, header: &str, expected_log_kind: &str) {
    let up = Upstream::echo().await;
    let gw = fault_gateway(&up).await;
    let c = client();

    // The faulting request and a healthy one in flight at the same time.
    let started = Instant::now();
    let faulty = c.get(gw.url("/faulty")).header(header, kind).send();
    let healthy = async {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(
                c.get(gw.url("/healthy"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        statuses
    };
    let (faulty, healthy) = tokio::join!(faulty, healthy);
    let faulty = faulty.unwrap();
    assert_eq!(faulty.status(), 500, "{kind}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{kind} answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        healthy,
        vec![200; 10],
        "other routes keep answering during a {kind}"
    );
    if header == "x-fault-response" {
        assert_eq!(
            faulty.headers()["x-outer"],
            "ran",
            "earlier plugins still see the 500"
        );
    }
    assert_eq!(
        faulty.text().await.unwrap(),
        "a plugin failed while handling the request\n"
    );

    // The next requests on the same route succeed on a fresh instance.
    for _ in 0..3 {
        assert_eq!(
            c.get(gw.url("/faulty")).send().await.unwrap().status(),
            200,
            "after a {kind}"
        );
    }

    let fault_log = gw
        .find_log(|l| l["target"] == "wasmgate::plugin" && l["level"] == "ERROR")
        .expect("the fault is logged");
    assert_eq!(fault_log["plugin"], "testkit");
    assert_eq!(fault_log["route"], "faulty");
    assert_eq!(fault_log["kind"], expected_log_kind);
    if kind == "trap" {
        // What the guest printed before trapping (here Rust's panic message; a Python or
        // JavaScript traceback alike) is in the log, tagged with the plugin.
        let printed = gw
            .find_log(|l| {
                l["stream"] == "stderr"
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("testkit plugin asked to trap"))
            })
            .expect("the plugin's panic message reaches the log");
        assert_eq!(printed["plugin"], "testkit");
        assert_eq!(printed["level"], "WARN");
    }
}

#[tokio::test]
async fn a_trapping_plugin_gets_500_and_is_replaced() {
    assert_contained("trap", "x-fault", "trap").await;
}

#[tokio::test]
async fn a_plugin_that_loops_forever_is_stopped_at_its_deadline() {
    assert_contained("loop", "x-fault", "timeout").await;
}

#[tokio::test]
async fn a_plugin_that_eats_memory_is_stopped_at_its_limit() {
    assert_contained("grow", "x-fault", "memory-limit").await;
}

#[tokio::test]
async fn a_fault_in_the_response_phase_becomes_500_and_earlier_plugins_still_run() {
    assert_contained("trap", "x-fault-response", "trap").await;
}

/// A gateway whose one route runs `testkit` with `config` under a 16 MiB memory limit.
async fn memory_gateway(up: &Upstream, config: &str) -> Gateway {
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]
[plugins.testkit]
module = "{testkit}"
memory_limit = "16MiB"
[[routes]]
name = "r"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [{{ use = "testkit", config = {config} }}]
"#,
        up = up.addr,
        testkit = plugin("testkit"),
    ))
    .await
}

/// `x-instance-calls` of `n` serial requests (with `leak_kib` KiB kept per request).
async fn instance_calls(gw: &Gateway, n: usize, leak_kib: usize) -> Vec<u64> {
    let c = client();
    let mut calls = Vec::new();
    for i in 0..n {
        let resp = c
            .get(gw.url("/"))
            .header("x-leak-kib", leak_kib.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        calls.push(
            resp.headers()["x-instance-calls"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    calls
}

#[tokio::test]
async fn an_instance_that_needs_most_of_its_limit_from_the_start_is_reused() {
    // 12 of 16 MiB held from configure on, flat after: a replacement would be no smaller, so
    // the instance serves request after request (recycling it each time would cost every
    // request a fresh configure).
    let up = Upstream::echo().await;
    let gw = memory_gateway(&up, "{ hold_mib = 12 }").await;
    assert_eq!(instance_calls(&gw, 6, 0).await, [1, 2, 3, 4, 5, 6]);
    let warning = gw
        .find_log(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("raise the plugin's memory_limit"))
        })
        .expect("a footprint near the limit is reported at startup");
    assert_eq!(warning["plugin"], "testkit");
    assert_eq!(warning["memory_limit"], 16 << 20);
}

#[tokio::test]
async fn an_instance_whose_heap_keeps_growing_is_recycled_before_it_traps() {
    // 1 MiB more per request: without recycling the 15th or so would find the memory full.
    let up = Upstream::echo().await;
    let gw = memory_gateway(&up, "{}").await;
    let calls = instance_calls(&gw, 30, 1024).await;
    let peak = *calls.iter().max().unwrap();
    assert!(
        peak > 4,
        "the instance is reused while it has room: {calls:?}"
    );
    assert!(
        calls.contains(&1) && calls[1..].contains(&1),
        "and then replaced: {calls:?}"
    );
    assert!(
        !gw.logs().iter().any(|l| l["level"] == "ERROR"),
        "no request trapped"
    );
}

#[tokio::test]
async fn a_fail_open_plugin_is_skipped_and_the_request_proceeds() {
    let up = Upstream::echo().await;
    let gw = fault_gateway(&up).await;
    let c = client();
    for kind in ["trap", "loop", "grow"] {
        let resp = c
            .get(gw.url("/open"))
            .header("x-fault", kind)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{kind} with on_error = skip");
    }
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn the_admin_api_exposes_request_fault_and_upstream_metrics() {
    let up = Upstream::echo().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(&format!(
        r#"
[admin]
addr = "127.0.0.1:0"
[listeners.main]
addr = "127.0.0.1:0"
[upstreams.up]
targets = ["{up}"]
[upstreams.down]
targets = ["{dead}"]
[plugins.testkit]
module = "{testkit}"
[[routes]]
name = "faulty"
match = {{ path_prefix = "/faulty" }}
upstream = "up"
plugins = [{{ use = "testkit" }}]
[[routes]]
name = "down"
match = {{ path_prefix = "/down" }}
upstream = "down"
[[routes]]
name = "ok"
match = {{ path = "/ok" }}
upstream = "up"
"#,
        up = up.addr,
        testkit = plugin("testkit"),
    ))
    .await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(c.get(gw.url("/ok")).send().await.unwrap().status(), 200);
    }
    assert_eq!(
        c.get(gw.url("/nowhere")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        c.get(gw.url("/faulty"))
            .header("x-fault", "trap")
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    assert_eq!(c.get(gw.url("/down")).send().await.unwrap().status(), 502);
    let metrics = gw.admin_text("/metrics").await;
    for line in [
        "wasmgate_requests_total{route=\"ok\",method=\"GET\",status=\"2xx\"} 3",
        "wasmgate_requests_total{route=\"-\",method=\"GET\",status=\"4xx\"} 1",
        "wasmgate_requests_total{route=\"faulty\",method=\"GET\",status=\"5xx\"} 1",
        "wasmgate_request_duration_seconds_count{route=\"ok\"} 3",
        "wasmgate_plugin_faults_total{plugin=\"testkit\",route=\"faulty\",kind=\"trap\"} 1",
        "wasmgate_upstream_errors_total{upstream=\"down\",kind=\"unreachable\"} 1",
        "wasmgate_config_generation 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in:\n{metrics}"
        );
    }
}

/// Two testkit entries, one granted `clock`, each on its own route.
async fn clock_gateway(up: &Upstream, timeout: &str) -> Gateway {
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]

[plugins.no-clock]
module = "{testkit}"

[plugins.clock]
module = "{testkit}"
grants = ["clock"]
timeout = "{timeout}"

[[routes]]
name = "no-clock"
match = {{ path_prefix = "/no-clock" }}
upstream = "up"
plugins = [{{ use = "no-clock" }}]

[[routes]]
name = "clock"
match = {{ path_prefix = "/clock" }}
upstream = "up"
plugins = [{{ use = "clock" }}]
"#,
        up = up.addr,
        testkit = plugin("testkit"),
    ))
    .await
}

#[tokio::test]
async fn the_wasi_clock_traps_without_the_clock_grant_and_works_with_it() {
    let up = Upstream::echo().await;
    let gw = clock_gateway(&up, "50ms").await;
    let c = client();

    let refused = c
        .get(gw.url("/no-clock"))
        .header("x-wasi-clock", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 500);
    let fault = gw
        .find_log(|l| l["target"] == "wasmgate::plugin" && l["level"] == "ERROR")
        .expect("the fault is logged");
    assert_eq!(fault["plugin"], "no-clock");
    assert_eq!(fault["kind"], "trap");
    let message = fault["message"].as_str().unwrap();
    assert!(
        message.contains(
            "plugin `no-clock` called wasi:clocks/wall-clock.now without the `clock` grant: add \"clock\" to its grants"
        ),
        "{message}"
    );
    assert_eq!(up.hits(), 0, "the request never reached the upstream");
    // The plugin loads and runs without the grant as long as it leaves the clock alone.
    assert_eq!(
        c.get(gw.url("/no-clock")).send().await.unwrap().status(),
        200
    );

    let granted = c
        .get(gw.url("/clock"))
        .header("x-wasi-clock", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);
    let echo = json(granted).await;
    let seen: u128 = seen_header(&echo, "x-wasi-now-ms")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        now.abs_diff(seen) < 60_000,
        "the plugin read the real time: {seen} vs {now}"
    );
}

#[tokio::test]
async fn a_hook_waiting_in_a_host_call_is_stopped_at_its_wall_clock_deadline() {
    let up = Upstream::echo().await;
    let gw = clock_gateway(&up, "200ms").await;
    let c = client();

    // The guest sleeps through WASI: the host waits for it, and no guest code runs that the
    // epoch deadline could interrupt.
    let started = Instant::now();
    let resp = c
        .get(gw.url("/clock"))
        .header("x-sleep-ms", "8000")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.text().await.unwrap(),
        "a plugin failed while handling the request\n"
    );
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    let fault = gw
        .find_log(|l| l["target"] == "wasmgate::plugin" && l["level"] == "ERROR")
        .expect("the fault is logged");
    assert_eq!(fault["plugin"], "clock");
    assert_eq!(fault["kind"], "timeout");
    assert!(
        fault["message"]
            .as_str()
            .unwrap()
            .contains("the call ran past its 200ms deadline"),
        "{fault}"
    );
    assert_eq!(up.hits(), 0);

    // A short sleep fits the deadline, on a fresh instance.
    let resp = c
        .get(gw.url("/clock"))
        .header("x-sleep-ms", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_flood_on_one_route_leaves_other_routes_their_plugin_instances() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[runtime]
max_instances = 16

[upstreams.up]
targets = ["{up}"]

[plugins.slow]
module = "{testkit}"
grants = ["clock"]
timeout = "3s"
max_instances = 4

[plugins.fresh]
module = "{testkit}"
isolation = "per-request"
on_error = "skip"

[[routes]]
name = "flooded"
match = {{ path_prefix = "/flooded" }}
upstream = "up"
plugins = [{{ use = "slow" }}]

[[routes]]
name = "quiet"
match = {{ path_prefix = "/quiet" }}
upstream = "up"
plugins = [{{ use = "fresh", config = {{ expose_context = ["seen"] }} }}]
"#,
        up = up.addr,
        testkit = plugin("testkit"),
    ))
    .await;
    let c = client();

    // More slow calls than the engine has instance slots.
    let flood: Vec<_> = (0..24)
        .map(|_| {
            let request = c
                .get(gw.url("/flooded"))
                .header("x-sleep-ms", "1500")
                .send();
            tokio::spawn(request)
        })
        .collect();
    let sleeping = |gw: &Gateway| {
        gw.logs()
            .iter()
            .filter(|l| l["message"] == "sleeping 1500 ms as asked")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeping(&gw) < 4 {
        assert!(Instant::now() < deadline, "the flood never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every call on the quiet route needs a fresh instance; with on_error = "skip" a missing
    // one would pass silently, so the plugin proves it ran by echoing the context. Keep
    // asking while the first round of the flood sleeps, as the flood piles up behind it.
    // The flood goes on meanwhile, so a slot the quiet route frees is contested.
    let flooding = Instant::now();
    let more_flood = {
        let c = c.clone();
        let url = gw.url("/flooded");
        tokio::spawn(async move {
            let mut more = Vec::new();
            while flooding.elapsed() < Duration::from_millis(1200) {
                let request = c.get(&url).header("x-sleep-ms", "1500").send();
                more.push(tokio::spawn(request));
                // Pacing, not waiting for anything: a steady stream of slow calls.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            more
        })
    };
    let mut i = 0;
    while flooding.elapsed() < Duration::from_millis(1200) {
        i += 1;
        let resp = c
            .get(gw.url("/quiet"))
            .header("x-context-set", "seen=yes")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "quiet request {i}");
        assert_eq!(
            resp.headers()
                .get("x-context-seen")
                .map(|v| v.to_str().unwrap()),
            Some("yes"),
            "quiet request {i} ran its plugin"
        );
    }

    let mut statuses = Vec::new();
    for request in flood.into_iter().chain(more_flood.await.unwrap()) {
        statuses.push(request.await.unwrap().unwrap().status().as_u16());
    }
    // Four at a time, 1.5 s each, and a 3 s wait for a slot: the first rounds pass, the rest
    // fail on the flooded route alone.
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&500), "{statuses:?}");
    let busy = gw.find_log(|l| {
        l["kind"] == "unavailable"
            && l["route"] == "flooded"
            && l["message"].as_str().is_some_and(|m| {
                m.contains("all 4 instances this route may use are busy (max_instances); waited 3s")
            })
    });
    assert!(busy.is_some(), "calls over the cap fail as unavailable");
}
