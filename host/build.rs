//! Builds the built-in policy modules (`policies/celigo`, `policies/xentral`)
//! for `wasm32-unknown-unknown` with a nested cargo invocation in its own
//! target directory, and leaves their bytes in `OUT_DIR` for `include_bytes!`.

include!("build/wasm_build.rs");

fn main() {
    build_script(
        &[
            "policies",
            "sdk/src",
            "sdk/wit",
            "sdk/Cargo.toml",
            "Cargo.toml",
            "Cargo.lock",
            "host/build",
        ],
        &[
            ("celigo", "chaperone-policy-celigo"),
            ("xentral", "chaperone-policy-xentral"),
        ],
    );
}
