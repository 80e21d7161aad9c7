//! The `clock` interface: wall-clock and monotonic time for a plugin.

use super::*;

impl clock::Host for PluginState {
    fn now_millis(&mut self) -> wasmtime::Result<u64> {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_nanos(&mut self) -> wasmtime::Result<u64> {
        Ok(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}
