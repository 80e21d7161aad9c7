//! The `body-access` interface: the bodies a plugin declares, at `configure`, that it reads.

use super::*;

impl body_access::Host for PluginState {
    fn buffer(&mut self, message: body_access::Message, max_bytes: u64) -> wasmtime::Result<()> {
        if self.configuring {
            let limit = match message {
                body_access::Message::Request => &mut self.body_limits.request,
                body_access::Message::Response => &mut self.body_limits.response,
            };
            *limit = Some(limit.map_or(max_bytes, |before| before.max(max_bytes)));
        }
        Ok(())
    }
}
