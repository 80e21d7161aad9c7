//! Compiled plugin artefacts cached on disk, keyed by the module's content hash and the
//! engine's compilation settings: a plugin is compiled once, then memory-mapped in well under a
//! millisecond at every later start or reload.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `<key>.cwasm` files written by this process or an earlier one.
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// Uses `dir`, creating it on first write.
    pub fn open(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The compiled component for `bytes` (whose [`content_hash`] is `hash`), from the cache
    /// when present and compatible.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.dir.join(format!("{}.cwasm", key(engine, hash)));
        if path.is_file() {
            // SAFETY: the file was written by `Component::serialize` below into a directory only
            // this user can write (0700), under a name that includes the engine's compatibility
            // hash; wasmtime additionally checks the artefact's header and version. Anyone able to
            // replace it could replace the gateway binary too.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled plugin in cache")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not cache compiled plugin");
        }
        Ok(component)
    }

    fn store(&self, path: &std::path::Path, component: &Component) -> anyhow::Result<()> {
        create_private_dir(&self.dir)?;
        let serialized = component
            .serialize()
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // Write then rename, so a concurrent reader never maps a half-written file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// SHA-256 of a module, hex: its identity in logs, the admin API and the caches.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The cache file name: the module's hash and the engine's compilation settings.
fn key(engine: &Engine, module_hash: &str) -> String {
    let mut settings = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let mut digest = Sha256::new();
    digest.update(module_hash.as_bytes());
    digest.update(settings.finish().to_le_bytes());
    hex(&digest.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
