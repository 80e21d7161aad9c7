//! A WASI command, not a wasmgate plugin: tests use it to check that a valid component that
//! does not implement the plugin contract is refused with a clear message.

fn main() {
    println!("I am a command-line program, not a gateway plugin.");
}
