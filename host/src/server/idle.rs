//! Closing HTTP/2 client connections that hold no request.
//!
//! hyper's `header_read_timeout` guards HTTP/1 connections: a head must arrive in time, and an
//! idle keep-alive connection is closed. HTTP/2 has no such timer: a client could send the
//! preface (or part of it) and nothing more, or open streams never, and hold the connection
//! for good. Here an HTTP/2 connection with no request in flight is closed once it has been
//! so for the idle time, counted from the end of its last request (or from its start).
//!
//! The close is an end of input on the connection's reads: with no stream open, there is
//! nothing a client can lose.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    in_flight: AtomicU32,
    /// Milliseconds since `started` at which the last request ended.
    last_end: AtomicU64,
}

impl Activity {
    /// A connection opened now, with no request yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_end: AtomicU64::new(0),
        })
    }

    /// Counts a request in flight until the guard is dropped (when its response has ended).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection may be closed if it stays without requests; `None` while one is
    /// in flight.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_end.load(Ordering::Acquire));
        Some(self.started + last + idle)
    }
}

/// One request in flight; see [`Activity::begin`].
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.started.elapsed().as_millis() as u64;
        self.0.last_end.fetch_max(now, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client connection whose reads end (as if the client had closed) once [`Activity`] has
/// been idle for `idle`. Without an `Activity` it only passes bytes through.
pub struct IdleClose<T> {
    io: T,
    watch: Option<(Arc<Activity>, Duration, Pin<Box<Sleep>>)>,
}

impl<T> IdleClose<T> {
    /// `io`, closed after `idle` without requests when `activity` is given.
    pub fn new(io: T, activity: Option<Arc<Activity>>, idle: Duration) -> Self {
        let watch = activity.map(|a| {
            let first = a.started + idle;
            (a, idle, Box::pin(tokio::time::sleep_until(first)))
        });
        Self { io, watch }
    }

    /// Whether the connection has been idle for too long; otherwise arms the timer so the
    /// read is polled again when it might have been.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((activity, idle, timer)) = &mut self.watch else {
            return false;
        };
        let now = Instant::now();
        let deadline = match activity.idle_deadline(*idle) {
            Some(deadline) if deadline <= now => return true,
            Some(deadline) => deadline,
            // A request is in flight: look again an idle period on.
            None if timer.deadline() > now => timer.deadline(),
            None => now + *idle,
        };
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            // Due already: look again at once.
            cx.waker().wake_by_ref();
        }
        false
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleClose<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Ok(())),
            polled => polled,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleClose<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Waits until `stream` shows whether it starts with the HTTP/2 preface: `true` for HTTP/2,
/// `false` for anything else (HTTP/1). Reads nothing. The caller bounds the wait.
pub async fn starts_http2(stream: &tokio::net::TcpStream) -> io::Result<bool> {
    let mut seen = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut seen).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if seen[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // Part of the preface: peek returns at once while those bytes wait unread.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_end_after_the_idle_time_without_requests() {
        let (near, mut far) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut conn = IdleClose::new(near, Some(activity.clone()), Duration::from_millis(300));
        far.write_all(b"ab").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 2);
        // A request in flight for longer than the idle time keeps it open.
        let request = activity.begin();
        let read = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await;
        assert!(read.is_err(), "still open while a request is in flight");
        drop(request);
        let ended = Instant::now();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 0, "closed when idle");
        let waited = ended.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
    }

    #[tokio::test]
    async fn without_activity_nothing_is_closed() {
        let (near, _far) = tokio::io::duplex(64);
        let mut conn = IdleClose::new(near, None, Duration::from_millis(10));
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await;
        assert!(read.is_err());
    }

    #[tokio::test]
    async fn the_preface_is_told_from_http1() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (sent, h2) in [(&PREFACE[..], true), (&b"GET / HTTP/1.1\r\n"[..], false)] {
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            // In two parts: a partial preface waits for the rest.
            client.write_all(&sent[..3]).await.unwrap();
            let sniffed = tokio::spawn(async move {
                let h2 = starts_http2(&server).await.unwrap();
                (h2, server)
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&sent[3..]).await.unwrap();
            assert_eq!(sniffed.await.unwrap().0, h2);
        }
    }
}
