//! JSON body edits addressed by JSON Pointer (RFC 6901).
//!
//! - `set` writes the value, creating missing parent objects;
//! - `add` writes it only where nothing is yet (into an array: inserts at the index, `-`
//!   appends);
//! - `remove` deletes the member or element if it is there;
//! - `rename` moves a value to another pointer if it is there.

use serde_json::Value;

/// A parsed JSON Pointer: its reference tokens, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(Vec<String>);

impl Pointer {
    /// Parses `/a/b~1c/0`. The whole document (`""`) cannot be edited.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "`{text}` is not a JSON Pointer to a member: it must start with `/`"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            if raw.contains('~') && !valid_escapes(raw) {
                return Err(format!("`{text}` has an invalid `~` escape (use ~0 or ~1)"));
            }
            tokens.push(raw.replace("~1", "/").replace("~0", "~"));
        }
        Ok(Self(tokens))
    }
}

fn valid_escapes(token: &str) -> bool {
    let bytes = token.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'~' || matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

/// One edit.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Write, creating parents.
    Set(Pointer),
    /// Write only where absent.
    Add(Pointer),
    /// Delete.
    Remove(Pointer),
    /// Move `from` to `to`.
    Rename { from: Pointer, to: Pointer },
}

/// Applies `edit` to `doc` with `value` (for `set` and `add`); whether it changed anything.
/// Edits whose path does not fit the document (a member of a string, an index past the end)
/// leave it unchanged.
pub fn apply(doc: &mut Value, edit: &Edit, value: Option<Value>) -> bool {
    match (edit, value) {
        (Edit::Set(at), Some(value)) => write(doc, &at.0, value, true).is_ok(),
        (Edit::Add(at), Some(value)) => write(doc, &at.0, value, false).is_ok(),
        (Edit::Set(_) | Edit::Add(_), None) => false,
        (Edit::Remove(at), _) => take(doc, &at.0).is_some(),
        (Edit::Rename { from, to }, _) => {
            let Some(value) = take(doc, &from.0) else {
                return false;
            };
            match write(doc, &to.0, value, true) {
                Ok(()) => true,
                Err(value) => {
                    // The target does not fit: put the value back where it was.
                    let _ = write(doc, &from.0, value, false);
                    false
                }
            }
        }
    }
}

/// Writes `value` at `path`, creating missing parent objects; gives the value back when the
/// path does not fit the document (or, without `overwrite`, something is there already).
fn write(doc: &mut Value, path: &[String], value: Value, overwrite: bool) -> Result<(), Value> {
    let Some((last, parents)) = path.split_last() else {
        return Err(value);
    };
    if !fits(doc, parents) {
        return Err(value);
    }
    let mut node = doc;
    for token in parents {
        node = match node {
            Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(items) => match index(token, items.len()) {
                Some(i) if i < items.len() => &mut items[i],
                _ => return Err(value),
            },
            _ => return Err(value),
        };
    }
    match node {
        Value::Object(map) if overwrite || !map.contains_key(last) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => match index(last, items.len()) {
            Some(i) if i == items.len() => items.push(value),
            Some(i) if !overwrite => items.insert(i, value),
            Some(i) if i < items.len() => items[i] = value,
            _ => return Err(value),
        },
        _ => return Err(value),
    }
    Ok(())
}

/// Whether every parent on `path` is an object (or missing, to be created as one) or an array
/// with that index: checked first so that a failing write creates nothing.
fn fits(doc: &Value, parents: &[String]) -> bool {
    let mut node = doc;
    for token in parents {
        node = match node {
            Value::Object(map) => match map.get(token) {
                Some(child) => child,
                None => return true,
            },
            Value::Array(items) => match index(token, items.len()).and_then(|i| items.get(i)) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    matches!(node, Value::Object(_) | Value::Array(_))
}

/// Removes and returns the value at `path`.
fn take(doc: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut node = doc;
    for token in parents {
        node = match node {
            Value::Object(map) => map.get_mut(token)?,
            Value::Array(items) => {
                let i = index(token, items.len())?;
                items.get_mut(i)?
            }
            _ => return None,
        };
    }
    match node {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => {
            let i = index(last, items.len())?;
            (i < items.len()).then(|| items.remove(i))
        }
        _ => None,
    }
}

/// An array index token: digits without leading zeros, or `-` for "after the last".
fn index(token: &str, len: usize) -> Option<usize> {
    if token == "-" {
        return Some(len);
    }
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok().filter(|&i| i <= len)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn p(text: &str) -> Pointer {
        Pointer::parse(text).unwrap()
    }

    #[test]
    fn set_creates_parents_and_overwrites() {
        let mut doc = json!({"a": 1});
        apply(&mut doc, &Edit::Set(p("/meta/by")), Some(json!("alice")));
        apply(&mut doc, &Edit::Set(p("/a")), Some(json!(2)));
        assert_eq!(doc, json!({"a": 2, "meta": {"by": "alice"}}));
    }

    #[test]
    fn add_never_overwrites_and_inserts_into_arrays() {
        let mut doc = json!({"a": 1, "tags": ["x", "z"]});
        apply(&mut doc, &Edit::Add(p("/a")), Some(json!(2)));
        apply(&mut doc, &Edit::Add(p("/tags/1")), Some(json!("y")));
        apply(&mut doc, &Edit::Add(p("/tags/-")), Some(json!("end")));
        assert_eq!(doc, json!({"a": 1, "tags": ["x", "y", "z", "end"]}));
    }

    #[test]
    fn remove_and_rename_ignore_missing_paths() {
        let mut doc = json!({"user": {"name": "O'Brien", "password": "s"}, "list": [1, 2]});
        apply(&mut doc, &Edit::Remove(p("/user/password")), None);
        apply(&mut doc, &Edit::Remove(p("/nothing/here")), None);
        apply(&mut doc, &Edit::Remove(p("/list/0")), None);
        let rename = Edit::Rename {
            from: p("/user/name"),
            to: p("/user/full_name"),
        };
        apply(&mut doc, &rename, None);
        let missing = Edit::Rename {
            from: p("/user/nope"),
            to: p("/x"),
        };
        apply(&mut doc, &missing, None);
        assert_eq!(doc, json!({"user": {"full_name": "O'Brien"}, "list": [2]}));
    }

    #[test]
    fn a_rename_whose_target_does_not_fit_keeps_the_value() {
        let mut doc = json!({"name": "Ada", "tags": "x"});
        let rename = Edit::Rename {
            from: p("/name"),
            to: p("/tags/first"),
        };
        assert!(!apply(&mut doc, &rename, None));
        assert_eq!(doc, json!({"name": "Ada", "tags": "x"}));
        assert!(!apply(&mut doc, &Edit::Set(p("/tags/a/b")), Some(json!(1))));
        assert_eq!(
            doc,
            json!({"name": "Ada", "tags": "x"}),
            "nothing half-created"
        );
    }

    #[test]
    fn pointers_unescape_and_refuse_bad_syntax() {
        assert_eq!(p("/a~1b/c~0d").0, vec!["a/b", "c~d"]);
        assert!(Pointer::parse("a/b").is_err());
        assert!(Pointer::parse("").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(index("01", 5).is_none());
        assert!(index("6", 5).is_none());
    }
}
