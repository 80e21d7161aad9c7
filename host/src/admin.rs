//! The admin API, on its own listener (loopback by default, off unless `[admin]` is present):
//!
//! - `GET /status`: config generation and hash, module hashes, routes, last reload attempt;
//! - `POST /reload`: reload now (`200` with the new generation, `422` with the reason);
//! - `GET /metrics`: requests, latency, plugin faults, upstream errors and reloads, in the
//!   Prometheus text format;
//! - `GET /healthz`: `200 ok` while the process serves.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::reload::Reloader;

/// Binds the admin listener and serves it in the background. Returns the bound address.
pub async fn spawn(addr: SocketAddr, reloader: Arc<Reloader>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin: cannot bind {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(addr = %bound, "the admin API is reachable from other hosts: anyone who can connect can reload the gateway");
    }
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let reloader = reloader.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let reloader = reloader.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&reloader, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn handle(reloader: &Reloader, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/status") => json_response(StatusCode::OK, &reloader.status()),
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
            let body = reloader.metrics() + &crate::metrics::encode();
            text(StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (_, "/status" | "/reload" | "/metrics" | "/healthz") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
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
