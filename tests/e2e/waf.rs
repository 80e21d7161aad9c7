//! The `waf` plugin through the gateway: the attack and benign corpora at every paranoia level,
//! blocking and detection modes, exclusions, user rules, body inspection and the audit log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn waf_config(upstream: SocketAddr, waf: &str) -> String {
    format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{upstream}"]
[plugins.waf]
module = "builtin:waf"
[[routes]]
name = "api"
upstream = "up"
plugins = [{{ use = "waf", config = {waf} }}]
"#
    )
}

/// One corpus request.
struct Case {
    id: String,
    category: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

fn corpus(name: &str) -> Vec<Case> {
    let path = format!("{}/../tests/waf/{name}", env!("CARGO_MANIFEST_DIR"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            Case {
                id: row["id"].as_str().unwrap().into(),
                category: row["category"].as_str().unwrap().into(),
                method: row["method"].as_str().unwrap().into(),
                target: row["target"].as_str().unwrap().into(),
                headers: row["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
                    .collect(),
                body: row["body"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// Sends `case` exactly as written (no client-side URL normalisation) and returns the status.
async fn send_raw(addr: SocketAddr, case: &Case) -> u16 {
    let mut request = format!(
        "{} {} HTTP/1.1\r\nhost: api.example.com\r\n",
        case.method, case.target
    );
    for (name, value) in &case.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = case.body.as_deref().unwrap_or("");
    if case.body.is_some() {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("connection: close\r\n\r\n");
    request.push_str(body);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response).await;
    let head = String::from_utf8_lossy(&response);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Runs a corpus against the four paranoia levels; returns blocked counts per level and
/// category, and prints the table.
async fn run_corpus(cases: &[Case], label: &str) -> BTreeMap<u8, BTreeMap<String, (usize, usize)>> {
    let up = Upstream::echo().await;
    let mut config = format!(
        "[upstreams.up]\ntargets = [\"{}\"]\n[plugins.waf]\nmodule = \"builtin:waf\"\n",
        up.addr
    );
    for pl in 1..=4 {
        config.push_str(&format!(
            "[listeners.pl{pl}]\naddr = \"127.0.0.1:0\"\n[[routes]]\nname = \"pl{pl}\"\nlisteners = [\"pl{pl}\"]\nupstream = \"up\"\nplugins = [{{ use = \"waf\", config = {{ paranoia = {pl} }} }}]\n"
        ));
    }
    let gw = Gateway::start(&config).await;
    let mut results = BTreeMap::new();
    for pl in 1u8..=4 {
        let addr = gw.addr_of(&format!("pl{pl}"));
        let mut per_category: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut statuses = Vec::new();
        for chunk in cases.chunks(16) {
            let sent = chunk.iter().map(|case| send_raw(addr, case));
            statuses.extend(futures_util::future::join_all(sent).await);
        }
        let mut blocked_ids = Vec::new();
        for (case, status) in cases.iter().zip(&statuses) {
            let entry = per_category.entry(case.category.clone()).or_default();
            entry.1 += 1;
            // 403: the WAF blocked it; 400: the HTTP layer refused it. Either way it never
            // reached the upstream.
            if matches!(status, 403 | 400) {
                entry.0 += 1;
                blocked_ids.push(case.id.as_str());
            } else {
                assert!(
                    matches!(status, 200 | 413),
                    "{}: unexpected status {status}",
                    case.id
                );
            }
        }
        let (b, n) = per_category
            .values()
            .fold((0, 0), |(b, n), (cb, cn)| (b + cb, n + cn));
        let rates: Vec<String> = per_category
            .iter()
            .map(|(c, (cb, cn))| format!("{c} {cb}/{cn}"))
            .collect();
        println!(
            "{label} paranoia {pl}: blocked {b}/{n} ({:.1} %) — {}",
            100.0 * b as f64 / n.max(1) as f64,
            rates.join(", ")
        );
        if pl == 1 && label.contains("benign") && !blocked_ids.is_empty() {
            println!("  blocked benign at paranoia 1: {}", blocked_ids.join(" "));
        }
        results.insert(pl, per_category);
    }
    results
}

fn rate(counts: &BTreeMap<String, (usize, usize)>) -> f64 {
    let (b, n) = counts
        .values()
        .fold((0, 0), |(b, n), (cb, cn)| (b + cb, n + cn));
    b as f64 / n.max(1) as f64
}

#[tokio::test]
async fn attack_corpus_is_blocked_and_benign_traffic_passes_at_paranoia_1() {
    let attacks = corpus("attacks.jsonl");
    let benign = corpus("benign.jsonl");
    assert!(
        attacks.len() >= 200 && benign.len() >= 200,
        "corpora present"
    );
    let attack_results = run_corpus(&attacks, "attacks").await;
    let benign_results = run_corpus(&benign, "benign").await;
    let pl1 = &attack_results[&1];
    assert!(
        rate(pl1) >= 0.85,
        "paranoia 1 blocks at least 85 % of attacks"
    );
    for (category, (b, n)) in pl1 {
        assert!(
            *b as f64 / *n as f64 >= 0.65,
            "{category}: {b}/{n} blocked at paranoia 1"
        );
    }
    assert!(
        rate(&benign_results[&1]) <= 0.01,
        "paranoia 1 blocks at most 1 % of benign requests"
    );
    for pl in 2..=4 {
        assert!(
            rate(&attack_results[&pl]) >= rate(pl1),
            "higher paranoia never detects less"
        );
    }
}

#[tokio::test]
async fn held_out_corpus_is_reported() {
    // Written separately from the rules. First run, before any rule change: attacks 94.9 %
    // blocked, benign 2.7 % (5 of 188) blocked at paranoia 1. The five false positives showed
    // three over-broad patterns, since narrowed; the missed attacks were left alone, so the
    // attack rate stays an estimate for traffic the rules were not written against.
    let attacks = corpus("holdout-attacks.jsonl");
    let benign = corpus("holdout-benign.jsonl");
    if attacks.is_empty() || benign.is_empty() {
        return;
    }
    let attack_results = run_corpus(&attacks, "held-out attacks").await;
    let benign_results = run_corpus(&benign, "held-out benign").await;
    assert!(
        rate(&attack_results[&1]) >= 0.80,
        "held-out attacks: floor 80 % at paranoia 1"
    );
    assert!(
        rate(&benign_results[&1]) <= 0.02,
        "held-out benign: ceiling 2 % at paranoia 1"
    );
}

#[tokio::test]
async fn a_blocked_request_gets_403_with_its_request_id_and_one_audit_line() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&waf_config(up.addr, "{}")).await;
    let resp = client()
        .get(gw.url("/items?id=1%27%20OR%20%271%27%3D%271"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = json(resp).await;
    assert_eq!(body["error"], "forbidden");
    assert_eq!(body["request_id"], request_id.as_str());
    assert_eq!(up.hits(), 0);

    let audit = gw
        .find_log(|l| l["target"] == "wasmgate::plugin" && l["plugin"] == "waf")
        .expect("an audit line");
    let message = audit["message"].as_str().unwrap();
    assert_eq!(audit["level"], "WARN");
    assert!(message.starts_with("waf blocked by 949110: "), "{message}");
    assert!(
        message.contains(&format!("request_id={request_id}")),
        "{message}"
    );
    assert!(
        message.contains("942100 \"SQL tautology after a quote\" at ARGS:id"),
        "{message}"
    );
    assert!(
        !message.contains("'1'='1"),
        "the matched value is never logged: {message}"
    );
}

#[tokio::test]
async fn detect_mode_logs_but_lets_the_request_through() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&waf_config(up.addr, r#"{ mode = "detect" }"#)).await;
    let resp = client()
        .get(gw.url("/x?q=%3Cscript%3Ealert(1)%3C/script%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.hits(), 1);
    let audit = gw
        .find_log(|l| l["plugin"] == "waf")
        .expect("an audit line");
    assert!(
        audit["message"]
            .as_str()
            .unwrap()
            .starts_with("waf detected (detect mode, not blocked) by 949110"),
        "{audit}"
    );
}

#[tokio::test]
async fn exclusions_silence_a_rule_for_one_target_only() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&waf_config(
        up.addr,
        r#"{ exclude = [{ id = 941100, target = "ARGS:json.snippet" }, { tag = "wasmgate/sqli", target = "ARGS:sql" }] }"#,
    ))
    .await;
    let post = |body: &'static str| {
        client()
            .post(gw.url("/snippets"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let ok = post(r#"{"snippet": "<script src=\"/app.js\"></script>"}"#)
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "excluded for ARGS:json.snippet");
    let blocked = post(r#"{"title": "<script src=\"/app.js\"></script>"}"#)
        .await
        .unwrap();
    assert_eq!(blocked.status(), 403, "still active for other fields");
    let ok = client()
        .get(gw.url("/q?sql=1%20UNION%20SELECT%20a"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "a tag excluded for one parameter");
    let blocked = client()
        .get(gw.url("/q?other=1%20UNION%20SELECT%20a"))
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 403);
}

#[tokio::test]
async fn user_rules_and_body_limits_apply() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&waf_config(
        up.addr,
        r#"{ max_body = 2048, rules_text = "SecRule REQUEST_HEADERS:User-Agent \"@pm sqlmap nikto\" \"id:100001,phase:1,deny,log,msg:'scanner'\"" }"#,
    ))
    .await;
    let resp = client()
        .get(gw.url("/"))
        .header("user-agent", "sqlmap/1.8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let audit = gw.find_log(|l| l["plugin"] == "waf").unwrap();
    assert!(
        audit["message"]
            .as_str()
            .unwrap()
            .contains("100001 \"scanner\" at REQUEST_HEADERS:user-agent"),
        "{audit}"
    );

    // Nested JSON values are inspected.
    let resp = client()
        .post(gw.url("/profile"))
        .header("content-type", "application/json")
        .body(r#"{"user": {"links": ["https://ok.example", "javascript:alert(document.cookie)"]}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // A JSON body that does not parse is refused, not waved through uninspected.
    let resp = client()
        .post(gw.url("/profile"))
        .header("content-type", "application/json")
        .body(r#"{"user": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Bodies beyond what the WAF inspects are refused.
    let resp = client()
        .post(gw.url("/profile"))
        .header("content-type", "text/plain")
        .body("a".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

/// What a regex captured is what a chained rule reads back (`TX:1`), inside the Wasm sandbox
/// as natively: CRS's session-fixation and content-type rules depend on it.
#[tokio::test]
async fn regex_captures_reach_the_chained_rule() {
    let up = Upstream::echo().await;
    let rules = r#"SecRule REQUEST_HEADERS:Referer "@rx ^(?:ht|f)tps?://(.*?)\/" "id:100002,phase:1,deny,log,capture,msg:'off-site referer',chain"
  SecRule TX:1 "!@endsWith %{request_headers.host}" """#;
    let gw = Gateway::start(&waf_config(
        up.addr,
        &format!("{{ rules_text = '''\n{rules}\n''' }}"),
    ))
    .await;
    let status = |referer: &'static str| {
        let request = client()
            .get(gw.url("/"))
            .header("host", "shop.example")
            .header("referer", referer);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status("https://evil.example/landing").await, 403);
    assert_eq!(status("https://www.shop.example/cart").await, 200);
    let audit = gw.find_log(|l| l["plugin"] == "waf").unwrap();
    assert!(
        audit["message"]
            .as_str()
            .unwrap()
            .contains("100002 \"off-site referer\" at TX:1"),
        "{audit}"
    );
}

#[tokio::test]
async fn bad_waf_configs_are_refused_with_the_key() {
    let up = Upstream::echo().await;
    for (config, expected) in [
        (
            r#"{ paranoia = 5 }"#,
            "key `paranoia`: must be 1, 2, 3 or 4",
        ),
        (
            r#"{ rules_text = 'SecRule ARGS "@rx (" "id:100001,deny"' }"#,
            "key `rules`: rules_text:1: regex `(`",
        ),
        (
            r#"{ rules_text = 'SecRule ARGS "@fuzzyHash x" "id:100001,deny"' }"#,
            "rules_text:1: unsupported operator @fuzzyhash",
        ),
        (
            r#"{ rules_text = "SecFrobnicate On" }"#,
            "rules_text:1: unsupported directive `SecFrobnicate`",
        ),
        (
            r#"{ exclude = [{ target = "ARGS:q" }] }"#,
            "key `exclude[0]`: name an `id` or a `tag`",
        ),
        (
            r#"{ exclude = [{ id = 1, target = "QUERY:q" }] }"#,
            "unsupported variable `QUERY`",
        ),
    ] {
        let err = Gateway::refused(&waf_config(up.addr, config)).await;
        assert!(
            err.contains(expected),
            "{config}: expected `{expected}` in:\n{err}"
        );
    }
}

/// Debian's modsecurity-crs package, which CI installs.
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";

/// A route running the CRS from a copy of the package's files (so a test may edit them).
fn crs_config(upstream: SocketAddr, rules_dir: &std::path::Path, waf: &str) -> String {
    let rules = rules_dir.display();
    format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{upstream}"]
[plugins.waf]
module = "builtin:waf"
memory_limit = "128 MiB"
timeout = "250ms"
[[routes]]
name = "api"
upstream = "up"
plugins = [{{ use = "waf", config_files = {{ rules = ["/etc/modsecurity/crs/crs-setup.conf", "{rules}/*.conf", "{rules}/*.data"] }}, config = {waf} }}]
"#
    )
}

fn crs_copy() -> Option<tempfile::TempDir> {
    if !std::path::Path::new(CRS_RULES).is_dir() {
        eprintln!("skipped: {CRS_RULES} is missing (apt-get install modsecurity-crs)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(CRS_RULES).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    Some(dir)
}

async fn status_of(gw: &Gateway, path: &str) -> u16 {
    client()
        .get(gw.url(path))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
        )
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_owasp_crs_runs_unchanged_and_blocks_by_anomaly_score() {
    let Some(rules) = crs_copy() else { return };
    let up = Upstream::echo().await;
    let gw = Gateway::start(&crs_config(up.addr, rules.path(), "{}")).await;
    assert_eq!(status_of(&gw, "/api/items?page=2&sort=name").await, 200);
    assert_eq!(
        status_of(
            &gw,
            "/api/items?id=1%27%20UNION%20SELECT%20password%20FROM%20users--"
        )
        .await,
        403
    );
    let audit = gw
        .find_log(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("waf blocked by 949110"))
        })
        .expect("an audit line");
    let message = audit["message"].as_str().unwrap();
    assert!(
        message.contains("942100 \"SQL Injection Attack Detected via libinjection\" at ARGS:id"),
        "{message}"
    );
    assert!(
        !message.contains("password"),
        "values are never logged: {message}"
    );

    // JSON bodies are parsed into arguments, and PUT/PATCH/DELETE are API methods.
    let resp = client()
        .put(gw.url("/api/users/7"))
        .header("user-agent", "okhttp/4.12.0")
        .header("content-type", "application/json")
        .body(r#"{"name": "Ada", "bio": "<script>alert(document.cookie)</script>"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = client()
        .patch(gw.url("/api/users/7"))
        .header("user-agent", "okhttp/4.12.0")
        .header("content-type", "application/json")
        .body(r#"{"name": "Ada Lovelace", "bio": "Mathematician; wrote the first program."}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn paranoia_levels_and_detect_mode_apply_to_the_crs() {
    let Some(rules) = crs_copy() else { return };
    let up = Upstream::echo().await;
    // 942432-style signals (several special characters) count only from paranoia 2 up.
    let probe = "/api/search?q=a%27%22%3B%28%29%3C%3E%7B%7D%5B%5D";
    let pl1 = Gateway::start(&crs_config(up.addr, rules.path(), "{ paranoia = 1 }")).await;
    let pl4 = Gateway::start(&crs_config(up.addr, rules.path(), "{ paranoia = 4 }")).await;
    assert_eq!(status_of(&pl1, probe).await, 200);
    assert_eq!(status_of(&pl4, probe).await, 403);
    let detect = Gateway::start(&crs_config(
        up.addr,
        rules.path(),
        r#"{ mode = "detect", paranoia = 4 }"#,
    ))
    .await;
    assert_eq!(status_of(&detect, probe).await, 200);
    assert!(
        detect
            .find_log(|l| l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("waf detected (detect mode, not blocked)")))
            .is_some()
    );
}

#[tokio::test]
async fn a_rule_file_edit_reloads_and_a_broken_one_is_refused() {
    let Some(rules) = crs_copy() else { return };
    let up = Upstream::echo().await;
    let gw = Gateway::start(&crs_config(up.addr, rules.path(), "{}")).await;
    let probe = "/api/items?tag=wasmgate-canary";
    assert_eq!(status_of(&gw, probe).await, 200);
    let exclusions = rules.path().join("REQUEST-900-CANARY.conf");
    std::fs::write(
        &exclusions,
        "SecRule ARGS \"@streq wasmgate-canary\" \"id:10001,phase:1,deny,log,msg:'canary'\"\n",
    )
    .unwrap();
    // The new file is not among the watched ones until the file list is read again: edit
    // a watched one too, as a deploy would.
    let watched = rules.path().join("REQUEST-901-INITIALIZATION.conf");
    let text = std::fs::read_to_string(&watched).unwrap();
    std::fs::write(&watched, format!("{text}\n# edited\n")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status_of(&gw, probe).await != 403 {
        assert!(
            std::time::Instant::now() < deadline,
            "the edited rules were never loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken rule file is refused; the last good rules keep serving.
    std::fs::write(
        &exclusions,
        "SecRule ARGS \"@nosuchop x\" \"id:10002,deny\"\n",
    )
    .unwrap();
    std::fs::write(&watched, format!("{text}\n# edited again\n")).unwrap();
    let refused = gw.find_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("unsupported operator @nosuchop"))
    });
    assert!(refused.is_some(), "the refused reload names the problem");
    assert_eq!(status_of(&gw, probe).await, 403);
    assert_eq!(status_of(&gw, "/api/items?page=1").await, 200);
}
