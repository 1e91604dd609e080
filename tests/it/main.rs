//! The one integration test binary: it links once.

mod alloc;
mod audit;
mod busy;
mod conformance;
mod fuzz_regressions;
mod runtime;
mod service;
