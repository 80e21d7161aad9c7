//! Listeners and workers: accept connections, terminate TLS, speak HTTP/1.1 and HTTP/2 (h2c by
//! preface, h2 by ALPN), hand requests to the proxy on the current snapshot, and drain
//! gracefully on shutdown.
//!
//! The gateway runs thread-per-core, like nginx: each worker thread has its own single-threaded
//! Tokio runtime and its own `SO_REUSEPORT` socket on every listener, so the kernel spreads
//! connections across workers and a request never leaves the thread that accepted it (no
//! work-stealing, no cross-thread wake-ups, upstream connections local to the worker).

mod idle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::{self, Connection};
use crate::snapshot::{ServerSettings, Snapshot};
use idle::IdleClose;

/// Pending connections the kernel queues per worker socket.
const BACKLOG: i32 = 4096;

/// Open client connections, in total and per IP address, shared by every worker.
#[derive(Default)]
struct ConnectionCount {
    total: std::sync::atomic::AtomicUsize,
    per_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One admitted connection; counted until dropped.
struct Admitted {
    count: Arc<ConnectionCount>,
    /// Set when counted per address.
    ip: Option<std::net::IpAddr>,
}

impl ConnectionCount {
    /// Counts a new connection from `ip`, or says which limit refuses it.
    fn admit(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        settings: &ServerSettings,
    ) -> Result<Admitted, &'static str> {
        use std::sync::atomic::Ordering;
        if self.total.fetch_add(1, Ordering::AcqRel) >= settings.max_connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("max_connections");
        }
        if settings.max_connections_per_ip == 0 {
            return Ok(Admitted {
                count: self.clone(),
                ip: None,
            });
        }
        let mut per_ip = self.lock();
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= settings.max_connections_per_ip {
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("max_connections_per_ip");
        }
        *n += 1;
        Ok(Admitted {
            count: self.clone(),
            ip: Some(ip),
        })
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, usize>> {
        self.per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.count
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        let Some(ip) = self.ip else {
            return;
        };
        let mut per_ip = self.count.lock();
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// A gateway with its listeners bound, ready to serve.
pub struct Gateway {
    snapshot: Arc<ArcSwap<Snapshot>>,
    bound: Vec<(String, SocketAddr)>,
    /// `sockets[worker][listener]`.
    sockets: Vec<Vec<std::net::TcpListener>>,
}

impl Gateway {
    /// Binds every listener of `snapshot`, one `SO_REUSEPORT` socket per worker. A listener on
    /// port 0 gets one free port shared by all its workers.
    pub fn bind(snapshot: Snapshot) -> anyhow::Result<Self> {
        let workers = snapshot.server.workers;
        let mut bound = Vec::new();
        let mut sockets: Vec<Vec<std::net::TcpListener>> =
            (0..workers).map(|_| Vec::new()).collect();
        for spec in &snapshot.listeners {
            let mut addr = spec.addr;
            for worker in sockets.iter_mut() {
                let socket = reuseport_listener(addr).map_err(|e| {
                    anyhow::anyhow!("listener `{}`: cannot bind {addr}: {e}", spec.name)
                })?;
                addr = socket.local_addr()?;
                worker.push(socket);
            }
            bound.push((spec.name.clone(), addr));
        }
        Ok(Self {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            bound,
            sockets,
        })
    }

    /// The snapshot the gateway serves; storing a new one reconfigures it for new requests.
    pub fn snapshot(&self) -> Arc<ArcSwap<Snapshot>> {
        self.snapshot.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish within the snapshot's grace period.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let settings = self.snapshot.load().server.clone();
        for (name, addr) in &self.bound {
            let tls = self
                .snapshot
                .load()
                .listeners
                .iter()
                .any(|l| &l.name == name && l.tls.is_some());
            tracing::info!(listener = %name, %addr, tls, workers = settings.workers, "listening");
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = Arc::new(ConnectionCount::default());
        let mut threads = Vec::new();
        for (index, sockets) in self.sockets.into_iter().enumerate() {
            let worker = Worker {
                index,
                sockets,
                snapshot: self.snapshot.clone(),
                stop: stop_rx.clone(),
                connections: connections.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("wasmgate-worker-{index}"))
                .spawn(move || worker.run())?;
            threads.push(thread);
        }

        shutdown.await;
        tracing::info!(grace = ?settings.shutdown_grace, "shutting down: no new connections, draining in-flight requests");
        let _ = stop_tx.send(true);
        tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a worker thread panicked during shutdown");
                }
            }
        })
        .await?;
        Ok(())
    }
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// One worker thread: a single-threaded runtime serving its own sockets.
struct Worker {
    index: usize,
    sockets: Vec<std::net::TcpListener>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    stop: watch::Receiver<bool>,
    connections: Arc<ConnectionCount>,
}

impl Worker {
    fn run(self) {
        crate::worker::enter(self.index);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(worker = self.index, error = %e, "cannot start a worker runtime");
                return;
            }
        };
        runtime.block_on(self.serve());
    }

    async fn serve(self) {
        let settings = self.snapshot.load().server.clone();
        let http = Arc::new(http_builder(&settings));
        let graceful = Arc::new(GracefulShutdown::new());
        let mut accept_loops = Vec::new();
        for (index, socket) in self.sockets.into_iter().enumerate() {
            let listener = match TcpListener::from_std(socket) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(worker = self.index, error = %e, "cannot register a listener");
                    continue;
                }
            };
            let accept = AcceptLoop {
                index,
                listener,
                snapshot: self.snapshot.clone(),
                http: http.clone(),
                graceful: graceful.clone(),
                stop: self.stop.clone(),
                connections: self.connections.clone(),
            };
            accept_loops.push(tokio::spawn(accept.run()));
        }
        for task in accept_loops {
            let _ = task.await;
        }
        // The accept loops are done, so this is the last reference.
        let graceful = Arc::try_unwrap(graceful).unwrap_or_default();
        match tokio::time::timeout(settings.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => tracing::debug!(worker = self.index, "all connections closed"),
            Err(_) => tracing::warn!(
                worker = self.index,
                "grace period over: closing the remaining connections"
            ),
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
    snapshot: Arc<ArcSwap<Snapshot>>,
    http: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    stop: watch::Receiver<bool>,
    connections: Arc<ConnectionCount>,
}

impl AcceptLoop {
    async fn run(mut self) {
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
            let current = self.snapshot.load();
            let admitted = match self.connections.admit(client.ip(), &current.server) {
                Ok(admitted) => admitted,
                Err(limit) => {
                    // Closed at once: a client over its share gets nothing to hold on to.
                    crate::metrics::connection_refused(limit);
                    tracing::debug!(%client, limit, "connection refused");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            // From the current snapshot, so a reload rotates certificates for new connections.
            let tls = current.listeners[self.index]
                .tls
                .clone()
                .map(tokio_rustls::TlsAcceptor::from);
            let header_timeout = current.server.header_timeout;
            // An upgraded connection outlives its HTTP connection: its tunnel keeps the slot.
            let admitted = Arc::new(admitted);
            let limits = proxy::tunnel::TunnelLimits {
                slot: admitted.clone(),
                idle_timeout: current.server.upgrade_idle_timeout,
            };
            drop(current);
            let conn = Connection {
                listener: self.index,
                client,
                tls: tls.is_some(),
            };
            let snapshot = self.snapshot.clone();
            let activity = idle::Activity::new();
            let requests = activity.clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                if req.headers().contains_key(http::header::UPGRADE) {
                    req.extensions_mut().insert(limits.clone());
                }
                // HTTP/2 requests count until their response ends, for the idle close.
                let counted = (req.version() == http::Version::HTTP_2).then(|| requests.begin());
                // A request runs on the snapshot current when it starts, even across a reload.
                let snapshot = snapshot.load_full();
                async move {
                    let response = proxy::handle(snapshot, conn, req).await;
                    Ok::<_, std::convert::Infallible>(match counted {
                        Some(counted) => response.map(|b| crate::body::holding(b, counted)),
                        None => response,
                    })
                }
            });
            let http = self.http.clone();
            let watcher = self.graceful.watcher();
            tokio::spawn(async move {
                let _admitted = admitted;
                // A client gets the header timeout to start talking (hyper's own timer
                // starts with the first byte): a silent connection cannot be held open. A
                // plain HTTP/2 connection must send its whole preface in that time.
                let plain_h2 = match tokio::time::timeout(
                    header_timeout,
                    idle::starts_http2(&stream),
                )
                .await
                {
                    Ok(Ok(h2)) => h2,
                    Ok(Err(e)) => {
                        return tracing::debug!(%client, error = %e, "connection closed before a request");
                    }
                    Err(_) => {
                        return tracing::debug!(%client, "connection closed: nothing sent within the header timeout");
                    }
                };
                // HTTP/2 has no header timer of its own: a connection without requests is
                // closed after the header timeout (HTTP/1 keeps hyper's).
                let watched = |h2: bool| h2.then(|| activity.clone());
                let result = match tls {
                    None => {
                        let io = IdleClose::new(stream, watched(plain_h2), header_timeout);
                        let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    Some(acceptor) => {
                        let stream = match tokio::time::timeout(
                            header_timeout,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                return tracing::debug!(%client, error = %e, "TLS handshake failed");
                            }
                            Err(_) => return tracing::debug!(%client, "TLS handshake timed out"),
                        };
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        let io = IdleClose::new(stream, watched(h2), header_timeout);
                        let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service);
                        watcher.watch(conn.into_owned()).await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%client, error = %e, "connection ended with an error");
                }
            });
        }
    }
}
