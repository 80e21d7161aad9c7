//! Changing config and plugins while serving.
//!
//! A reload — from a file change, SIGHUP or `POST /reload` on the admin API — reads the config
//! file, builds the whole next [`Snapshot`] beside the current one (modules compiled on a
//! blocking thread, every route's plugin config run through `configure`) and swaps it in
//! atomically only if all of it is valid. A request keeps the snapshot it started on until it
//! ends, so in-flight requests are never cut short, and an old snapshot (with its plugin
//! instances) is freed when its last request finishes. A failed reload changes nothing: the
//! old snapshot keeps serving and the error is logged and shown on the admin API.
//!
//! Unchanged modules are not recompiled (content hash), and plugin pools whose module,
//! settings, route and config are unchanged are carried over with their warm instances.
//! Listeners and worker count are bound at start: changing them needs a restart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::json;

use crate::config::ConfigFile;
use crate::plugin::PluginRuntime;
use crate::snapshot::Snapshot;

/// Quiet time after the last file event before reloading: lets an editor or a deploy tool
/// finish writing (several writes, or write then rename).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// One reload attempt, as reported on the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    /// What asked for it: `file change`, `SIGHUP` or `admin`.
    pub trigger: String,
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
    /// How long it took.
    pub duration_ms: f64,
    /// Whether the new snapshot is serving.
    pub ok: bool,
    /// Why not, with file, line, route and plugin.
    pub error: Option<String>,
}

#[derive(Default)]
struct State {
    generation: u64,
    succeeded: u64,
    failed: u64,
    last: Option<Attempt>,
    /// Files whose changes trigger a reload: the config and the modules it names.
    watched: Vec<PathBuf>,
}

/// Rebuilds and swaps the serving snapshot.
pub struct Reloader {
    config_path: PathBuf,
    runtime: Arc<PluginRuntime>,
    current: Arc<ArcSwap<Snapshot>>,
    state: Mutex<State>,
    /// One reload at a time.
    serial: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader for the gateway serving `current`, built from `file`.
    pub fn new(
        file: &ConfigFile,
        runtime: Arc<PluginRuntime>,
        current: Arc<ArcSwap<Snapshot>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config_path: file.path.clone(),
            runtime,
            current,
            state: Mutex::new(State {
                generation: 1,
                watched: watch_list(file),
                ..State::default()
            }),
            serial: tokio::sync::Mutex::new(()),
        })
    }

    /// Rebuilds from the config file and swaps the snapshot in if everything is valid.
    /// Returns the new generation, or the error text.
    pub async fn reload(&self, trigger: &str) -> Result<u64, String> {
        let _one_at_a_time = self.serial.lock().await;
        let started = Instant::now();
        let result = self.rebuild().await;
        let mut state = self.lock_state();
        let attempt = Attempt {
            trigger: trigger.to_owned(),
            finished_unix_ms: unix_ms(),
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            ok: result.is_ok(),
            error: result.as_ref().err().cloned(),
        };
        let outcome = match result {
            Ok(()) => {
                state.generation += 1;
                state.succeeded += 1;
                tracing::info!(
                    trigger,
                    generation = state.generation,
                    duration_ms = attempt.duration_ms,
                    "config reloaded"
                );
                Ok(state.generation)
            }
            Err(error) => {
                state.failed += 1;
                tracing::error!(
                    trigger,
                    "reload failed, the previous config keeps serving:\n{error}"
                );
                Err(error)
            }
        };
        state.last = Some(attempt);
        outcome
    }

    async fn rebuild(&self) -> Result<(), String> {
        let file = ConfigFile::load(&self.config_path).map_err(|e| e.to_string())?;
        // Even if the rest is invalid, watch what this version names so its fix is seen.
        self.lock_state().watched = watch_list(&file);
        let old = self.current.load_full();
        check_restart_free(&old, &file)?;
        let next = Snapshot::build(&self.runtime, &file, Some(&old))
            .await
            .map_err(|e| e.to_string())?;
        next.activate();
        self.current.store(Arc::new(next));
        Ok(())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn watched(&self) -> Vec<PathBuf> {
        self.lock_state().watched.clone()
    }

    /// The admin API's view: current generation, config and module hashes, last attempt.
    /// The snapshot serving requests now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn status(&self) -> serde_json::Value {
        let snapshot = self.current.load();
        let state = self.lock_state();
        let modules: serde_json::Map<_, _> = snapshot
            .plugins
            .iter()
            .map(|(name, plugin)| (name.clone(), json!(plugin.module_hash())))
            .collect();
        json!({
            "generation": state.generation,
            "config": { "path": self.config_path.display().to_string(), "sha256": snapshot.config_hash },
            "modules": modules,
            "routes": snapshot.routes.iter().map(|r| r.name.to_string()).collect::<Vec<_>>(),
            "reloads": { "succeeded": state.succeeded, "failed": state.failed },
            "last_reload": state.last,
        })
    }

    /// Reload metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let state = self.lock_state();
        let last_ok = state.last.as_ref().is_none_or(|a| a.ok);
        format!(
            "# HELP wasmgate_config_generation Config generation serving (1 at start, +1 per successful reload).\n\
             # TYPE wasmgate_config_generation gauge\n\
             wasmgate_config_generation {}\n\
             # HELP wasmgate_reloads_total Reload attempts by result.\n\
             # TYPE wasmgate_reloads_total counter\n\
             wasmgate_reloads_total{{result=\"ok\"}} {}\n\
             wasmgate_reloads_total{{result=\"error\"}} {}\n\
             # HELP wasmgate_last_reload_success Whether the last reload attempt succeeded (1) or failed (0).\n\
             # TYPE wasmgate_last_reload_success gauge\n\
             wasmgate_last_reload_success {}\n",
            state.generation,
            state.succeeded,
            state.failed,
            u8::from(last_ok),
        )
    }
}

/// Listeners and workers are bound at start; a config that changes them cannot be applied by
/// a reload.
fn check_restart_free(current: &Snapshot, next: &ConfigFile) -> Result<(), String> {
    let now: Vec<_> = current
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.addr, l.tls.is_some()))
        .collect();
    let wanted: Vec<_> = next
        .raw
        .listeners
        .iter()
        .map(|(name, l)| (name.as_str(), l.addr, l.tls.is_some()))
        .collect();
    if now != wanted {
        return Err(format!(
            "{}: listeners changed; listeners are bound at start, restart wasmgate to apply this config",
            next.path.display()
        ));
    }
    if next
        .raw
        .tracing
        .as_ref()
        .map(crate::snapshot::tracing_settings)
        != current.tracing.clone()
    {
        return Err(format!(
            "{}: [tracing] changed; the exporter is set up at start, restart wasmgate to apply this config",
            next.path.display()
        ));
    }
    if next
        .raw
        .admin
        .as_ref()
        .map(crate::snapshot::AdminSettings::from_raw)
        != current.admin
    {
        return Err(format!(
            "{}: [admin] changed; the admin API is set up at start, restart wasmgate to apply this config",
            next.path.display()
        ));
    }
    if let Some(workers) = next.raw.server.workers
        && workers.max(1) != current.server.workers
    {
        return Err(format!(
            "{}: server.workers changed; restart wasmgate to apply this config",
            next.path.display()
        ));
    }
    Ok(())
}

fn watch_list(file: &ConfigFile) -> Vec<PathBuf> {
    let mut paths = vec![file.path.clone()];
    paths.extend(file.module_paths());
    paths.extend(file.config_file_paths());
    paths.iter().filter_map(|p| canonical_target(p)).collect()
}

/// `path` with its directory canonicalized (the file itself may not exist yet): the form in
/// which file events name it.
fn canonical_target(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Some(dir.canonicalize().ok()?.join(path.file_name()?))
}

fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Watches the config file and the modules it names, and reloads when one changes.
///
/// Directories are watched rather than files, so write-then-rename and files that do not exist
/// yet are seen. Events are debounced; a half-written module fails validation, and the write
/// that completes it triggers the next attempt.
pub fn spawn_watcher(reloader: Arc<Reloader>) -> notify::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    let mut dirs = HashSet::new();
    sync_watches(&mut watcher, &mut dirs, &reloader.watched());
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if !relevant(&event, &reloader.watched()) {
                continue;
            }
            // Wait for quiet.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            let _ = reloader.reload("file change").await;
            sync_watches(&mut watcher, &mut dirs, &reloader.watched());
        }
    });
    Ok(())
}

fn relevant(event: &notify::Result<notify::Event>, watched: &[PathBuf]) -> bool {
    let Ok(event) = event else {
        return false;
    };
    let reads = matches!(
        event.kind,
        EventKind::Access(notify::event::AccessKind::Open(_) | notify::event::AccessKind::Read)
    );
    !reads && event.paths.iter().any(|p| watched.contains(p))
}

fn sync_watches(watcher: &mut impl Watcher, dirs: &mut HashSet<PathBuf>, files: &[PathBuf]) {
    let wanted: HashSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    for dir in dirs.difference(&wanted) {
        let _ = watcher.unwatch(dir);
    }
    for dir in wanted.difference(dirs) {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for changes");
        }
    }
    *dirs = wanted;
}
