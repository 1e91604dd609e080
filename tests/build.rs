//! Builds the guest modules the tests load (the hostile guest and the example
//! vendor policy) for `wasm32-unknown-unknown`, with the same pipeline as the
//! host's built-in policies.

use std::path::PathBuf;

include!("../host/build/wasm_build.rs");

const GUESTS: &[(&str, &str)] = &[
    ("hostile", "chaperone-hostile-guest"),
    ("ticketed", "chaperone-example-ticketed"),
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
        .ok_or("the tests crate has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    for watched in ["tests/guests", "examples/ticketed", "sdk", "host/build"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    build_wasm_packages(&root, &out_dir, GUESTS)
}
