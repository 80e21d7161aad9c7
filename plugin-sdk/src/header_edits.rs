//! Header edits from a plugin's config: remove, rename, set and add, on a request or a
//! response. Used by the `headers` and `transform` plugins; available to any plugin.
//!
//! ```toml
//! request = { remove = ["x-debug"], rename = { "x-user" = "x-consumer" }, set = { "x-api-version" = "2" }, add = { "via" = "wasmgate" } }
//! ```
//!
//! The edits apply in that fixed order: `remove`, then `rename`, then `set` (replace all
//! values), then `add` (append a value).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{ConfigError, EditError, Request, Response, fields};

/// The config of one direction's header edits, as written in TOML.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsConfig {
    /// Headers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Headers to rename, `from = to`; the values keep their order.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Headers to set, replacing every existing value.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Values to append.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// Validated header edits for one direction.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
}

/// What header edits need from a request or a response.
pub trait HeaderFields {
    /// Every value of `name`.
    fn all(&self, name: &str) -> Vec<String>;
    /// Removes `name`.
    fn remove(&self, name: &str) -> Result<(), EditError>;
    /// Replaces `name`'s values with `value`.
    fn set(&self, name: &str, value: &str) -> Result<(), EditError>;
    /// Appends `value` to `name`.
    fn append(&self, name: &str, value: &str) -> Result<(), EditError>;
}

macro_rules! impl_header_fields {
    ($ty:ty) => {
        impl HeaderFields for $ty {
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
impl_header_fields!(Request);
impl_header_fields!(Response);

impl HeaderEdits {
    /// Validates `config`; errors name the key under `prefix` (e.g. `request.set.x-id`).
    pub fn parse(prefix: &str, config: HeaderEditsConfig) -> Result<Self, ConfigError> {
        let name_ok =
            |key: String, name: &str| fields::check_name(name).map_err(|e| ConfigError::at(key, e));
        let pairs = |op: &str, map: BTreeMap<String, String>| {
            map.into_iter()
                .map(|(name, value)| {
                    name_ok(format!("{prefix}.{op}.{name}"), &name)?;
                    if !fields::is_valid_value(&value) {
                        let msg =
                            "is not a valid header value (no control characters or line breaks)";
                        return Err(ConfigError::at(format!("{prefix}.{op}.{name}"), msg));
                    }
                    Ok((name, value))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        for (i, name) in config.remove.iter().enumerate() {
            name_ok(format!("{prefix}.remove[{i}]"), name)?;
        }
        let mut rename = Vec::new();
        for (from, to) in config.rename {
            name_ok(format!("{prefix}.rename.{from}"), &from)?;
            name_ok(format!("{prefix}.rename.{from}"), &to)?;
            rename.push((from, to));
        }
        Ok(Self {
            remove: config.remove,
            rename,
            set: pairs("set", config.set)?,
            add: pairs("add", config.add)?,
        })
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// Applies the edits. Names and values were validated at configure time, so the host
    /// accepts every edit; an error here would be a host bug, and skipping that edit is the
    /// safe outcome.
    pub fn apply(&self, target: &impl HeaderFields) {
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
