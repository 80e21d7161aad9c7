//! A plugin's standard output and error, turned into the gateway's log lines.
//!
//! A plugin has no stdio of its own, but language runtimes print to it: an uncaught Python
//! exception or JavaScript error writes its traceback to stderr just before the instance traps.
//! Each complete line becomes one log record tagged with the plugin and route (stderr at `warn`,
//! stdout at `info`), so the cause of a fault sits next to the fault in the log.
//!
//! Bounds: a line is cut at [`MAX_LINE`] bytes, and a stream writes at most [`MAX_LINES`] lines
//! a second to the log; lines beyond that are counted and reported in one line.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::InstanceLabel;

/// Longest line written to the log; the rest of the line is dropped.
const MAX_LINE: usize = 2048;
/// Lines one stream writes to the log per second; further lines are only counted.
const MAX_LINES: u32 = 100;

/// Which stream.
#[derive(Debug, Clone, Copy)]
pub enum Stdio {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The stdout or stderr handed to a plugin instance's WASI context.
pub struct PluginOutput {
    label: Arc<InstanceLabel>,
    stream: Stdio,
}

impl PluginOutput {
    /// Output of `stream` for the instance named by `label`.
    pub fn new(label: Arc<InstanceLabel>, stream: Stdio) -> Self {
        Self { label, stream }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            label: self.label.clone(),
            stream: self.stream,
            pending: Vec::new(),
            window: Instant::now(),
            written: 0,
            dropped: 0,
        }
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Splits what a plugin writes into lines and logs each.
struct LineWriter {
    label: Arc<InstanceLabel>,
    stream: Stdio,
    pending: Vec<u8>,
    /// Start of the current one-second window, and the lines logged or dropped in it.
    window: Instant,
    written: u32,
    dropped: u32,
}

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if self.pending.len() < MAX_LINE {
                let room = MAX_LINE - self.pending.len();
                self.pending
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if chunk.ends_with(b"\n") {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.report_dropped();
            self.window = Instant::now();
            self.written = 0;
        }
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end_matches(['\n', '\r']);
        if self.written < MAX_LINES {
            self.written += 1;
            let (plugin, route) = (&*self.label.plugin, &*self.label.route);
            match self.stream {
                Stdio::Stderr => tracing::warn!(plugin, route, stream = "stderr", "{line}"),
                Stdio::Stdout => tracing::info!(plugin, route, stream = "stdout", "{line}"),
            }
        } else {
            self.dropped += 1;
        }
        self.pending.clear();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
        self.report_dropped();
    }
}

impl LineWriter {
    fn report_dropped(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                plugin = &*self.label.plugin,
                route = &*self.label.route,
                lines = self.dropped,
                "plugin output beyond {MAX_LINES} lines a second was not logged"
            );
            self.dropped = 0;
        }
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
