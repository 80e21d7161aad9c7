//! `headers`: add, set, remove and rename request and response headers.
//!
//! ```toml
//! { use = "headers", config = { request = { set = { "x-api-version" = "2" }, remove = ["x-debug"] },
//!                               response = { add = { "x-served-by" = "wasmgate" }, rename = { "server" = "x-origin-server" } } } }
//! ```
//!
//! Per direction the edits apply in a fixed order: `remove`, then `rename`, then `set`
//! (replace all values), then `add` (append a value).

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmgate_plugin_sdk::{
    Action, ConfigError, Context, EditError, Hooks, Plugin, Request, Response, fields, plugin,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    request: EditsConfig,
    #[serde(default)]
    response: EditsConfig,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EditsConfig {
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    add: BTreeMap<String, String>,
}

/// The edits for one direction, validated.
#[derive(Default)]
struct Edits {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
}

/// What the edits need from a request or a response.
trait Fields {
    fn all(&self, name: &str) -> Vec<String>;
    fn remove(&self, name: &str) -> Result<(), EditError>;
    fn set(&self, name: &str, value: &str) -> Result<(), EditError>;
    fn append(&self, name: &str, value: &str) -> Result<(), EditError>;
}

macro_rules! impl_fields {
    ($ty:ty) => {
        impl Fields for $ty {
            fn all(&self, name: &str) -> Vec<String> {
                self.header_all(name)
            }
            fn remove(&self, name: &str) -> Result<(), EditError> {
                self.remove_header(name)
            }
            fn set(&self, name: &str, value: &str) -> Result<(), EditError> {
                self.set_header(name, value)
            }
            fn append(&self, name: &str, value: &str) -> Result<(), EditError> {
                self.append_header(name, value)
            }
        }
    };
}
impl_fields!(Request);
impl_fields!(Response);

impl Edits {
    fn parse(direction: &str, config: EditsConfig) -> Result<Self, ConfigError> {
        let name_ok =
            |key: String, name: &str| fields::check_name(name).map_err(|e| ConfigError::at(key, e));
        let pairs = |op: &str, map: BTreeMap<String, String>| {
            map.into_iter()
                .map(|(name, value)| {
                    name_ok(format!("{direction}.{op}.{name}"), &name)?;
                    if !fields::is_valid_value(&value) {
                        let msg =
                            "is not a valid header value (no control characters or line breaks)";
                        return Err(ConfigError::at(format!("{direction}.{op}.{name}"), msg));
                    }
                    Ok((name, value))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        for (i, name) in config.remove.iter().enumerate() {
            name_ok(format!("{direction}.remove[{i}]"), name)?;
        }
        let mut rename = Vec::new();
        for (from, to) in config.rename {
            name_ok(format!("{direction}.rename.{from}"), &from)?;
            name_ok(format!("{direction}.rename.{from}"), &to)?;
            rename.push((from, to));
        }
        Ok(Self {
            remove: config.remove,
            rename,
            set: pairs("set", config.set)?,
            add: pairs("add", config.add)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// Applies the edits. Names and values were validated at configure time, so the host
    /// accepts every edit; an error here would be a host bug, and skipping that edit is the
    /// safe outcome.
    fn apply(&self, target: &impl Fields) {
        for name in &self.remove {
            let _ = target.remove(name);
        }
        for (from, to) in &self.rename {
            let values = target.all(from);
            if values.is_empty() {
                continue;
            }
            let _ = target.remove(from);
            let _ = target.remove(to);
            for value in &values {
                let _ = target.append(to, value);
            }
        }
        for (name, value) in &self.set {
            let _ = target.set(name, value);
        }
        for (name, value) in &self.add {
            let _ = target.append(name, value);
        }
    }
}

struct Headers {
    request: Edits,
    response: Edits,
}

#[plugin]
impl Plugin for Headers {
    type Config = Config;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        let request = Edits::parse("request", config.request)?;
        let response = Edits::parse("response", config.response)?;
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
