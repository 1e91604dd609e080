//! The one integration test binary: it links once.

mod audit;
mod runtime;
