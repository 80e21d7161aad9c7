//! {{name}}: a wasmgate plugin.
//!
//! Adds `x-greeting` to every request on its way upstream and `x-plugin: {{name}}` to every
//! response. Config: `{ greeting = "hello" }` (optional).

use serde::Deserialize;
use wasmgate_plugin_sdk::{Action, ConfigError, Context, Hooks, Plugin, Request, Response, plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "hello".into()
}

struct Greeter {
    greeting: String,
}

#[plugin]
impl Plugin for Greeter {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        Ok(Self {
            greeting: parse_greeting(config.greeting)?,
        })
    }

    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::RESPONSE
    }

    fn on_request(&self, req: &Request, _ctx: &Context) -> Action {
        let _ = req.set_header("x-greeting", &self.greeting);
        Action::Continue
    }

    fn on_response(&self, _req: &Request, resp: &Response, _ctx: &Context) {
        let _ = resp.set_header("x-plugin", "{{name}}");
    }
}

/// Config checks are plain Rust: test them natively with `cargo test`.
fn parse_greeting(greeting: String) -> Result<String, ConfigError> {
    if greeting.is_empty() || greeting.chars().any(char::is_control) {
        return Err(ConfigError::at("greeting", "expected text without control characters"));
    }
    Ok(greeting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_with_control_characters_are_refused() {
        assert!(parse_greeting("hi".into()).is_ok());
        assert!(parse_greeting("".into()).is_err());
        assert!(parse_greeting("a\nb".into()).is_err());
    }
}
