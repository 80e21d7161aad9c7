//! Listeners: accept connections, terminate TLS, speak HTTP/1.1 and HTTP/2 (h2c by preface,
//! h2 by ALPN), hand requests to the proxy on the current snapshot, and drain gracefully on
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::{self, Connection};
use crate::snapshot::{ServerSettings, Snapshot};

/// Time a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running gateway: bound listeners serving the current snapshot.
pub struct Gateway {
    snapshot: Arc<ArcSwap<Snapshot>>,
    bound: Vec<(String, SocketAddr)>,
    listeners: Vec<TcpListener>,
}

impl Gateway {
    /// Binds every listener of `snapshot`.
    pub async fn bind(snapshot: Snapshot) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for spec in &snapshot.listeners {
            let listener = TcpListener::bind(spec.addr).await.map_err(|e| {
                anyhow::anyhow!("listener `{}`: cannot bind {}: {e}", spec.name, spec.addr)
            })?;
            let addr = listener.local_addr()?;
            bound.push((spec.name.clone(), addr));
            listeners.push(listener);
        }
        Ok(Self {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            bound,
            listeners,
        })
    }

    /// The `(name, address)` of every bound listener.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.bound
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish within the snapshot's grace period.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let settings = self.snapshot.load().server.clone();
        let mut accept_loops = Vec::new();
        for (index, listener) in self.listeners.into_iter().enumerate() {
            let snapshot = self.snapshot.clone();
            let tls = snapshot.load().listeners[index].tls.clone();
            let (name, addr) = self.bound[index].clone();
            tracing::info!(listener = %name, %addr, tls = tls.is_some(), "listening");
            let accept = AcceptLoop {
                index,
                listener,
                tls: tls.map(tokio_rustls::TlsAcceptor::from),
                snapshot,
                http: http_builder(&settings),
                graceful: graceful.clone(),
                stop: stop_rx.clone(),
            };
            accept_loops.push(tokio::spawn(accept.run()));
        }

        shutdown.await;
        tracing::info!(grace = ?settings.shutdown_grace, "shutting down: no new connections, draining in-flight requests");
        let _ = stop_tx.send(true);
        for task in accept_loops {
            let _ = task.await;
        }
        let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
        match tokio::time::timeout(settings.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("grace period over: closing the remaining connections"),
        }
    }
}

fn http_builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    builder
}

struct AcceptLoop {
    index: usize,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    http: auto::Builder<TokioExecutor>,
    graceful: Arc<GracefulShutdown>,
    stop: watch::Receiver<bool>,
}

impl AcceptLoop {
    async fn run(mut self) {
        let http = Arc::new(self.http);
        loop {
            let (stream, client) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.stop.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let conn = Connection {
                listener: self.index,
                client,
                tls: self.tls.is_some(),
            };
            let snapshot = self.snapshot.clone();
            let service = service_fn(move |req| {
                let snapshot = snapshot.load_full();
                async move {
                    Ok::<_, std::convert::Infallible>(proxy::handle(snapshot, conn, req).await)
                }
            });
            let http = http.clone();
            let watcher = self.graceful.watcher();
            match &self.tls {
                None => {
                    tokio::spawn(async move {
                        let conn = http.serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = watcher.watch(conn.into_owned()).await {
                            tracing::debug!(%client, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let stream = match tokio::time::timeout(
                            TLS_HANDSHAKE_TIMEOUT,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%client, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%client, "TLS handshake timed out");
                                return;
                            }
                        };
                        let conn = http.serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = watcher.watch(conn.into_owned()).await {
                            tracing::debug!(%client, error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
    }
}
