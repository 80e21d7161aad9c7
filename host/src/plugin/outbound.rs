//! The `http-client` and `state` capabilities: outbound HTTP to allow-listed hosts, and
//! key/value state with expiry.
//!
//! State and cached responses live in a [`StateScope`]: by default one per (plugin, route,
//! config), so one plugin on two routes keeps two sets (a JWKS document fetched for one
//! route's issuer is never another route's), and one route filling its budget leaves the
//! others theirs. Routes whose entries name the same `state_scope` share one, on purpose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

use super::bindings::wasmgate::plugin::http_client::{self as wit, Error, Request, Response};
use super::bindings::wasmgate::plugin::state;
use super::host::PluginState;

/// Cached responses kept per state scope at most.
const CACHE_ENTRIES: usize = 1024;
/// The longest a state value lives.
const STATE_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest state value.
const STATE_MAX_VALUE: usize = 1 << 20;

/// What a plugin's config allows it to reach, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `host` or `host:port` entries; a host without a port allows 80 and 443.
    pub allow: Vec<String>,
    /// Deadline per request.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response: usize,
}

/// One plugin's outbound HTTP: its allow-list and client. Cached responses live in the
/// caller's [`StateScope`].
pub struct Outbound {
    settings: HttpSettings,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Outbound {
    pub fn new(settings: HttpSettings) -> Self {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            settings,
            client: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    fn allowed(&self, uri: &http::Uri) -> bool {
        let (Some(host), Some(scheme)) = (uri.host(), uri.scheme_str()) else {
            return false;
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        self.settings
            .allow
            .iter()
            .any(|entry| match entry.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => {
                    h.eq_ignore_ascii_case(host) && p.parse() == Ok(port)
                }
                _ => entry.eq_ignore_ascii_case(host) && (port == 80 || port == 443),
            })
    }

    async fn send(&self, req: Request, scope: &StateScope) -> Result<Response, Error> {
        let uri: http::Uri = req
            .url
            .parse()
            .map_err(|_| Error::InvalidRequest(format!("`{}` is not a URL", req.url)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(Error::InvalidRequest(format!(
                "`{}` is not an http(s) URL",
                req.url
            )));
        }
        if !self.allowed(&uri) {
            return Err(Error::NotAllowed(
                uri.authority().map(|a| a.to_string()).unwrap_or_default(),
            ));
        }
        let key = (req.cache_ttl_ms > 0).then(|| cache_key(&req));
        if let Some(key) = &key
            && let Some(hit) = scope.cached(key)
        {
            return Ok(hit);
        }
        let mut builder = http::Request::builder()
            .method(req.method.as_str())
            .uri(uri);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outgoing = builder
            .body(Full::new(Bytes::from(req.body)))
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(outgoing)
                .await
                .map_err(|e| Error::Connection(crate::errors::chain(&e)))?;
            let (head, body) = resp.into_parts();
            let body = Limited::new(body, self.settings.max_response)
                .collect()
                .await
                .map_err(
                    |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                        Some(_) => Error::TooLarge,
                        None => Error::Connection(e.to_string()),
                    },
                )?
                .to_bytes();
            Ok(Response {
                status: head.status.as_u16(),
                headers: head
                    .headers
                    .iter()
                    .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                    .collect(),
                body: body.to_vec(),
            })
        };
        let response = tokio::time::timeout(self.settings.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout)??;
        if let Some(key) = key
            && (200..300).contains(&response.status)
        {
            scope.store_response(
                key,
                Duration::from_millis(u64::from(req.cache_ttl_ms)),
                &response,
            );
        }
        Ok(response)
    }
}

/// What identifies a cached response: everything that can change the answer — method, the
/// full URL, every header (names case-insensitively, in order) and the body, each
/// length-prefixed so no two requests run together into one key.
fn cache_key(req: &Request) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [req.method.as_bytes(), req.url.as_bytes()] {
        digest.update((part.len() as u64).to_le_bytes());
        digest.update(part);
    }
    for (name, value) in &req.headers {
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name.to_ascii_lowercase().as_bytes());
        digest.update((value.len() as u64).to_le_bytes());
        digest.update(value.as_bytes());
    }
    digest.update(&req.body);
    digest.finalize().into()
}

impl wit::Host for PluginState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, Error>> {
        let Some(outbound) = self.services.outbound.clone() else {
            return Ok(Err(Error::NotAllowed("no http_allow configured".into())));
        };
        let scope = self.scope.clone();
        Ok(outbound.send(req, &scope).await)
    }
}

/// What one state scope may hold: `[plugins.<name>] state_max_entries` and `state_max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateBudget {
    /// Entries at most.
    pub entries: usize,
    /// Bytes of keys and values together at most.
    pub bytes: usize,
}

impl Default for StateBudget {
    fn default() -> Self {
        Self {
            entries: 10_000,
            bytes: 16 << 20,
        }
    }
}

/// Every state scope of a runtime, by name, for as long as a pool uses it. A reload finds the
/// scopes of the pools it replaces, so state outlives the swap; a scope no pool uses any more
/// is freed.
#[derive(Default)]
pub struct StateStore {
    scopes: Mutex<HashMap<ScopeId, Weak<StateScope>>>,
}

/// A scope's identity: the plugin's name, and the scope's name within the plugin.
type ScopeId = (Arc<str>, String);

impl StateStore {
    /// The scope for `plugin` configured with `config` on `route`, or the one named `shared`
    /// (shared by every route of the plugin that names it), with `budget` from now on.
    pub fn scope(
        &self,
        plugin: &Arc<str>,
        route: &str,
        config: &str,
        shared: Option<&str>,
        budget: StateBudget,
    ) -> Arc<StateScope> {
        let name = match shared {
            Some(shared) => format!("shared {shared}"),
            None => {
                let config: String = Sha256::digest(config.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("route {route} config {config}")
            }
        };
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes.retain(|_, scope| scope.strong_count() > 0);
        let id = (plugin.clone(), name);
        if let Some(scope) = scopes.get(&id).and_then(Weak::upgrade) {
            scope.lock().budget = budget;
            return scope;
        }
        let scope = Arc::new(StateScope::new(budget));
        scopes.insert(id, Arc::downgrade(&scope));
        scope
    }
}

/// Key/value state with expiry and cached outbound responses, for the pools of one scope.
pub struct StateScope {
    entries: Mutex<Entries>,
    responses: Mutex<HashMap<[u8; 32], (Instant, Response)>>,
}

struct Entries {
    budget: StateBudget,
    map: HashMap<String, (Instant, Vec<u8>)>,
    bytes: usize,
}

impl Entries {
    fn purge_expired(&mut self, now: Instant) {
        let mut freed = 0;
        self.map.retain(|key, (expires, value)| {
            let keep = *expires > now;
            if !keep {
                freed += key.len() + value.len();
            }
            keep
        });
        self.bytes -= freed;
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, value)) = self.map.remove(key) {
            self.bytes -= key.len() + value.len();
        }
    }

    fn fits(&self, size: usize) -> bool {
        self.map.len() < self.budget.entries && self.bytes + size <= self.budget.bytes
    }
}

impl StateScope {
    fn new(budget: StateBudget) -> Self {
        Self {
            entries: Mutex::new(Entries {
                budget,
                map: HashMap::new(),
                bytes: 0,
            }),
            responses: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let entries = self.lock();
        let (expires, value) = entries.map.get(key)?;
        (*expires > Instant::now()).then(|| value.clone())
    }

    /// Stores a value; when the scope is full even after dropping expired entries, the value
    /// is not stored (callers treat state as a cache).
    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) {
        if value.len() > STATE_MAX_VALUE {
            return;
        }
        let mut entries = self.lock();
        entries.remove(&key);
        let now = Instant::now();
        let size = key.len() + value.len();
        if !entries.fits(size) {
            entries.purge_expired(now);
        }
        if entries.fits(size) {
            entries.bytes += size;
            entries
                .map
                .insert(key, (now + ttl.min(STATE_MAX_TTL), value));
        }
    }

    fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Response> {
        let cache = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, r)| r.clone())
    }

    fn store_response(&self, key: [u8; 32], ttl: Duration, response: &Response) {
        let mut cache = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (expires, _)| *expires > now);
        }
        if cache.len() < CACHE_ENTRIES {
            cache.insert(key, (now + ttl, response.clone()));
        }
    }
}

impl state::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.scope.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u32) -> wasmtime::Result<()> {
        let ttl = Duration::from_millis(u64::from(ttl_ms));
        self.scope.set(key, value, ttl);
        Ok(())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.scope.delete(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn budget(entries: usize, bytes: usize) -> StateBudget {
        StateBudget { entries, bytes }
    }

    #[test]
    fn routes_get_their_own_scope_unless_they_name_a_shared_one() {
        let store = StateStore::default();
        let plugin: Arc<str> = "jwt".into();
        let a = store.scope(&plugin, "a", "{}", None, StateBudget::default());
        let b = store.scope(&plugin, "b", "{}", None, StateBudget::default());
        a.set("jwks:document".into(), b"issuer A".to_vec(), HOUR);
        assert_eq!(
            b.get("jwks:document"),
            None,
            "route b never sees route a's state"
        );
        let other_config = store.scope(&plugin, "a", r#"{"x":1}"#, None, StateBudget::default());
        assert_eq!(other_config.get("jwks:document"), None);
        let again = store.scope(&plugin, "a", "{}", None, StateBudget::default());
        assert_eq!(again.get("jwks:document"), Some(b"issuer A".to_vec()));

        let s1 = store.scope(&plugin, "a", "{}", Some("tenant"), StateBudget::default());
        let s2 = store.scope(&plugin, "b", "{}", Some("tenant"), StateBudget::default());
        s1.set("k".into(), b"v".to_vec(), HOUR);
        assert_eq!(s2.get("k"), Some(b"v".to_vec()));
        let other_plugin: Arc<str> = "other".into();
        let s3 = store.scope(
            &other_plugin,
            "b",
            "{}",
            Some("tenant"),
            StateBudget::default(),
        );
        assert_eq!(s3.get("k"), None, "a shared scope is the plugin's own");
    }

    #[test]
    fn a_full_scope_leaves_the_others_their_budget() {
        let store = StateStore::default();
        let plugin: Arc<str> = "cache".into();
        let greedy = store.scope(&plugin, "a", "{}", None, budget(3, 1 << 10));
        let quiet = store.scope(&plugin, "b", "{}", None, budget(3, 1 << 10));
        for i in 0..10 {
            greedy.set(format!("k{i}"), vec![0; 10], HOUR);
        }
        assert_eq!(greedy.get("k3"), None, "past its entry budget");
        assert!(greedy.get("k2").is_some());
        quiet.set("k".into(), vec![1; 10], HOUR);
        assert_eq!(quiet.get("k"), Some(vec![1; 10]));
        // Bytes count too, and an overwrite frees the old value first.
        let small = store.scope(&plugin, "c", "{}", None, budget(100, 20));
        small.set("k".into(), vec![0; 19], HOUR);
        small.set("k".into(), vec![1; 19], HOUR);
        assert_eq!(small.get("k"), Some(vec![1; 19]));
        small.set("j".into(), vec![0; 1], HOUR);
        assert_eq!(small.get("j"), None);
    }

    #[test]
    fn a_scope_no_pool_uses_is_freed() {
        let store = StateStore::default();
        let plugin: Arc<str> = "p".into();
        let scope = store.scope(&plugin, "a", "{}", None, StateBudget::default());
        scope.set("k".into(), b"v".to_vec(), HOUR);
        drop(scope);
        let fresh = store.scope(&plugin, "a", "{}", None, StateBudget::default());
        assert_eq!(fresh.get("k"), None);
    }
}
