//! The one place where failures become HTTP responses.
//!
//! Downstream faults (the client's request) map to 4xx, upstream faults to 502/503/504, and
//! plugin or internal faults to 500. Every error response is short plain text naming the
//! cause and carries the request id, so an operator can find the matching log line.

use http::{Response, StatusCode, header};

use crate::body::{ProxyBody, full};

/// Why the gateway answers instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// The request cannot be made canonical (see [`crate::ingress`]).
    Refused(crate::ingress::IngressError),
    /// No route takes the request.
    NoRoute,
    /// The route has no upstream and no plugin answered.
    NoResponder,
    /// The request body is over the configured limit.
    BodyTooLarge,
    /// The request body could not be read, or its `content-encoding` could not be decoded.
    BadRequestBody,
    /// The client stopped sending a body a plugin needs.
    BodyTimeout,
    /// A plugin reads request bodies and this one is in a coding the gateway cannot decode.
    UnsupportedEncoding,
    /// The upstream refused or reset the connection, or sent an invalid response.
    UpstreamUnreachable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream's adaptive concurrency limit or its circuit breaker's `max_requests` is
    /// reached: shed before it falls over.
    UpstreamOverloaded,
    /// The upstream's circuit is open: no call is made until it half-opens.
    CircuitOpen {
        /// Seconds until probes are let through.
        retry_after: u32,
    },
    /// Every target of the upstream is unhealthy or ejected.
    NoHealthyTarget,
    /// A plugin failed (trap, deadline, memory) and its policy is `fail`.
    PluginFailed,
}

impl GatewayError {
    /// The status the client receives.
    pub fn status(self) -> StatusCode {
        match self {
            GatewayError::Refused(_) => StatusCode::BAD_REQUEST,
            GatewayError::NoRoute | GatewayError::NoResponder => StatusCode::NOT_FOUND,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BadRequestBody => StatusCode::BAD_REQUEST,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamOverloaded
            | GatewayError::CircuitOpen { .. }
            | GatewayError::NoHealthyTarget => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::PluginFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            GatewayError::Refused(why) => return why.to_string().into(),
            GatewayError::NoRoute => "no route matches this request",
            GatewayError::NoResponder => "the route has no upstream and no plugin answered",
            GatewayError::BodyTooLarge => "request body exceeds the gateway's limit",
            GatewayError::BadRequestBody => "request body could not be read or decoded",
            GatewayError::BodyTimeout => "request body not received in time",
            GatewayError::UnsupportedEncoding => {
                "request content-encoding not supported here (use gzip, deflate or none)"
            }
            GatewayError::UpstreamUnreachable => "upstream unreachable",
            GatewayError::UpstreamTimeout => "upstream timed out",
            GatewayError::UpstreamOverloaded => "upstream overloaded, retry shortly",
            GatewayError::CircuitOpen { .. } => "upstream circuit open, retry later",
            GatewayError::NoHealthyTarget => "no healthy upstream target",
            GatewayError::PluginFailed => "a plugin failed while handling the request",
        })
    }

    /// The response for this error.
    pub fn response(self) -> Response<ProxyBody> {
        let mut resp = Response::new(full(format!("{}\n", self.reason())));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let retry_after = match self {
            GatewayError::UpstreamOverloaded | GatewayError::NoHealthyTarget => Some(1),
            GatewayError::CircuitOpen { retry_after } => Some(retry_after),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        resp
    }
}
