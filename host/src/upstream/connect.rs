//! Connections to targets: plain HTTP/1.1, h2c with prior knowledge, or TLS (rustls) with
//! HTTP/2 or HTTP/1.1 chosen by ALPN, through one pooled client type.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use super::UpstreamSettings;
use crate::body::{self, ProxyBody};

/// TLS to an upstream's targets.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// Trusted roots and the optional client certificate.
    pub config: Arc<ClientConfig>,
    /// The name sent in SNI and checked against the certificate (default: the target's host).
    pub server_name: Option<ServerName<'static>>,
}

/// Never used to connect (plain HTTP only), but the connector type wants one.
static PLAIN: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    Arc::new(config.unwrap_or_else(|_| {
        ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    }))
});

/// A pooled client for one upstream on one worker.
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
}

impl UpstreamClient {
    /// A client as the upstream's settings say.
    pub fn new(settings: &UpstreamSettings) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = settings.tls.as_ref();
        // ALPN is set by the connector from the versions enabled below.
        let config = tls.map_or_else(|| (**PLAIN).clone(), |t| (*t.config).clone());
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http();
        let builder = match tls.and_then(|t| t.server_name.clone()) {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let connector = match settings.http2 {
            true => builder.enable_all_versions().wrap_connector(http),
            false => builder.enable_http1().wrap_connector(http),
        };
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_idle_timeout(settings.idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_target)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        if settings.http2 && tls.is_none() {
            client.http2_only(true);
        }
        Self {
            client: client.build(connector),
        }
    }

    /// Sends a request.
    pub fn request(&self, request: Request<ProxyBody>) -> ResponseFuture {
        self.client.request(request)
    }

    /// A health probe: `GET uri`, the status or why there is none.
    pub async fn probe(
        &self,
        uri: Result<Uri, http::Error>,
        authority: &Authority,
        timeout: Duration,
    ) -> Result<StatusCode, String> {
        let uri = uri.map_err(|e| e.to_string())?;
        let mut request = Request::new(body::empty());
        *request.uri_mut() = uri;
        if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        request.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("wasmgate-health-check"),
        );
        // The timeout covers the body too: a target that sends a head and stalls must not
        // hold up the checks of every target.
        let answer = async {
            match self.client.request(request).await {
                Err(e) => Err(crate::errors::chain(&e)),
                Ok(response) => Ok(drain(response).await),
            }
        };
        tokio::time::timeout(timeout, answer)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }
}

/// Reads and drops a probe's body so its connection can be reused.
async fn drain(response: Response<Incoming>) -> StatusCode {
    use http_body_util::BodyExt;
    let status = response.status();
    let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await;
    status
}
