//! `Upgrade` tunnels (WebSocket and others): once the upstream answers `101`, the client's
//! and the upstream's connections are joined and bytes copied both ways until either side
//! closes or neither sends anything for the idle timeout.
//!
//! A tunnel keeps what its request held: the circuit slot and the target's outstanding count,
//! and the client connection's place under the listener limits, so long-lived WebSockets
//! count against `max_connections` and `max_connections_per_ip` like any connection.

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::error::GatewayError;
use crate::body::{self, ProxyBody};

/// Idle timeout of a tunnel whose request carried no [`TunnelLimits`].
const DEFAULT_IDLE: Duration = Duration::from_secs(300);

/// What the client connection lends an upgraded request: its place under the listener's
/// connection limits (held until the tunnel closes) and how long the tunnel may idle.
#[derive(Clone)]
pub struct TunnelLimits {
    /// Dropped when the last holder goes: the connection no longer counts.
    pub slot: Arc<dyn Any + Send + Sync>,
    /// `server.upgrade_idle_timeout` when the connection was accepted.
    pub idle_timeout: Duration,
}

/// The client's side of an `Upgrade`.
pub struct ClientUpgrade {
    /// Resolves to the client's connection once the `101` has been sent.
    pub on: OnUpgrade,
    /// From the client connection, when the listener set them.
    pub limits: Option<TunnelLimits>,
}

/// Starts the tunnel for an upstream's `101` and returns the `101` for the client. `held` is
/// kept until the tunnel closes.
pub fn open<G: Send + 'static>(
    upstream: &str,
    mut response: Response<hyper::body::Incoming>,
    client: Option<ClientUpgrade>,
    held: G,
) -> Result<Response<ProxyBody>, GatewayError> {
    let Some(client) = client else {
        // The upstream switched protocols the client never asked for.
        return Err(GatewayError::UpstreamUnreachable);
    };
    let upstream_side = hyper::upgrade::on(&mut response);
    let name = upstream.to_owned();
    let idle = client
        .limits
        .as_ref()
        .map_or(DEFAULT_IDLE, |l| l.idle_timeout);
    tokio::spawn(async move {
        let _held = (held, client.limits);
        let (client, upstream_io) = match tokio::try_join!(client.on, upstream_side) {
            Ok(pair) => pair,
            Err(e) => {
                return tracing::debug!(target: "wasmgate::upstream", upstream = name, error = %e, "upgrade failed");
            }
        };
        match relay(TokioIo::new(client), TokioIo::new(upstream_io), idle).await {
            Ok((up, down)) => {
                tracing::debug!(target: "wasmgate::upstream", upstream = name, bytes_up = up, bytes_down = down, "upgraded connection closed")
            }
            Err(e) => {
                tracing::debug!(target: "wasmgate::upstream", upstream = name, error = %e, "upgraded connection ended")
            }
        }
    });
    let (head, _) = response.into_parts();
    Ok(Response::from_parts(head, body::empty()))
}

/// Copies bytes both ways until either side closes, or fails with `TimedOut` once neither
/// side has sent anything for `idle`. Returns the bytes sent (client → upstream,
/// upstream → client).
async fn relay<A, B>(a: A, b: B, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Watched {
        io: a,
        started,
        last: last.clone(),
    };
    let mut b = Watched {
        io: b,
        started,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let mut deadline = started + idle;
    loop {
        tokio::select! {
            copied = &mut copy => return copied,
            () = tokio::time::sleep_until(deadline) => {
                let active = started + Duration::from_millis(last.load(Ordering::Relaxed));
                if active.elapsed() >= idle {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no bytes either way for {idle:?}"),
                    ));
                }
                deadline = active + idle;
            }
        }
    }
}

/// A connection that notes when it last delivered bytes.
struct Watched<T> {
    io: T,
    started: Instant,
    /// Milliseconds since `started` of the last read that delivered bytes.
    last: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = self.started.elapsed().as_millis() as u64;
            self.last.store(now, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn traffic_keeps_a_tunnel_open_and_silence_closes_it() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let idle = Duration::from_secs(1);
        let relayed = tokio::spawn(relay(client, upstream, idle));
        let mut byte = [0u8; 1];
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            upstream_far.write_all(b"x").await.unwrap();
            client_far.read_exact(&mut byte).await.unwrap();
        }
        // 1.6 s of a byte every 200 ms kept it open; a second of silence closes it.
        assert!(!relayed.is_finished());
        let silent = Instant::now();
        let err = relayed.await.unwrap().unwrap_err();
        assert!(
            silent.elapsed() >= Duration::from_millis(800),
            "{:?}",
            silent.elapsed()
        );
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "no bytes either way for 1s");
    }

    #[tokio::test]
    async fn a_side_that_closes_ends_the_tunnel() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let relayed = tokio::spawn(relay(client, upstream, Duration::from_secs(10)));
        client_far.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        upstream_far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        drop(client_far);
        drop(upstream_far);
        assert_eq!(relayed.await.unwrap().unwrap(), (4, 0));
    }
}
