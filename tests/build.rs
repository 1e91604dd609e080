//! Builds the guest modules the tests load (the hostile guest and the example
//! vendor policy) for `wasm32-unknown-unknown`, with the same pipeline as the
//! host's built-in policies.

include!("../host/build/wasm_build.rs");

fn main() {
    build_script(
        &["tests/guests", "examples/ticketed", "sdk", "host/build"],
        &[
            ("hostile", "chaperone-hostile-guest"),
            ("ticketed", "chaperone-example-ticketed"),
            ("rollout", "chaperone-rollout-guest"),
            ("rollout_v2", "chaperone-rollout-guest-v2"),
        ],
    );
}
