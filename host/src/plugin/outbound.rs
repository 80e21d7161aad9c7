//! The `http-client` and `state` capabilities: outbound HTTP to allow-listed hosts, and
//! key/value state with expiry, both shared by every instance of a plugin.

use std::collections::HashMap;
use std::sync::Mutex;
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

/// Cached responses kept per plugin at most.
const CACHE_ENTRIES: usize = 1024;
/// State entries kept per plugin at most, and the longest a value lives.
const STATE_ENTRIES: usize = 100_000;
const STATE_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest state value, and the most bytes all values together may take.
const STATE_MAX_VALUE: usize = 1 << 20;
const STATE_MAX_BYTES: usize = 256 << 20;

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

/// One plugin's outbound HTTP: its allow-list, client and response cache.
pub struct Outbound {
    settings: HttpSettings,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    cache: Mutex<HashMap<[u8; 32], (Instant, Response)>>,
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
            cache: Mutex::new(HashMap::new()),
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

    async fn send(&self, req: Request) -> Result<Response, Error> {
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
            && let Some(hit) = self.cached(key)
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
                .map_err(|e| Error::Connection(crate::proxy::error::chain(&e)))?;
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
            self.store(
                key,
                Duration::from_millis(u64::from(req.cache_ttl_ms)),
                &response,
            );
        }
        Ok(response)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Response> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, r)| r.clone())
    }

    fn store(&self, key: [u8; 32], ttl: Duration, response: &Response) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (expires, _)| *expires > now);
        }
        if cache.len() < CACHE_ENTRIES {
            cache.insert(key, (now + ttl, response.clone()));
        }
    }
}

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
        Ok(outbound.send(req).await)
    }
}

/// Key/value state with expiry for every plugin of a runtime, one namespace per plugin name.
#[derive(Default)]
pub struct StateStore {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<(String, String), (Instant, Vec<u8>)>,
    bytes: usize,
}

impl Entries {
    fn purge_expired(&mut self, now: Instant) {
        let mut freed = 0;
        self.map.retain(|(_, key), (expires, value)| {
            let keep = *expires > now;
            if !keep {
                freed += key.len() + value.len();
            }
            keep
        });
        self.bytes -= freed;
    }

    fn remove(&mut self, id: &(String, String)) {
        if let Some((_, value)) = self.map.remove(id) {
            self.bytes -= id.1.len() + value.len();
        }
    }
}

impl StateStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, namespace: &str, key: String) -> Option<Vec<u8>> {
        let entries = self.lock();
        let (expires, value) = entries.map.get(&(namespace.to_owned(), key))?;
        (*expires > Instant::now()).then(|| value.clone())
    }

    /// Stores a value; when the store is full even after dropping expired entries, the value
    /// is not stored (callers treat state as a cache).
    fn set(&self, namespace: &str, key: String, value: Vec<u8>, ttl: Duration) {
        if value.len() > STATE_MAX_VALUE {
            return;
        }
        let mut entries = self.lock();
        let id = (namespace.to_owned(), key);
        entries.remove(&id);
        let now = Instant::now();
        let size = id.1.len() + value.len();
        if entries.map.len() >= STATE_ENTRIES || entries.bytes + size > STATE_MAX_BYTES {
            entries.purge_expired(now);
        }
        if entries.map.len() < STATE_ENTRIES && entries.bytes + size <= STATE_MAX_BYTES {
            entries.bytes += size;
            entries
                .map
                .insert(id, (now + ttl.min(STATE_MAX_TTL), value));
        }
    }

    fn delete(&self, namespace: &str, key: String) {
        self.lock().remove(&(namespace.to_owned(), key));
    }
}

impl state::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.services.state.get(&self.label.plugin, key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u32) -> wasmtime::Result<()> {
        let ttl = Duration::from_millis(u64::from(ttl_ms));
        self.services.state.set(&self.label.plugin, key, value, ttl);
        Ok(())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.services.state.delete(&self.label.plugin, key);
        Ok(())
    }
}
