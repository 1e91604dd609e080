//! Chaperone: scoped, time-bound, revocable vendor support access, decided
//! by sandboxed WebAssembly policy modules and recorded in a tamper-evident
//! audit log.
//!
//! This crate is the service: the operations ([`service::Host`]), the HTTP
//! API over them ([`api`]), the conformance runner and replay. It uses the
//! layers below it, each a crate of its own:
//!
//! ```text
//! chaperone-cli ─► chaperone (service, api) ─► chaperone-store ─► chaperone-log
//!                                          └─► chaperone-runtime
//!        (all of them speak chaperone-model, the domain types)
//! ```

#![deny(missing_docs)]

pub mod api;
pub mod builtin;
pub mod conformance;
pub mod instant;
pub mod replay;
pub mod server;
pub mod service;
pub mod webhook;
