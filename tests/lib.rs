//! Paths of the guest modules built for the tests by `build.rs`, handed to
//! the tests as files (like wasmtime's test programs), and hand-written
//! modules ([`modules`]).

pub mod modules;
pub mod receiver;

/// The hostile guest (`tests/guests/hostile`): the action name picks the attack.
pub const HOSTILE_WASM: &str = concat!(env!("OUT_DIR"), "/hostile.wasm");

/// The example vendor policy (`examples/ticketed`).
pub const TICKETED_WASM: &str = concat!(env!("OUT_DIR"), "/ticketed.wasm");

/// The `rollout` test vendor's module, version 1.0.0 (`tests/guests/rollout`).
pub const ROLLOUT_V1_WASM: &str = concat!(env!("OUT_DIR"), "/rollout.wasm");

/// The `rollout` test vendor's module, version 2.0.0: deletes frozen
/// (`tests/guests/rollout-v2`).
pub const ROLLOUT_V2_WASM: &str = concat!(env!("OUT_DIR"), "/rollout_v2.wasm");
