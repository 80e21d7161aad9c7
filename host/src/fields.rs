//! Header fields with a fixed meaning to the gateway, each set named once: ingress, the
//! forwarding step and the plugin host all read these lists. A leaf module.

use http::header::{self, HeaderName};

/// Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection, so they are never
/// forwarded. Ingress keeps `Upgrade` for the route to decide on; forwarding removes it.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Fields plugins may not set or remove: the message's framing and the connection's own
/// fields, which the gateway manages on each hop. `plugin-sdk`'s `fields::HOST_MANAGED` is
/// the same list, spelt for guests (a test below keeps the two equal).
pub const PLUGIN_PROTECTED: [HeaderName; 8] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_protects_the_same_fields_as_the_host() {
        let protected = PLUGIN_PROTECTED;
        let mut host: Vec<&str> = protected.iter().map(HeaderName::as_str).collect();
        let mut sdk = wasmgate_plugin_sdk::fields::HOST_MANAGED.to_vec();
        host.sort_unstable();
        sdk.sort_unstable();
        assert_eq!(host, sdk);
    }
}
