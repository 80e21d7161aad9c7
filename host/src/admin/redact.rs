//! Keeping the host's file system layout out of `/status`.
//!
//! Reload errors name files (`/srv/gw/gateway.toml:12:5: …`, `cannot read /opt/…/x.wasm`).
//! Whoever may read the admin API may reload the gateway, but an absolute path tells them,
//! or a log they paste it into, about the machine (user names, mount points) for no gain:
//! the operator knows where the config lives. So paths under the config's directory are shown
//! relative to it, and other absolute file paths by their file name.

use std::path::Path;

use serde_json::Value;

/// Rewrites every string in `value`: paths under `config_dir` become relative to it, other
/// absolute file paths become their file name.
pub fn relative_paths(value: &mut Value, config_dir: &Path) {
    let mut prefixes = Vec::new();
    for dir in [
        Some(config_dir.to_path_buf()),
        config_dir.canonicalize().ok(),
    ]
    .into_iter()
    .flatten()
    {
        let dir = dir.display().to_string();
        // `/` as the config's directory would turn every path into a relative one.
        if dir.starts_with('/') && dir != "/" {
            prefixes.push(format!("{}/", dir.trim_end_matches('/')));
        }
    }
    // Longest first: a canonical directory may be a suffix-extension of the given one.
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
    rewrite(value, &|text| {
        let mut text = text.to_owned();
        for prefix in &prefixes {
            text = text.replace(prefix.as_str(), "");
        }
        file_names(&text)
    });
}

fn rewrite(value: &mut Value, f: &dyn Fn(&str) -> String) {
    match value {
        Value::String(s) => *s = f(s),
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite(v, f)),
        _ => {}
    }
}

/// Characters a path in a message starts after and ends before.
const BEFORE: &[char] = &[' ', '\t', '\n', '`', '"', '\'', '(', '[', '<', '='];
const AFTER: &[char] = &[
    ' ', '\t', '\n', '`', '"', '\'', ')', ']', '>', ',', ':', ';',
];

/// `text` with each absolute file path replaced by its file name. A word is taken for a file
/// path when it has a directory part and either that directory exists or its last part has an
/// extension: `/opt/plugins/x.wasm` is one, a route's `/api/v1` is not.
fn file_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_boundary = true;
    while let Some(c) = rest.chars().next() {
        if c == '/' && at_boundary {
            let end = rest.find(AFTER).unwrap_or(rest.len());
            let word = &rest[..end];
            out.push_str(&shorten(word));
            rest = &rest[end..];
            at_boundary = false;
            continue;
        }
        out.push(c);
        at_boundary = BEFORE.contains(&c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn shorten(word: &str) -> String {
    let path = Path::new(word);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return word.to_owned();
    };
    let has_dir = parent != Path::new("/") && parent != Path::new("");
    let looks_like_file = parent.is_dir() || Path::new(name).extension().is_some();
    if has_dir && looks_like_file {
        name.to_string_lossy().into_owned()
    } else {
        word.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_under_the_config_directory_become_relative_and_others_file_names() {
        let mut status = json!({
            "config": { "path": "/srv/gw/gateway.toml" },
            "last_reload": { "error": "/srv/gw/gateway.toml:12:12: route `swap`: unknown upstream `nowhere`\n\
                plugin `p`: cannot read /srv/gw/plugins/p.wasm: not found\n\
                plugin `q`: cannot read `/opt/elsewhere/q.wasm`: not found\n\
                route `api`: path_prefix `/api/v1` overlaps `/`" },
            "routes": ["/not/a/path"],
        });
        relative_paths(&mut status, Path::new("/srv/gw"));
        assert_eq!(status["config"]["path"], "gateway.toml");
        assert_eq!(
            status["last_reload"]["error"],
            "gateway.toml:12:12: route `swap`: unknown upstream `nowhere`\n\
                plugin `p`: cannot read plugins/p.wasm: not found\n\
                plugin `q`: cannot read `q.wasm`: not found\n\
                route `api`: path_prefix `/api/v1` overlaps `/`"
        );
        assert_eq!(status["routes"][0], "/not/a/path");
    }

    #[test]
    fn urls_are_left_alone() {
        assert_eq!(
            file_names("cannot fetch http://idp.test/keys/jwks.json (timed out)"),
            "cannot fetch http://idp.test/keys/jwks.json (timed out)"
        );
    }
}
