//! Distributed tracing: W3C `traceparent` in and out, and spans exported over OTLP.
//!
//! Propagation is always on: a request's `traceparent` is checked and passed on; a request
//! without a valid one gets a new trace, so the upstream's spans share an id with the
//! gateway's access log. Spans (the request, each plugin call, each upstream attempt) are
//! recorded only when `[tracing] otlp_endpoint` is set; otherwise no span is built and the
//! request path pays for one header lookup.

use std::sync::OnceLock;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

/// `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// `[tracing]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Where spans go: an OTLP/HTTP (protobuf) traces URL, e.g.
    /// `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: String,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Share of new traces recorded (0–1); traces the client started follow its decision.
    pub sample_ratio: f64,
}

struct Exporting {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

static EXPORTING: OnceLock<Exporting> = OnceLock::new();

/// Starts exporting spans. Call once, at start; returns why not if the exporter cannot be
/// built.
pub fn init(settings: &TracingSettings) -> Result<(), String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(settings.otlp_endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("tracing: cannot export to {}: {e}", settings.otlp_endpoint))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .with_max_queue_size(8192)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("wasmgate");
    let _ = EXPORTING.set(Exporting { provider, tracer });
    Ok(())
}

/// Sends the spans still buffered; call before the process exits.
pub fn shutdown() {
    if let Some(e) = EXPORTING.get()
        && let Err(error) = e.provider.shutdown()
    {
        tracing::warn!(%error, "tracing: spans not exported at shutdown");
    }
}

/// One request's trace.
pub struct RequestTrace {
    /// The request span's context, when spans are recorded.
    cx: Option<Context>,
    trace_id: TraceId,
}

/// Reads the request's `traceparent` (or starts a trace) and sets the one plugins and the
/// upstream will see.
pub fn start(headers: &mut HeaderMap, method: &http::Method, path: &str) -> RequestTrace {
    let Some(exporting) = EXPORTING.get() else {
        return propagate_only(headers);
    };
    let propagator = TraceContextPropagator::new();
    let parent = propagator.extract(&HeaderExtractor(headers));
    let span = exporting
        .tracer
        .span_builder(format!("{method}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.path", path.to_owned()),
        ])
        .start_with_context(&exporting.tracer, &parent);
    let cx = parent.with_span(span);
    propagator.inject_context(&cx, &mut HeaderInjector(headers));
    let trace_id = cx.span().span_context().trace_id();
    RequestTrace {
        cx: Some(cx),
        trace_id,
    }
}

/// Export off: passes a valid `traceparent` on as it is, else writes a new one. No span and
/// no `Context` is built; the common case (no header) costs two random numbers and a header.
fn propagate_only(headers: &mut HeaderMap) -> RequestTrace {
    if headers.contains_key(&TRACEPARENT) {
        let remote = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let remote = remote.span().span_context().clone();
        if remote.is_valid() {
            return RequestTrace {
                cx: None,
                trace_id: remote.trace_id(),
            };
        }
    }
    // A new trace, so the upstream's spans can still be tied to this request.
    let trace_id = TraceId::from(fastrand::u128(1..));
    let span_id = SpanId::from(fastrand::u64(1..));
    let mut value = [0u8; 55];
    let written = {
        use std::io::Write as _;
        write!(&mut value[..], "00-{trace_id}-{span_id}-01").is_ok()
    };
    if written && let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(&TRACEPARENT, value);
    }
    RequestTrace { cx: None, trace_id }
}

/// A span in progress; ends when dropped.
pub struct ChildSpan {
    cx: Option<Context>,
}

impl RequestTrace {
    /// The trace id (32 hex digits), for the access log.
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
    }

    /// Names the route once it is known.
    pub fn set_route(&self, method: &http::Method, route: &str) {
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
            span.update_name(format!("{method} {route}"));
        }
    }

    /// A span for one plugin hook call.
    pub fn plugin(&self, plugin: &str, route: &str, phase: &'static str) -> ChildSpan {
        self.child(|tracer, cx| {
            tracer
                .span_builder(format!("plugin {plugin} {phase}"))
                .with_kind(SpanKind::Internal)
                .with_attributes([
                    KeyValue::new("wasmgate.plugin", plugin.to_owned()),
                    KeyValue::new("wasmgate.route", route.to_owned()),
                    KeyValue::new("wasmgate.phase", phase),
                ])
                .start_with_context(tracer, cx)
        })
    }

    /// A span for one upstream attempt; its context goes upstream in `headers`.
    pub fn upstream(&self, upstream: &str, target: &str, headers: &mut HeaderMap) -> ChildSpan {
        let span = self.child(|tracer, cx| {
            tracer
                .span_builder(format!("upstream {upstream}"))
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("wasmgate.upstream", upstream.to_owned()),
                    KeyValue::new("server.address", target.to_owned()),
                ])
                .start_with_context(tracer, cx)
        });
        if let Some(cx) = &span.cx {
            TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
        }
        span
    }

    fn child(
        &self,
        build: impl FnOnce(&SdkTracer, &Context) -> opentelemetry_sdk::trace::Span,
    ) -> ChildSpan {
        let (Some(cx), Some(exporting)) = (&self.cx, EXPORTING.get()) else {
            return ChildSpan { cx: None };
        };
        let span = build(&exporting.tracer, cx);
        ChildSpan {
            cx: Some(cx.with_span(span)),
        }
    }

    /// Ends the request span with the response status.
    pub fn finish(self, status: http::StatusCode) {
        if let Some(cx) = self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_server_error() {
                span.set_status(Status::error(status.to_string()));
            }
            span.end();
        }
    }
}

impl ChildSpan {
    /// Records a failure on the span.
    pub fn fail(&self, why: impl Into<String>) {
        if let Some(cx) = &self.cx {
            let why: String = why.into();
            cx.span().set_status(Status::error(why));
        }
    }

    /// Records an attribute.
    pub fn set(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }
}

impl Drop for ChildSpan {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traceparent(headers: &HeaderMap) -> &str {
        headers[&TRACEPARENT].to_str().unwrap()
    }

    #[test]
    fn a_request_without_a_trace_gets_a_well_formed_new_one() {
        let mut headers = HeaderMap::new();
        let trace = propagate_only(&mut headers);
        let value = traceparent(&headers);
        let fields: Vec<&str> = value.split('-').collect();
        assert_eq!(fields.len(), 4, "{value}");
        assert_eq!((fields[0], fields[3]), ("00", "01"));
        assert_eq!(fields[1], trace.trace_id());
        assert_eq!(fields[2].len(), 16);
        // What an upstream's tracing library reads back.
        let read = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        assert!(read.span().span_context().is_valid(), "{value}");
        assert_ne!(
            propagate_only(&mut HeaderMap::new()).trace_id(),
            trace.trace_id()
        );
    }

    #[test]
    fn a_valid_trace_is_passed_on_unchanged_and_an_invalid_one_replaced() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(given));
        let trace = propagate_only(&mut headers);
        assert_eq!(traceparent(&headers), given);
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");

        // An all-zero trace id is invalid (W3C trace context §3.2.2.3).
        let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        headers.insert(&TRACEPARENT, HeaderValue::from_static(zero));
        let trace = propagate_only(&mut headers);
        assert_ne!(traceparent(&headers), zero);
        assert!(traceparent(&headers).contains(&trace.trace_id()));
    }
}
