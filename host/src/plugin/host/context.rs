//! The `context` resource: what the gateway knows of the request beyond its head (route, client, consumer, values earlier plugins set).

use super::*;

impl types::HostContext for PluginState {
    fn get(&mut self, _: Resource<ContextHandle>, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.exchange()?.context.get(&key).cloned())
    }

    fn set(
        &mut self,
        _: Resource<ContextHandle>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.exchange()?.context.insert(key, value);
        Ok(())
    }

    fn remove(&mut self, _: Resource<ContextHandle>, key: String) -> wasmtime::Result<()> {
        self.exchange()?.context.remove(&key);
        Ok(())
    }

    fn drop(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
