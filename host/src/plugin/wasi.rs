//! Which WASI interfaces a plugin is linked against, and what each reaches on the host.
//!
//! Language runtimes import WASI whether or not the plugin uses it: Rust's standard library
//! seeds hash maps from `wasi:random` and writes panics to `wasi:cli/stderr`; Python's and
//! JavaScript's runtimes import the filesystem and socket interfaces too. Those are linked for
//! every plugin, with nothing behind them (no directories, no environment, every socket
//! refused; output goes to the gateway's log), so any such module loads.
//!
//! Time is a capability: `wasi:clocks/wall-clock` and `wasi:clocks/monotonic-clock` (which is
//! also how a guest sleeps, through `wasi:io/poll`) are real only with the `clock` grant.
//! Without it they are still linked, so a std-built module that merely imports them loads, but
//! each call traps with a message naming the grant. Linking them as traps, rather than leaving
//! them out, is deliberate: `define_unknown_imports_as_traps` would shadow semver-compatible
//! versions of the real interfaces.

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::{monotonic_clock, wall_clock};
use wasmtime_wasi::p2::bindings::{cli, filesystem, io, random, sockets};

use super::Capability;
use super::host::PluginState;

/// What a WASI interface gives a plugin in this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasiAccess {
    /// Linked for every plugin; the text says what it reaches.
    Inert(&'static str),
    /// Real only with this grant; without it, calls trap.
    Granted(Capability),
    /// Not provided: a module importing it does not load.
    Missing,
}

/// `wasi:clocks/wall-clock@0.2.3` → what the gateway links for it.
pub fn access(import: &str) -> WasiAccess {
    let interface = import.split_once('@').map_or(import, |(name, _)| name);
    match interface {
        "wasi:clocks/wall-clock" | "wasi:clocks/monotonic-clock" => {
            WasiAccess::Granted(Capability::Clock)
        }
        "wasi:io/error" | "wasi:io/poll" | "wasi:io/streams" => {
            WasiAccess::Inert("streams and polling, for stdout and stderr")
        }
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => {
            WasiAccess::Inert("random bytes (hash-map seeds)")
        }
        "wasi:cli/stdout" | "wasi:cli/stderr" => {
            WasiAccess::Inert("written to the gateway's log, line by line")
        }
        "wasi:cli/stdin" => WasiAccess::Inert("empty"),
        "wasi:cli/environment" => WasiAccess::Inert("no variables, no arguments"),
        "wasi:cli/exit" => WasiAccess::Inert("exiting traps the call"),
        "wasi:cli/terminal-input"
        | "wasi:cli/terminal-output"
        | "wasi:cli/terminal-stdin"
        | "wasi:cli/terminal-stdout"
        | "wasi:cli/terminal-stderr" => WasiAccess::Inert("no terminal"),
        "wasi:filesystem/types" | "wasi:filesystem/preopens" => {
            WasiAccess::Inert("no directories: nothing to open")
        }
        "wasi:sockets/network"
        | "wasi:sockets/instance-network"
        | "wasi:sockets/tcp"
        | "wasi:sockets/tcp-create-socket"
        | "wasi:sockets/udp"
        | "wasi:sockets/udp-create-socket"
        | "wasi:sockets/ip-name-lookup" => {
            WasiAccess::Inert("every socket and name lookup refused (use the `http` grant)")
        }
        _ => WasiAccess::Missing,
    }
}

/// Links the WASI interfaces `grants` cover into `linker`.
pub fn add_to_linker(
    linker: &mut Linker<PluginState>,
    grants: &[Capability],
) -> wasmtime::Result<()> {
    type S = PluginState;
    let l = linker;
    io::error::add_to_linker::<S, Table>(l, |s| s.ctx().table)?;
    io::poll::add_to_linker::<S, Table>(l, |s| s.ctx().table)?;
    io::streams::add_to_linker::<S, Table>(l, |s| s.ctx().table)?;

    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    random::random::add_to_linker::<S, WasiRandom>(l, S::random)?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, S::random)?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, S::random)?;

    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    cli::exit::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::environment::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_input::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_output::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;

    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    filesystem::types::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    filesystem::preopens::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;

    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
    let network = sockets::network::LinkOptions::default();
    sockets::network::add_to_linker::<S, WasiSockets>(l, &network, S::sockets)?;
    sockets::instance_network::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    sockets::tcp::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    sockets::tcp_create_socket::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    sockets::udp::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    sockets::udp_create_socket::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<S, WasiSockets>(l, S::sockets)?;

    if grants.contains(&Capability::Clock) {
        use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
        wall_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
        monotonic_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    } else {
        wall_clock::add_to_linker::<S, NoClock>(l, |s| NoClockCall(&s.label.plugin))?;
        monotonic_clock::add_to_linker::<S, NoClock>(l, |s| NoClockCall(&s.label.plugin))?;
    }
    Ok(())
}

/// `wasi:io` works on the store's resource table.
struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

/// The clocks of a plugin without the `clock` grant.
struct NoClock;

impl HasData for NoClock {
    type Data<'a> = NoClockCall<'a>;
}

/// A clock call by the plugin named here.
struct NoClockCall<'a>(&'a str);

impl NoClockCall<'_> {
    /// The trap: a bug in the config (or a plugin reaching for time it was not given), so the
    /// instance is discarded and the request fails like any other fault, with the fix in the
    /// message.
    fn refuse(&self, function: &str) -> wasmtime::Error {
        wasmtime::format_err!(
            "plugin `{}` called wasi:clocks/{function} without the `clock` grant: add \"clock\" to its grants",
            self.0
        )
    }
}

impl wall_clock::Host for NoClockCall<'_> {
    fn now(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        Err(self.refuse("wall-clock.now"))
    }

    fn resolution(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        Err(self.refuse("wall-clock.resolution"))
    }
}

impl monotonic_clock::Host for NoClockCall<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Err(self.refuse("monotonic-clock.now"))
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Err(self.refuse("monotonic-clock.resolution"))
    }

    fn subscribe_instant(
        &mut self,
        _: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        Err(self.refuse("monotonic-clock.subscribe-instant"))
    }

    fn subscribe_duration(
        &mut self,
        _: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        Err(self.refuse("monotonic-clock.subscribe-duration"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_clocks_need_a_grant() {
        assert_eq!(
            access("wasi:clocks/wall-clock@0.2.3"),
            WasiAccess::Granted(Capability::Clock)
        );
        assert_eq!(
            access("wasi:clocks/monotonic-clock@0.2.12"),
            WasiAccess::Granted(Capability::Clock)
        );
        assert!(matches!(
            access("wasi:random/random@0.2.0"),
            WasiAccess::Inert(_)
        ));
        assert!(matches!(
            access("wasi:cli/stderr@0.2.9"),
            WasiAccess::Inert(_)
        ));
        assert_eq!(access("wasi:http/types@0.2.0"), WasiAccess::Missing);
        assert_eq!(access("wasi:clocks/timezone@0.2.0"), WasiAccess::Missing);
    }
}
