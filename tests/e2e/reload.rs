//! Hot swap: plugin modules and config change while the gateway serves, with no request lost.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Which module version answered a request on the swap route: `echo` answers itself (its
/// JSON has `client_ip`); `testkit` passes the request on to the upstream (whose JSON has
/// `upstream`). Anything else is a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Echo,
    PassThrough,
}

fn classify(status: u16, body: &str) -> Result<Version, String> {
    let json: Value = serde_json::from_str(body).map_err(|_| format!("{status}: {body}"))?;
    match (status, json.get("client_ip"), json.get("upstream")) {
        (200, Some(_), None) => Ok(Version::Echo),
        (200, None, Some(_)) => Ok(Version::PassThrough),
        _ => Err(format!("{status}: {body}")),
    }
}

async fn version_of(c: &reqwest::Client, url: &str) -> Result<Version, String> {
    let resp = c
        .get(url)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| format!("body failed: {e}"))?;
    classify(status, &body)
}

fn module_bytes(version: Version) -> Vec<u8> {
    let name = match version {
        Version::Echo => "echo",
        Version::PassThrough => "testkit",
    };
    std::fs::read(plugin(name)).unwrap()
}

/// Writes a module the way deploy tools do (`rename`: write aside, then rename over) or the
/// way editors and `cp` do (`in_place`: truncate, then write).
fn write_module(path: &Path, bytes: &[u8], in_place: bool) {
    if in_place {
        std::fs::write(path, bytes).unwrap();
    } else {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

fn swap_config(module: &Path, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[admin]
addr = "127.0.0.1:0"
[listeners.main]
addr = "127.0.0.1:0"
[upstreams.up]
targets = ["{upstream}"]
[plugins.swappable]
module = "{}"
[[routes]]
name = "swap"
upstream = "up"
plugins = [{{ use = "swappable" }}]
"#,
        module.display()
    )
}

/// Clients in flight during a test: half reuse keep-alive connections, half open a new
/// connection per request. Every response is classified; failures are kept.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize, check: fn(u16, &str) -> Result<(), String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep_alive = client();
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let tasks = (0..clients)
            .map(|i| {
                let c = if i % 2 == 0 {
                    keep_alive.clone()
                } else {
                    fresh.clone()
                };
                let (url, stop, served, failures) =
                    (url.clone(), stop.clone(), served.clone(), failures.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = match c.get(&url).send().await {
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                match resp.text().await {
                                    Ok(body) => check(status, &body),
                                    Err(e) => Err(format!("body failed: {e}")),
                                }
                            }
                            Err(e) => Err(format!("request failed: {e}")),
                        };
                        match outcome {
                            Ok(()) => served.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                failures.lock().unwrap().push(e);
                                0
                            }
                        };
                    }
                })
            })
            .collect();
        Self {
            stop,
            served,
            failures,
            tasks,
        }
    }

    /// Stops the clients and returns (requests served, failures).
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.served.load(Ordering::Relaxed), failures)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_module_twenty_times_under_load_loses_no_request() {
    let up = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("swappable.wasm");
    write_module(&module, &module_bytes(Version::Echo), false);
    let gw = Gateway::start(&swap_config(&module, up.addr)).await;
    let url = gw.url("/swap");
    let load = Load::start(url.clone(), 200, |status, body| {
        classify(status, body).map(|_| ())
    });
    let probe = client();

    let mut visible_after = Vec::new();
    let mut current = Version::Echo;
    for swap in 0..20 {
        let next = match current {
            Version::Echo => Version::PassThrough,
            Version::PassThrough => Version::Echo,
        };
        let written = Instant::now();
        write_module(&module, &module_bytes(next), swap % 2 == 1);
        loop {
            if version_of(&probe, &url).await == Ok(next) {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(5),
                "swap {swap} never became visible"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        visible_after.push(written.elapsed());
        current = next;
        // Let the load run on the new version for a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (served, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served > 1000, "only {served} requests served under load");
    visible_after.sort();
    let (p50, p99) = (
        percentile(&visible_after, 0.5),
        percentile(&visible_after, 0.99),
    );
    eprintln!(
        "module swap: {served} requests, 0 failed; new version visible after p50 {p50:?}, p99 {p99:?}"
    );
    assert!(
        p99 < Duration::from_secs(1),
        "slowest swap became visible after {p99:?}"
    );
    let status: Value = json(client().get(gw.admin_url("/status")).send().await.unwrap()).await;
    assert!(status["generation"].as_u64().unwrap() >= 21, "{status:#}");
}

const CONFIG_V1: &str = r#"
[admin]
addr = "127.0.0.1:0"
[listeners.main]
addr = "127.0.0.1:0"
[upstreams.up]
targets = ["UPSTREAM"]
[plugins.headers]
module = "builtin:headers"
[[routes]]
name = "stable"
match = { path_prefix = "/stable" }
upstream = "up"
plugins = [{ use = "headers", config = { response = { set = { "x-config" = "v1" } } } }]
[[routes]]
name = "old"
match = { path_prefix = "/old" }
upstream = "up"
"#;

fn config_v2(v1: &str) -> String {
    v1.replace("\"x-config\" = \"v1\"", "\"x-config\" = \"v2\"")
        .replace(
            "name = \"old\"\nmatch = { path_prefix = \"/old\" }",
            "name = \"new\"\nmatch = { path_prefix = \"/new\" }",
        )
}

/// Writes the config file aside and renames it into place, as a deploy tool would.
fn write_config(gw: &Gateway, text: &str) {
    let tmp = gw.config_path().with_extension("next");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, gw.config_path()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_under_load_add_and_remove_routes_without_losing_requests() {
    let up = Upstream::echo().await;
    let v1 = CONFIG_V1.replace("UPSTREAM", &up.addr.to_string());
    let v2 = config_v2(&v1);
    let gw = Gateway::start(&v1).await;
    let load = Load::start(gw.url("/stable"), 100, |status, body| {
        match (status, body.contains("\"upstream\"")) {
            (200, true) => Ok(()),
            _ => Err(format!("{status}: {body}")),
        }
    });
    let c = client();
    for round in 0..10 {
        let (text, expect, gone, added) = match round % 2 {
            0 => (&v2, "v2", "/old", "/new"),
            _ => (&v1, "v1", "/new", "/old"),
        };
        write_config(&gw, text);
        let written = Instant::now();
        loop {
            let resp = c.get(gw.url("/stable")).send().await.unwrap();
            if resp.headers()["x-config"] == expect {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(5),
                "round {round}: {expect} never served"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            c.get(gw.url(gone)).send().await.unwrap().status(),
            404,
            "round {round}: {gone} removed"
        );
        assert_eq!(
            c.get(gw.url(added)).send().await.unwrap().status(),
            200,
            "round {round}: {added} added"
        );
    }
    let (served, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served > 500, "only {served} served");
}

async fn status(gw: &Gateway) -> Value {
    json(client().get(gw.admin_url("/status")).send().await.unwrap()).await
}

/// Waits until the admin API reports a failed reload whose error contains `reason`.
async fn wait_for_failure(gw: &Gateway, reason: &str) -> Value {
    let started = Instant::now();
    loop {
        let status = status(gw).await;
        let last = &status["last_reload"];
        if last["ok"] == false && last["error"].as_str().is_some_and(|e| e.contains(reason)) {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no failed reload with `{reason}`: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_modules_and_configs_are_refused_and_the_old_version_keeps_serving() {
    let up = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("swappable.wasm");
    write_module(&module, &module_bytes(Version::Echo), false);
    let gw = Gateway::start(&swap_config(&module, up.addr)).await;
    let url = gw.url("/swap");
    let c = client();
    let good_hash = status(&gw).await["modules"]["swappable"].clone();

    let pass_through = module_bytes(Version::PassThrough);
    let wrong_world = std::fs::read(plugin("wrong-world")).unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "garbage",
            b"this is not wasm at all",
            "not a WebAssembly file",
        ),
        (
            "wrong world",
            &wrong_world,
            "it does not export wasmgate:plugin/handler (it exports wasi:cli/run@",
        ),
        (
            "truncated",
            &pass_through[..pass_through.len() / 2],
            "not a valid WebAssembly component",
        ),
    ];
    for (what, bytes, reason) in cases {
        write_module(&module, bytes, true);
        let status = wait_for_failure(&gw, reason).await;
        let error = status["last_reload"]["error"].as_str().unwrap();
        assert!(error.contains(reason), "{what}: {error}");
        assert!(error.contains("plugin `swappable`"), "{what}: {error}");
        assert_eq!(
            status["modules"]["swappable"], good_hash,
            "{what}: old module still loaded"
        );
        assert_eq!(
            version_of(&c, &url).await,
            Ok(Version::Echo),
            "{what}: old version serves"
        );
    }

    // An invalid config: the error names file, line and route.
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    write_config(
        &gw,
        &config.replace("upstream = \"up\"", "upstream = \"nowhere\""),
    );
    let status = wait_for_failure(&gw, "unknown upstream").await;
    let error = status["last_reload"]["error"].as_str().unwrap();
    assert!(
        error.contains("gateway.toml:12:12: route `swap`: unknown upstream `nowhere`"),
        "{error}"
    );
    assert_eq!(version_of(&c, &url).await, Ok(Version::Echo));
    let metrics = gw.admin_text("/metrics").await;
    assert!(
        !metrics.contains("wasmgate_reloads_total{result=\"error\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmgate_last_reload_success 0"),
        "{metrics}"
    );

    // Fixing both is picked up.
    write_config(&gw, &config);
    write_module(&module, &pass_through, false);
    let started = Instant::now();
    while version_of(&c, &url).await != Ok(Version::PassThrough) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "fixed module never picked up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = gw.find_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("reload failed"))
    });
    assert!(log.is_some(), "failed reloads are logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_the_admin_endpoint_reload_and_listener_changes_are_refused() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&CONFIG_V1.replace("UPSTREAM", &up.addr.to_string())).await;
    gw.signal("HUP");
    let started = Instant::now();
    loop {
        let status = status(&gw).await;
        if status["last_reload"]["trigger"] == "SIGHUP" {
            assert_eq!(status["last_reload"]["ok"], true);
            assert_eq!(status["generation"], 2);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "SIGHUP did not reload: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let resp = client().post(gw.admin_url("/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["generation"], 3);

    // Listeners are bound at start: a reload cannot move them.
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let moved = config.replace(
        "[listeners.main]\naddr = \"127.0.0.1:0\"",
        "[listeners.main]\naddr = \"127.0.0.1:1\"",
    );
    let gw = &gw;
    let refused = |config: String| async move {
        std::fs::write(gw.config_path().with_extension("next"), config).unwrap();
        std::fs::rename(gw.config_path().with_extension("next"), gw.config_path()).unwrap();
        let resp = client().post(gw.admin_url("/reload")).send().await.unwrap();
        assert_eq!(resp.status(), 422);
        json(resp).await["error"].as_str().unwrap().to_owned()
    };
    let error = refused(moved).await;
    assert!(
        error.ends_with(
            "listeners changed; listeners are bound at start, restart wasmgate to apply this config"
        ),
        "{error}"
    );
    // Nor can it change the admin API: a new token would be reported applied but not be.
    let error = refused(config.replace("[admin]\n", "[admin]\ntoken = \"rotated\"\n")).await;
    assert!(
        error.ends_with(
            "[admin] changed; the admin API is set up at start, restart wasmgate to apply this config"
        ),
        "{error}"
    );
    assert_eq!(
        client()
            .get(gw.url("/stable"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_reloads_leave_resident_memory_where_it_was() {
    let up = Upstream::echo().await;
    let v1 = CONFIG_V1.replace("UPSTREAM", &up.addr.to_string());
    let gw = Gateway::start(&v1).await;
    let c = client();
    // Each reload changes a plugin config, so every one builds a new pool with new instances
    // and drops the previous one.
    let reload = |i: usize| {
        let text = v1.replace("\"x-config\" = \"v1\"", &format!("\"x-config\" = \"v{i}\""));
        std::fs::write(gw.config_path(), text).unwrap();
        let c = c.clone();
        let url = gw.admin_url("/reload");
        async move {
            let resp = c.post(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            // Serve a request on the new snapshot so its instances are really used.
            let _ = resp.text().await;
        }
    };
    for i in 0..50 {
        reload(i).await;
        c.get(gw.url("/stable")).send().await.unwrap();
    }
    let baseline = gw.rss_kib();
    for i in 50..550 {
        reload(i).await;
        c.get(gw.url("/stable")).send().await.unwrap();
    }
    let after = gw.rss_kib();
    eprintln!("500 reloads: resident memory {baseline} KiB -> {after} KiB");
    assert!(
        after < baseline + 16 * 1024,
        "resident memory grew from {baseline} KiB to {after} KiB"
    );
    let status = status(&gw).await;
    assert!(
        status["reloads"]["succeeded"].as_u64().unwrap() >= 550,
        "{status:#}"
    );
}
