//! The OWASP Core Rule Set, as Debian's `modsecurity-crs` package installs it, loads
//! unchanged and scores requests as ModSecurity does.
//!
//! CI installs the package; elsewhere the tests say they were skipped.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use wasmgate_seclang::{Builder, Request, RuleSet};

const RULES: &str = "/usr/share/modsecurity-crs/rules";
const SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// The setup wasmgate's `waf` plugin writes before CRS, at paranoia `pl`.
fn setup(pl: u8) -> String {
    format!(
        "SecRuleEngine On\nSecRequestBodyAccess On\n\
         SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/json\" \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
         SecAction \"id:900000,phase:1,pass,nolog,setvar:tx.paranoia_level={pl}\"\n"
    )
}

fn crs(pl: u8) -> Option<RuleSet> {
    if !Path::new(RULES).is_dir() {
        eprintln!("skipped: {RULES} is missing (apt-get install modsecurity-crs)");
        return None;
    }
    let mut files: Vec<_> = std::fs::read_dir(RULES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    let source = |p: &str| read(p);
    let mut b = Builder::new(&source);
    b.add("setup.conf", &setup(pl)).unwrap();
    b.add(SETUP, &read(SETUP).unwrap()).unwrap();
    for f in files {
        let name = f.to_str().unwrap();
        if let Err(e) = b.add(name, &read(name).unwrap()) {
            panic!("{e}");
        }
    }
    Some(b.build().unwrap_or_else(|e| panic!("{e}")))
}

fn get(target: &str) -> Request<'_> {
    Request {
        method: b"GET",
        target: target.as_bytes(),
        protocol: b"HTTP/1.1",
        headers: vec![
            (b"Host", b"localhost"),
            (
                b"User-Agent",
                b"Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
            ),
            (b"Accept", b"application/json"),
        ],
        ..Default::default()
    }
}

#[test]
fn every_crs_file_loads_without_error() {
    let Some(set) = crs(1) else { return };
    assert!(set.len() > 500, "{} rules", set.len());
    for l in set.limitations() {
        eprintln!("limitation: {l}");
    }
}

#[test]
fn a_clean_request_passes_and_an_attack_is_denied_by_949110() {
    let Some(set) = crs(1) else { return };
    let clean = set.evaluate(&get("/api/items?page=2&sort=name"));
    assert!(clean.intervention.is_none(), "{:?}", clean.matched);
    let attack = set.evaluate(&get(
        "/api/items?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
    ));
    let i = attack.intervention.expect("blocked");
    assert_eq!((i.status, i.rule), (403, 949110));
    let ids: Vec<u32> = attack.matched.iter().map(|m| m.id).collect();
    assert!(ids.contains(&942100), "{ids:?}");
}

#[test]
fn json_bodies_are_parsed_into_arguments() {
    let Some(set) = crs(1) else { return };
    let body = br#"{"user":{"bio":"<script>alert(document.cookie)</script>"}}"#;
    let mut req = get("/api/users");
    req.method = b"POST";
    req.headers.push((b"Content-Type", b"application/json"));
    req.body = Some(body);
    let out = set.evaluate(&req);
    assert!(out.intervention.is_some(), "{:?}", out.matched);
    let xss = out.matched.iter().find(|m| m.id == 941100).expect("941100");
    assert_eq!(xss.target, "ARGS:json.user.bio");
}

#[test]
fn paranoia_levels_gate_rules() {
    let (Some(pl1), Some(pl4)) = (crs(1), crs(4)) else {
        return;
    };
    // A single quote in a parameter is a PL2+ signal (942432/942431 family), not PL1.
    let r = get("/search?q=it%27s%20a%20test%20--%20really");
    let a = pl1.evaluate(&r);
    let b = pl4.evaluate(&r);
    assert!(
        a.anomaly_score < b.anomaly_score,
        "{} vs {}",
        a.anomaly_score,
        b.anomaly_score
    );
}
