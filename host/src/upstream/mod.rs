//! Upstreams: a pool of targets behind one name. Each upstream chooses a target per request
//! ([`balance`]), keeps track of target health ([`health`]: passive ejection and active
//! checks), guards itself with a circuit breaker ([`circuit`]) and retries within a budget
//! ([`retry`]). Connections are pooled per worker, over plain HTTP/1.1, h2c, or TLS with
//! HTTP/2 or HTTP/1.1 by ALPN.

pub mod balance;
pub mod circuit;
mod connect;
pub mod health;
mod log_throttle;
pub mod retry;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::HeaderMap;
use http::header::{self, HeaderName};
use http::uri::Authority;

use crate::adaptive::{AdaptiveLimit, AdaptiveSettings};
use balance::{Balancer, Pick, Strategy};
use circuit::{Circuit, CircuitSettings};
use connect::UpstreamClient;
pub use connect::UpstreamTls;
use health::{ActiveSettings, Change, OutlierSettings, TargetHealth};
use log_throttle::LogThrottle;
use retry::{RetryBudget, RetrySettings};

/// Settings of one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the response head, over all attempts.
    pub request_timeout: Duration,
    /// Idle time after which a pooled connection is closed.
    pub idle_timeout: Duration,
    /// Idle connections kept per target.
    pub max_idle_per_target: usize,
    /// Adaptive concurrency limit, when configured.
    pub adaptive: Option<AdaptiveSettings>,
    /// How targets are chosen.
    pub balance: Strategy,
    /// The key consistent hashing uses.
    pub hash_on: Option<HashOn>,
    /// Passive health checks (on unless turned off).
    pub outlier: Option<OutlierSettings>,
    /// Active health checks.
    pub active: Option<ActiveSettings>,
    /// Circuit breaker.
    pub circuit: Option<CircuitSettings>,
    /// Retries.
    pub retry: Option<RetrySettings>,
    /// TLS to the targets.
    pub tls: Option<UpstreamTls>,
    /// Speak HTTP/2: by ALPN over TLS, with prior knowledge (h2c) without.
    pub http2: bool,
}

/// What consistent hashing hashes (`hash_on = "…"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// `header:<name>`.
    Header(HeaderName),
    /// `cookie:<name>`.
    Cookie(String),
    /// `client-ip`.
    ClientIp,
}

impl std::str::FromStr for HashOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "client-ip" {
            return Ok(HashOn::ClientIp);
        }
        if let Some(name) = s.strip_prefix("header:") {
            return HeaderName::from_bytes(name.trim().as_bytes())
                .map(HashOn::Header)
                .map_err(|_| format!("`{name}` is not a header name"));
        }
        if let Some(name) = s.strip_prefix("cookie:").filter(|n| !n.trim().is_empty()) {
            return Ok(HashOn::Cookie(name.trim().to_owned()));
        }
        Err(format!(
            "`{s}` is not a hash key (write \"header:<name>\", \"cookie:<name>\" or \"client-ip\")"
        ))
    }
}

/// One target of an upstream.
pub struct Target {
    /// `host:port`.
    pub authority: Authority,
    /// Share of requests relative to the other targets.
    pub weight: u32,
    /// Passive and active health.
    pub health: TargetHealth,
    /// Bounds the failure warnings this target writes.
    pub warnings: LogThrottle,
    outstanding: AtomicU32,
}

impl Target {
    /// Requests in flight to this target.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// A request on a target: counts as outstanding until dropped, which for the attempt that
/// answers is when its response body has been passed on.
pub struct InFlight {
    upstream: Arc<Upstream>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.upstream.targets[self.index]
            .outstanding
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// One `[upstreams.<name>]` entry, ready to take requests.
pub struct Upstream {
    name: String,
    /// What the config said, to keep this upstream (and its health) across reloads.
    fingerprint: String,
    targets: Vec<Target>,
    balancer: Balancer,
    /// One connection pool per worker thread, so a connection is only used by the thread
    /// whose runtime drives it.
    clients: Vec<UpstreamClient>,
    settings: UpstreamSettings,
    adaptive: Option<Arc<AdaptiveLimit>>,
    circuit: Option<Arc<Circuit>>,
    budget: Option<RetryBudget>,
    checks_started: AtomicBool,
    metrics: crate::metrics::UpstreamMetrics,
}

impl Upstream {
    /// An upstream over `targets` (`host:port` and weight), with a pool for each of `workers`.
    pub fn new(
        name: &str,
        fingerprint: String,
        targets: Vec<(Authority, u32)>,
        settings: UpstreamSettings,
        workers: usize,
    ) -> Self {
        let weights = targets.iter().map(|(_, w)| (*w).max(1)).collect();
        Self {
            name: name.to_owned(),
            fingerprint,
            balancer: Balancer::new(settings.balance, weights),
            targets: targets
                .into_iter()
                .map(|(authority, weight)| Target {
                    authority,
                    weight: weight.max(1),
                    health: TargetHealth::default(),
                    warnings: LogThrottle::default(),
                    outstanding: AtomicU32::new(0),
                })
                .collect(),
            clients: (0..workers.max(1))
                .map(|_| UpstreamClient::new(&settings))
                .collect(),
            adaptive: settings.adaptive.clone().map(AdaptiveLimit::new),
            circuit: settings.circuit.clone().map(|c| Arc::new(Circuit::new(c))),
            budget: settings.retry.as_ref().map(RetryBudget::new),
            settings,
            checks_started: AtomicBool::new(false),
            metrics: crate::metrics::UpstreamMetrics::new(name),
        }
    }

    /// The upstream's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the config said about this upstream.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The settings.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// The targets, in config order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The adaptive concurrency limiter, when configured.
    pub fn adaptive(&self) -> Option<&Arc<AdaptiveLimit>> {
        self.adaptive.as_ref()
    }

    /// The circuit breaker, when configured.
    pub fn circuit(&self) -> Option<&Arc<Circuit>> {
        self.circuit.as_ref()
    }

    /// The retry settings and budget, when configured.
    pub fn retry(&self) -> Option<(&RetrySettings, &RetryBudget)> {
        self.settings.retry.as_ref().zip(self.budget.as_ref())
    }

    /// Time allowed for the response head.
    pub fn request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    /// The scheme requests to the targets use.
    pub fn scheme(&self) -> http::uri::Scheme {
        match self.settings.tls {
            Some(_) => http::uri::Scheme::HTTPS,
            None => http::uri::Scheme::HTTP,
        }
    }

    /// The calling worker's pooled HTTP client.
    pub fn client(&self) -> &UpstreamClient {
        &self.clients[crate::worker::index() % self.clients.len()]
    }

    /// The consistent-hash key of a request, when the upstream hashes and the request has it.
    pub fn hash_key(&self, headers: &HeaderMap, client: IpAddr) -> Option<u64> {
        let hash_on = self.settings.hash_on.as_ref()?;
        match hash_on {
            HashOn::ClientIp => Some(match client {
                IpAddr::V4(ip) => balance::hash_key(&ip.octets()),
                IpAddr::V6(ip) => balance::hash_key(&ip.octets()),
            }),
            HashOn::Header(name) => headers.get(name).map(|v| balance::hash_key(v.as_bytes())),
            HashOn::Cookie(name) => cookie(headers, name).map(|v| balance::hash_key(v.as_bytes())),
        }
    }

    /// A target for the next attempt, counted as outstanding while the guard lives; `None`
    /// when no target is available.
    pub fn pick(
        self: &Arc<Self>,
        key: Option<u64>,
        avoid: Option<usize>,
    ) -> Option<(usize, InFlight)> {
        let now = crate::clock::now_ms();
        let i = self.balancer.pick(&Pick {
            available: &|i| self.targets[i].health.available(now),
            outstanding: &|i| self.targets[i].outstanding(),
            key,
            avoid,
        })?;
        self.targets[i].outstanding.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight {
            upstream: self.clone(),
            index: i,
        };
        Some((i, in_flight))
    }

    /// Whether a target other than `i` may take requests now.
    pub fn another_available(&self, i: usize) -> bool {
        let now = crate::clock::now_ms();
        self.targets
            .iter()
            .enumerate()
            .any(|(j, t)| j != i && t.health.available(now))
    }

    /// Counts one attempt's time to its response head (or failure).
    pub fn observe(&self, elapsed: Duration) {
        self.metrics.observe(elapsed);
    }

    /// Records how an attempt on target `i` went, for passive health checks.
    pub fn record(&self, i: usize, ok: bool) {
        let Some(settings) = &self.settings.outlier else {
            return;
        };
        let may_eject = || {
            let now = crate::clock::now_ms();
            let ejected = self
                .targets
                .iter()
                .filter(|t| t.health.ejected(now))
                .count();
            ejected < health::max_ejected(self.targets.len(), settings.max_ejection_percent)
        };
        if let Some(change) = self.targets[i].health.record(ok, settings, may_eject) {
            self.log_change(i, change);
        }
    }

    fn log_change(&self, i: usize, change: Change) {
        let target = &self.targets[i].authority;
        let upstream = self.name.as_str();
        match change {
            Change::Ejected(length) => {
                crate::metrics::upstream_ejection(upstream);
                tracing::warn!(target: "wasmgate::upstream", upstream, upstream_target = %target, duration = ?length, "target ejected after consecutive failures");
            }
            Change::Readmitted => {
                tracing::info!(target: "wasmgate::upstream", upstream, upstream_target = %target, "target back from ejection");
            }
            Change::MarkedUnhealthy => {
                tracing::warn!(target: "wasmgate::upstream", upstream, upstream_target = %target, "target unhealthy: failed its health checks");
            }
            Change::MarkedHealthy => {
                tracing::info!(target: "wasmgate::upstream", upstream, upstream_target = %target, "target healthy: passed its health checks");
            }
        }
    }

    /// Starts the active health checks, once, if configured. They run on the calling runtime
    /// and stop when the upstream is dropped (a reload that changed it).
    pub fn start_health_checks(self: &Arc<Self>) {
        let Some(settings) = self.settings.active.clone() else {
            return;
        };
        if self.checks_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let client = UpstreamClient::new(&self.settings);
        let upstream = Arc::downgrade(self);
        tokio::spawn(health_checks(upstream, client, settings));
    }
}

async fn health_checks(upstream: Weak<Upstream>, client: UpstreamClient, settings: ActiveSettings) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        let probes = upstream.targets.iter().map(|t| {
            let uri = http::Uri::builder()
                .scheme(upstream.scheme())
                .authority(t.authority.clone())
                .path_and_query(settings.path.as_str())
                .build();
            client.probe(uri, &t.authority, settings.timeout)
        });
        let results = futures_util::future::join_all(probes).await;
        for (i, result) in results.into_iter().enumerate() {
            let passed = match result {
                Ok(status) => settings.passes(status),
                Err(error) => {
                    tracing::debug!(target: "wasmgate::upstream", upstream = upstream.name(), upstream_target = %upstream.targets[i].authority, %error, "health check failed");
                    false
                }
            };
            if let Some(change) = upstream.targets[i].health.probe(passed, &settings) {
                upstream.log_change(i, change);
            }
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` fields.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_on_parses_and_explains() {
        assert_eq!("client-ip".parse(), Ok(HashOn::ClientIp));
        assert_eq!(
            "header:X-User".parse(),
            Ok(HashOn::Header(HeaderName::from_static("x-user")))
        );
        assert_eq!("cookie:sid".parse(), Ok(HashOn::Cookie("sid".into())));
        let err = "session".parse::<HashOn>().unwrap_err();
        assert!(err.contains("\"cookie:<name>\""), "{err}");
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; sid=xyz".parse().unwrap());
        assert_eq!(cookie(&h, "sid"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
