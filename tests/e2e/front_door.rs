//! The front door: no request reaches an upstream around its route's plugins, whatever the
//! client does to the path, the authority, the headers or the upgrade. Requests are written
//! on raw sockets so that no client library normalises them first.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::Digest;
use tokio::net::TcpStream;

use crate::support::*;

const KEY: &str = "front-door-key";

async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    raw_exchange(addr, request).await
}

/// `GET <target>` with `headers`, closing the connection after the response.
async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = format!("GET {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str("host: api.example.com\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("connection: close\r\n\r\n");
    raw(addr, &request).await
}

/// The echo upstream's JSON description of the request it received.
fn echoed(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // The echo answers with a content-length, so the body is the JSON itself.
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo ({e}): {response}"))
}

/// A `/private` route behind `api-key`, a case-insensitive `/admin` route behind it too, an
/// `/api` route that strips its prefix, and everything else open.
async fn two_route_gateway(up: &Upstream) -> Gateway {
    let hash = hex(&sha2::Sha256::digest(KEY.as_bytes()));
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{addr}"]
[plugins.key]
module = "builtin:api-key"

[[routes]]
name = "private"
match = {{ path_prefix = "/private" }}
upstream = "up"
plugins = [{{ use = "key", config = {{ keys = [{{ consumer = "alice", sha256 = "{hash}" }}] }} }}]

[[routes]]
name = "admin"
match = {{ path_prefix = "/admin", case_insensitive = true }}
upstream = "up"
plugins = [{{ use = "key", config = {{ keys = [{{ consumer = "alice", sha256 = "{hash}" }}] }} }}]

[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
strip_prefix = true
upstream = "up"

[[routes]]
name = "public"
upstream = "up"
"#,
        addr = up.addr
    ))
    .await
}

#[tokio::test]
async fn encoded_and_dot_segment_paths_reach_the_route_they_name_or_are_refused() {
    let up = Upstream::echo().await;
    let gw = two_route_gateway(&up).await;
    // Each of these is /private/x to nginx, Tomcat, Spring, Express or IIS behind us.
    let routed_to_private = [
        "/public/../private/x",
        "/public/%2e%2e/private/x",
        "/public/%2E%2E/private/x",
        "/public/.%2e/private/x",
        "//private/x",
        "///private//x",
        "/./private/x",
        "/%2e/private/x",
        "/%70rivate/x",
        "/api/../private/orders",
        "/ADMIN/users",
        "/Admin/%2e/users",
    ];
    for target in routed_to_private {
        let (status, response) = get(gw.addr(), target, &[]).await;
        assert_eq!(
            status, 401,
            "{target} must meet the api-key plugin:\n{response}"
        );
    }
    let refused = [
        "/public/..%2fprivate/x",
        "/private%2fx",
        "/public/..%5cprivate/x",
        "/public/..;/private/x",
        "/public/..\\private/x",
        "/private;jsessionid=1/x",
        "/public/%00/x",
        "/public/%c0%ae%c0%ae/private/x",
        "/../private/x",
        "/public/../../private/x",
        "/public/%zz",
    ];
    for target in refused {
        let (status, response) = get(gw.addr(), target, &[]).await;
        assert_eq!(status, 400, "{target} must be refused:\n{response}");
    }
    assert_eq!(
        up.hits(),
        0,
        "nothing reached the upstream around the plugin"
    );

    let (status, response) = get(gw.addr(), "/public/..%2fprivate/x", &[]).await;
    assert_eq!(status, 400);
    assert!(
        response.ends_with("request path refused: the path has an encoded `/` or `\\`\n"),
        "{response}"
    );

    // With the key, the upstream gets the path the route matched.
    let (status, response) = get(
        gw.addr(),
        "/public/%2e%2e/%70rivate//x?q=%2e",
        &[("x-api-key", KEY)],
    )
    .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(echoed(&response)["uri"], "/private/x?q=%2e");
    let (_, response) = get(gw.addr(), "/api/v1/../orders/", &[]).await;
    assert_eq!(echoed(&response)["uri"], "/orders/");
    let (_, response) = get(gw.addr(), "/api//orders", &[]).await;
    assert_eq!(echoed(&response)["uri"], "/orders");
    let (_, response) = get(gw.addr(), "/api", &[]).await;
    assert_eq!(echoed(&response)["uri"], "/");

    // What the upstream receives on a route without plugins: one spelling of each path.
    let forwarded_as = [
        ("/public/./a/", "/public/a/"),
        ("/public//a", "/public/a"),
        ("/public/a/b/..", "/public/a/"),
        ("/public/a/b/.", "/public/a/b/"),
        ("/public/a/%2e%2E/b", "/public/b"),
        ("/files/%7euser/a%2db", "/files/~user/a-b"),
        ("/%41%42c", "/ABc"),
        ("/q/%3f", "/q/%3F"),
        ("/q/%3a%40", "/q/:@"),
        ("/v1/jobs%3Acancel", "/v1/jobs:cancel"),
        ("/%252e%252e/private", "/%252e%252e/private"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/private.", "/private."),
        ("/private./x", "/private./x"),
        ("/a/.../b", "/a/.../b"),
        ("/a/..x/b", "/a/..x/b"),
        ("/a/", "/a/"),
        ("/public/..", "/"),
        ("/search?path=/../private", "/search?path=/../private"),
    ];
    for (target, expected) in forwarded_as {
        let (status, response) = get(gw.addr(), target, &[]).await;
        assert_eq!(status, 200, "{target}:\n{response}");
        assert_eq!(echoed(&response)["uri"], expected, "{target}");
    }
    let more_refused = [
        "/x/%2F",
        "/x/%5c",
        "/x/%",
        "/x/%1",
        "/x/%0a",
        "/x/%7F",
        "/x/%c0%af",
        "/x/%e0%80%ae",
        "/x/%ff",
        "/..%2f",
        "/public/..%3b/private/x",
        "/private%3Bx",
    ];
    for target in more_refused {
        let (status, response) = get(gw.addr(), target, &[]).await;
        assert_eq!(status, 400, "{target} must be refused:\n{response}");
    }
}

#[tokio::test]
async fn a_route_pattern_that_is_not_canonical_is_refused_at_load() {
    let refused = Gateway::refused(&format!(
        "{MAIN_LISTENER}[upstreams.up]\ntargets = [\"127.0.0.1:9\"]\n[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/a/../%70rivate\" }}\nupstream = \"up\"\n"
    ))
    .await;
    assert!(
        refused.contains(
            "route `r`: match.path_prefix `/a/../%70rivate` is not in canonical form, so no request would match it: write `/private`"
        ),
        "{refused}"
    );
}

/// Routes by host, echoing what the upstream received.
async fn host_gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{addr}"]
[plugins.deny]
module = "builtin:api-key"
[[routes]]
name = "admin"
match = {{ host = "admin.example.com" }}
upstream = "up"
plugins = [{{ use = "deny", config = {{ keys = [{{ consumer = "ops", sha256 = "{hash}" }}] }} }}]
[[routes]]
name = "www"
upstream = "up"
"#,
        addr = up.addr,
        hash = hex(&sha2::Sha256::digest(KEY.as_bytes())),
    ))
    .await
}

#[tokio::test]
async fn the_authority_is_one_and_is_what_the_upstream_receives() {
    let up = Upstream::echo().await;
    let gw = host_gateway(&up).await;
    let addr = gw.addr();

    let two_hosts = "GET /x HTTP/1.1\r\nhost: www.example.com\r\nhost: admin.example.com\r\nconnection: close\r\n\r\n";
    let (status, response) = raw(addr, two_hosts).await;
    assert_eq!(status, 400, "{response}");
    let conflicting = "GET http://www.example.com/x HTTP/1.1\r\nhost: admin.example.com\r\nconnection: close\r\n\r\n";
    let (status, response) = raw(addr, conflicting).await;
    assert_eq!(status, 400, "{response}");
    assert!(
        response.ends_with(
            "request authority refused: the Host header does not match the request's authority\n"
        ),
        "{response}"
    );
    let no_host = "GET /x HTTP/1.1\r\nconnection: close\r\n\r\n";
    assert_eq!(raw(addr, no_host).await.0, 400);
    let userinfo =
        "GET /x HTTP/1.1\r\nhost: www.example.com@admin.example.com\r\nconnection: close\r\n\r\n";
    assert_eq!(raw(addr, userinfo).await.0, 400);

    // The trailing dot and the case do not miss the host route.
    for host in [
        "admin.example.com.",
        "ADMIN.Example.com",
        "admin.example.com.:8080",
    ] {
        let (status, response) = get(addr, "/x", &[("host", host)]).await;
        assert_eq!(status, 401, "Host: {host}\n{response}");
    }
    let absolute = "GET http://Admin.Example.com./x HTTP/1.1\r\nhost: admin.example.com\r\nx-api-key: front-door-key\r\nconnection: close\r\n\r\n";
    let (status, response) = raw(addr, absolute).await;
    assert_eq!(status, 200, "{response}");
    let echo = echoed(&response);
    assert_eq!(echo["uri"], "/x");
    assert_eq!(echo["headers"]["host"][0], "admin.example.com");
    assert_eq!(echo["headers"]["x-forwarded-host"][0], "admin.example.com");
    assert_eq!(up.hits(), 1, "only the authorised request went through");
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let up = Upstream::echo().await;
    let gw = host_gateway(&up).await;
    let send = |authority: &'static str, host: Option<&'static str>| {
        let addr = gw.addr();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (client, connection) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(connection);
            let mut client = client.ready().await.unwrap();
            let mut request = http::Request::builder().uri(format!("http://{authority}/x"));
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let (response, _) = client
                .send_request(request.body(()).unwrap(), true)
                .unwrap();
            response.await.unwrap().status().as_u16()
        }
    };
    assert_eq!(
        send("www.example.com", Some("admin.example.com")).await,
        400
    );
    assert_eq!(send("admin.example.com", None).await, 401);
    assert_eq!(send("www.example.com", Some("WWW.example.com.")).await, 200);
    assert_eq!(up.hits(), 1);
}

/// An upstream that records the headers of every request it gets.
async fn recording_upstream() -> (Upstream, Arc<Mutex<Vec<http::HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let up = Upstream::custom(move |parts, _| {
        sink.lock().unwrap().push(parts.headers.clone());
        (200, "{}".into())
    })
    .await;
    (up, seen)
}

#[tokio::test]
async fn upgrades_pass_only_where_the_route_allows_them_and_h2c_never() {
    let (up, seen) = recording_upstream().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{addr}"]
[[routes]]
name = "ws"
match = {{ path_prefix = "/ws" }}
upgrades = ["websocket"]
upstream = "up"
[[routes]]
name = "plain"
upstream = "up"
"#,
        addr = up.addr
    ))
    .await;
    let h2c = [
        ("connection", "Upgrade, HTTP2-Settings"),
        ("upgrade", "h2c"),
        ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    ];
    for path in ["/plain", "/ws"] {
        let (status, response) = get(gw.addr(), path, &h2c).await;
        assert_eq!(status, 200, "{path}: served as a plain request\n{response}");
    }
    let websocket = [
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let (status, _) = get(gw.addr(), "/plain", &websocket).await;
    assert_eq!(
        status, 200,
        "a route without upgrades serves it as a plain request"
    );
    let (status, _) = get(gw.addr(), "/ws", &websocket).await;
    assert_eq!(status, 200, "this upstream does not switch protocols");
    let seen = seen.lock().unwrap().clone();
    for (i, headers) in seen.iter().take(3).enumerate() {
        assert!(!headers.contains_key("upgrade"), "request {i}: {headers:?}");
        assert!(
            !headers.contains_key("http2-settings"),
            "request {i}: {headers:?}"
        );
    }
    assert_eq!(
        seen[3]["upgrade"], "websocket",
        "the ws route tunnels WebSockets"
    );

    let refused = Gateway::refused(&format!(
        "{MAIN_LISTENER}[upstreams.up]\ntargets = [\"127.0.0.1:9\"]\n[[routes]]\nname = \"r\"\nupgrades = [\"h2c\"]\nupstream = \"up\"\n"
    ))
    .await;
    assert!(
        refused.contains("route `r`: upgrades cannot include `h2c`"),
        "{refused}"
    );
}

#[tokio::test]
async fn identity_forwarding_and_override_headers_cannot_be_spoofed() {
    let (up, seen) = recording_upstream().await;
    let hash = hex(&sha2::Sha256::digest(KEY.as_bytes()));
    let gw = Gateway::start(&format!(
        r#"[server]
strip_request_headers = ["x-user-role"]
{MAIN_LISTENER}
[upstreams.up]
targets = ["{addr}"]
[plugins.key]
module = "builtin:api-key"
[plugins.jwt]
module = "builtin:jwt-auth"
grants = ["jwt", "http", "state"]
[[routes]]
name = "keyed"
match = {{ path_prefix = "/keyed" }}
upstream = "up"
plugins = [{{ use = "key", config = {{ consumer_header = "x-api-consumer", keys = [{{ consumer = "alice", sha256 = "{hash}" }}] }} }}]
[[routes]]
name = "jwt"
match = {{ path_prefix = "/jwt" }}
upstream = "up"
plugins = [{{ use = "jwt", config = {{ algorithms = ["HS256"], secrets = [{{ value = "a-test-secret-of-at-least-32-bytes!!" }}], claims_to_headers = {{ email = "x-jwt-claim-email" }} }} }}]
[[routes]]
name = "open"
upstream = "up"
"#,
        addr = up.addr
    ))
    .await;
    let spoofed = [
        ("x-consumer-id", "demo"),
        ("x-api-consumer", "admin"),
        ("x-jwt-claim-email", "root@example.com"),
        ("x-user-role", "admin"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("forwarded", "for=10.0.0.1;host=internal"),
        ("x-real-ip", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "internal.example"),
        ("x-forwarded-proto", "https"),
    ];
    let (status, response) = get(gw.addr(), "/open", &spoofed).await;
    assert_eq!(status, 200, "{response}");
    // A client's Connection cannot remove what the plugin sets.
    let mut keyed = spoofed.to_vec();
    keyed.push(("x-api-key", KEY));
    let (status, response) = raw(
        gw.addr(),
        &format!(
            "GET /keyed HTTP/1.1\r\nhost: api.example.com\r\n{}connection: close, x-api-consumer\r\n\r\n",
            keyed.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect::<String>()
        ),
    )
    .await;
    assert_eq!(status, 200, "{response}");

    let seen = seen.lock().unwrap().clone();
    let open = &seen[0];
    for (name, _) in &spoofed[..8] {
        assert!(
            !open.contains_key(*name),
            "{name} reached the upstream: {open:?}"
        );
    }
    assert_eq!(open["x-forwarded-for"], "127.0.0.1");
    assert_eq!(open["x-real-ip"], "127.0.0.1");
    assert_eq!(open["x-forwarded-host"], "api.example.com");
    assert_eq!(open["x-forwarded-proto"], "http");
    let keyed = &seen[1];
    assert_eq!(keyed["x-api-consumer"], "alice");
    assert!(!keyed.contains_key("x-consumer-id"));
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let (up, seen) = recording_upstream().await;
    let gw = Gateway::start(&format!(
        r#"[server]
trusted_proxies = ["127.0.0.0/8"]
{MAIN_LISTENER}
[upstreams.up]
targets = ["{addr}"]
[[routes]]
name = "open"
upstream = "up"
"#,
        addr = up.addr
    ))
    .await;
    let headers = [
        ("x-forwarded-for", "198.51.100.7, 127.0.0.9"),
        ("x-forwarded-proto", "https"),
    ];
    let (status, _) = get(gw.addr(), "/", &headers).await;
    assert_eq!(status, 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0]["x-forwarded-for"],
        "198.51.100.7, 127.0.0.9, 127.0.0.1"
    );
    assert_eq!(seen[0]["x-real-ip"], "198.51.100.7");
    assert_eq!(seen[0]["x-forwarded-proto"], "https");
    let access = gw.access_lines(1);
    assert!(access[0].contains("198.51.100.7"), "{access:?}");

    let refused = Gateway::refused(&format!(
        "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n{MAIN_LISTENER}[upstreams.up]\ntargets = [\"127.0.0.1:9\"]\n[[routes]]\nname = \"r\"\nupstream = \"up\"\n"
    ))
    .await;
    assert!(
        refused
            .contains("server.trusted_proxies: `10.0.0.0/33` is not an IP address or CIDR range"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&proxy_config(up.addr)).await;
    let bad = "POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n";
    let (status, response) = raw(gw.addr(), bad).await;
    assert_eq!(status, 400, "{response}");
    let good = "POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (status, response) = raw(gw.addr(), good).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(echoed(&response)["body"], "hello");
}

/// Content-Length beside Transfer-Encoding is the classic smuggling pair: the gateway frames
/// the request by the chunked coding alone (RFC 9112 §6.1), sends the upstream a request it
/// framed itself and closes the client connection after answering, so bytes hidden behind the
/// chunked body never become a second request.
#[tokio::test]
async fn content_length_beside_transfer_encoding_smuggles_nothing() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&proxy_config(up.addr)).await;
    for te in ["chunked", "Chunked", "chunked\t"] {
        let smuggling = format!(
            "POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: {te}\r\n\r\n\
             1\r\nZ\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nhost: a\r\n\r\n"
        );
        let before = up.hits();
        let (status, response) = raw(gw.addr(), &smuggling).await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
        let echo = echoed(&response);
        assert_eq!(echo["uri"], "/x", "{response}");
        assert_eq!(echo["body"], "Z", "{response}");
        // The client's conflicting Content-Length is not passed on.
        assert_ne!(
            seen_header(&echo, "content-length"),
            Some("4"),
            "{response}"
        );
        assert_eq!(up.hits(), before + 1, "the hidden GET reached the upstream");
    }
}

#[tokio::test]
async fn request_forms_that_servers_read_differently_are_refused_or_made_one() {
    let up = Upstream::echo().await;
    let hash = hex(&sha2::Sha256::digest(KEY.as_bytes()));
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{addr}"]
[plugins.key]
module = "builtin:api-key"
[plugins.transform]
module = "builtin:transform"

[[routes]]
name = "orders"
match = {{ path_prefix = "/orders", methods = ["GET"] }}
upstream = "up"
plugins = [{{ use = "key", config = {{ keys = [{{ consumer = "alice", sha256 = "{hash}" }}] }} }}]

[[routes]]
name = "tenant-a"
match = {{ path_prefix = "/t", headers = {{ "x-tenant" = "a" }} }}
upstream = "up"
plugins = [{{ use = "key", config = {{ keys = [{{ consumer = "alice", sha256 = "{hash}" }}] }} }}]

[[routes]]
name = "rewrite-query"
match = {{ path_prefix = "/rq" }}
upstream = "up"
plugins = [{{ use = "transform", config = {{ request = {{ path = [{{ regex = '^/rq/(?P<rest>.*)$', replace = "/v2/${{rest}}?role=admin" }}] }} }} }}]

[[routes]]
name = "rewrite-climb"
match = {{ path_prefix = "/rc" }}
upstream = "up"
plugins = [{{ use = "transform", config = {{ request = {{ path = [{{ regex = '^/rc/(?P<rest>.*)$', replace = "/v2/../admin/${{rest}}" }}] }} }} }}]

[[routes]]
name = "rewrite"
match = {{ path_prefix = "/rw" }}
upstream = "up"
plugins = [{{ use = "transform", config = {{ request = {{ path = [{{ regex = '^/rw/(?P<rest>.*)$', replace = "/v2//${{rest}}" }}] }} }} }}]

[[routes]]
name = "public"
upstream = "up"
"#,
        addr = up.addr
    ))
    .await;
    let addr = gw.addr();

    // Methods are case-sensitive: `post` is refused, not run as a POST around the GET route.
    let (status, response) = raw(
        addr,
        "post /orders/1 HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{response}");
    assert!(
        response.ends_with(
            "request method refused: methods are case-sensitive and none has lower-case letters\n"
        ),
        "{response}"
    );
    // HEAD is served by GET handlers behind: it meets the GET route's plugins.
    let (status, response) = raw(
        addr,
        "HEAD /orders/1 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401, "{response}");

    // A header condition holds only for one field with that value.
    let (status, response) = get(addr, "/t/x", &[("x-tenant", "a")]).await;
    assert_eq!(status, 401, "{response}");
    let (status, response) = get(addr, "/t/x", &[("x-tenant", "a"), ("x-tenant", "b")]).await;
    assert_eq!(status, 200, "not tenant a's route: {response}");

    // Underscore spellings of owned fields, and `Connection` naming the authority.
    let (status, response) = get(
        addr,
        "/x",
        &[
            ("host", "api.example.com"),
            ("X_Consumer_Id", "admin"),
            ("x_forwarded_for", "10.0.0.1"),
            ("connection", "host, x-gone"),
            ("x-gone", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{response}");
    let seen = &echoed(&response)["headers"];
    let names: Vec<&str> = seen
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for gone in ["x_consumer_id", "x_forwarded_for", "x-gone"] {
        assert!(
            !names.contains(&gone),
            "{gone} reached the upstream: {names:?}"
        );
    }
    assert_eq!(seen["host"], serde_json::json!(["api.example.com"]));
    assert_eq!(
        seen["x-forwarded-host"],
        serde_json::json!(["api.example.com"])
    );

    // A plugin's rewrite cannot inject a query or climb out of the routed path.
    for target in ["/rq/users", "/rc/users"] {
        let (status, response) = get(addr, target, &[]).await;
        assert_eq!(status, 500, "{target}: {response}");
        assert!(
            response.contains("the path rewrite produced an invalid path"),
            "{response}"
        );
    }
    let (status, response) = get(addr, "/rw/users?page=2", &[]).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(echoed(&response)["uri"], "/v2/users?page=2");
}
