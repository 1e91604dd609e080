//! The policy modules that ship with Chaperone, built from `policies/` by
//! the host's build script and embedded in the binary.

/// A built-in policy module.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The vendor id accounts name (`celigo`, `xentral`).
    pub vendor: &'static str,
    /// The module's bytes as built (a core module carrying its component type).
    pub bytes: &'static [u8],
}

/// The Celigo-style module.
pub const CELIGO: Builtin = Builtin {
    vendor: "celigo",
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/celigo.wasm")),
};

/// The Xentral-style module.
pub const XENTRAL: Builtin = Builtin {
    vendor: "xentral",
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/xentral.wasm")),
};

/// Every built-in module.
pub const ALL: &[Builtin] = &[CELIGO, XENTRAL];

/// The built-in module for a vendor id.
pub fn by_vendor(vendor: &str) -> Option<Builtin> {
    ALL.iter().copied().find(|b| b.vendor == vendor)
}
