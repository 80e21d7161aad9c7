//! The `asserted-headers` interface: the request headers a plugin asserts (a consumer, claims), which the gateway removes from clients' requests.

use super::*;

impl asserted_headers::Host for PluginState {
    fn declare(&mut self, name: String) -> wasmtime::Result<()> {
        // Only names a plugin may set itself: a declaration cannot strip `host` and the like.
        if self.configuring
            && let Ok(name) = editable_name(&name)
            && name != http::header::HOST
            && !self.asserted_headers.contains(&name)
        {
            self.asserted_headers.push(name);
        }
        Ok(())
    }
}
