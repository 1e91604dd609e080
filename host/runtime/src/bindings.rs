//! Host-side bindings generated from `sdk/wit` (the one source of truth for
//! the interface).

#![expect(
    missing_docs,
    reason = "generated from the WIT package, whose items carry the documentation"
)]

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "policy",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});
