//! Paths of the guest modules built for the tests by `build.rs`, handed to
//! the tests as files (like wasmtime's test programs), and hand-written
//! modules ([`modules`]).

pub mod modules;

/// The hostile guest (`tests/guests/hostile`): the action name picks the attack.
pub const HOSTILE_WASM: &str = concat!(env!("OUT_DIR"), "/hostile.wasm");

/// The example vendor policy (`examples/ticketed`).
pub const TICKETED_WASM: &str = concat!(env!("OUT_DIR"), "/ticketed.wasm");
