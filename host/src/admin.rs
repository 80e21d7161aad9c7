//! The admin API, on its own listener (loopback by default, off unless `[admin]` is present):
//!
//! - `GET /status`: config generation and hash, module hashes, routes, last reload attempt;
//! - `POST /reload`: reload now (`200` with the new generation, `422` with the reason);
//! - `GET /metrics`: requests, latency, plugin faults, upstream errors and reloads, in the
//!   Prometheus text format;
//! - `GET /routes`: the routes in match order, with their upstream and plugin chain;
//! - `GET /plugins`: each plugin's module hash, grants and limits, and its pools (route, idle
//!   instances, hooks, bodies);
//! - `GET /upstreams`: each upstream's balancing, circuit state and targets with their
//!   health (by active checks and passive ejection) and requests in flight;
//! - `GET /healthz`: `200 ok` while the process serves;
//! - `GET /readyz`: `200 ready` while it takes traffic, `503 draining` once shutdown began.
//!
//! With `[admin] token`, every endpoint but the two probes wants `Authorization: Bearer`.
//! Every endpoint but the probes answers only to its own names (`421` otherwise) and refuses
//! changes from another web origin (`403`), see [`guard`]; `/status` shows file paths
//! relative to the config's directory. Connections are capped (`max_connections`) and must
//! send their request head within `header_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

mod guard;
mod redact;
mod state_metrics;

use guard::{AdminNames, Refusal};

use crate::plugin::{Capability, FailurePolicy, Isolation};
use crate::reload::Reloader;
use crate::snapshot::Snapshot;

/// What the admin API serves besides the reloader.
pub struct AdminState {
    /// The reloader: current snapshot, status, reloads.
    pub reloader: Arc<Reloader>,
    /// The bearer token the API wants, if any.
    pub token: Option<String>,
    /// Cleared when shutdown begins, so load balancers stop sending traffic.
    pub ready: Arc<AtomicBool>,
}

/// Binds the admin listener and serves it in the background. Returns the bound address.
pub async fn spawn(addr: SocketAddr, state: AdminState) -> anyhow::Result<SocketAddr> {
    let settings = state
        .reloader
        .current()
        .admin
        .clone()
        .ok_or_else(|| anyhow::anyhow!("admin: the config has no [admin] table"))?;
    let state = Arc::new(state);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin: cannot bind {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(addr = %bound, "the admin API is reachable from other hosts: anyone who can connect can reload the gateway");
    }
    // The admin API is a handful of operators and a scraper: a small cap keeps a flood of
    // connections to it from eating file descriptors the gateway needs for traffic.
    let open = Arc::new(Semaphore::new(settings.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client that trickles its request head (or sends nothing) is closed after the header
    // timeout instead of holding one of the few connections for good.
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let allowed_hosts: Arc<[String]> = settings.allowed_hosts.into();
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = open.clone().try_acquire_owned() else {
                // Closed at once, as on the traffic listeners.
                crate::metrics::connection_refused("admin_connections");
                tracing::debug!("admin: connection refused, max_connections reached");
                continue;
            };
            // The address the client dialled: with a wildcard bind, the one it really named.
            let local = stream.local_addr().unwrap_or(bound);
            let names = Arc::new(AdminNames::new(local, &allowed_hosts));
            let state = state.clone();
            let http = http.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    let names = names.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&state, &names, req).await) }
                });
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                drop(permit);
            });
        }
    });
    Ok(bound)
}

async fn handle(
    state: &AdminState,
    names: &AdminNames,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // Probes answer whatever the Host: load balancers probe with names of their own, and
    // `ok` or `ready` tells a web page nothing.
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
    if !probe {
        match names.check(&req) {
            Ok(()) => {}
            Err(Refusal::Misdirected(why)) => {
                return text(StatusCode::MISDIRECTED_REQUEST, "text/plain", why);
            }
            Err(Refusal::CrossOrigin(why)) => {
                return text(StatusCode::FORBIDDEN, "text/plain", why);
            }
        }
    }
    if !probe && !authorized(state.token.as_deref(), &req) {
        let mut resp = text(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "unauthorized\n".into(),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"wasmgate-admin\""),
        );
        return resp;
    }
    let reloader = &state.reloader;
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/status") => json_response(StatusCode::OK, &status(reloader)),
        (&Method::POST, "/reload") => match reloader.reload("admin").await {
            Ok(generation) => json_response(
                StatusCode::OK,
                &json!({ "ok": true, "generation": generation }),
            ),
            Err(error) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "ok": false, "error": error }),
            ),
        },
        (&Method::GET, "/metrics") => {
            let body = reloader.metrics()
                + &crate::metrics::encode()
                + &state_metrics::encode(&reloader.current());
            text(StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => match state.ready.load(Ordering::Relaxed) {
            true => text(StatusCode::OK, "text/plain", "ready\n".into()),
            false => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "draining\n".into(),
            ),
        },
        (&Method::GET, "/routes") => json_response(StatusCode::OK, &routes(&reloader.current())),
        (&Method::GET, "/plugins") => json_response(StatusCode::OK, &plugins(&reloader.current())),
        (&Method::GET, "/upstreams") => {
            json_response(StatusCode::OK, &upstreams(&reloader.current()))
        }
        (
            _,
            "/status" | "/reload" | "/metrics" | "/healthz" | "/readyz" | "/routes" | "/plugins"
            | "/upstreams",
        ) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Whether the request carries the admin token (always, when none is configured). The
/// comparison takes the same time wherever the bytes differ.
fn authorized(token: Option<&str>, req: &Request<Incoming>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// `GET /status`, with file paths relative to the config's directory (see [`redact`]).
fn status(reloader: &Reloader) -> serde_json::Value {
    let mut status = reloader.status();
    let config = status["config"]["path"]
        .as_str()
        .map(std::path::PathBuf::from);
    if let Some(config) = config {
        let dir = match config.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        redact::relative_paths(&mut status, &dir);
    }
    status
}

/// `GET /routes`: match order, upstream, plugin chain.
fn routes(snapshot: &Snapshot) -> serde_json::Value {
    let routes: Vec<_> = snapshot
        .routes
        .iter()
        .map(|route| {
            json!({
                "name": &*route.name,
                "upstream": route.upstream.as_ref().map(|u| u.name()),
                "plugins": route.chain.iter().map(|p| p.plugin().name()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!(routes)
}

/// `GET /plugins`: per plugin, its module, grants, limits and pools.
fn plugins(snapshot: &Snapshot) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, plugin) in &snapshot.plugins {
        let settings = plugin.settings();
        let pools: Vec<_> = snapshot
            .routes
            .iter()
            .flat_map(|route| route.chain.iter())
            .filter(|pool| pool.plugin().name() == name)
            .map(|pool| {
                let bodies = pool.bodies();
                json!({
                    "route": pool.route(),
                    "idle_instances": pool.idle_instances(),
                    "instance_memory_bytes": pool.footprint(),
                    "hooks": { "request": pool.wants_request(), "response": pool.wants_response() },
                    "bodies": { "request": bodies.request, "response": bodies.response },
                })
            })
            .collect();
        out.insert(
            name.clone(),
            json!({
                "module_sha256": plugin.module_hash(),
                "grants": settings.grants.iter().map(|c: &Capability| c.name()).collect::<Vec<_>>(),
                "timeout_ms": settings.timeout.as_millis() as u64,
                "memory_limit_bytes": settings.memory_limit,
                "on_error": match settings.on_error { FailurePolicy::Fail => "fail", FailurePolicy::Skip => "skip" },
                "isolation": match settings.isolation { Isolation::Pooled => "pooled", Isolation::PerRequest => "per-request" },
                "pools": pools,
            }),
        );
    }
    serde_json::Value::Object(out)
}

/// `GET /upstreams`: per upstream, its strategy, circuit and targets' health.
fn upstreams(snapshot: &Snapshot) -> serde_json::Value {
    let now = crate::clock::now_ms();
    let mut out = serde_json::Map::new();
    for (name, upstream) in &snapshot.upstreams {
        let settings = upstream.settings();
        let targets: Vec<_> = upstream
            .targets()
            .iter()
            .map(|t| {
                json!({
                    "target": t.authority.as_str(),
                    "weight": t.weight,
                    "available": t.health.available(now),
                    "healthy": t.health.healthy(),
                    "ejected": t.health.ejected(now),
                    "outstanding": t.outstanding(),
                })
            })
            .collect();
        out.insert(
            name.clone(),
            json!({
                "balance": settings.balance,
                "active_checks": settings.active.is_some(),
                "passive_checks": settings.outlier.is_some(),
                "circuit": upstream.circuit().map(|c| json!({
                    "state": c.state().as_str(),
                    "in_flight": c.in_flight(),
                    "pending": c.pending(),
                })),
                "tls": settings.tls.is_some(),
                "http2": settings.http2,
                "targets": targets,
            }),
        );
    }
    serde_json::Value::Object(out)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    text(status, "application/json", format!("{body:#}\n"))
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}
