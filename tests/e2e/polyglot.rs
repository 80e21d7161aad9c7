//! Plugins written in Python, JavaScript and C, built by `scripts/build-examples.sh` from
//! `plugins/{python,js,c}/`, doing their jobs through the gateway.

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::support::*;

fn gateway_config(
    upstream: SocketAddr,
    plugin: &str,
    module: &str,
    extra: &str,
    config: &str,
) -> String {
    format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{upstream}"]
[plugins.{plugin}]
module = "{module}"
{extra}
[[routes]]
name = "r"
upstream = "up"
plugins = [{{ use = "{plugin}", config = {config} }}]
"#
    )
}

/// A route running example plugin `name` (no grants) with `config`.
fn example_config(upstream: SocketAddr, name: &str, config: &str) -> String {
    gateway_config(upstream, name, &example(name), "", config)
}

/// Each config is refused with a message containing the expected text.
async fn assert_config_errors(name: &str, cases: &[(&str, &str)]) {
    let up = Upstream::echo().await;
    for (config, expected) in cases {
        let refused = Gateway::refused(&example_config(up.addr, name, config)).await;
        assert!(refused.contains(expected), "{config}: {refused}");
    }
}

// ---- Python: request-signer -------------------------------------------------------------------

const SECRET: &str = "correct-horse-battery-staple";

/// An upstream that checks the gateway's signature the way a real service would, and answers
/// 200 `valid` or 401 with the reason.
async fn verifying_upstream() -> Upstream {
    Upstream::raw(|parts, body| {
        let verdict = verify_signature(parts, body);
        let (status, text) = match verdict {
            Ok(()) => (200, "valid".to_string()),
            Err(why) => (401, why),
        };
        http::Response::builder()
            .status(status)
            .body(bytes::Bytes::from(text))
            .unwrap()
    })
    .await
}

fn verify_signature(parts: &http::request::Parts, body: &[u8]) -> Result<(), String> {
    let header = parts
        .headers
        .get("x-signature")
        .ok_or("no x-signature")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let fields: HashMap<&str, &str> = header
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    if fields.get("keyId") != Some(&"gw-1") {
        return Err(format!("unexpected key id in {header}"));
    }
    let ts: u64 = fields["ts"].parse().map_err(|_| "bad ts")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(ts) > 60 {
        return Err(format!("stale timestamp {ts}"));
    }
    let mut canonical = format!(
        "{}\n{}\n{}\n{}\n",
        parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        ts
    );
    for name in fields["headers"].split(' ') {
        let value = parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("");
        canonical.push_str(&format!("{name}:{value}\n"));
    }
    canonical.push_str(&hex(&Sha256::digest(body)));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(canonical.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if fields["sig"] != expected {
        return Err(format!("signature mismatch for {canonical:?}"));
    }
    Ok(())
}

fn signer_config(upstream: SocketAddr, config: &str) -> String {
    gateway_config(
        upstream,
        "request-signer",
        &example("request-signer"),
        r#"grants = ["clock"]"#,
        config,
    )
}

#[tokio::test]
async fn python_signer_signs_method_path_query_headers_and_body() {
    let up = verifying_upstream().await;
    let gw = Gateway::start(&signer_config(
        up.addr,
        &format!(r#"{{ key_id = "gw-1", secret = "{SECRET}", signed_headers = ["host", "content-type"] }}"#),
    ))
    .await;
    let c = client();
    let resp = c
        .post(gw.url("/orders?region=eu&x=%20y"))
        .header("content-type", "application/json")
        .header("x-signature", "keyId=\"gw-1\",sig=\"forged-by-the-client\"")
        .body(r#"{"sku":"A-1","qty":2}"#)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(resp.text().await.unwrap(), "valid");
    assert_eq!(status, 200);

    // The same instance signs every request afresh: a GET without a body verifies too.
    let resp = c.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "valid");
}

#[tokio::test]
async fn python_signer_config_errors_name_the_key() {
    let up = Upstream::echo().await;
    let refused = Gateway::refused(&signer_config(up.addr, r#"{ secret = "too-short" }"#)).await;
    assert!(
        refused.contains("plugin `request-signer`: invalid config key `secret`: required: a string of at least 16 bytes"),
        "{refused}"
    );
    let refused = Gateway::refused(&signer_config(
        up.addr,
        &format!(r#"{{ secret = "{SECRET}", signed_headers = ["host", "bad header"] }}"#),
    ))
    .await;
    assert!(
        refused.contains(
            "invalid config key `signed_headers[1]`: 'bad header' is not a valid header name"
        ),
        "{refused}"
    );
}

#[tokio::test]
async fn python_signer_needs_the_clock_grant() {
    let up = Upstream::echo().await;
    let config = example_config(
        up.addr,
        "request-signer",
        &format!(r#"{{ secret = "{SECRET}" }}"#),
    );
    let refused = Gateway::refused(&config).await;
    assert!(
        refused.contains("imports `wasmgate:plugin/clock@0.1.2`, which is not granted: add \"clock\" to the plugin's `grants`"),
        "{refused}"
    );
}

// ---- JavaScript: ab-router --------------------------------------------------------------------

const SPLIT: &str = r#"{ key_header = "x-user-id", variants = [{ name = "stable", weight = 80 }, { name = "canary", weight = 20, path_prefix = "/canary" }] }"#;

#[tokio::test]
async fn js_ab_router_splits_by_weight_and_sticks_per_user() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&example_config(up.addr, "ab-router", SPLIT)).await;
    let c = client();
    let mut canary = 0;
    for user in 0..200 {
        let resp = c
            .get(gw.url("/items/7"))
            .header("x-user-id", format!("user-{user}"))
            .send()
            .await
            .unwrap();
        let variant = resp.headers()["x-variant"].to_str().unwrap().to_owned();
        let echo = json(resp).await;
        assert_eq!(seen_header(&echo, "x-variant"), Some(variant.as_str()));
        match variant.as_str() {
            "canary" => {
                canary += 1;
                assert_eq!(
                    echo["uri"], "/canary/items/7",
                    "canary requests get the prefix"
                );
            }
            "stable" => assert_eq!(echo["uri"], "/items/7"),
            other => panic!("unexpected variant {other}"),
        }
    }
    // 20 % of 200 is 40; FNV-1a over distinct ids stays well within these bounds.
    assert!((20..=60).contains(&canary), "canary got {canary} of 200");

    // Stickiness: a user always lands in the same variant.
    for user in ["alice", "bob", "carol"] {
        let first = variant_of(&c, &gw, &[("x-user-id", user)]).await;
        for _ in 0..5 {
            assert_eq!(variant_of(&c, &gw, &[("x-user-id", user)]).await, first);
        }
    }
}

async fn variant_of(c: &reqwest::Client, gw: &Gateway, headers: &[(&str, &str)]) -> String {
    let mut req = c.get(gw.url("/"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["x-variant"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn js_ab_router_remembers_anonymous_visitors_in_a_cookie() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&example_config(up.addr, "ab-router", SPLIT)).await;
    let c = client();
    let resp = c.get(gw.url("/")).send().await.unwrap();
    let variant = resp.headers()["x-variant"].to_str().unwrap().to_owned();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert_eq!(
        cookie,
        format!("wg-variant={variant}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax")
    );
    // Coming back with the cookie keeps the variant, and no new cookie is set.
    for forced in ["stable", "canary"] {
        let resp = c
            .get(gw.url("/"))
            .header("cookie", format!("theme=dark; wg-variant={forced}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-variant"], forced);
        assert!(resp.headers().get("set-cookie").is_none());
    }
    // A cookie naming no variant is ignored and replaced.
    let resp = c
        .get(gw.url("/"))
        .header("cookie", "wg-variant=nonsense")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("set-cookie").is_some());
}

#[tokio::test]
async fn js_ab_router_config_errors_name_the_key() {
    assert_config_errors(
        "ab-router",
        &[
        (
            r#"{ variants = [{ name = "a", weight = 0 }] }"#,
            "invalid config key `variants`: at least one variant needs a weight above 0",
        ),
        (
            r#"{ variants = [{ name = "a", weight = 1, path_prefix = "canary/" }] }"#,
            "invalid config key `variants[0].path_prefix`: expected a path such as `/canary` (no trailing `/`)",
        ),
        (
            r#"{ variants = [{ name = "a", weight = 1 }], colour = "blue" }"#,
            "invalid config key `colour`: unknown key; expected one of variants, key_header, cookie, header, salt",
        ),
        ],
    )
    .await;
}

// ---- C: ip-allowlist --------------------------------------------------------------------------

async fn allowlist_status(config: &str) -> (u16, String, usize) {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&example_config(up.addr, "ip-allowlist", config)).await;
    let resp = client().get(gw.url("/")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap(), up.hits())
}

#[tokio::test]
async fn c_allowlist_admits_clients_in_range() {
    let (status, _, hits) =
        allowlist_status(r#"{ allow = ["10.0.0.0/8", "127.0.0.0/8", "::1"] }"#).await;
    assert_eq!((status, hits), (200, 1));
}

#[tokio::test]
async fn c_allowlist_refuses_clients_out_of_range_with_a_problem_document() {
    let (status, body, hits) =
        allowlist_status(r#"{ allow = ["10.0.0.0/8", "2001:db8::/32"] }"#).await;
    assert_eq!((status, hits), (403, 0));
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["title"], "Forbidden");
    assert_eq!(
        problem["detail"],
        "requests from this address are not allowed"
    );
}

#[tokio::test]
async fn c_allowlist_deny_wins_over_allow() {
    let (status, _, hits) =
        allowlist_status(r#"{ allow = ["127.0.0.0/8"], deny = ["127.0.0.1"] }"#).await;
    assert_eq!((status, hits), (403, 0));
}

#[tokio::test]
async fn c_allowlist_config_errors_name_the_entry() {
    assert_config_errors(
        "ip-allowlist",
        &[
        (
            r#"{ allow = ["10.0.0.0/8", "300.1.1.1/8"] }"#,
            "invalid config key `allow[1]`: `300.1.1.1/8` is not an IP address or CIDR range",
        ),
        (
            r#"{ allow = ["10.0.0.1/8"] }"#,
            "invalid config key `allow[0]`: `10.0.0.1/8` has bits set beyond its /8 prefix",
        ),
        (
            r#"{ deny = ["2001:db8::/129"] }"#,
            "invalid config key `deny[0]`: `2001:db8::/129`: the prefix length must be 0 to 128",
        ),
        (
            r#"{}"#,
            "nothing to check: give `allow` and/or `deny` ranges",
        ),
        ],
    )
    .await;
}
