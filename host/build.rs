//! Builds the built-in policy modules (`policies/celigo`, `policies/xentral`)
//! for `wasm32-unknown-unknown` with a nested cargo invocation in its own
//! target directory, and leaves their bytes in `OUT_DIR` for `include_bytes!`.

use std::path::PathBuf;

include!("build/wasm_build.rs");

const POLICIES: &[(&str, &str)] = &[
    ("celigo", "chaperone-policy-celigo"),
    ("xentral", "chaperone-policy-xentral"),
];

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("the host crate has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    for watched in [
        "policies",
        "sdk/src",
        "sdk/wit",
        "sdk/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
        "host/build",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CHAPERONE_POLICY_STACK");
    build_wasm_packages(&root, &out_dir, POLICIES)
}
