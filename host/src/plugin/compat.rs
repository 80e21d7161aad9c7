//! Which version of the plugin contract a module was built against, and whether this gateway
//! can run it.
//!
//! The contract is the WIT package `wasmgate:plugin`, versioned with semver. Within one
//! compatible line (`0.1.x`; after 1.0, `1.x`) versions only add, so a module built against any
//! version of the gateway's line up to the gateway's own links unchanged: wasmtime matches its
//! `…@0.1.0` imports and exports against the gateway's `…@0.1.2` definitions. A module built
//! against another line, or a newer version of this one, is refused here with the version it
//! names, before linking would fail with a less direct message.

use semver::Version;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::Capability;

/// The contract package's name.
pub const PACKAGE_NAME: &str = "wasmgate:plugin";

/// The contract version this gateway implements (the `package` line of `wit/plugin.wit`).
pub fn gateway_version() -> Version {
    let wit = include_str!("../../../wit/plugin.wit");
    wit.lines()
        .find_map(|line| line.trim().strip_prefix("package wasmgate:plugin@"))
        .and_then(|rest| Version::parse(rest.trim_end_matches(';')).ok())
        .unwrap_or_else(|| Version::new(0, 0, 0))
}

/// The oldest contract version this gateway runs: the first of its compatible line.
pub fn oldest_supported() -> Version {
    let v = gateway_version();
    if v.major == 0 {
        Version::new(0, v.minor, 0)
    } else {
        Version::new(v.major, 0, 0)
    }
}

/// What a module's imports and exports say about the contract.
#[derive(Debug, Clone, Default)]
pub struct ContractUse {
    /// Versions of `wasmgate:plugin` named by its imports and exports.
    pub versions: Vec<Version>,
    /// Whether it exports `wasmgate:plugin/handler` (any version).
    pub exports_handler: bool,
    /// Every export's name.
    pub exports: Vec<String>,
    /// Imports of the contract's interfaces, with the capability each needs (`None`: always
    /// available).
    pub contract_imports: Vec<(String, Option<Capability>)>,
    /// WASI imports: linked, but reaching nothing on the host.
    pub wasi_imports: Vec<String>,
    /// Imports that are neither.
    pub other_imports: Vec<String>,
}

impl ContractUse {
    /// Reads a compiled component's imports and exports.
    pub fn of(component: &Component, engine: &Engine) -> Self {
        let ty = component.component_type();
        let mut found = Self::default();
        for (name, _) in ty.exports(engine) {
            if let Some((iface, version)) = contract_name(name) {
                found.note_version(version);
                found.exports_handler |= iface == "handler";
            }
            found.exports.push(name.to_string());
        }
        for (name, _) in ty.imports(engine) {
            if let Some((iface, version)) = contract_name(name) {
                found.note_version(version);
                let capability = Capability::ALL
                    .into_iter()
                    .find(|c| c.interface_name() == iface && *c != Capability::Log);
                found.contract_imports.push((name.to_string(), capability));
            } else if name.starts_with("wasi:") {
                found.wasi_imports.push(name.to_string());
            } else {
                found.other_imports.push(name.to_string());
            }
        }
        found
    }

    fn note_version(&mut self, version: Option<Version>) {
        if let Some(v) = version
            && !self.versions.contains(&v)
        {
            self.versions.push(v);
        }
    }

    /// The newest contract version the module names.
    pub fn built_for(&self) -> Option<&Version> {
        self.versions.iter().max()
    }

    /// Why this gateway cannot run the module, if it cannot.
    pub fn incompatibility(&self) -> Option<String> {
        let (oldest, current) = (oldest_supported(), gateway_version());
        let supported =
            format!("this gateway runs plugins built for {PACKAGE_NAME}@{oldest} to {current}");
        if let Some(v) = self.versions.iter().find(|v| !compatible(&current, v)) {
            return Some(format!(
                "it was built for {PACKAGE_NAME}@{v}, which is not compatible: {supported}"
            ));
        }
        if let Some(v) = self.versions.iter().find(|v| *v > &current) {
            return Some(format!(
                "it was built for {PACKAGE_NAME}@{v}, newer than this gateway: {supported}; \
                 upgrade wasmgate or rebuild the plugin against {current}"
            ));
        }
        if !self.exports_handler {
            let exports = if self.exports.is_empty() {
                "nothing".to_string()
            } else {
                self.exports.join(", ")
            };
            return Some(format!(
                "it does not export {PACKAGE_NAME}/handler (it exports {exports}); build it \
                 against a world that has `export {PACKAGE_NAME}/handler@{current};`"
            ));
        }
        None
    }
}

/// Whether a module built against `theirs` can link against `ours` (same semver line).
fn compatible(ours: &Version, theirs: &Version) -> bool {
    if ours.major == 0 {
        theirs.major == 0 && theirs.minor == ours.minor
    } else {
        theirs.major == ours.major
    }
}

/// `wasmgate:plugin/clock@0.1.0` → (`clock`, 0.1.0).
fn contract_name(name: &str) -> Option<(&str, Option<Version>)> {
    let rest = name.strip_prefix(PACKAGE_NAME)?.strip_prefix('/')?;
    match rest.split_once('@') {
        Some((iface, version)) => Some((iface, Version::parse(version).ok())),
        None => Some((rest, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_line_is_compatible_and_other_lines_are_not() {
        let ours = Version::new(0, 1, 1);
        assert!(compatible(&ours, &Version::new(0, 1, 0)));
        assert!(compatible(&ours, &Version::new(0, 1, 1)));
        assert!(!compatible(&ours, &Version::new(0, 2, 0)));
        assert!(!compatible(&ours, &Version::new(1, 1, 0)));
        let one = Version::new(1, 3, 0);
        assert!(compatible(&one, &Version::new(1, 0, 2)));
        assert!(!compatible(&one, &Version::new(2, 0, 0)));
    }

    #[test]
    fn contract_names_split_into_interface_and_version() {
        assert_eq!(
            contract_name("wasmgate:plugin/clock@0.1.0"),
            Some(("clock", Some(Version::new(0, 1, 0))))
        );
        assert_eq!(contract_name("wasi:io/streams@0.2.0"), None);
        assert_eq!(contract_name("wasmgate:pluginx/clock@0.1.0"), None);
    }

    #[test]
    fn the_gateway_version_is_read_from_the_wit() {
        assert_eq!(gateway_version(), Version::new(0, 1, 2));
        assert_eq!(oldest_supported(), Version::new(0, 1, 0));
    }

    #[test]
    fn a_newer_or_foreign_module_is_explained() {
        let newer = ContractUse {
            versions: vec![Version::new(0, 2, 0)],
            exports_handler: true,
            ..Default::default()
        };
        assert_eq!(
            newer.incompatibility().unwrap(),
            "it was built for wasmgate:plugin@0.2.0, which is not compatible: this gateway runs plugins built for wasmgate:plugin@0.1.0 to 0.1.2"
        );
        let patch = ContractUse {
            versions: vec![Version::new(0, 1, 7)],
            exports_handler: true,
            ..Default::default()
        };
        assert!(
            patch
                .incompatibility()
                .unwrap()
                .contains("newer than this gateway")
        );
        let command = ContractUse {
            exports: vec!["wasi:cli/run@0.2.0".into()],
            ..Default::default()
        };
        assert!(command.incompatibility().unwrap().starts_with(
            "it does not export wasmgate:plugin/handler (it exports wasi:cli/run@0.2.0)"
        ));
    }
}
