//! Chaperone: scoped, time-bound, revocable vendor support access, decided
//! by sandboxed WebAssembly policy modules and recorded in a tamper-evident
//! audit log.

#![deny(missing_docs)]

pub mod audit;
pub mod builtin;
pub mod conformance;
pub mod instant;
pub mod probe;
pub mod replay;
pub mod runtime;
pub mod service;
pub mod state;
pub mod store;
