//! The body type that flows through the gateway in both directions: streamed from the peer,
//! or a complete buffer produced by the gateway or a plugin. A leaf module: the server, the
//! request driver, the upstream clients and the access log all share it.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::SizeHint;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Errors a body stream can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body: streamed or complete.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// The client's request body failed (bad chunked framing, a connection that closed early)
/// while it streamed upstream: the client's fault, not the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

/// A request body went past the gateway's limit (`max_body_bytes`, or what a route or plugin
/// set).
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// How much more of a refused request body the gateway reads, and for how long, so that a
/// client still sending it reads the error response rather than a connection reset (what
/// nginx calls a lingering close).
const LINGER_BYTES: usize = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);
/// At most this many refused bodies are drained at once; past it they are dropped at once.
const MAX_LINGERING: usize = 256;
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// Streams `body` through, converting its error type.
pub fn stream<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Streams `body` through, holding `guard` until the body has ended or is dropped: what the
/// response keeps busy upstream stays counted while it streams.
pub fn holding<B, G>(body: B, guard: G) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
    G: Send + Sync + Unpin + 'static,
{
    Holding {
        body,
        guard: Some(guard),
    }
    .boxed()
}

struct Holding<B, G> {
    body: B,
    guard: Option<G>,
}

impl<B, G> http_body::Body for Holding<B, G>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    G: Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.guard = None;
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// `prefix`, followed by the rest of `rest`: a body that was partly read and must go on whole.
pub fn prefixed<B>(prefix: Bytes, rest: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Prefixed {
        prefix: Some(prefix),
        rest,
    }
    .boxed()
}

struct Prefixed<B> {
    prefix: Option<Bytes>,
    rest: B,
}

impl<B> http_body::Body for Prefixed<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

/// `body` cut at `limit` bytes: a frame that would pass the limit ends the stream with
/// [`BodyTooLarge`], and the rest of the body is drained in the background ([`linger`]).
pub fn limited<B>(body: B, limit: u64) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Limit {
        body: Some(body),
        remaining: limit,
        limit,
    }
    .boxed()
}

struct Limit<B> {
    /// None once the limit was passed (the rest went to [`linger`]).
    body: Option<B>,
    remaining: u64,
    limit: u64,
}

impl<B> http_body::Body for Limit<B>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match ready!(Pin::new(body).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        let len = frame.data_ref().map_or(0, |d| d.len() as u64);
        if len > self.remaining {
            if let Some(rest) = self.body.take() {
                linger(rest);
            }
            return Poll::Ready(Some(Err(Box::new(BodyTooLarge(self.limit)))));
        }
        self.remaining -= len;
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let Some(body) = &self.body else {
            return SizeHint::with_exact(0);
        };
        // Never promise more than the limit lets through (a Content-Length upstream).
        let mut hint = body.size_hint();
        if hint.lower() >= self.remaining {
            hint.set_exact(self.remaining);
        } else {
            hint.set_upper(
                hint.upper()
                    .map_or(self.remaining, |u| u.min(self.remaining)),
            );
        }
        hint
    }
}

/// Reads and discards what is left of a refused request body in the background: up to
/// [`LINGER_BYTES`] more, for at most [`LINGER_TIME`], and at most [`MAX_LINGERING`] bodies
/// at a time.
pub fn linger<B>(body: B)
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if LINGERING.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    runtime.spawn(async move {
        let mut body = body;
        let mut read = 0usize;
        let drain = async {
            while read <= LINGER_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    });
}
