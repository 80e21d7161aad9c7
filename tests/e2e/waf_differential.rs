//! Differential test of the WAF: wasmgate's `waf` plugin and nginx + ModSecurity v3 run the same
//! OWASP CRS 3.3.4 files with the same settings (the base rules of modsecurity.conf-recommended,
//! CRS's own defaults, paranoia 1 and 2) and get the same requests, byte for byte
//! (`tests/waf/crs-differential.jsonl`: attacks across the CRS categories, benign API traffic).
//! On every request they must reach the same verdict and match the same CRS rules. The
//! requests where they differ on purpose or by a known ModSecurity quirk are listed, each with
//! its reason, in `tests/waf/crs-differences.toml`; a listed request that agrees again fails
//! the test too, so the list stays true.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::modsecurity::*;
use crate::support::*;

const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";
const PARANOIA: [u8; 2] = [1, 2];

/// What one engine made of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    blocked: bool,
    /// CRS detections: matched rule ids without 949110 and the base rules (2000xx).
    rules: BTreeSet<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Differences {
    difference: Vec<Difference>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Difference {
    id: String,
    paranoia: Vec<u8>,
    reason: String,
}

fn detections(rules: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
    rules
        .into_iter()
        .filter(|&id| id != 949110 && !(200000..201000).contains(&id))
        .collect()
}

/// The rule ids of a `waf` audit line: `waf blocked by 949110: request_id=… score=10
/// rules=[942100 "msg" at ARGS:id, …]`.
fn audit_rules(message: &str) -> Vec<u32> {
    let Some((_, list)) = message.split_once("rules=[") else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    let mut rest = list;
    loop {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(id) = digits.parse() {
            ids.push(id);
        }
        // The next entry starts after `, ` following the closing quote of a message and its
        // target; messages have their double quotes replaced, so `" at ` ends one.
        match rest.find("\" at ").and_then(|at| {
            let after = &rest[at..];
            after.find(", ").map(|comma| at + comma + 2)
        }) {
            Some(next) => rest = &rest[next..],
            None => return ids,
        }
    }
}

fn gateway_config(upstream: std::net::SocketAddr, base: &std::path::Path) -> String {
    let mut config = format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{upstream}"]
[plugins.waf]
module = "builtin:waf"
memory_limit = "128 MiB"
timeout = "250ms"
"#
    );
    for paranoia in PARANOIA {
        config.push_str(&format!(
            r#"[[routes]]
name = "pl{paranoia}"
match = {{ headers = {{ "x-differential-paranoia" = "{paranoia}" }} }}
upstream = "up"
plugins = [{{ use = "waf", config_files = {{ rules = ["{base}", "{CRS_SETUP}", "{CRS_RULES}/*.conf", "{CRS_RULES}/*.data"] }}, config = {{ paranoia = {paranoia}, api_defaults = false, max_body = 131072 }} }}]
"#,
            base = base.display(),
        ));
    }
    config
}

/// `case` as it goes on the wire, with the header that picks the route of `paranoia`.
fn wire(case: &CorpusRequest, paranoia: u8) -> Vec<u8> {
    let mut case = case.clone();
    case.headers
        .push(("X-Differential-Paranoia".into(), paranoia.to_string()));
    case.to_bytes()
}

#[tokio::test]
async fn wasmgate_and_modsecurity_agree_on_every_request_of_the_differential_corpus() {
    if !ModSecurity::available() {
        assert!(
            std::env::var_os("WASMGATE_REQUIRE_MODSECURITY").is_none(),
            "WASMGATE_REQUIRE_MODSECURITY is set but nginx + ModSecurity + CRS are missing"
        );
        eprintln!("skipped: nginx + ModSecurity + CRS are not installed");
        return;
    }
    let cases = load_corpus(corpus_path("crs-differential.jsonl"));
    let known: Differences =
        toml::from_str(&std::fs::read_to_string(corpus_path("crs-differences.toml")).unwrap())
            .unwrap();
    let mut listed: BTreeMap<(String, u8), String> = BTreeMap::new();
    for d in &known.difference {
        assert!(
            cases.iter().any(|c| c.id == d.id),
            "crs-differences.toml lists `{}`, which is not in the corpus",
            d.id
        );
        for &paranoia in &d.paranoia {
            listed.insert((d.id.clone(), paranoia), d.reason.clone());
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.conf");
    std::fs::write(&base, BASE_RULES).unwrap();
    let up = Upstream::echo().await;
    let gw = Gateway::start(&gateway_config(up.addr, &base)).await;
    let port = gw.addr().port();

    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    let mut agreed = 0;
    for paranoia in PARANOIA {
        let modsec = ModSecurity::start(&ModSecOptions {
            paranoia,
            ..Default::default()
        })
        .await;
        let mut ours = Vec::new();
        for case in &cases {
            let head = case.method.eq_ignore_ascii_case("HEAD");
            let response = exchange_bytes(port, &wire(case, paranoia), head).await;
            let status = response_status(&response);
            let request_id = response_header(&response, "x-request-id");
            ours.push((status, request_id));
        }
        // The audit lines are read from the gateway's stderr in the background: a last,
        // surely blocked request's line marks that every earlier one has been read.
        let sentinel = format!(
            "GET /?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E HTTP/1.1\r\nHost: localhost\r\n\
             X-Differential-Paranoia: {paranoia}\r\nConnection: close\r\n\r\n"
        );
        let response = exchange_bytes(port, sentinel.as_bytes(), false).await;
        let sentinel_id = response_header(&response, "x-request-id").expect("a request id");
        assert!(
            gw.find_log(|l| l["message"]
                .as_str()
                .is_some_and(|m| m.contains(&sentinel_id)))
                .is_some(),
            "no audit line for the sentinel request"
        );
        let logs = gw.logs();
        let audit: BTreeMap<String, Vec<u32>> = logs
            .iter()
            .filter(|l| l["plugin"] == "waf")
            .filter_map(|l| {
                let message = l["message"].as_str()?;
                let id = message.split("request_id=").nth(1)?.split(' ').next()?;
                Some((id.to_owned(), audit_rules(message)))
            })
            .collect();
        for (case, (status, request_id)) in cases.iter().zip(ours) {
            let head = case.method.eq_ignore_ascii_case("HEAD");
            let reference = modsec.send_raw(&wire(case, paranoia), head).await;
            let theirs = Seen {
                blocked: reference.blocked(),
                rules: detections(reference.rules.iter().copied()),
            };
            let rules = request_id
                .and_then(|id| audit.get(&id).cloned())
                .unwrap_or_default();
            let mine = Seen {
                blocked: !(200..300).contains(&status),
                rules: detections(rules),
            };
            let key = (case.id.clone(), paranoia);
            match (mine == theirs, listed.contains_key(&key)) {
                (true, false) => agreed += 1,
                (true, true) => stale.push(format!("{} at paranoia {paranoia}", case.id)),
                (false, true) => {}
                (false, false) => unexpected.push(format!(
                    "{} at paranoia {paranoia} ({} {}): wasmgate {} {:?} (status {status}), \
                     ModSecurity {} {:?} (status {})",
                    case.id,
                    case.method,
                    case.target,
                    if mine.blocked { "blocks" } else { "passes" },
                    mine.rules,
                    if theirs.blocked { "blocks" } else { "passes" },
                    theirs.rules,
                    reference.status,
                )),
            }
        }
    }
    println!(
        "{agreed} of {} (request, paranoia) pairs agree; {} listed differences",
        cases.len() * PARANOIA.len(),
        listed.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} requests on which wasmgate and ModSecurity differ (fix the engine or list them \
         with their reason in tests/waf/crs-differences.toml):\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "listed in tests/waf/crs-differences.toml but agreeing now (remove them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn audit_lines_give_their_rule_ids() {
    let line = r#"waf blocked by 949110: request_id=ab score=10 rules=[942100 "SQL Injection, via libinjection" at ARGS:id, 949110 "Inbound Anomaly Score Exceeded (Total Score: 10)" at TX:anomaly_score]"#;
    assert_eq!(audit_rules(line), [942100, 949110]);
    assert_eq!(
        audit_rules("waf below threshold: request_id=x score=0 rules=[]"),
        [] as [u32; 0]
    );
}
