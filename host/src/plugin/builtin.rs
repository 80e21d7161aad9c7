//! Plugins shipped inside the `wasmgate` binary, named in configs as `module = "builtin:<name>"`.

/// `(name, component bytes)` of every built-in plugin.
pub const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[
    (
        "cors",
        include_bytes!(concat!(env!("WASMGATE_PLUGIN_DIR"), "/cors.wasm")),
    ),
    (
        "headers",
        include_bytes!(concat!(env!("WASMGATE_PLUGIN_DIR"), "/headers.wasm")),
    ),
    (
        "echo",
        include_bytes!(concat!(env!("WASMGATE_PLUGIN_DIR"), "/echo.wasm")),
    ),
    (
        "jwt-auth",
        include_bytes!(concat!(env!("WASMGATE_PLUGIN_DIR"), "/jwt_auth.wasm")),
    ),
    (
        "api-key",
        include_bytes!(concat!(env!("WASMGATE_PLUGIN_DIR"), "/api_key.wasm")),
    ),
    (
        "oauth2-introspection",
        include_bytes!(concat!(
            env!("WASMGATE_PLUGIN_DIR"),
            "/oauth2_introspection.wasm"
        )),
    ),
    (
        "rate-limit",
        include_bytes!(concat!(env!("WASMGATE_PLUGIN_DIR"), "/rate_limit.wasm")),
    ),
    (
        "transform",
        include_bytes!(concat!(env!("WASMGATE_PLUGIN_DIR"), "/transform.wasm")),
    ),
    (
        "waf",
        include_bytes!(concat!(env!("WASMGATE_PLUGIN_DIR"), "/waf.wasm")),
    ),
    (
        "request-validation",
        include_bytes!(concat!(
            env!("WASMGATE_PLUGIN_DIR"),
            "/request_validation.wasm"
        )),
    ),
];

/// The bytes of the built-in plugin `name`.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
