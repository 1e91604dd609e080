//! Host-side bindings generated from `sdk/wit` (the one source of truth for
//! the interface).

wasmtime::component::bindgen!({
    path: "../../sdk/wit",
    world: "policy",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});
