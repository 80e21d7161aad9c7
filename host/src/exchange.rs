//! One request in flight as plugins see it: the request head, the response head once there is
//! one, the bodies plugins asked for, and the per-request context shared along the chain.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;

/// The route of an idle exchange (shared, so making one allocates nothing).
static NO_ROUTE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

/// What the plugin chain reads and edits for one request.
pub struct Exchange {
    /// Method, URI, version and headers; edits here are what the upstream receives.
    pub request: http::request::Parts,
    /// The client's IP address: the connection's, or the one a trusted proxy forwarded for.
    pub client_ip: IpAddr,
    /// The IP address of the connection's peer (the client, or a trusted proxy).
    pub peer_ip: IpAddr,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// The response head, present in the response phase.
    pub response: Option<http::response::Parts>,
    /// Key/value properties shared along the chain.
    pub context: HashMap<String, String>,
    /// The route handling the request.
    pub route: Arc<str>,
    /// The request body as plugins see it: buffered for a plugin that asked for it, or
    /// replaced by one. `None` while it streams.
    pub request_body: Option<Bytes>,
    /// The response body as plugins see it, in the response phase.
    pub response_body: Option<Bytes>,
}

impl Exchange {
    /// A placeholder held by idle plugin instances (allocates nothing).
    pub fn idle() -> Self {
        Self {
            request: http::Request::new(()).into_parts().0,
            client_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            peer_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            tls: false,
            response: None,
            context: HashMap::new(),
            route: NO_ROUTE.clone(),
            request_body: None,
            response_body: None,
        }
    }
}
