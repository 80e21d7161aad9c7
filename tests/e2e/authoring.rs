//! `wasmgate plugin new` and `wasmgate plugin check`, as a plugin author uses them.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Every language's skeleton builds, passes `plugin check`, and passes its own `test.sh`, which
/// runs it in the gateway in front of a demo backend. One test, one language after the other:
/// the skeletons' gateway config listens on a fixed port.
#[test]
fn new_plugins_in_every_language_build_and_pass_their_own_test() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for lang in ["c", "python", "js", "rust"] {
        let name = format!("hello-{lang}");
        let (code, out, err) = run_cli(&["plugin", "new", &name, "--lang", lang], dir.path());
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("created "), "{out}");
        let plugin_dir = dir.path().join(&name);
        if lang == "js" {
            // The toolchain scripts/build-examples.sh installed, instead of a second download.
            let modules = root.join("plugins/js/ab-router/node_modules");
            std::os::unix::fs::symlink(modules, plugin_dir.join("node_modules")).unwrap();
        }
        let test = Command::new("sh")
            .arg("test.sh")
            .current_dir(&plugin_dir)
            .env("WASMGATE", env!("CARGO_BIN_EXE_wasmgate"))
            .env("WASMGATE_CACHE_DIR", cache_dir())
            // Reuse the compiled SDK and its dependencies.
            .env("CARGO_TARGET_DIR", root.join("target/plugins"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&test.stdout);
        assert!(
            test.status.success() && stdout.contains(&format!("ok: {name} runs in wasmgate")),
            "{lang}: {stdout}\n{}",
            String::from_utf8_lossy(&test.stderr)
        );
        assert!(
            stdout.contains("ok: it implements the plugin contract"),
            "{lang}: test.sh runs `plugin check`: {stdout}"
        );
    }
}

#[test]
fn plugin_new_refuses_bad_names_and_existing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run_cli(&["plugin", "new", "Geo_Block", "--lang", "c"], dir.path());
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error: `Geo_Block` is not a valid plugin name: use lower-case words joined by `-`, each starting with a letter (e.g. `geo-block`)"
    );
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/file"), "").unwrap();
    let (code, _, err) = run_cli(&["plugin", "new", "taken", "--lang", "c"], dir.path());
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "error: taken already exists and is not empty");
}

#[test]
fn plugin_check_reports_version_capabilities_and_grants() {
    let dir = tempfile::tempdir().unwrap();
    let module = example("request-signer");
    let (code, out, err) = run_cli(&["plugin", "check", &module], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "contract: wasmgate:plugin@0.1.2; this gateway runs wasmgate:plugin@0.1.0 to 0.1.2"
        ),
        "{out}"
    );
    assert!(
        out.contains("wasmgate:plugin/clock@0.1.2                  needs grants = [\"clock\"]"),
        "{out}"
    );
    assert!(out.contains("  grants = [\"clock\"]\n"), "{out}");
}

#[test]
fn plugin_check_refuses_other_contract_versions_and_worlds() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run_cli(&["plugin", "check", &plugin("contract_0_2_0")], dir.path());
    assert_eq!(code, 1);
    assert!(
        out.contains("error: this gateway cannot run it: it was built for wasmgate:plugin@0.2.0, which is not compatible"),
        "{out}"
    );
    let (code, out, _) = run_cli(&["plugin", "check", &plugin("contract_0_1_0")], dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("contract: wasmgate:plugin@0.1.0;"), "{out}");
    let (code, out, _) = run_cli(&["plugin", "check", &plugin("wrong-world")], dir.path());
    assert_eq!(code, 1);
    assert!(
        out.contains("it does not export wasmgate:plugin/handler (it exports wasi:cli/run@"),
        "{out}"
    );
    let (code, _, err) = run_cli(&["plugin", "check", "/nonexistent.wasm"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: cannot read /nonexistent.wasm: "),
        "{err}"
    );
}

#[test]
fn plugin_check_lists_wasi_imports_by_interface_with_the_grant_each_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_cli(&["plugin", "check", &plugin("testkit")], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(out.contains("\n  WASI:\n"), "{out}");
    assert_eq!(
        line("wasi:clocks/wall-clock@"),
        "needs grants = [\"clock\"] (without it, every call traps)"
    );
    assert_eq!(
        line("wasi:clocks/monotonic-clock@"),
        "needs grants = [\"clock\"] (without it, every call traps)"
    );
    assert_eq!(
        line("wasi:cli/stderr@"),
        "always linked: written to the gateway's log, line by line"
    );
    assert!(out.contains("  grants = [\"clock\"]\n"), "{out}");
}
