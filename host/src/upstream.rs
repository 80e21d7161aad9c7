//! Upstreams: a pool of targets behind one name, with pooled keep-alive connections,
//! round-robin target selection and connect/response timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use std::sync::Arc;

use crate::adaptive::{AdaptiveLimit, AdaptiveSettings};
use crate::proxy::body::ProxyBody;

/// Settings of one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the response head.
    pub request_timeout: Duration,
    /// Idle time after which a pooled connection is closed.
    pub idle_timeout: Duration,
    /// Idle connections kept per target.
    pub max_idle_per_target: usize,
    /// Adaptive concurrency limit, when configured.
    pub adaptive: Option<AdaptiveSettings>,
}

/// One `[upstreams.<name>]` entry, ready to take requests.
pub struct Upstream {
    name: String,
    targets: Vec<Authority>,
    next: AtomicUsize,
    /// One connection pool per worker thread, so a connection is only used by the thread
    /// whose runtime drives it.
    clients: Vec<Client<HttpConnector, ProxyBody>>,
    request_timeout: Duration,
    adaptive: Option<Arc<AdaptiveLimit>>,
}

impl Upstream {
    /// An upstream over `targets` (each `host:port`), with a pool for each of `workers`.
    pub fn new(
        name: &str,
        targets: Vec<Authority>,
        settings: &UpstreamSettings,
        workers: usize,
    ) -> Self {
        Self {
            name: name.to_owned(),
            targets,
            next: AtomicUsize::new(0),
            clients: (0..workers.max(1)).map(|_| client(settings)).collect(),
            request_timeout: settings.request_timeout,
            adaptive: settings.adaptive.clone().map(AdaptiveLimit::new),
        }
    }

    /// The adaptive concurrency limiter, when configured.
    pub fn adaptive(&self) -> Option<&Arc<AdaptiveLimit>> {
        self.adaptive.as_ref()
    }

    /// The upstream's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next target, round-robin.
    pub fn pick(&self) -> &Authority {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.targets[i % self.targets.len()]
    }

    /// The calling worker's pooled HTTP client.
    pub fn client(&self) -> &Client<HttpConnector, ProxyBody> {
        &self.clients[crate::server::worker_index() % self.clients.len()]
    }

    /// Time allowed for the response head.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
}

fn client(settings: &UpstreamSettings) -> Client<HttpConnector, ProxyBody> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.idle_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_target)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// Parses a target as written in the config (`host:port`; the port is required).
pub fn parse_target(target: &str) -> Result<Authority, String> {
    let authority: Authority = target
        .parse()
        .map_err(|_| format!("`{target}` is not a `host:port` target"))?;
    if authority.port_u16().is_none() {
        return Err(format!("`{target}` has no port (write `{target}:80`)"));
    }
    if target.contains('@') {
        return Err(format!("`{target}`: user info is not allowed in a target"));
    }
    Ok(authority)
}
