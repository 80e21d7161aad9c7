//! The `wasmgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use wasmgate::admin;
use wasmgate::authoring::{self, Language};
use wasmgate::config::ConfigFile;
use wasmgate::logging::{self, LogFormat};
use wasmgate::plugin::PluginRuntime;
use wasmgate::reload::{self, Reloader};
use wasmgate::server::Gateway;
use wasmgate::snapshot::{self, Snapshot};

/// An HTTP API gateway that runs sandboxed WebAssembly plugins.
///
/// Routes, upstreams and per-route plugin chains come from one TOML file.
#[derive(Parser)]
#[command(name = "wasmgate", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway described by CONFIG until SIGTERM or SIGINT.
    ///
    /// The config is validated fully before anything is bound (as by `check`). On SIGTERM or
    /// SIGINT the gateway stops accepting connections and lets in-flight requests finish
    /// within `server.shutdown_grace`. Log filter: RUST_LOG (default `info`).
    Run {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Validate CONFIG fully and exit: parse it, load every plugin module and pass every
    /// route's plugin config through the plugin. Exits 1 with every problem found, each naming
    /// file, line and column, route and plugin.
    Check {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Write and check plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a working plugin skeleton: source, build script, a gateway config that runs it in
    /// front of a demo backend, and a test script that checks it end to end.
    New {
        /// The plugin's name: lower-case words joined by `-`.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: Language,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// wasmgate's plugin-sdk directory, for Rust plugins (default: the one this binary was
        /// built from).
        #[arg(long, default_value = wasmgate::authoring::BUILT_SDK_PATH)]
        sdk: PathBuf,
    },
    /// Say whether MODULE implements the plugin contract this gateway runs (world and version)
    /// and which capabilities it imports. Exits 1 if the gateway cannot run it.
    Check {
        /// The plugin's .wasm file.
        module: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let path = match &cli.command {
        Command::Check { config } | Command::Run { config } => config,
        Command::Plugin { command } => return plugin_command(command),
    };
    let outcome = ConfigFile::load(path)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            // Before the runtime: the exporter's HTTP client runs on its own thread.
            if let (Command::Run { .. }, Some(t)) = (&cli.command, &file.raw.tracing) {
                wasmgate::telemetry::init(&snapshot::tracing_settings(t))
                    .map_err(|e| format!("error: {e}"))?;
            }
            // This thread loads and reloads the config, serves the admin API and waits for
            // signals; the workers that serve traffic run their own runtimes.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("error: cannot start the async runtime: {e}"))?;
            runtime.block_on(async {
                let plugins = PluginRuntime::new(&snapshot::runtime_options(&file))
                    .map(Arc::new)
                    .map_err(|e| format!("error: {e:#}"))?;
                let snapshot = Snapshot::build(&plugins, &file, None)
                    .await
                    .map_err(|e| e.to_string())?;
                match cli.command {
                    Command::Check { .. } => {
                        for warning in fail_open_warnings(&file) {
                            eprintln!("warning: {warning}");
                        }
                        let routes = snapshot.routes.iter().count();
                        println!("{}: ok ({routes} routes)", path.display());
                        let warnings = wasmgate::config::warnings::warnings(&file);
                        if !warnings.is_empty() {
                            println!("{}", file.error(warnings));
                        }
                        Ok(())
                    }
                    Command::Run { .. } => serve(&file, plugins, snapshot)
                        .await
                        .map_err(|e| format!("error: {e:#}")),
                    Command::Plugin { .. } => unreachable!("handled above"),
                }
            })
        });
    wasmgate::telemetry::shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// What `check` says about plugins whose config lets requests through when they fault.
fn fail_open_warnings(file: &ConfigFile) -> Vec<String> {
    use wasmgate::plugin::FailurePolicy;
    let mut warnings = Vec::new();
    for (name, section) in &file.raw.plugins {
        let section = section.get_ref();
        if !section.fail_open {
            continue;
        }
        warnings.push(match section.on_error {
            FailurePolicy::Skip if snapshot::is_auth_plugin(section) => format!(
                "plugin `{name}` has fail_open = true: when it faults (a trap, a timeout, no free instance) requests pass without authentication"
            ),
            FailurePolicy::Skip => format!(
                "plugin `{name}` has fail_open = true: when it faults (a trap, a timeout, no free instance) requests pass without it"
            ),
            FailurePolicy::Fail => format!(
                "plugin `{name}` has fail_open = true, which does nothing with on_error = \"fail\""
            ),
        });
    }
    warnings
}

fn plugin_command(command: &PluginCommand) -> ExitCode {
    match command {
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let dir = dir.clone().unwrap_or_else(|| authoring::default_dir(name));
            match authoring::new_plugin(name, *lang, &dir, sdk) {
                Ok(next) => {
                    print!("{next}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        PluginCommand::Check { module } => {
            let bytes = match std::fs::read(module) {
                Ok(bytes) => bytes,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", module.display());
                    return ExitCode::FAILURE;
                }
            };
            let options = wasmgate::plugin::RuntimeOptions {
                cache_dir: snapshot::default_cache_dir(),
                ..Default::default()
            };
            let report = PluginRuntime::new(&options)
                .map_err(|e| e.to_string())
                .and_then(|runtime| {
                    runtime
                        .inspect(&bytes)
                        .map_err(|e| authoring::describe_unloadable(module, &e))
                });
            match report {
                Ok(report) => {
                    let (text, fits) = authoring::describe(module, bytes.len(), &report);
                    print!("{text}");
                    if fits {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(
    file: &ConfigFile,
    plugins: Arc<PluginRuntime>,
    snapshot: Snapshot,
) -> anyhow::Result<()> {
    snapshot.activate();
    if file.raw.admin.is_some() {
        wasmgate::metrics::enable();
    }
    let gateway = Gateway::bind(snapshot)?;
    let reloader = Reloader::new(file, plugins, gateway.snapshot());
    if let Err(e) = reload::spawn_watcher(reloader.clone()) {
        tracing::warn!(error = %e, "cannot watch the config for changes; reload with SIGHUP or the admin API");
    }
    spawn_sighup_reload(reloader.clone());
    // The listeners are bound and the first snapshot is loaded: ready until shutdown begins.
    let ready = Arc::new(AtomicBool::new(true));
    if let Some(admin) = &file.raw.admin {
        let state = admin::AdminState {
            reloader,
            token: admin.token.clone(),
            ready: ready.clone(),
        };
        let addr = admin::spawn(admin.addr, state).await?;
        tracing::info!(listener = "admin", %addr, "listening");
    }
    let shutdown = async move {
        shutdown_signal().await;
        ready.store(false, Ordering::Relaxed);
    };
    let served = gateway.serve(shutdown).await;
    // Lines of the last requests may still wait in the access log's buffer.
    wasmgate::access_log::flush();
    served
}

fn spawn_sighup_reload(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let _ = reloader.reload("SIGHUP").await;
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; use SIGINT to stop");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

// glibc malloc showed up at ~5 % of a proxied request's CPU; mimalloc's thread-local free
// lists suit the thread-per-core workers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
