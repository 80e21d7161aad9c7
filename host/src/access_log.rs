//! The access log: one line per request on standard output, written when the response's last
//! byte has gone out (or the client went away), as JSON or in the Common Log Format.
//!
//! Workers append lines to a shared buffer; a writer thread flushes it to stdout every
//! [`FLUSH_EVERY`] (or sooner when it grows past [`FLUSH_AT`] bytes), so a request costs a
//! memory copy, not a system call.
//!
//! Only what identifies the exchange is logged: the path without its query string (queries
//! carry tokens), no header values, no bodies. Credentials therefore never reach the log.

use std::io::Write;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use crate::body::{BoxError, ProxyBody};

/// `[server] access_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// `client - consumer [time] "METHOD /path HTTP/1.1" status bytes`.
    Common,
    /// No access log.
    Off,
}

/// What one line says about a request.
pub struct Entry {
    /// When the request arrived (wall clock, for the line) and on the monotonic clock.
    pub received: (SystemTime, Instant),
    pub request_id: String,
    /// The W3C trace id the request carried or was given.
    pub trace_id: String,
    pub client: IpAddr,
    pub method: http::Method,
    /// The path, without the query string.
    pub path: String,
    pub version: http::Version,
    pub route: Option<Arc<str>>,
    pub consumer: Option<String>,
    pub upstream: Option<String>,
    /// The upstream address the request went to.
    pub target: Option<String>,
    /// Upstream attempts made (more than 1 when retried).
    pub attempts: u32,
    pub status: u16,
    /// Microseconds until the response head was ready.
    pub head_us: u64,
    /// Microseconds spent in plugin hooks.
    pub plugin_us: u64,
}

/// Wraps `body` so that the line is written once it has been sent (or dropped).
pub fn wrap(format: AccessLogFormat, entry: Entry, body: ProxyBody) -> ProxyBody {
    if format == AccessLogFormat::Off {
        return body;
    }
    Logged {
        inner: body,
        entry: Some(entry),
        format,
        bytes: 0,
        complete: false,
    }
    .boxed()
}

struct Logged {
    inner: ProxyBody,
    entry: Option<Entry>,
    format: AccessLogFormat,
    bytes: u64,
    complete: bool,
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        // A body that was empty from the start is complete even if never polled to its end.
        let complete = self.complete || self.inner.is_end_stream();
        write(self.format, &entry, self.bytes, complete);
    }
}

/// Writes the line for `entry` now: `bytes` of the body were sent, `complete` if all of it.
pub fn write(format: AccessLogFormat, entry: &Entry, bytes: u64, complete: bool) {
    let line = match format {
        AccessLogFormat::Json => json_line(entry, bytes, complete),
        AccessLogFormat::Common => common_line(entry, bytes),
        AccessLogFormat::Off => return,
    };
    WRITER.push(line.as_bytes());
}

/// How long a line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered bytes that trigger an early flush.
pub const FLUSH_AT: usize = 64 << 10;

/// Lines waiting for the writer thread, and the signal that wakes it early.
struct Writer {
    buffer: Mutex<Vec<u8>>,
    full: Condvar,
}

static WRITER: LazyLock<Arc<Writer>> = LazyLock::new(|| {
    let writer = Arc::new(Writer {
        buffer: Mutex::new(Vec::with_capacity(FLUSH_AT)),
        full: Condvar::new(),
    });
    let flusher = writer.clone();
    let spawned = std::thread::Builder::new()
        .name("wasmgate-access-log".into())
        .spawn(move || flusher.run());
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the access log writer; access lines are lost");
    }
    writer
});

impl Writer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, line: &[u8]) {
        let mut buffer = self.lock();
        buffer.extend_from_slice(line);
        if buffer.len() >= FLUSH_AT {
            self.full.notify_one();
        }
    }

    /// Writes whatever is buffered every [`FLUSH_EVERY`], or when woken.
    fn run(&self) {
        let mut out = Vec::with_capacity(FLUSH_AT);
        loop {
            {
                let buffer = self.lock();
                let (mut buffer, _) = self
                    .full
                    .wait_timeout(buffer, FLUSH_EVERY)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                std::mem::swap(&mut *buffer, &mut out);
            }
            if !out.is_empty() {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
                out.clear();
            }
        }
    }
}

/// Writes out what is buffered now (at shutdown).
pub fn flush() {
    let pending = std::mem::take(&mut *WRITER.lock());
    if !pending.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&pending).and_then(|()| stdout.flush());
    }
}

/// A JSON line, serialised straight from borrowed fields.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    request_id: &'a str,
    trace_id: &'a str,
    client: IpAddr,
    method: &'a str,
    path: &'a str,
    protocol: String,
    route: Option<&'a str>,
    consumer: Option<&'a str>,
    upstream: Option<&'a str>,
    target: Option<&'a str>,
    attempts: u32,
    status: u16,
    bytes: u64,
    complete: bool,
    duration_us: u64,
    head_us: u64,
    plugin_us: u64,
}

fn json_line(entry: &Entry, bytes: u64, complete: bool) -> String {
    let line = JsonLine {
        time: humantime::format_rfc3339_millis(entry.received.0).to_string(),
        request_id: &entry.request_id,
        trace_id: &entry.trace_id,
        client: entry.client,
        method: entry.method.as_str(),
        path: &entry.path,
        protocol: format!("{:?}", entry.version),
        route: entry.route.as_deref(),
        consumer: entry.consumer.as_deref(),
        upstream: entry.upstream.as_deref(),
        target: entry.target.as_deref(),
        attempts: entry.attempts,
        status: entry.status,
        bytes,
        complete,
        duration_us: entry.received.1.elapsed().as_micros() as u64,
        head_us: entry.head_us,
        plugin_us: entry.plugin_us,
    };
    let mut out = serde_json::to_string(&line).unwrap_or_default();
    out.push('\n');
    out
}

/// The Common Log Format (`%h %l %u %t "%r" %>s %b`), the consumer as the user.
fn common_line(entry: &Entry, bytes: u64) -> String {
    // RFC 3339 `2026-11-22T12:00:00Z` rearranged as `22/Nov/2026:12:00:00 +0000`.
    let stamp = humantime::format_rfc3339_seconds(entry.received.0).to_string();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = stamp
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    let time = format!(
        "{}/{month}/{}:{} +0000",
        stamp.get(8..10).unwrap_or("01"),
        stamp.get(0..4).unwrap_or("1970"),
        stamp.get(11..19).unwrap_or("00:00:00"),
    );
    let user = entry.consumer.as_deref().unwrap_or("-");
    let bytes = match bytes {
        0 => "-".to_owned(),
        n => n.to_string(),
    };
    format!(
        "{} - {user} [{time}] \"{} {} {:?}\" {} {bytes}\n",
        entry.client, entry.method, entry.path, entry.version, entry.status
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            received: (
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000),
                Instant::now(),
            ),
            request_id: "abc".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            client: "203.0.113.7".parse().unwrap(),
            method: http::Method::GET,
            path: "/orders".into(),
            version: http::Version::HTTP_11,
            route: Some("api".into()),
            consumer: Some("acme".into()),
            upstream: Some("backend".into()),
            target: Some("10.0.0.5:8080".into()),
            attempts: 1,
            status: 200,
            head_us: 800,
            plugin_us: 12,
        }
    }

    #[test]
    fn common_log_format_lines_read_as_apache_writes_them() {
        assert_eq!(
            common_line(&entry(), 512),
            "203.0.113.7 - acme [18/Nov/2026:11:06:40 +0000] \"GET /orders HTTP/1.1\" 200 512\n"
        );
    }

    #[test]
    fn json_lines_carry_every_field() {
        let line: serde_json::Value =
            serde_json::from_str(&json_line(&entry(), 512, true)).unwrap();
        assert_eq!(line["time"], "2026-11-18T11:06:40.000Z");
        assert_eq!(line["consumer"], "acme");
        assert_eq!(line["target"], "10.0.0.5:8080");
        assert_eq!(line["bytes"], 512);
        assert_eq!(line["protocol"], "HTTP/1.1");
    }
}
