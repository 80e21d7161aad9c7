//! `echo`: answers every request itself with a JSON description of the request as the gateway
//! sees it at that point of the chain (method, path, query, headers, client, context keys
//! asked for, and the body). Useful as a demo backend and for debugging a chain.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use wasmgate_plugin_sdk::{Action, Bodies, ConfigError, Context, Plugin, Reply, Request, plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Status of the reply.
    #[serde(default = "default_status")]
    status: u16,
    /// Context keys to include in the reply, e.g. `["consumer"]`.
    #[serde(default)]
    context: Vec<String>,
    /// Include request bodies up to this many bytes (0: leave bodies out, never buffer them).
    #[serde(default = "default_max_body")]
    max_body: u64,
}

fn default_max_body() -> u64 {
    64 << 10
}

fn default_status() -> u16 {
    200
}

struct Echo {
    status: u16,
    context: Vec<String>,
    max_body: u64,
}

#[plugin]
impl Plugin for Echo {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if !(200..=599).contains(&config.status) {
            return Err(ConfigError::at(
                "status",
                format!("{} is not a status between 200 and 599", config.status),
            ));
        }
        Ok(Self {
            status: config.status,
            context: config.context,
            max_body: config.max_body,
        })
    }

    fn bodies(&self) -> Bodies {
        match self.max_body {
            0 => Bodies::default(),
            max => Bodies::request(max),
        }
    }

    fn on_request(&self, req: &Request, ctx: &Context) -> Action {
        let mut headers = Map::new();
        for name in req.header_names() {
            let values = req.header_all(&name);
            let value = match values.len() {
                1 => Value::String(values.into_iter().next().unwrap_or_default()),
                _ => Value::from(values),
            };
            headers.insert(name, value);
        }
        let context: Map<String, Value> = self
            .context
            .iter()
            .filter_map(|key| ctx.get(key).map(|v| (key.clone(), Value::String(v))))
            .collect();
        // JSON bodies as JSON, others as text.
        let request_body = req.body().filter(|b| !b.is_empty()).map(|b| {
            serde_json::from_slice::<Value>(&b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned()))
        });
        let mut body = json!({
            "method": req.method(),
            "path": req.path(),
            "query": req.query(),
            "client_ip": req.client_ip(),
            "headers": headers,
            "context": context,
        });
        if let Some(request_body) = request_body {
            body["body"] = request_body;
        }
        // Pretty-printed: the echo is read by people at a terminal.
        let body = format!("{body:#}\n");
        Action::respond(
            Reply::new(self.status)
                .header("content-type", "application/json")
                .body(body.into_bytes()),
        )
    }
}
