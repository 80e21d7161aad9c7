//! A plugin built against a made-up incompatible contract, `wasmgate:plugin@0.2.0`
//! (tests/contract/wasmgate-plugin-0.2.0): the gateway must refuse it, naming the version.

wit_bindgen::generate!({
    path: "../../tests/contract/wasmgate-plugin-0.2.0",
    world: "plugin",
});

use exports::wasmgate::plugin::handler::Guest;

struct Contract020;

impl Guest for Contract020 {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn handle(_path: String) -> u16 {
        200
    }
}

export!(Contract020);
