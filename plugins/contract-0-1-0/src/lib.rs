//! A plugin built with wit-bindgen directly against the first released contract,
//! `wasmgate:plugin@0.1.0` (tests/contract/wasmgate-plugin-0.1.0), not the current one: the
//! gateway must keep running it as the contract grows within `0.1`.
//!
//! It tags the request and the response, and carries a value through the request context.

wit_bindgen::generate!({
    path: "../../tests/contract/wasmgate-plugin-0.1.0",
    world: "plugin",
});

use exports::wasmgate::plugin::handler::Guest;
use wasmgate::plugin::types::{Action, ConfigError, Context, Hooks, Request, Response};

struct Contract010;

impl Guest for Contract010 {
    fn configure(config: String) -> Result<Hooks, ConfigError> {
        if config.trim() != "{}" {
            return Err(ConfigError {
                key: None,
                message: "takes no config".into(),
            });
        }
        Ok(Hooks::REQUEST | Hooks::RESPONSE)
    }

    fn on_request(req: &Request, ctx: &Context) -> Action {
        let _ = req.set_header("x-built-for", "wasmgate:plugin@0.1.0");
        ctx.set("path", &req.path());
        Action::Continue
    }

    fn on_response(_req: &Request, resp: &Response, ctx: &Context) {
        let _ = resp.set_header("x-seen-path", &ctx.get("path").unwrap_or_default());
    }
}

export!(Contract010);
