//! The `log` interface: a plugin's log lines, under its name and route.

use super::*;

impl log::Host for PluginState {
    fn enabled(&mut self, level: log::Level) -> wasmtime::Result<bool> {
        Ok(match level {
            log::Level::Trace => {
                tracing::enabled!(target: "wasmgate::plugin", tracing::Level::TRACE)
            }
            log::Level::Debug => {
                tracing::enabled!(target: "wasmgate::plugin", tracing::Level::DEBUG)
            }
            log::Level::Info => tracing::enabled!(target: "wasmgate::plugin", tracing::Level::INFO),
            log::Level::Warn => tracing::enabled!(target: "wasmgate::plugin", tracing::Level::WARN),
            log::Level::Error => {
                tracing::enabled!(target: "wasmgate::plugin", tracing::Level::ERROR)
            }
        })
    }

    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let (plugin, route) = (&*self.label.plugin, &*self.label.route);
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "wasmgate::plugin", plugin, route, "{message}")
            }
        }
        Ok(())
    }
}
