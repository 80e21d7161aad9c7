//! The `cors` plugin as a browser checks it.

use reqwest::Method;

use crate::support::*;

const APP: &str = "https://app.example.com";

async fn cors_gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{}"]
[plugins.cors]
module = "builtin:cors"

[[routes]]
name = "private"
match = {{ path_prefix = "/private" }}
upstream = "up"
plugins = [{{ use = "cors", config = {{ origins = ["{APP}", "https://*.partner.example"], credentials = true, methods = ["GET", "POST"], headers = ["content-type", "authorization"], expose_headers = ["x-request-id"], max_age = 300 }} }}]

[[routes]]
name = "public"
match = {{ path_prefix = "/public" }}
upstream = "up"
plugins = [{{ use = "cors", config = {{ origins = ["*"] }} }}]
"#,
        up.addr
    ))
    .await
}

fn preflight(c: &reqwest::Client, url: String, origin: &str) -> reqwest::RequestBuilder {
    c.request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_is_answered_by_the_gateway() {
    let up = Upstream::echo().await;
    let gw = cors_gateway(&up).await;
    let resp = preflight(&client(), gw.url("/private/orders"), APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type, authorization"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "300");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    assert_eq!(up.hits(), 0, "preflight never reaches the upstream");
}

#[tokio::test]
async fn preflight_from_a_disallowed_origin_gets_no_cors_headers() {
    let up = Upstream::echo().await;
    let gw = cors_gateway(&up).await;
    let resp = preflight(&client(), gw.url("/private/orders"), "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        resp.headers()
    );
}

#[tokio::test]
async fn actual_request_from_an_allowed_origin_gets_credentials_and_exposed_headers() {
    let up = Upstream::echo().await;
    let gw = cors_gateway(&up).await;
    let resp = client()
        .get(gw.url("/private/orders"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-expose-headers"], "x-request-id");
    assert_eq!(h["vary"], "Origin");
}

#[tokio::test]
async fn wildcard_subdomain_pattern_allows_subdomains_only() {
    let up = Upstream::echo().await;
    let gw = cors_gateway(&up).await;
    let c = client();
    let ok = c
        .get(gw.url("/private"))
        .header("origin", "https://eu.partner.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://eu.partner.example"
    );
    for origin in [
        "https://partner.example",
        "https://evilpartner.example",
        "http://eu.partner.example",
    ] {
        let no = c
            .get(gw.url("/private"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            no.headers().get("access-control-allow-origin").is_none(),
            "{origin} must not be allowed"
        );
        assert_eq!(no.headers()["vary"], "Origin");
    }
}

#[tokio::test]
async fn actual_request_from_a_disallowed_origin_gets_no_cors_headers_but_is_served() {
    let up = Upstream::echo().await;
    let gw = cors_gateway(&up).await;
    let resp = client()
        .get(gw.url("/private/orders"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "CORS is enforced by the browser, not by refusing the request"
    );
    assert!(
        resp.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-"))
    );
}

#[tokio::test]
async fn public_api_without_credentials_answers_star_and_never_allows_credentials() {
    let up = Upstream::echo().await;
    let gw = cors_gateway(&up).await;
    let c = client();
    let resp = c
        .get(gw.url("/public/feed"))
        .header("origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(
        resp.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(
        resp.headers().get("vary").is_none(),
        "a `*` answer does not vary by origin"
    );

    let pre = preflight(&c, gw.url("/public/feed"), "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        pre.headers()["access-control-allow-headers"],
        "content-type",
        "requested headers are mirrored"
    );
    assert!(
        pre.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[tokio::test]
async fn cors_headers_are_added_to_gateway_errors_too() {
    // The upstream is down: the browser must still be able to read the 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.down]
targets = ["{dead}"]
[plugins.cors]
module = "builtin:cors"
[[routes]]
name = "down"
upstream = "down"
plugins = [{{ use = "cors", config = {{ origins = ["{APP}"] }} }}]
"#
    ))
    .await;
    let resp = client()
        .get(gw.url("/"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["access-control-allow-origin"], APP);
}
