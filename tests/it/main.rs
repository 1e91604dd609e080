//! The one integration test binary: it links once.

mod audit;
mod conformance;
mod runtime;
mod service;
