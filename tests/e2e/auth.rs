//! Authentication plugins: `jwt-auth` (tokens signed here with HS/RS/ES/EdDSA keys) and
//! `api-key`, alone and combined, with the exact status and challenge a client sees.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::*;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const OTHER_SECRET: &str = "another-secret-of-at-least-32-bytes!";
const ISSUER: &str = "https://issuer.test";
// sha256("alice-key")
const ALICE_KEY: &str = "alice-key";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({ "sub": "user-42", "iss": ISSUER, "aud": "api", "exp": now() + 600, "email": "u42@example.test", "scope": "read write" })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn rs(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(fixture("rsa-test-private.pem").as_bytes()).unwrap();
    sign(Algorithm::RS256, Some("rsa1"), claims, &key)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Keys {
    es_private: String,
    es_public: String,
    ed_private: String,
    ed_jwks: String,
}

fn keys() -> Keys {
    let es = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_jwks = json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "ed1", "use": "sig", "x": b64(ed.public_key_raw()) }] });
    Keys {
        es_private: es.serialize_pem(),
        es_public: es.public_key_pem(),
        ed_private: ed.serialize_pem(),
        ed_jwks: ed_jwks.to_string(),
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

async fn auth_gateway(up: &Upstream, keys: &Keys) -> Gateway {
    let alice_hash = hex(&{
        use sha2::Digest;
        sha2::Sha256::digest(ALICE_KEY.as_bytes())
    });
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]
[plugins.jwt]
module = "builtin:jwt-auth"
grants = ["jwt", "http", "state"]
[plugins.key]
module = "builtin:api-key"

[[routes]]
name = "hs"
match = {{ path_prefix = "/hs" }}
upstream = "up"
plugins = [{{ use = "jwt", config = {{ algorithms = ["HS256"], secrets = [{{ value = "{SECRET}" }}], issuers = ["{ISSUER}"], audiences = ["api"], leeway = 5, query = "access_token", claims_to_headers = {{ email = "x-jwt-claim-email" }} }} }}]

[[routes]]
name = "rs"
match = {{ path_prefix = "/rs" }}
upstream = "up"
plugins = [{{ use = "jwt", config = {{ algorithms = ["RS256", "HS256"], public_keys = [{{ pem = {rsa}, kid = "rsa1" }}], scopes = ["read"] }} }}]

[[routes]]
name = "es"
match = {{ path_prefix = "/es" }}
upstream = "up"
plugins = [{{ use = "jwt", config = {{ algorithms = ["ES256"], public_keys = [{{ pem = {es} }}] }} }}]

[[routes]]
name = "ed"
match = {{ path_prefix = "/ed" }}
upstream = "up"
plugins = [{{ use = "jwt", config = {{ algorithms = ["EdDSA"], jwks = {jwks} }} }}]

[[routes]]
name = "key"
match = {{ path_prefix = "/key" }}
upstream = "up"
plugins = [{{ use = "key", config = {{ keys = [{{ consumer = "alice", sha256 = "{alice_hash}" }}] }} }}]

[[routes]]
name = "either"
match = {{ path_prefix = "/either" }}
upstream = "up"
plugins = [
  {{ use = "jwt", config = {{ algorithms = ["HS256"], secrets = [{{ value = "{SECRET}" }}], on_missing = "continue" }} }},
  {{ use = "key", config = {{ keys = [{{ consumer = "alice", sha256 = "{alice_hash}" }}] }} }},
]
"#,
        up = up.addr,
        rsa = toml_string(&fixture("rsa-test-public.pem")),
        es = toml_string(&keys.es_public),
        jwks = toml_string(&keys.ed_jwks),
    ))
    .await
}

async fn get(gw: &Gateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .get(gw.url(path))
        .header("x-consumer-id", "spoofed-admin");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.send().await.unwrap()
}

/// Asserts a 401 with `error="invalid_token"` and the given description.
async fn assert_invalid(resp: reqwest::Response, description: &str) {
    assert_eq!(resp.status(), 401, "{description}");
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{description}\""
        )
    );
    let body = json(resp).await;
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn a_valid_token_passes_and_its_claims_reach_the_upstream() {
    let up = Upstream::echo().await;
    let gw = auth_gateway(&up, &keys()).await;
    let resp = get(&gw, "/hs", Some(&hs(&claims()))).await;
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    assert_eq!(
        echo["headers"]["x-consumer-id"],
        json!(["user-42"]),
        "spoofed header replaced"
    );
    assert_eq!(
        seen_header(&echo, "x-jwt-claim-email"),
        Some("u42@example.test")
    );
}

#[tokio::test]
async fn each_kind_of_bad_token_gets_401_with_the_reason() {
    let up = Upstream::echo().await;
    let gw = auth_gateway(&up, &keys()).await;
    let t = now();
    let cases = [
        (
            hs(&with(claims(), "exp", json!(t - 60))),
            "the token has expired",
        ),
        (
            hs(&with(claims(), "nbf", json!(t + 600))),
            "the token is not valid yet",
        ),
        (
            hs(&with(claims(), "iss", json!("https://evil.test"))),
            "the token has the wrong issuer",
        ),
        (
            hs(&with(claims(), "aud", json!("other-api"))),
            "the token has the wrong audience",
        ),
        (
            sign(
                Algorithm::HS256,
                None,
                &claims(),
                &EncodingKey::from_secret(OTHER_SECRET.as_bytes()),
            ),
            "the signature is invalid",
        ),
    ];
    for (token, description) in cases {
        assert_invalid(get(&gw, "/hs", Some(&token)).await, description).await;
    }

    // A payload edited after signing.
    let token = hs(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64(with(claims(), "sub", json!("admin")).to_string().as_bytes());
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_invalid(
        get(&gw, "/hs", Some(&tampered)).await,
        "the signature is invalid",
    )
    .await;

    // `alg: none`, unsigned.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims().to_string().as_bytes())
    );
    assert_invalid(get(&gw, "/hs", Some(&none)).await, "the token is malformed").await;

    // The route names issuers and audiences: a token that leaves either claim out is refused,
    // not waved through.
    let mut no_iss = claims();
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_invalid(
        get(&gw, "/hs", Some(&hs(&no_iss))).await,
        "the token lacks the \\\"iss\\\" claim",
    )
    .await;
    let mut no_aud = claims();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_invalid(
        get(&gw, "/hs", Some(&hs(&no_aud))).await,
        "the token lacks the \\\"aud\\\" claim",
    )
    .await;

    // Correctly signed, but its header marks an extension critical (RFC 7515 §4.1.11): the
    // gateway understands none, so it must refuse the token.
    let signing_input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT","crit":["b64"],"b64":false}"#),
        b64(claims().to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    let critical = format!("{signing_input}.{signature}");
    assert_invalid(
        get(&gw, "/hs", Some(&critical)).await,
        "the token is malformed",
    )
    .await;

    // Malformed tokens of every shape.
    // (An empty token is no token: see missing_scope_is_403_and_missing_token_is_a_bare_challenge.)
    for token in ["abc", "a.b.c", "!!!.???.***", &"A".repeat(20_000)] {
        assert_invalid(get(&gw, "/hs", Some(token)).await, "the token is malformed").await;
    }
}

#[tokio::test]
async fn an_rsa_public_key_can_never_be_used_as_an_hmac_secret() {
    let up = Upstream::echo().await;
    let gw = auth_gateway(&up, &keys()).await;
    // The classic confusion attack: HS256 "signed" with the RSA public key's PEM text.
    let public_pem = fixture("rsa-test-public.pem");
    let forged = sign(
        Algorithm::HS256,
        Some("rsa1"),
        &claims(),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    );
    assert_invalid(
        get(&gw, "/rs", Some(&forged)).await,
        "the signing key \\\"rsa1\\\" is unknown",
    )
    .await;
    let forged = sign(
        Algorithm::HS256,
        None,
        &claims(),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    );
    assert_invalid(
        get(&gw, "/rs", Some(&forged)).await,
        "no key can verify this token",
    )
    .await;
    // The same algorithm on a route that does not list it.
    assert_invalid(
        get(&gw, "/es", Some(&hs(&claims()))).await,
        "the signing algorithm HS256 is not accepted",
    )
    .await;
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_and_unknown_kids_do_not() {
    let up = Upstream::echo().await;
    let keys = keys();
    let gw = auth_gateway(&up, &keys).await;
    assert_eq!(
        get(&gw, "/rs", Some(&rs(&claims()))).await.status(),
        200,
        "RS256"
    );
    let es = sign(
        Algorithm::ES256,
        None,
        &claims(),
        &EncodingKey::from_ec_pem(keys.es_private.as_bytes()).unwrap(),
    );
    assert_eq!(get(&gw, "/es", Some(&es)).await.status(), 200, "ES256");
    let ed_key = EncodingKey::from_ed_pem(keys.ed_private.as_bytes()).unwrap();
    let ed = sign(Algorithm::EdDSA, Some("ed1"), &claims(), &ed_key);
    assert_eq!(
        get(&gw, "/ed", Some(&ed)).await.status(),
        200,
        "EdDSA from a JWKS"
    );
    let unknown = sign(Algorithm::EdDSA, Some("ed2"), &claims(), &ed_key);
    assert_invalid(
        get(&gw, "/ed", Some(&unknown)).await,
        "the signing key \\\"ed2\\\" is unknown",
    )
    .await;
}

#[tokio::test]
async fn missing_scope_is_403_and_missing_token_is_a_bare_challenge() {
    let up = Upstream::echo().await;
    let gw = auth_gateway(&up, &keys()).await;
    let resp = get(
        &gw,
        "/rs",
        Some(&rs(&with(claims(), "scope", json!("write")))),
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"read\""
    );

    let resp = get(&gw, "/rs", None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"api\"");

    // A bare `Bearer` carries no token: the same answer as no header, as every plugin built on
    // the SDK's `auth::bearer_of` gives it.
    for bare in ["Bearer", "Bearer   ", "bearer"] {
        let resp = client()
            .get(gw.url("/rs"))
            .header("authorization", bare)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bare:?}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"api\"",
            "{bare:?}"
        );
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn two_different_tokens_in_one_request_are_refused() {
    let up = Upstream::echo().await;
    let gw = auth_gateway(&up, &keys()).await;
    let (a, b) = (
        hs(&claims()),
        hs(&with(claims(), "sub", json!("someone-else"))),
    );
    let resp = client()
        .get(gw.url(&format!("/hs?access_token={b}")))
        .header("authorization", format!("Bearer {a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"api\", error=\"invalid_request\", error_description=\"the request carries more than one token\""
    );
    // The same token twice is one token.
    let resp = client()
        .get(gw.url(&format!("/hs?access_token={a}")))
        .header("authorization", format!("Bearer {a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn api_keys_are_checked_and_the_consumer_header_cannot_be_spoofed() {
    let up = Upstream::echo().await;
    let gw = auth_gateway(&up, &keys()).await;
    let c = client();
    let resp = c
        .get(gw.url("/key"))
        .header("x-api-key", ALICE_KEY)
        .header("x-consumer-id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    assert_eq!(echo["headers"]["x-consumer-id"], json!(["alice"]));
    assert_eq!(
        seen_header(&echo, "x-api-key"),
        None,
        "the key is not forwarded"
    );

    let resp = c
        .get(gw.url("/key"))
        .header("x-api-key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "ApiKey realm=\"api\"");
    assert_eq!(json(resp).await["error"], "invalid_api_key");

    let resp = c
        .get(gw.url("/key"))
        .header("x-consumer-id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["error"], "missing_api_key");
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn either_a_token_or_an_api_key_authenticates() {
    let up = Upstream::echo().await;
    let gw = auth_gateway(&up, &keys()).await;
    let c = client();
    let by_token = get(&gw, "/either", Some(&hs(&claims()))).await;
    assert_eq!(
        json(by_token).await["headers"]["x-consumer-id"],
        json!(["user-42"])
    );
    let by_key = c
        .get(gw.url("/either"))
        .header("x-api-key", ALICE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(by_key).await["headers"]["x-consumer-id"],
        json!(["alice"])
    );
    assert_eq!(
        c.get(gw.url("/either")).send().await.unwrap().status(),
        401,
        "neither"
    );
    let bad_token = get(
        &gw,
        "/either",
        Some(&hs(&with(claims(), "exp", json!(now() - 60)))),
    )
    .await;
    assert_eq!(
        bad_token.status(),
        401,
        "an invalid token does not fall through to the API key"
    );
}

#[tokio::test]
async fn an_hmac_secret_shorter_than_the_hash_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.toml"),
        "[listeners.main]\naddr = \"127.0.0.1:0\"\n[plugins.jwt]\nmodule = \"builtin:jwt-auth\"\ngrants = [\"jwt\", \"http\", \"state\"]\n[[routes]]\nname = \"r\"\nplugins = [{ use = \"jwt\", config = { algorithms = [\"HS256\"], secrets = [{ value = \"short\" }] } }]\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check", "gw.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("route `r`, plugin `jwt`: invalid config key `secrets[0].value`: an HMAC secret needs at least 32 bytes (256 bits), got 5"),
        "{err}"
    );
}

/// An RFC 7662 endpoint: `good-*` tokens are active until a minute from now, `stale` is
/// inactive; anything without the right client credentials gets 401.
async fn introspection_server() -> Upstream {
    Upstream::custom(|parts, body| {
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("gateway:s3cret"));
        if parts.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return (401, json!({ "error": "invalid_client" }).to_string());
        }
        let form: std::collections::HashMap<String, String> = url_decoded(body);
        let token = form.get("token").cloned().unwrap_or_default();
        let answer = match token.as_str() {
            t if t.starts_with("good-") => {
                json!({ "active": true, "sub": t.trim_start_matches("good-"), "scope": "read", "exp": now() + 60 })
            }
            _ => json!({ "active": false }),
        };
        (200, answer.to_string())
    })
    .await
}

fn url_decoded(body: &[u8]) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.replace("%2B", "+")
                    .replace("%2F", "/")
                    .replace("%3D", "="),
            )
        })
        .collect()
}

async fn introspection_gateway(up: &Upstream, endpoint: std::net::SocketAddr) -> Gateway {
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]
[plugins.introspect]
module = "builtin:oauth2-introspection"
grants = ["http", "state", "clock"]
http_allow = ["{endpoint}"]
http_timeout = "500ms"
[[routes]]
name = "introspected"
upstream = "up"
plugins = [{{ use = "introspect", config = {{ endpoint = "http://{endpoint}/introspect", client_id = "gateway", client_secret = "s3cret", scopes = ["read"] }} }}]
"#,
        up = up.addr
    ))
    .await
}

#[tokio::test]
async fn introspection_accepts_active_tokens_refuses_inactive_ones_and_caches_both() {
    let up = Upstream::echo().await;
    let idp = introspection_server().await;
    let gw = introspection_gateway(&up, idp.addr).await;
    for _ in 0..5 {
        let resp = get(&gw, "/", Some("good-alice")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            json(resp).await["headers"]["x-consumer-id"],
            json!(["alice"])
        );
    }
    assert_eq!(idp.hits(), 1, "active result cached");
    for _ in 0..5 {
        assert_invalid(
            get(&gw, "/", Some("stale")).await,
            "the token is not active",
        )
        .await;
    }
    assert_eq!(idp.hits(), 2, "inactive result cached briefly");
    assert_eq!(get(&gw, "/", None).await.status(), 401);
    assert_eq!(up.hits(), 5);
}

#[tokio::test]
async fn introspection_fails_closed_with_503_when_the_endpoint_is_down() {
    let up = Upstream::echo().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = introspection_gateway(&up, dead).await;
    let resp = get(&gw, "/", Some("good-alice")).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(json(resp).await["error"], "temporarily_unavailable");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn a_jwks_url_is_fetched_once_and_a_rotated_key_is_picked_up() {
    let up = Upstream::echo().await;
    let k1 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let k2 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let jwk = |kid: &str, key: &rcgen::KeyPair| json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(key.public_key_raw()) });
    let document = std::sync::Arc::new(std::sync::Mutex::new(
        json!({ "keys": [jwk("k1", &k1)] }).to_string(),
    ));
    let served = document.clone();
    let jwks = Upstream::custom(move |_, _| (200, served.lock().unwrap().clone())).await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]
[plugins.jwt]
module = "builtin:jwt-auth"
grants = ["jwt", "http", "state"]
http_allow = ["{jwks}"]
[[routes]]
name = "remote"
upstream = "up"
plugins = [{{ use = "jwt", config = {{ algorithms = ["EdDSA"], jwks_url = "http://{jwks}/.well-known/jwks.json", jwks_refresh_interval = 0 }} }}]
"#,
        up = up.addr,
        jwks = jwks.addr
    ))
    .await;
    let token = |kid: &str, key: &rcgen::KeyPair| {
        sign(
            Algorithm::EdDSA,
            Some(kid),
            &claims(),
            &EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
    };
    for _ in 0..5 {
        assert_eq!(get(&gw, "/", Some(&token("k1", &k1))).await.status(), 200);
    }
    assert_eq!(jwks.hits(), 1, "one fetch for every instance");

    // The issuer rotates to k2: the first token naming it triggers a refetch.
    *document.lock().unwrap() = json!({ "keys": [jwk("k1", &k1), jwk("k2", &k2)] }).to_string();
    assert_eq!(
        get(&gw, "/", Some(&token("k2", &k2))).await.status(),
        200,
        "rotated key picked up"
    );
    assert_eq!(jwks.hits(), 2);
    // A key nobody published stays unknown.
    let k3 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    assert_invalid(
        get(&gw, "/", Some(&token("k3", &k3))).await,
        "the signing key \\\"k3\\\" is unknown",
    )
    .await;
}

#[tokio::test]
async fn one_jwt_plugin_on_two_routes_keeps_each_routes_jwks_apart() {
    let up = Upstream::echo().await;
    // Two issuers, each with its own key published under the same `kid`.
    let key_a = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let key_b = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let jwks = |key: &rcgen::KeyPair| {
        json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": b64(key.public_key_raw()) }] })
            .to_string()
    };
    let (doc_a, doc_b) = (jwks(&key_a), jwks(&key_b));
    let issuer_a = Upstream::custom(move |_, _| (200, doc_a.clone())).await;
    let issuer_b = Upstream::custom(move |_, _| (200, doc_b.clone())).await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]
[plugins.jwt]
module = "builtin:jwt-auth"
grants = ["jwt", "http", "state"]
http_allow = ["{a}", "{b}"]
[[routes]]
name = "a"
match = {{ path_prefix = "/a" }}
upstream = "up"
plugins = [{{ use = "jwt", config = {{ algorithms = ["EdDSA"], jwks_url = "http://{a}/jwks.json" }} }}]
[[routes]]
name = "b"
match = {{ path_prefix = "/b" }}
upstream = "up"
plugins = [{{ use = "jwt", config = {{ algorithms = ["EdDSA"], jwks_url = "http://{b}/jwks.json" }} }}]
"#,
        up = up.addr,
        a = issuer_a.addr,
        b = issuer_b.addr,
    ))
    .await;
    let token = |key: &rcgen::KeyPair| {
        sign(
            Algorithm::EdDSA,
            Some("k1"),
            &claims(),
            &EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
    };
    let (token_a, token_b) = (token(&key_a), token(&key_b));
    assert_eq!(get(&gw, "/a", Some(&token_a)).await.status(), 200);
    assert_eq!(get(&gw, "/b", Some(&token_b)).await.status(), 200);
    assert_eq!(
        get(&gw, "/b", Some(&token_a)).await.status(),
        401,
        "route a's issuer cannot sign for route b"
    );
    assert_eq!(get(&gw, "/a", Some(&token_b)).await.status(), 401);
    assert_eq!(
        issuer_a.hits(),
        1,
        "each route fetched its own issuer's keys"
    );
    assert_eq!(issuer_b.hits(), 1);
}

#[tokio::test]
async fn an_auth_plugin_that_fails_open_is_refused_unless_fail_open_says_so() {
    let up = Upstream::echo().await;
    let config = |extra: &str| {
        format!(
            r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{up}"]
[plugins.key]
module = "builtin:api-key"
on_error = "skip"
{extra}
[[routes]]
name = "key"
upstream = "up"
plugins = [{{ use = "key", config = {{ keys = [{{ consumer = "alice", sha256 = "{hash}" }}] }} }}]
"#,
            up = up.addr,
            hash = hex(&{
                use sha2::Digest;
                sha2::Sha256::digest(ALICE_KEY.as_bytes())
            }),
        )
    };
    let refused = Gateway::refused(&config("")).await;
    assert!(
        refused.contains(
            "plugin `key` authenticates requests and has on_error = \"skip\": whenever it faults (a trap, a timeout, no free instance) requests would pass unauthenticated. Use on_error = \"fail\", or add fail_open = true to [plugins.key] to accept that"
        ),
        "{refused}"
    );

    // Said explicitly, it runs; `check` still warns about it.
    let accepted = config("fail_open = true");
    let gw = Gateway::start(&accepted).await;
    assert_eq!(get(&gw, "/", None).await.status(), 401);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), &accepted).unwrap();
    let (code, stdout, stderr) = run_cli(&["check", "gateway.toml"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "gateway.toml: ok (1 routes)\n");
    assert_eq!(
        stderr,
        "warning: plugin `key` has fail_open = true: when it faults (a trap, a timeout, no free instance) requests pass without authentication\n"
    );
}
