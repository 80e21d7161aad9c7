//! `wasmgate plugin new` and `wasmgate plugin check`: start a plugin in Rust, Python,
//! JavaScript or C from a working skeleton, and tell whether a module fits this gateway.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::plugin::compat::{self, PACKAGE_NAME};
use crate::plugin::{Capability, LoadError, ModuleReport, WasiAccess, wasi_access};

/// Languages `plugin new` has a skeleton for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust with wasmgate's plugin SDK (cargo, wasm32-wasip2).
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with ComponentizeJS (StarlingMonkey).
    Js,
    /// C with clang, wasi-libc, `wit-bindgen c` and `wasm-tools`.
    C,
}

/// The plugin contract, as written into skeletons that need the WIT files.
const CONTRACT_WIT: &str = include_str!("../../wit/plugin.wit");

/// Where the plugin SDK was when this binary was built (for Rust skeletons).
pub const BUILT_SDK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

/// Writes a skeleton for plugin `name` in `lang` into `dir` (which must not exist or be empty).
/// Returns what to do next, for the user.
pub fn new_plugin(name: &str, lang: Language, dir: &Path, sdk: &Path) -> Result<String, String> {
    check_name(name)?;
    if dir.exists() && dir.read_dir().map_or(true, |mut d| d.next().is_some()) {
        return Err(format!("{} already exists and is not empty", dir.display()));
    }
    let version = compat::gateway_version().to_string();
    let mut files: Vec<(&str, String)> = vec![
        (
            "gateway.toml",
            include_str!("../templates/common/gateway.toml").into(),
        ),
        (
            "test.sh",
            include_str!("../templates/common/test.sh").into(),
        ),
        (
            ".gitignore",
            "*.wasm\ngateway.log\ntarget/\nnode_modules/\ngen/\n__pycache__/\n".into(),
        ),
    ];
    let (config, skeleton): (&str, Vec<(&str, &str)>) = match lang {
        Language::Rust => (
            r#"{ greeting = "hello from {{name}}" }"#,
            vec![
                ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
                ("build.sh", include_str!("../templates/rust/build.sh")),
                ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
            ],
        ),
        Language::Python => (
            r#"{ greeting = "hello from {{name}}" }"#,
            vec![
                ("app.py", include_str!("../templates/python/app.py")),
                ("build.sh", include_str!("../templates/python/build.sh")),
            ],
        ),
        Language::Js => (
            r#"{ greeting = "hello from {{name}}" }"#,
            vec![
                ("plugin.js", include_str!("../templates/js/plugin.js")),
                ("package.json", include_str!("../templates/js/package.json")),
                ("build.sh", include_str!("../templates/js/build.sh")),
            ],
        ),
        Language::C => (
            "{}",
            vec![
                ("plugin.c", include_str!("../templates/c/plugin.c")),
                ("build.sh", include_str!("../templates/c/build.sh")),
            ],
        ),
    };
    files.extend(
        skeleton
            .into_iter()
            .map(|(path, text)| (path, text.to_string())),
    );
    if lang != Language::Rust {
        files.push(("wit/world.wit", world(name, &version)));
        files.push(("wit/deps/wasmgate-plugin/plugin.wit", CONTRACT_WIT.into()));
    }

    let sdk = std::path::absolute(sdk).unwrap_or_else(|_| sdk.to_path_buf());
    if lang == Language::Rust && !sdk.join("Cargo.toml").is_file() {
        return Err(format!(
            "the plugin SDK is not at {}: pass --sdk <path to wasmgate's plugin-sdk directory>",
            sdk.display()
        ));
    }
    let fill = |text: &str| {
        text.replace("{{config}}", config)
            .replace("{{name}}", name)
            .replace("{{name_snake}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", &sdk.display().to_string())
    };
    for (path, text) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, fill(text))
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        if path.ends_with(".sh") {
            make_executable(&target)?;
        }
    }
    Ok(format!(
        "created {lang:?} plugin `{name}` in {dir}\n\n  cd {dir}\n  ./build.sh            # builds {name}.wasm\n  ./test.sh             # builds, checks, runs it in wasmgate and checks what it does\n  wasmgate run gateway.toml\n",
        dir = dir.display()
    ))
}

fn world(name: &str, version: &str) -> String {
    let mut wit = format!(
        "// The plugin's world: the wasmgate plugin contract and the capabilities it imports.\n\
         // Importing a capability here means the gateway config must grant it to the plugin.\n\
         package local:{name};\n\nworld {name} {{\n"
    );
    for capability in Capability::ALL {
        let _ = writeln!(
            wit,
            "    // import {PACKAGE_NAME}/{}@{version};",
            capability.interface_name()
        );
    }
    for always in ["body-access", "asserted-headers"] {
        let _ = writeln!(wit, "    // import {PACKAGE_NAME}/{always}@{version};");
    }
    let _ = write!(wit, "    export {PACKAGE_NAME}/handler@{version};\n}}\n");
    wit
}

/// Names become WIT identifiers, crate names and file names: lower-case kebab-case words, each
/// starting with a letter.
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid plugin name: use lower-case words joined by `-`, each starting with a letter (e.g. `geo-block`)"
        ))
    }
}

fn make_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", path.display()))
}

/// `plugin check`'s verdict on a module: the report text, and whether the module fits.
pub fn describe(path: &Path, size: usize, report: &ModuleReport) -> (String, bool) {
    let mut out = String::new();
    let c = &report.contract;
    let _ = writeln!(
        out,
        "{}: WebAssembly component, {size} bytes, sha256 {}",
        path.display(),
        report.module_hash
    );
    let _ = writeln!(
        out,
        "  compiled in {:.1?} (cached for the next load)",
        report.load_time
    );
    let built_for = c
        .built_for()
        .map_or("no version".to_string(), ToString::to_string);
    let _ = writeln!(
        out,
        "  contract: {PACKAGE_NAME}@{built_for}; this gateway runs {PACKAGE_NAME}@{} to {}",
        compat::oldest_supported(),
        compat::gateway_version()
    );
    let mut grants = Vec::new();
    if c.contract_imports.is_empty() {
        let _ = writeln!(out, "  capabilities: none");
    } else {
        let _ = writeln!(out, "  capabilities:");
        for (import, capability) in &c.contract_imports {
            let note = match capability {
                Some(cap) => {
                    grants.push(format!("\"{}\"", cap.name()));
                    format!("needs grants = [\"{}\"]", cap.name())
                }
                None => "always available".to_string(),
            };
            let _ = writeln!(out, "    {import:<44} {note}");
        }
    }
    if !c.wasi_imports.is_empty() {
        let _ = writeln!(out, "  WASI:");
        for import in &c.wasi_imports {
            let note = match wasi_access(import) {
                WasiAccess::Inert(what) => format!("always linked: {what}"),
                WasiAccess::Granted(cap) => {
                    let grant = format!("\"{}\"", cap.name());
                    if !grants.contains(&grant) {
                        grants.push(grant);
                    }
                    format!(
                        "needs grants = [\"{}\"] (without it, every call traps)",
                        cap.name()
                    )
                }
                WasiAccess::Missing => "not provided by wasmgate".to_string(),
            };
            let _ = writeln!(out, "    {import:<44} {note}");
        }
    }
    for import in &c.other_imports {
        let _ = writeln!(
            out,
            "  unknown import: {import} (wasmgate does not provide it)"
        );
    }
    let verdict = match (c.incompatibility(), &report.link) {
        (Some(why), _) => Err(why),
        (None, Err(e)) => Err(e.to_string()),
        (None, Ok(())) => Ok(()),
    };
    match verdict {
        Ok(()) => {
            let _ = writeln!(
                out,
                "ok: it implements the plugin contract. In the gateway config:\n"
            );
            let _ = writeln!(out, "  [plugins.<name>]\n  module = \"{}\"", path.display());
            if !grants.is_empty() {
                let _ = writeln!(out, "  grants = [{}]", grants.join(", "));
            }
            (out, true)
        }
        Err(why) => {
            let _ = writeln!(out, "error: this gateway cannot run it: {why}");
            (out, false)
        }
    }
}

/// `plugin check` on a file that is not a component at all.
pub fn describe_unloadable(path: &Path, error: &LoadError) -> String {
    format!("error: {}: {error}", path.display())
}

/// The default directory for `plugin new <name>`: `./<name>`.
pub fn default_dir(name: &str) -> PathBuf {
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_kebab_case_words() {
        for good in ["geo-block", "a", "auth2", "x-y-z9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Geo",
            "geo_block",
            "-geo",
            "geo-",
            "2fa",
            "geo--block",
            "geo-2fa",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn worlds_list_every_capability_commented_out() {
        let wit = world("geo-block", "0.1.1");
        assert!(wit.contains("package local:geo-block;"));
        assert!(wit.contains("    // import wasmgate:plugin/http-client@0.1.1;"));
        assert!(wit.contains("    export wasmgate:plugin/handler@0.1.1;\n}"));
    }
}
