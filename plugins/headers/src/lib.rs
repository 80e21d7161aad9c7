//! `headers`: add, set, remove and rename request and response headers.
//!
//! ```toml
//! { use = "headers", config = { request = { set = { "x-api-version" = "2" }, remove = ["x-debug"] },
//!                               response = { add = { "x-served-by" = "wasmgate" }, rename = { "server" = "x-origin-server" } } } }
//! ```
//!
//! Per direction the edits apply in a fixed order: `remove`, then `rename`, then `set`
//! (replace all values), then `add` (append a value).

use serde::Deserialize;
use wasmgate_plugin_sdk::header_edits::{HeaderEdits, HeaderEditsConfig};
use wasmgate_plugin_sdk::{Action, ConfigError, Context, Hooks, Plugin, Request, Response, plugin};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    request: HeaderEditsConfig,
    #[serde(default)]
    response: HeaderEditsConfig,
}

struct Headers {
    request: HeaderEdits,
    response: HeaderEdits,
}

#[plugin]
impl Plugin for Headers {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        let request = HeaderEdits::parse("request", config.request)?;
        let response = HeaderEdits::parse("response", config.response)?;
        if request.is_empty() && response.is_empty() {
            return Err(ConfigError::new(
                "no edits configured: set `request` and/or `response`",
            ));
        }
        Ok(Self { request, response })
    }

    fn hooks(&self) -> Hooks {
        let mut hooks = Hooks::empty();
        if !self.request.is_empty() {
            hooks |= Hooks::REQUEST;
        }
        if !self.response.is_empty() {
            hooks |= Hooks::RESPONSE;
        }
        hooks
    }

    fn on_request(&self, req: &Request, _ctx: &Context) -> Action {
        self.request.apply(req);
        Action::Continue
    }

    fn on_response(&self, _req: &Request, resp: &Response, _ctx: &Context) {
        self.response.apply(resp);
    }
}
