//! The quick-start config does what the README shows, request by request (on free ports
//! instead of 8080, 8081 and 9901).

use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// A port free a moment ago, for the demo backend the upstream names.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn quickstart() -> Gateway {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.toml");
    let config = std::fs::read_to_string(path).unwrap();
    for fixed in ["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:9901"] {
        assert!(
            config.contains(fixed),
            "the quick start no longer uses {fixed}"
        );
    }
    let config = config
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", free_port()));
    Gateway::start(&config).await
}

#[tokio::test]
async fn the_quickstart_serves_as_the_readme_shows() {
    let gw = quickstart().await;
    let public = |path: &str| format!("http://{}{path}", gw.addr_of("public"));
    let c = client();

    // /api: cors and headers, the prefix stripped, a traceparent started.
    let resp = c
        .get(public("/api/users?page=2"))
        .header("origin", "https://app.example.com")
        .header("x-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["x-served-by"], "wasmgate");
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-expose-headers"], "x-request-id");
    let echo = json(resp).await;
    assert_eq!(
        (&echo["path"], &echo["query"]),
        (&Value::from("/users"), &Value::from("page=2"))
    );
    let seen = &echo["headers"];
    assert_eq!(seen["x-api-version"], "1");
    assert!(seen.get("x-debug").is_none(), "{seen}");
    assert_eq!(seen["traceparent"].as_str().unwrap().len(), 55, "{seen}");

    // The preflight is answered by the gateway; a disallowed origin's is refused.
    let preflight = |origin: &'static str| {
        c.request(http::Method::OPTIONS, public("/api/users"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let resp = preflight("https://app.example.com").await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-max-age"], "600");
    assert_eq!(
        preflight("https://evil.example").await.unwrap().status(),
        403
    );
    let resp = c.get(public("/elsewhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("no route matches this request")
    );

    // /private: the API key, then five requests a minute.
    let private = |key: &'static str| {
        c.get(public("/private/orders"))
            .header("x-api-key", key)
            .send()
    };
    let resp = private("wrong").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["error"], "invalid_api_key");
    for left in (0..5).rev() {
        let resp = private("demo-key").await.unwrap();
        assert_eq!(resp.status(), 200);
        let ratelimit = resp.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            ratelimit.starts_with(&format!("\"1m\";r={left};")),
            "{ratelimit}"
        );
        assert_eq!(json(resp).await["headers"]["x-consumer-id"], "demo");
    }
    let resp = private("demo-key").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));

    // /shop: the WAF, the schema and the transform on a JSON body.
    let order = |body: &'static str| {
        c.post(public("/shop/orders"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = order(r#"{"sku": "B-42", "qty": 2, "debug": true}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(resp).await["body"],
        serde_json::json!({ "sku": "B-42", "qty": 2, "channel": "web" })
    );
    let resp = order(r#"{"sku": "B-42", "qty": 0}"#).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["errors"][0]["pointer"], "/qty");
    let resp = order(r#"{"sku": "B-42' OR '1'='1", "qty": 1}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        gw.find_log(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("waf blocked by 949110:") && m.contains("942100")))
            .is_some()
    );

    // The admin API counted all of it.
    let metrics = gw.admin_text("/metrics").await;
    for series in [
        r#"wasmgate_requests_total{route="api",method="GET",status="2xx"} 1"#,
        r#"wasmgate_requests_total{route="private",method="GET",status="4xx"} 2"#,
        r#"wasmgate_requests_total{route="shop",method="POST",status="4xx"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "no `{series}` in\n{metrics}"
        );
    }
}
