//! Builds the plugins in `plugins/` to wasm32-wasip2 components, so `cargo build` and
//! `cargo test` always run against plugins built from the current sources. The built-in ones
//! are embedded in the `wasmgate` binary; all of them are available to tests through
//! `WASMGATE_PLUGIN_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let host_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = host_dir
        .parent()
        .expect("host/ lives in the workspace root");
    let plugins = root.join("plugins");
    // Own target directory: sharing the outer build's would deadlock on cargo's lock.
    let target_dir = root.join("target").join("plugins");

    // Everything the guest build compiles: the plugins, the SDK, the WIT contract and the
    // SecLang engine the waf plugin links.
    for path in ["plugins", "plugin-sdk", "wit", "seclang"] {
        rerun_if_changed_tree(&root.join(path));
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    // The outer build's settings (clippy's wrapper, host rustflags, coverage) are not meant for
    // the guest build.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the plugins in {} failed (see above). If the target is missing, run \
             `rustup target add {TARGET}`.",
            plugins.display()
        );
    }
    let out = target_dir.join(TARGET).join("release");
    println!("cargo:rustc-env=WASMGATE_PLUGIN_DIR={}", out.display());
    // Plugins in other languages are built by scripts/build-examples.sh, with their own
    // toolchains; the tests find them here.
    println!(
        "cargo:rustc-env=WASMGATE_EXAMPLES_DIR={}",
        target_dir.join("examples").display()
    );
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}

/// Cargo's `rerun-if-changed` on a directory only looks at the directory's own mtime, so list
/// every source file (skipping build output).
fn rerun_if_changed_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in entries.flatten() {
        let path = entry.path();
        // Build output and the JavaScript toolchain are not sources.
        if path
            .file_name()
            .is_some_and(|n| n == "target" || n == "node_modules" || n == "gen")
            || path.extension().is_some_and(|e| e == "wasm")
        {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed_tree(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
