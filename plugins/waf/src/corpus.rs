//! The attack and benign corpora (`tests/waf/*.jsonl`) run through the engine directly, per
//! paranoia level. The end-to-end test sends the same corpora through the gateway; this one
//! is fast enough to run while changing rules and prints what each level misses.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::Engine;
use crate::inspect::{Inspected, inspect};

struct CorpusRequest {
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Inspected for CorpusRequest {
    fn path(&self) -> String {
        self.path.clone()
    }
    fn query(&self) -> Option<String> {
        self.query.clone()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
    fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.headers.iter().map(|(n, _)| n.clone()).collect();
        names.dedup();
        names
    }
    fn body(&self) -> Option<Vec<u8>> {
        self.body.clone()
    }
}

fn load(name: &str) -> Vec<(String, String, CorpusRequest)> {
    let path = format!("{}/../../tests/waf/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("corpus line");
            let target = row["target"].as_str().expect("target");
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                None => (target.to_owned(), None),
            };
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
            let body = row["body"].as_str().map(|b| b.as_bytes().to_vec());
            if let Some(body) = &body {
                headers.push(("content-length".into(), body.len().to_string()));
            }
            headers.sort_by(|a, b| a.0.cmp(&b.0));
            let id = row["id"].as_str().unwrap().to_owned();
            let category = row["category"].as_str().unwrap().to_owned();
            (
                id,
                category,
                CorpusRequest {
                    path,
                    query,
                    headers,
                    body,
                },
            )
        })
        .collect()
}

fn engine(paranoia: u8) -> Engine {
    Engine::new(paranoia, Vec::new(), Vec::new()).expect("rules compile")
}

#[test]
fn attack_and_benign_corpora_meet_the_detection_floors() {
    let attacks = load("attacks.jsonl");
    let benign = load("benign.jsonl");
    for paranoia in 1..=4 {
        let engine = engine(paranoia);
        let mut per_category: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut missed = Vec::new();
        for (id, category, req) in &attacks {
            let score: u32 = inspect(&engine, req).iter().map(|f| f.score).sum();
            let entry = per_category.entry(category).or_default();
            entry.1 += 1;
            if score >= 5 {
                entry.0 += 1;
            } else {
                missed.push(id.as_str());
            }
        }
        let mut false_positives = Vec::new();
        for (id, _, req) in &benign {
            let findings = inspect(&engine, req);
            if findings.iter().map(|f| f.score).sum::<u32>() >= 5 {
                false_positives.push(format!("{id} {findings:?}"));
            }
        }
        let blocked: usize = per_category.values().map(|(b, _)| b).sum();
        println!(
            "paranoia {paranoia}: attacks blocked {blocked}/{} ({:.1} %), benign blocked {}/{} ({:.1} %)",
            attacks.len(),
            100.0 * blocked as f64 / attacks.len() as f64,
            false_positives.len(),
            benign.len(),
            100.0 * false_positives.len() as f64 / benign.len() as f64,
        );
        for (category, (b, n)) in &per_category {
            println!(
                "  {category:<9} {b:>3}/{n:<3} {:.1} %",
                100.0 * *b as f64 / *n as f64
            );
        }
        if paranoia == 1 {
            println!("  missed: {}", missed.join(" "));
            for fp in &false_positives {
                println!("  false positive: {fp}");
            }
            assert!(
                blocked * 100 >= attacks.len() * 90,
                "paranoia 1 must block ≥ 90 % of attacks"
            );
            assert!(
                false_positives.len() * 100 <= benign.len(),
                "paranoia 1 must block ≤ 1 % of benign requests"
            );
        }
    }
}

#[test]
fn held_out_benign_corpus_stays_under_one_percent_at_paranoia_1() {
    let engine = engine(1);
    let benign = load("holdout-benign.jsonl");
    let mut false_positives = 0;
    for (id, _, req) in &benign {
        let findings = inspect(&engine, req);
        if findings.iter().map(|f| f.score).sum::<u32>() >= 5 {
            println!("held-out false positive: {id} {findings:?}");
            false_positives += 1;
        }
    }
    assert!(
        false_positives * 100 <= benign.len(),
        "{false_positives} held-out false positives"
    );
}

#[test]
fn escaped_json_still_reaches_the_rules() {
    let engine = engine(1);
    let request = |body: &str| CorpusRequest {
        path: "/api/comments".into(),
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(body.as_bytes().to_vec()),
    };
    for attack in [
        r#"{"c": "\u003cscript\u003ealert(1)\u003c/script\u003e"}"#,
        r#"{"c": "x\u0027 OR \u00271\u0027=\u00271"}"#,
        r#"{"c": "1 UN/**/ION SEL/**/ECT password FROM users"}"#,
        r#"{"c": "..\\..\\..\\windows\\win.ini"}"#,
        r#"{"c": "a;c'a't /e't'c/pa's's'wd"}"#,
        // Duplicate keys: an upstream may read the first.
        r#"{"q": "x' or 'a'='a", "q": "ok"}"#,
        // An entity spelt with JSON escapes.
        r#"{"c": "&\u006ct;script&\u0067t;alert(1)&\u006ct;/script&\u0067t;"}"#,
        // Non-ASCII whitespace between SQL words.
        r#"{"q": "x'\u00a0or\u00a0'a'='a"}"#,
        "{\"q\": \"0 union\u{a0}select 1,2\"}",
        // A line feed in a key.
        r#"{"a\nb": 1}"#,
    ] {
        assert!(!inspect(&engine, &request(attack)).is_empty(), "{attack}");
    }
    let benign = r#"{"c": "Don't forget: \"quotes\" & a line\nbreak; it's fine"}"#;
    assert!(inspect(&engine, &request(benign)).is_empty());
    assert!(
        crate::inspect::json_haystack(benign.as_bytes()).is_some(),
        "takes the fast path"
    );
}

#[test]
fn deeply_nested_json_is_refused() {
    let body = format!("{}1{}", "[".repeat(3000), "]".repeat(3000));
    let req = CorpusRequest {
        path: "/api/data".into(),
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(body.into_bytes()),
    };
    let findings = inspect(&engine(1), &req);
    assert!(findings.iter().any(|f| f.rule == 920190), "{findings:?}");
}

#[test]
fn the_json_fast_path_blocks_exactly_what_the_value_scan_blocks() {
    let engine = engine(1);
    let blocked =
        |req: &CorpusRequest| inspect(&engine, req).iter().map(|f| f.score).sum::<u32>() >= 5;
    for file in [
        "attacks.jsonl",
        "benign.jsonl",
        "holdout-attacks.jsonl",
        "holdout-benign.jsonl",
    ] {
        for (id, _, req) in load(file) {
            let fast = blocked(&req);
            crate::inspect::SLOW_PATH_ONLY.set(true);
            let slow = blocked(&req);
            crate::inspect::SLOW_PATH_ONLY.set(false);
            assert_eq!(fast, slow, "{id}: fast path {fast}, value scan {slow}");
        }
    }
}
