//! The attack and benign corpora (`tests/waf/*.jsonl`) run through the rule sets directly,
//! per paranoia level: the built-in set, and the OWASP CRS from Debian's `modsecurity-crs`
//! package with the shipped API defaults (skipped, with a message, where it is not
//! installed). The end-to-end tests send requests through the gateway; these are fast enough
//! to run while tuning and print what each level misses and which rule fired on a benign
//! request.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{Config, rule_set};

const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";
const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

struct Case {
    id: String,
    category: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn load(name: &str) -> Vec<Case> {
    let path = format!("{}/../../tests/waf/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("corpus line");
            let s = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
            let mut headers: Vec<(String, String)> = row["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
                headers.push(("host".into(), "api.example.com".into()));
            }
            let body = row["body"].as_str().map(|b| b.as_bytes().to_vec());
            if let Some(body) = &body {
                headers.push(("content-length".into(), body.len().to_string()));
            }
            Case {
                id: s("id"),
                category: s("category"),
                method: s("method"),
                target: s("target"),
                headers,
                body,
            }
        })
        .collect()
}

/// The CRS files as `config_files = { rules = [...] }` delivers them, or None.
fn crs_files() -> Option<Value> {
    let dir = std::fs::read_dir(CRS_RULES).ok()?;
    let mut paths: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".conf") || p.ends_with(".data"))
        .collect();
    paths.sort();
    paths.insert(0, CRS_SETUP.to_owned());
    let files: Vec<Value> = paths
        .iter()
        .map(|p| json!({ "path": p, "text": std::fs::read_to_string(p).unwrap() }))
        .collect();
    Some(Value::Array(files))
}

fn config(paranoia: u8, rules: Option<&Value>) -> Config {
    let mut c = json!({ "paranoia": paranoia });
    if let Some(r) = rules {
        c["rules"] = r.clone();
    }
    serde_json::from_value(c).expect("config")
}

fn evaluate(set: &wasmgate_seclang::RuleSet, case: &Case) -> wasmgate_seclang::Outcome {
    let req = wasmgate_seclang::Request {
        method: case.method.as_bytes(),
        target: case.target.as_bytes(),
        protocol: b"HTTP/1.1",
        headers: case
            .headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect(),
        body: case.body.as_deref(),
        remote_addr: "192.0.2.10",
        ..Default::default()
    };
    set.evaluate(&req)
}

/// (blocked, ids of the rules that matched).
fn verdict(set: &wasmgate_seclang::RuleSet, case: &Case) -> (bool, Vec<u32>) {
    let out = evaluate(set, case);
    (
        out.intervention.is_some(),
        out.matched.iter().map(|m| m.id).collect(),
    )
}

/// Runs both corpora; returns (attack block rate, benign block rate) in percent.
fn measure(
    label: &str,
    set: &wasmgate_seclang::RuleSet,
    attacks: &[Case],
    benign: &[Case],
    verbose: bool,
) -> (f64, f64) {
    let mut per_category: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    for case in attacks {
        let (blocked, _) = verdict(set, case);
        let e = per_category.entry(&case.category).or_default();
        e.1 += 1;
        if blocked {
            e.0 += 1;
        } else {
            missed.push(case.id.as_str());
        }
    }
    let mut fps = Vec::new();
    for case in benign {
        let (blocked, ids) = verdict(set, case);
        if blocked {
            fps.push(format!("{} {ids:?}", case.id));
        }
    }
    let blocked: usize = per_category.values().map(|(b, _)| b).sum();
    let attack_rate = 100.0 * blocked as f64 / attacks.len().max(1) as f64;
    let benign_rate = 100.0 * fps.len() as f64 / benign.len().max(1) as f64;
    println!(
        "{label}: attacks blocked {blocked}/{} ({attack_rate:.1} %), benign blocked {}/{} ({benign_rate:.1} %)",
        attacks.len(),
        fps.len(),
        benign.len()
    );
    for (category, (b, n)) in &per_category {
        println!(
            "  {category:<9} {b:>3}/{n:<3} {:.1} %",
            100.0 * *b as f64 / *n as f64
        );
    }
    if verbose {
        println!("  missed: {}", missed.join(" "));
        for fp in &fps {
            println!("  false positive: {fp}");
        }
    }
    (attack_rate, benign_rate)
}

#[test]
fn builtin_rules_meet_the_detection_floors() {
    let attacks = load("attacks.jsonl");
    let benign = load("benign.jsonl");
    for paranoia in 1..=4 {
        let set = rule_set(&config(paranoia, None)).expect("builtin rules compile");
        let (a, b) = measure(
            &format!("built-in, paranoia {paranoia}"),
            &set,
            &attacks,
            &benign,
            paranoia == 1,
        );
        if paranoia == 1 {
            assert!(
                a >= 80.0,
                "built-in rules at paranoia 1 must block ≥ 80 % of attacks, blocked {a:.1} %"
            );
            assert!(
                b <= 1.0,
                "built-in rules at paranoia 1 must block ≤ 1 % of benign requests, blocked {b:.1} %"
            );
        }
    }
}

#[test]
fn crs_with_api_defaults_blocks_no_more_benign_traffic_than_measured() {
    let Some(files) = crs_files() else {
        println!("skipped: {CRS_RULES} is missing (apt-get install modsecurity-crs)");
        return;
    };
    let mut benign = load("benign.jsonl");
    benign.extend(load("holdout-benign.jsonl"));
    let mut attacks = load("attacks.jsonl");
    attacks.extend(load("holdout-attacks.jsonl"));
    for paranoia in 1..=4 {
        let set = rule_set(&config(paranoia, Some(&files))).unwrap_or_else(|e| panic!("{e:?}"));
        let (_, b) = measure(
            &format!("CRS 3.3, paranoia {paranoia}"),
            &set,
            &attacks,
            &benign,
            paranoia == 1,
        );
        // The goal is ≤ 1 %; what remains (listed above, and in BENCHMARKS.md) is prose and
        // documentation that quotes shell commands and SQL. This pins today's level so it
        // can only improve.
        if paranoia == 1 {
            assert!(
                b <= 5.5,
                "CRS at paranoia 1 with the API defaults blocked {b:.1} % of benign requests"
            );
        }
    }
}

#[test]
fn literal_prefilters_never_change_an_outcome() {
    let Some(files) = crs_files() else {
        println!("skipped: {CRS_RULES} is missing (apt-get install modsecurity-crs)");
        return;
    };
    let mut cases = Vec::new();
    for name in [
        "attacks.jsonl",
        "benign.jsonl",
        "holdout-attacks.jsonl",
        "holdout-benign.jsonl",
        "crs-differential.jsonl",
    ] {
        cases.extend(load(name));
    }
    for paranoia in [1, 4] {
        let fast = rule_set(&config(paranoia, Some(&files))).unwrap_or_else(|e| panic!("{e:?}"));
        let mut plain =
            rule_set(&config(paranoia, Some(&files))).unwrap_or_else(|e| panic!("{e:?}"));
        plain.disable_prefilters();
        let (with, all) = fast.prefiltered();
        println!("paranoia {paranoia}: {with} of {all} @rx links have a literal prefilter");
        assert!(with * 2 > all, "{with} of {all}");
        for case in &cases {
            let (a, b) = (evaluate(&fast, case), evaluate(&plain, case));
            assert_eq!(a.matched, b.matched, "{} at paranoia {paranoia}", case.id);
            assert_eq!(a.intervention, b.intervention, "{}", case.id);
            assert_eq!(a.anomaly_score, b.anomaly_score, "{}", case.id);
        }
    }
}
