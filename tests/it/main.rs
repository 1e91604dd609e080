//! The one integration test binary: it links once.

mod alloc;
mod audit;
mod busy;
mod conformance;
mod fuzz_regressions;
mod registry;
mod runtime;
mod service;
mod webhooks;
