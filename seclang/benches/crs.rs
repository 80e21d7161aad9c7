//! The engine's cost per request with the OWASP CRS (Debian's `modsecurity-crs`), natively:
//! a GET with a query string, and POSTs of 1 KB and 16 KB JSON, at paranoia 1 to 4.
//!
//! `cargo bench -p wasmgate-seclang --bench crs` (skips when the CRS is not installed).

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmgate_seclang::{Builder, Request, RuleSet};

const RULES: &str = "/usr/share/modsecurity-crs/rules";
const SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

fn crs(pl: u8) -> RuleSet {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let mut files: Vec<_> = std::fs::read_dir(RULES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    let mut b = Builder::new(&read);
    let setup = format!(
        "SecRuleEngine On\nSecRequestBodyAccess On\n\
         SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/json\" \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
         SecAction \"id:900000,phase:1,pass,nolog,setvar:tx.paranoia_level={pl}\"\n"
    );
    b.add("setup.conf", &setup).unwrap();
    b.add(SETUP, &read(SETUP).unwrap()).unwrap();
    for f in files {
        let name = f.to_str().unwrap();
        b.add(name, &read(name).unwrap()).unwrap();
    }
    b.build().unwrap()
}

/// A JSON document of about `size` bytes: user profiles with prose, as an API carries.
fn json_body(size: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        let item = format!(
            r#"{{"id":{i},"name":"Customer {i}","email":"customer{i}@example.com","tags":["retail","priority"],"bio":"Ships orders to the warehouse on Mondays and prefers email updates.","address":{{"city":"Lisbon","zip":"1000-{i:03}"}}}}"#
        );
        let len: usize = items.iter().map(|s: &String| s.len() + 1).sum::<usize>() + item.len();
        if len + 12 > size && !items.is_empty() {
            break;
        }
        items.push(item);
        i += 1;
    }
    format!(r#"{{"items":[{}]}}"#, items.join(",")).into_bytes()
}

fn request<'a>(method: &'a [u8], target: &'a [u8], body: Option<&'a [u8]>) -> Request<'a> {
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b"Host", b"localhost"),
        (
            b"User-Agent",
            b"Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
        ),
        (b"Accept", b"application/json"),
        (b"Origin", b"https://app.example.com"),
    ];
    if body.is_some() {
        headers.push((b"Content-Type", b"application/json"));
    }
    Request {
        method,
        target,
        protocol: b"HTTP/1.1",
        headers,
        body,
        remote_addr: "127.0.0.1",
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    if !Path::new(RULES).is_dir() {
        eprintln!("skipped: {RULES} is missing (apt-get install modsecurity-crs)");
        return;
    }
    let small = json_body(1024);
    let large = json_body(16 * 1024);
    let get = request(b"GET", b"/api/items?page=2&sort=name&q=running+shoes", None);
    let post1 = request(b"POST", b"/api/customers", Some(&small));
    let post16 = request(b"POST", b"/api/customers", Some(&large));
    for pl in 1..=4 {
        let set = crs(pl);
        for (name, req) in [
            ("GET query", &get),
            ("POST 1 KB JSON", &post1),
            ("POST 16 KB JSON", &post16),
        ] {
            let out = set.evaluate(req);
            assert!(
                out.intervention.is_none() || pl > 1,
                "{name}: {:?}",
                out.matched
            );
            c.bench_function(&format!("crs PL{pl} {name}"), |b| {
                b.iter(|| black_box(set.evaluate(black_box(req))))
            });
        }
    }
    c.bench_function("crs PL1 compile", |b| b.iter(|| black_box(crs(1))));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
