//! The command line: `check` on good and bad configs, with the messages a user reads.

use std::path::{Path, PathBuf};

use crate::support::*;

fn config_errors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/config-errors")
}

/// Every `tests/config-errors/<name>.toml` fails `wasmgate check` with exactly the text in
/// `<name>.err`. Run with `UPDATE_SNAPSHOTS=1` to rewrite the `.err` files after a deliberate
/// change, then review the diff.
#[test]
fn config_errors_read_as_snapshotted() {
    let dir = config_errors_dir();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the config error corpus in {}",
        dir.display()
    );
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut mismatches = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        let (code, stdout, stderr) = run_cli(&["check", name], &dir);
        assert_eq!(code, 1, "{name} must fail the check; stdout: {stdout}");
        let expected_path = case.with_extension("err");
        if update {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != stderr {
            mismatches.push(format!(
                "--- {name}\nexpected:\n{expected}\nactual:\n{stderr}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn check_accepts_the_quickstart_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (code, stdout, stderr) = run_cli(&["check", "examples/quickstart.toml"], &root);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "examples/quickstart.toml: ok (4 routes)\n");
}

#[test]
fn help_explains_run_and_check() {
    let (code, stdout, _) = run_cli(&["--help"], Path::new("."));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("run     Serve the gateway described by CONFIG"),
        "{stdout}"
    );
    assert!(stdout.contains("check   Validate CONFIG fully"), "{stdout}");
    assert!(
        stdout.contains("plugin  Write and check plugins"),
        "{stdout}"
    );
    let (_, run_help, _) = run_cli(&["run", "--help"], Path::new("."));
    assert!(run_help.contains("SIGTERM"), "{run_help}");
}

#[test]
fn run_refuses_an_invalid_config_without_binding() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.toml"),
        "[listeners.main]\naddr = \"127.0.0.1:0\"\n[[routes]]\nname = \"r\"\nupstream = \"nope\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_cli(&["run", "gw.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("gw.toml:5:12: route `r`: unknown upstream `nope` (defined: none)"),
        "{stderr}"
    );
}
