//! The request driver: one function takes a request from route lookup to the response, with
//! one error path ([`error::GatewayError`]).
//!
//! Phases, in order:
//! 1. **route**: the first matching route, or 404;
//! 2. **request phase**: the route's plugins in chain order; each continues or answers;
//! 3. **upstream**: forward with hop-by-hop fields removed and `X-Forwarded-*` set; the bodies
//!    stream in both directions, except a body a plugin asked to read ([`buffer`]);
//! 4. **response phase**: in reverse order, the plugins whose request phase ran (so a plugin
//!    that answered early still gets CORS headers added by the plugins before it);
//! 5. **log**: one access-log line.
//!
//! A plugin fault ends the request phase like an answer would (500), unless the plugin is
//! configured `on_error = "skip"`, in which case it is left out of this request entirely.

mod buffer;
mod dispatch;
pub mod error;
pub mod forward;
pub mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use crate::body::{self, ProxyBody};
use crate::exchange::Exchange;
use crate::plugin::contract::Action;
use crate::plugin::{FailurePolicy, PluginFault, PluginPool, reply_into_response};
use crate::router::RequestInfo;
use crate::snapshot::{Route, Snapshot};
use crate::upstream::Upstream;
use buffer::Buffered;
use dispatch::{Attempted, Outbound, OutboundBody};
use error::GatewayError;
use http_body::Body as _;

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// Index of the listener (in the snapshot's listener order).
    pub listener: usize,
    /// The client's address.
    pub client: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// What the access log reports about one request.
struct Outcome<'a> {
    route: Option<&'a str>,
    upstream: Option<&'a str>,
    /// The upstream address the request went to.
    target: Option<http::uri::Authority>,
    /// The authenticated consumer, if a plugin set one.
    consumer: Option<String>,
    /// Upstream attempts.
    attempts: u32,
    plugin_time: Duration,
}

/// What every phase of one request shares.
struct RequestContext<'a> {
    snapshot: &'a Snapshot,
    request_id: &'a HeaderValue,
    trace: &'a crate::telemetry::RequestTrace,
}

/// Requests no route took.
static NO_ROUTE_METRICS: std::sync::LazyLock<crate::metrics::RouteMetrics> =
    std::sync::LazyLock::new(|| crate::metrics::RouteMetrics::new("-", std::iter::empty()));

/// Handles one request on `snapshot`. Never fails: every failure is a response.
pub async fn handle(
    snapshot: Arc<Snapshot>,
    conn: Connection,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let received = std::time::SystemTime::now();
    let (mut parts, body) = req.into_parts();
    // The request as the client sent it, for the access log (a reference-counted copy).
    let uri = parts.uri.clone();
    // One path, one authority, no gateway-owned fields: what routing, plugins and the
    // upstream all see.
    let peer = crate::ingress::Peer {
        addr: conn.client.ip(),
        internal: snapshot
            .listeners
            .get(conn.listener)
            .is_some_and(|l| l.internal),
    };
    let canonical = crate::ingress::canonicalise(&mut parts, peer, &snapshot.ingress);
    let client_ip = *canonical.as_ref().unwrap_or(&conn.client.ip());
    let request_id = forward::request_id(&parts.headers, snapshot.server.trust_request_id);
    // Plugins see the id the upstream and the client will see (e.g. to quote it in a reply).
    parts
        .headers
        .insert(&forward::REQUEST_ID, request_id.clone());
    let trace = crate::telemetry::start(&mut parts.headers, &parts.method, parts.uri.path());
    let method = parts.method.clone();
    let uri_version = parts.version;

    let route = canonical.is_ok().then(|| {
        let info = RequestInfo {
            listener: conn.listener,
            host: crate::ingress::host(&parts),
            method: &parts.method,
            path: parts.uri.path(),
            headers: &parts.headers,
        };
        snapshot.routes.find(&info).cloned()
    });
    let route = route.flatten();
    let mut outcome = Outcome {
        route: None,
        upstream: None,
        target: None,
        consumer: None,
        attempts: 0,
        plugin_time: Duration::ZERO,
    };
    // Until the response head is ready, a client that goes away drops this future.
    let abandoned = Abandoned {
        armed: true,
        snapshot: &snapshot,
        route: route.as_deref(),
        method: &method,
        uri: &uri,
        version: uri_version,
        request_id: &request_id,
        trace: &trace,
        client: client_ip,
        received: (received, started),
    };
    let mut response = match (&canonical, &route) {
        (Err(refused), _) => {
            tracing::debug!(client = %conn.client, request_id = request_id.to_str().unwrap_or("-"), "{refused}");
            GatewayError::Refused(*refused).response()
        }
        (Ok(_), None) => GatewayError::NoRoute.response(),
        (Ok(_), Some(route)) => {
            outcome.route = Some(&route.name);
            trace.set_route(&method, &route.name);
            let exchange = Exchange {
                request: parts,
                client_ip,
                peer_ip: conn.client.ip(),
                tls: conn.tls,
                response: None,
                context: Default::default(),
                route: route.name.clone(),
                request_body: None,
                response_body: None,
            };
            let ctx = RequestContext {
                snapshot: &snapshot,
                request_id: &request_id,
                trace: &trace,
            };
            run_route(&ctx, route, exchange, body, &mut outcome).await
        }
    };
    abandoned.disarm();
    response
        .headers_mut()
        .insert(&forward::REQUEST_ID, request_id.clone());
    let elapsed = started.elapsed();
    match &route {
        Some(route) => route.metrics.observe(&method, response.status(), elapsed),
        None => NO_ROUTE_METRICS.observe(&method, response.status(), elapsed),
    }
    let format = snapshot.server.access_log;
    if format == crate::access_log::AccessLogFormat::Off {
        trace.finish(response.status());
        return response;
    }
    let entry = crate::access_log::Entry {
        received: (received, started),
        request_id: request_id.to_str().unwrap_or("-").to_owned(),
        trace_id: trace.trace_id(),
        client: client_ip,
        method,
        path: uri.path().to_owned(),
        version: uri_version,
        route: route.as_ref().map(|r| r.name.clone()),
        consumer: outcome.consumer,
        upstream: outcome.upstream.map(str::to_owned),
        target: outcome.target.map(|t| t.to_string()),
        attempts: outcome.attempts,
        status: response.status().as_u16(),
        head_us: elapsed.as_micros() as u64,
        plugin_us: outcome.plugin_time.as_micros() as u64,
    };
    trace.finish(response.status());
    response.map(|body| crate::access_log::wrap(format, entry, body))
}

/// "Client closed request", as nginx logs it.
const CLIENT_CLOSED: u16 = 499;

/// Logs and counts, with status 499, a request whose client went away before its response
/// head was ready: hyper drops the request's future then, and this with it while armed.
struct Abandoned<'a> {
    armed: bool,
    snapshot: &'a Snapshot,
    route: Option<&'a Route>,
    method: &'a Method,
    uri: &'a Uri,
    version: http::Version,
    request_id: &'a HeaderValue,
    trace: &'a crate::telemetry::RequestTrace,
    client: std::net::IpAddr,
    received: (std::time::SystemTime, Instant),
}

impl Abandoned<'_> {
    /// The response head is ready: from here the access log's body wrapper takes over.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let elapsed = self.received.1.elapsed();
        let status = StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST);
        match self.route {
            Some(route) => route.metrics.observe(self.method, status, elapsed),
            None => NO_ROUTE_METRICS.observe(self.method, status, elapsed),
        }
        let format = self.snapshot.server.access_log;
        if format == crate::access_log::AccessLogFormat::Off {
            return;
        }
        let entry = crate::access_log::Entry {
            received: self.received,
            request_id: self.request_id.to_str().unwrap_or("-").to_owned(),
            trace_id: self.trace.trace_id(),
            client: self.client,
            method: self.method.clone(),
            path: self.uri.path().to_owned(),
            version: self.version,
            route: self.route.map(|r| r.name.clone()),
            consumer: None,
            upstream: self
                .route
                .and_then(|r| r.upstream.as_ref())
                .map(|u| u.name().to_owned()),
            target: None,
            attempts: 0,
            status: CLIENT_CLOSED,
            head_us: elapsed.as_micros() as u64,
            plugin_us: 0,
        };
        crate::access_log::write(format, &entry, 0, false);
    }
}

async fn run_route<'r>(
    ctx: &RequestContext<'_>,
    route: &'r Route,
    mut exchange: Exchange,
    body: Incoming,
    outcome: &mut Outcome<'r>,
) -> Response<ProxyBody> {
    let (snapshot, request_id) = (ctx.snapshot, ctx.request_id);
    let max_body = snapshot.server.max_body_bytes;
    if let Some(offered) = exchange.request.headers.get(header::UPGRADE)
        && !crate::ingress::upgrade_allowed(offered, &route.upgrades)
    {
        // Served as a plain request: the route does not tunnel this protocol.
        exchange.request.headers.remove(header::UPGRADE);
    }
    if declared_length(&exchange.request.headers).is_some_and(|len| len > max_body) {
        body::linger(body);
        return GatewayError::BodyTooLarge.response();
    }
    // The client's body: streaming until a plugin needs it read.
    let mut client_body = ClientBody::Streaming(body);

    // Request phase.
    let mut answered: Option<Response<ProxyBody>> = None;
    let mut ran = route.chain.len();
    let mut skipped: Vec<usize> = Vec::new();
    for (i, pool) in route.chain.iter().enumerate() {
        if pool.bodies().request.is_some()
            && let Err(error) = client_body
                .read(&mut exchange, route.request_body_limit(), snapshot)
                .await
        {
            answered = Some(error.response());
            ran = i;
            break;
        }
        if !pool.wants_request() {
            continue;
        }
        let timer = Instant::now();
        let span = ctx
            .trace
            .plugin(pool.plugin().name(), &route.name, "request");
        let (back, result) = pool.on_request(exchange).await;
        exchange = back;
        let took = timer.elapsed();
        route.metrics.observe_plugin(i, took);
        outcome.plugin_time += took;
        let fault = match result {
            Ok(Action::Continue) => continue,
            Ok(Action::Respond(reply)) => match reply_into_response(reply) {
                Ok(reply) => {
                    span.set("wasmgate.answered", i64::from(reply.status().as_u16()));
                    answered = Some(reply.map(body::full));
                    ran = i;
                    break;
                }
                Err(detail) => PluginFault {
                    kind: crate::plugin::FaultKind::Trap,
                    plugin: pool.plugin().name().into(),
                    route: route.name.clone(),
                    detail,
                },
            },
            Err(fault) => fault,
        };
        span.fail(fault.kind.as_str());
        drop(span);
        if handle_fault(pool, &fault, request_id) == FailurePolicy::Skip {
            skipped.push(i);
            continue;
        }
        answered = Some(GatewayError::PluginFailed.response());
        ran = i;
        break;
    }

    // Upstream.
    let keep_request = route.has_response_hooks();
    let mut response = match answered {
        Some(response) => response,
        None => match &route.upstream {
            None => GatewayError::NoResponder.response(),
            Some(upstream) => {
                outcome.upstream = Some(upstream.name());
                let body = client_body.outgoing(&exchange, max_body);
                let out = outbound(
                    upstream,
                    route,
                    &mut exchange,
                    body,
                    keep_request,
                    request_id,
                );
                let mut attempted = Attempted::default();
                let response = dispatch::send(upstream, out, ctx.trace, &mut attempted)
                    .await
                    .unwrap_or_else(GatewayError::response);
                outcome.target = attempted.target;
                outcome.attempts = attempted.attempts;
                response
            }
        },
    };

    // Response phase, in reverse order over the plugins whose request phase ran.
    if keep_request {
        let (mut head, mut body) = response.into_parts();
        // Like requests: the smallest limit among the plugins that read it, and never more
        // than the gateway's body limit.
        let limit = route.chain[..ran]
            .iter()
            .enumerate()
            .filter(|(i, pool)| pool.wants_response() && !skipped.contains(i))
            .filter_map(|(_, pool)| pool.bodies().response)
            .min()
            .map(|limit| limit.min(max_body));
        let deadline = route
            .upstream
            .as_ref()
            .map_or(snapshot.server.body_timeout, |u| u.request_timeout());
        if let Some(limit) = limit
            && may_have_body(&exchange.request.method, head.status)
        {
            let read = buffer::response(&mut head.headers, body, limit);
            (head, body) = match tokio::time::timeout(deadline, read).await {
                Err(_elapsed) => GatewayError::UpstreamTimeout.response().into_parts(),
                Ok(read) => match read {
                    Ok(Buffered::Shown(bytes)) => {
                        exchange.response_body = Some(bytes);
                        (head, body::empty())
                    }
                    Ok(Buffered::Opaque(bytes)) => (head, body::full(bytes)),
                    Ok(Buffered::Streaming(rest)) => (head, rest),
                    Err(error) => error.response().into_parts(),
                },
            };
        }
        exchange.response = Some(head);
        for i in (0..ran).rev() {
            let pool = &route.chain[i];
            if !pool.wants_response() || skipped.contains(&i) {
                continue;
            }
            let timer = Instant::now();
            let span = ctx
                .trace
                .plugin(pool.plugin().name(), &route.name, "response");
            let (back, result) = pool.on_response(exchange).await;
            exchange = back;
            let took = timer.elapsed();
            route.metrics.observe_plugin(i, took);
            outcome.plugin_time += took;
            if let Err(fault) = &result {
                span.fail(fault.kind.as_str());
            }
            drop(span);
            if let Err(fault) = result
                && handle_fault(pool, &fault, request_id) == FailurePolicy::Fail
            {
                let (head, error_body) = GatewayError::PluginFailed.response().into_parts();
                exchange.response = Some(head);
                exchange.response_body = None;
                body = error_body;
            }
        }
        let mut head = exchange
            .response
            .take()
            .unwrap_or_else(|| GatewayError::PluginFailed.response().into_parts().0);
        if let Some(bytes) = exchange.response_body.take() {
            // A plugin may have mapped the status to one without a body (204, 304).
            if may_have_body(&exchange.request.method, head.status) {
                buffer::set_length(&mut head.headers, bytes.len());
                body = body::full(bytes);
            } else {
                body = body::empty();
            }
        }
        response = Response::from_parts(head, body);
    }
    // The consumer an auth plugin established, for the access log.
    outcome.consumer = exchange.context.remove("consumer");
    response
}

/// The client's request body on its way through the gateway.
enum ClientBody {
    /// Not read: it streams to the upstream.
    Streaming(Incoming),
    /// Read for the plugins; what they see is the exchange's `request_body`.
    Read,
    /// Read, but in a coding plugins are not shown: it goes upstream as it came.
    Opaque(Bytes),
}

impl ClientBody {
    /// Reads the body for the plugins, once, up to the route's limit (the smallest declared).
    async fn read(
        &mut self,
        exchange: &mut Exchange,
        limit: Option<u64>,
        snapshot: &Snapshot,
    ) -> Result<(), GatewayError> {
        let incoming = match std::mem::replace(self, ClientBody::Read) {
            ClientBody::Streaming(incoming) => incoming,
            already_read => {
                *self = already_read;
                return Ok(());
            }
        };
        let limit = limit.unwrap_or(snapshot.server.max_body_bytes);
        let timeout = snapshot.server.body_timeout;
        let headers = &mut exchange.request.headers;
        match buffer::request(headers, incoming, limit, timeout).await? {
            Buffered::Shown(bytes) => exchange.request_body = Some(bytes),
            Buffered::Opaque(bytes) => *self = ClientBody::Opaque(bytes),
            // Requests over the limit are refused, never streamed on.
            Buffered::Streaming(_) => return Err(GatewayError::BodyTooLarge),
        }
        Ok(())
    }

    /// The body to send upstream: what plugins left (or set), else the client's.
    fn outgoing(self, exchange: &Exchange, max_body: u64) -> OutboundBody {
        if let Some(bytes) = &exchange.request_body {
            return OutboundBody::Complete(bytes.clone());
        }
        match self {
            // No body at all (most GETs): nothing to stream, and the request can be retried.
            ClientBody::Streaming(incoming) if incoming.is_end_stream() => {
                OutboundBody::Complete(Bytes::new())
            }
            ClientBody::Streaming(incoming) => {
                let limited = body::limited(incoming, max_body);
                // Marked as the client's, so a broken body gets 400, not 502.
                OutboundBody::Streaming(body::stream(http_body_util::BodyExt::map_err(
                    limited,
                    crate::body::ClientBodyError,
                )))
            }
            // Read, and no plugin left a body: the client sent none that decoded to anything.
            ClientBody::Read => OutboundBody::Complete(Bytes::new()),
            ClientBody::Opaque(bytes) => OutboundBody::Complete(bytes),
        }
    }
}

/// Whether a response to `method` with `status` can carry a body (RFC 9110 §6.4.1).
fn may_have_body(method: &Method, status: StatusCode) -> bool {
    method != Method::HEAD
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

/// Logs a plugin fault and returns the plugin's policy.
fn handle_fault(pool: &PluginPool, fault: &PluginFault, request_id: &HeaderValue) -> FailurePolicy {
    let policy = pool.plugin().settings().on_error;
    crate::metrics::plugin_fault(&fault.plugin, &fault.route, fault.kind.as_str());
    tracing::error!(
        target: "wasmgate::plugin",
        plugin = %fault.plugin,
        route = %fault.route,
        kind = fault.kind.as_str(),
        request_id = request_id.to_str().unwrap_or("-"),
        policy = ?policy,
        "plugin fault: {}",
        fault.detail,
    );
    policy
}

/// The request as it goes upstream: hop-by-hop fields removed, `X-Forwarded-*` and the
/// request id set, the route's prefix stripped, and an `Upgrade` carried through.
fn outbound(
    upstream: &Upstream,
    route: &Route,
    exchange: &mut Exchange,
    body: OutboundBody,
    keep_request: bool,
    request_id: &HeaderValue,
) -> Outbound {
    let original = &mut exchange.request;
    let path_and_query = upstream_path(
        &original.uri,
        route.strip_prefix.as_deref(),
        route.case_insensitive,
    );
    let host = crate::ingress::host(original).map(str::to_owned);
    let upgrade = match original.headers.get(header::UPGRADE) {
        Some(protocol) => original
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .map(|on| {
                let limits = original.extensions.remove::<tunnel::TunnelLimits>();
                (protocol.clone(), tunnel::ClientUpgrade { on, limits })
            }),
        None => None,
    };
    let mut headers = match keep_request {
        true => original.headers.clone(),
        false => std::mem::take(&mut original.headers),
    };
    forward::strip_hop_by_hop(&mut headers);
    forward::set_forwarded(
        &mut headers,
        forward::Hop {
            peer: exchange.peer_ip,
            client: exchange.client_ip,
            tls: exchange.tls,
            host: host.as_deref(),
        },
    );
    headers.insert(&forward::REQUEST_ID, request_id.clone());
    if route.reads_response_bodies() {
        // Plugins read response bodies here: ask for them uncompressed.
        headers.remove(header::ACCEPT_ENCODING);
    }
    if let OutboundBody::Complete(bytes) = &body
        && (!bytes.is_empty() || headers.contains_key(header::CONTENT_LENGTH))
    {
        buffer::set_length(&mut headers, bytes.len());
    }
    let upgrade = upgrade.map(|(protocol, on)| {
        dispatch::keep_upgrade(&mut headers, protocol);
        on
    });
    Outbound {
        method: exchange.request.method.clone(),
        path_and_query,
        hash_key: upstream.hash_key(&headers, exchange.client_ip),
        headers,
        body,
        upgrade,
    }
}

/// The path and query sent upstream, with the route's prefix removed when configured. The
/// path is canonical (see [`crate::ingress`]), so the result is too: never relative, never
/// starting with `//`.
fn upstream_path(uri: &Uri, strip_prefix: Option<&str>, case_insensitive: bool) -> PathAndQuery {
    let path = uri.path();
    let rest =
        match strip_prefix.and_then(|p| crate::router::strip_prefix(path, p, case_insensitive)) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
            // Unchanged: share the original bytes instead of copying them.
            _ => {
                return uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
            }
        };
    let rewritten = match uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    // A suffix of a valid path, plus the original query, is a valid path and query.
    PathAndQuery::try_from(rewritten).unwrap_or_else(|_| PathAndQuery::from_static("/"))
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::upstream_path;

    #[test]
    fn strip_prefix_keeps_segments_and_query() {
        let uri = "/api/v1/users?x=1".parse().unwrap();
        assert_eq!(upstream_path(&uri, Some("/api/v1"), false), "/users?x=1");
        let uri = "/api/v1".parse().unwrap();
        assert_eq!(upstream_path(&uri, Some("/api/v1"), false), "/");
        let uri = "/api/v10".parse().unwrap();
        assert_eq!(upstream_path(&uri, Some("/api/v1"), false), "/api/v10");
        let uri = "/other".parse().unwrap();
        assert_eq!(upstream_path(&uri, None, false), "/other");
        let uri = "/API/v1/x".parse().unwrap();
        assert_eq!(upstream_path(&uri, Some("/api/v1"), true), "/x");
        assert_eq!(upstream_path(&uri, Some("/api/v1"), false), "/API/v1/x");
        // With merge_slashes off, what follows the prefix may start with `//`.
        let uri = "/api//evil.example/x".parse().unwrap();
        assert_eq!(upstream_path(&uri, Some("/api"), false), "/evil.example/x");
    }
}
