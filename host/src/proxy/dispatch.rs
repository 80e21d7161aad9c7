//! The upstream call: circuit breaker, target choice, attempts with per-try timeouts and
//! budgeted retries, passive health accounting, and `Upgrade` (WebSocket) tunnels.
//!
//! A retry is decided on an attempt's response head, which is then dropped: the client only
//! ever receives the head and body of the last attempt, so nothing it has seen is repeated.
//! Only bodies the gateway holds whole can be sent twice; a request body still streaming
//! from the client gets one attempt.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};

use super::error::GatewayError;
use super::tunnel::ClientUpgrade;
use crate::body::{self, ProxyBody};
use crate::telemetry::RequestTrace;
use crate::upstream::retry::{Failure, TransportError};
use crate::upstream::{InFlight, Upstream};

/// A request ready for the upstream, except for its target.
pub struct Outbound {
    /// Method.
    pub method: Method,
    /// Path and query sent upstream.
    pub path_and_query: PathAndQuery,
    /// Headers, hop-by-hop fields removed.
    pub headers: HeaderMap,
    /// The body.
    pub body: OutboundBody,
    /// The client's side of an `Upgrade`, when the client asked for one.
    pub upgrade: Option<ClientUpgrade>,
    /// The consistent-hash key, if any.
    pub hash_key: Option<u64>,
}

/// A request body on its way upstream.
pub enum OutboundBody {
    /// Held whole: can be sent again.
    Complete(Bytes),
    /// Streaming from the client: one attempt only.
    Streaming(ProxyBody),
}

/// What happened, for the access log.
#[derive(Default)]
pub struct Attempted {
    /// The last target tried.
    pub target: Option<http::uri::Authority>,
    /// Attempts made.
    pub attempts: u32,
}

/// Sends `out` to `upstream` and returns the response head with its body streaming.
pub async fn send(
    upstream: &Arc<Upstream>,
    mut out: Outbound,
    trace: &RequestTrace,
    attempted: &mut Attempted,
) -> Result<Response<ProxyBody>, GatewayError> {
    let permit = match upstream.adaptive() {
        Some(limit) => match limit.try_acquire() {
            Some(permit) => Some(permit),
            None => {
                crate::metrics::upstream_error(upstream.name(), "overloaded");
                return Err(GatewayError::UpstreamOverloaded);
            }
        },
        None => None,
    };
    let admitted = match upstream.circuit() {
        None => None,
        Some(circuit) => Some(circuit.admit_or_wait().await),
    };
    let admission = match admitted {
        None => None,
        Some(Ok(admission)) => Some(admission),
        Some(Err(refusal)) => {
            use crate::upstream::circuit::Refusal;
            return Err(match refusal {
                Refusal::Open(wait) => {
                    crate::metrics::upstream_error(upstream.name(), "circuit_open");
                    GatewayError::CircuitOpen {
                        retry_after: wait.as_secs().max(1) as u32,
                    }
                }
                Refusal::Full => {
                    crate::metrics::upstream_error(upstream.name(), "overflow");
                    GatewayError::UpstreamOverloaded
                }
            });
        }
    };
    let mut admission = admission;
    let result = attempts(upstream, &mut out, trace, attempted).await;
    let ok = matches!(&result, Ok((resp, _)) if !resp.status().is_server_error());
    if let Some(permit) = permit {
        permit.done(!ok);
    }
    if let Some(admission) = &mut admission {
        admission.report(ok);
    }
    let (mut response, in_flight) = result?;
    // The circuit slot and the target's outstanding count stay taken while the response
    // streams (or the tunnel is open): that is how long the upstream connection is busy.
    let held = (admission, in_flight);
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return super::tunnel::open(upstream.name(), response, out.upgrade.take(), held);
    }
    super::forward::strip_hop_by_hop(response.headers_mut());
    Ok(response.map(|b| body::holding(b, held)))
}

/// One attempt after another until one succeeds, the failure is not retried, or the budget,
/// the attempts or the request timeout run out.
async fn attempts(
    upstream: &Arc<Upstream>,
    out: &mut Outbound,
    trace: &RequestTrace,
    attempted: &mut Attempted,
) -> Result<(Response<hyper::body::Incoming>, InFlight), GatewayError> {
    let started = Instant::now();
    let deadline = upstream.request_timeout();
    let retry = upstream.retry();
    if let Some((_, budget)) = retry {
        budget.deposit();
    }
    let max_attempts = 1 + retry.map_or(0, |(r, _)| r.retries);
    let mut avoid = None;
    loop {
        let Some((i, in_flight)) = upstream.pick(out.hash_key, avoid) else {
            crate::metrics::upstream_error(upstream.name(), "no_healthy_target");
            return Err(GatewayError::NoHealthyTarget);
        };
        let picked = &upstream.targets()[i];
        let target = &picked.authority;
        attempted.target = Some(target.clone());
        attempted.attempts += 1;
        let replay = match &out.body {
            OutboundBody::Complete(bytes) => Some(bytes.clone()),
            OutboundBody::Streaming(_) => None,
        };
        let body = match replay.clone() {
            Some(bytes) => body::full(bytes),
            None => {
                std::mem::replace(&mut out.body, OutboundBody::Complete(Bytes::new())).into_stream()
            }
        };
        // The headers are needed again only if another attempt may follow.
        let last = replay.is_none() || attempted.attempts >= max_attempts;
        let mut request = request(upstream, target, out, body, last)?;
        let span = trace.upstream(upstream.name(), target.as_str(), request.headers_mut());
        span.set("wasmgate.attempt", i64::from(attempted.attempts));
        let left = deadline.saturating_sub(started.elapsed());
        let per_try = retry
            .and_then(|(r, _)| r.per_try_timeout)
            .map_or(left, |t| t.min(left));
        let timer = Instant::now();
        let sent = tokio::time::timeout(per_try, upstream.client().request(request)).await;
        upstream.observe(timer.elapsed());
        // The connection could not be made, for another reason than a timeout (refused, a
        // failed TLS handshake): no request reached the target.
        let mut refused = false;
        let (failure, result) = match sent {
            Ok(Ok(response)) => {
                let status = response.status();
                span.set("http.response.status_code", i64::from(status.as_u16()));
                upstream.record(i, !status.is_server_error());
                let retried = retry.is_some_and(|(r, _)| r.statuses.contains(&status.as_u16()));
                match retried {
                    true => (Some(Failure::Status(status)), Ok(response)),
                    false => return Ok((response, in_flight)),
                }
            }
            Err(_elapsed) => {
                upstream.record(i, false);
                if let Some(suppressed) = picked.warnings.admit() {
                    tracing::warn!(target: "wasmgate::upstream", upstream = upstream.name(), upstream_target = %target, timeout = ?per_try, suppressed, "upstream attempt timed out");
                }
                crate::metrics::upstream_error(upstream.name(), "timeout");
                (Some(Failure::Timeout), Err(GatewayError::UpstreamTimeout))
            }
            Ok(Err(e)) => {
                let transport = TransportError::of(&e);
                match transport {
                    TransportError::BodyTooLarge => return Err(GatewayError::BodyTooLarge),
                    // Bad chunked framing or a client that stopped sending: not the target's
                    // fault, so it counts against neither its health nor its circuit.
                    TransportError::ClientBody => return Err(GatewayError::BadRequestBody),
                    _ => {}
                }
                upstream.record(i, false);
                if let Some(suppressed) = picked.warnings.admit() {
                    tracing::warn!(
                        target: "wasmgate::upstream",
                        upstream = upstream.name(),
                        upstream_target = %target,
                        error = %crate::errors::chain(&e),
                        suppressed,
                        "upstream request failed",
                    );
                }
                refused = transport == TransportError::ConnectFailed;
                let (kind, failure, gateway_error) = match transport {
                    TransportError::ConnectTimeout => {
                        ("timeout", Failure::Connect, GatewayError::UpstreamTimeout)
                    }
                    TransportError::ConnectFailed => (
                        "unreachable",
                        Failure::Connect,
                        GatewayError::UpstreamUnreachable,
                    ),
                    _ => ("reset", Failure::Reset, GatewayError::UpstreamUnreachable),
                };
                crate::metrics::upstream_error(upstream.name(), kind);
                (Some(failure), Err(gateway_error))
            }
        };
        let Some(failure) = failure else {
            return result.map(|response| (response, in_flight));
        };
        span.fail(failure.as_str());
        drop(span);
        // A refused connection is retried elsewhere; on the same target it would fail again.
        let elsewhere = failure != Failure::Connect || upstream.another_available(i);
        let may_retry = retry.is_some_and(|(r, _)| r.retries_on(&out.method, failure))
            && elsewhere
            && replay.is_some()
            && out.upgrade.is_none()
            && attempted.attempts < max_attempts
            && started.elapsed() < deadline;
        if !may_retry {
            return result.map(|response| (response, in_flight));
        }
        let Some((settings, budget)) = retry else {
            return result.map(|response| (response, in_flight));
        };
        // The budget bounds the load retries add. A refused connection added none: its retry
        // only carries the request to the target that now serves it, so a dead target's share
        // moves elsewhere however many requests it had. A connect timeout spends a token: a
        // fleet too overloaded to accept connections is the storm the budget is for.
        if !refused && !budget.withdraw() {
            crate::metrics::retry_budget_exhausted(upstream.name());
            return result.map(|response| (response, in_flight));
        }
        crate::metrics::upstream_retry(upstream.name(), failure.as_str());
        tracing::debug!(target: "wasmgate::upstream", upstream = upstream.name(), upstream_target = %target, reason = failure.as_str(), attempt = attempted.attempts + 1, "retrying on another target");
        // The failed response (if any) is dropped here, unseen by the client.
        drop(result);
        let pause = settings.backoff(attempted.attempts);
        tokio::time::sleep(pause.min(deadline.saturating_sub(started.elapsed()))).await;
        avoid = Some(i);
    }
}

impl OutboundBody {
    fn into_stream(self) -> ProxyBody {
        match self {
            OutboundBody::Complete(bytes) => body::full(bytes),
            OutboundBody::Streaming(body) => body,
        }
    }
}

fn request(
    upstream: &Upstream,
    target: &http::uri::Authority,
    out: &mut Outbound,
    body: ProxyBody,
    last: bool,
) -> Result<Request<ProxyBody>, GatewayError> {
    let uri = Uri::builder()
        .scheme(upstream.scheme())
        .authority(target.clone())
        .path_and_query(out.path_and_query.clone())
        .build()
        .map_err(|_| GatewayError::UpstreamUnreachable)?;
    let mut request = Request::new(body);
    *request.method_mut() = out.method.clone();
    *request.uri_mut() = uri;
    // The connection decides the version: h2 when ALPN negotiated it (or with prior
    // knowledge), HTTP/1.1 otherwise. A request marked HTTP/2 would be refused on a target
    // that only speaks HTTP/1.1.
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = match last {
        true => std::mem::take(&mut out.headers),
        false => out.headers.clone(),
    };
    if upstream.settings().http2 {
        // HTTP/2 carries the authority in `:authority`, and forbids connection fields.
        request.headers_mut().remove(header::HOST);
    }
    Ok(request)
}

/// Marks `headers` for an upgrade to `protocol` (after hop-by-hop fields were removed).
pub fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}
