//! wasmgate: an HTTP API gateway that runs sandboxed WebAssembly plugins.
//!
//! A request's journey: [`server`] accepts it (TLS, HTTP/1.1 or HTTP/2), [`ingress`] makes it
//! canonical (one path, one authority, gateway-owned headers removed), [`router`] picks a
//! route, [`proxy`] runs the route's plugin chain ([`plugin`]), forwards to the [`upstream`],
//! runs the response phase and writes the access log. Everything a request needs lives in one
//! immutable [`snapshot`] built from the [`config`].
#![deny(unsafe_code)]

pub mod access_log;
pub mod adaptive;
pub mod admin;
pub mod authoring;
pub mod body;
pub mod clock;
pub mod config;
pub mod errors;
pub mod exchange;
pub mod fields;
pub mod ingress;
pub mod logging;
pub mod metrics;
pub mod plugin;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod worker;
