// Shared by the build scripts of `host` (the built-in policies) and `tests`
// (hostile guests, the example policy): builds workspace packages for
// `wasm32-unknown-unknown` with a nested cargo in its own target directory.
// Included with `include!`, so it holds items only.

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The whole build script: rebuild when a `watched` path (relative to the
/// workspace root) changes, build `packages`, exit 1 with the reason on
/// failure.
fn build_script(watched: &[&str], packages: &[(&str, &str)]) {
    let run = || -> Result<(), String> {
        let manifest_dir = std::path::PathBuf::from(var("CARGO_MANIFEST_DIR")?);
        let root = manifest_dir
            .parent()
            .ok_or("the crate has no parent directory")?
            .to_path_buf();
        let out_dir = std::path::PathBuf::from(var("OUT_DIR")?);
        for path in watched {
            println!("cargo:rerun-if-changed={}", root.join(path).display());
        }
        println!("cargo:rerun-if-env-changed=CHAPERONE_POLICY_STACK");
        build_wasm_packages(&root, &out_dir, packages)
    };
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// Builds `packages` (package name, artifact stem) with the `policy` profile
/// and copies each `.wasm` to `out_dir/<name>.wasm`.
fn build_wasm_packages(
    root: &std::path::Path,
    out_dir: &std::path::Path,
    packages: &[(&str, &str)],
) -> Result<(), String> {
    use std::process::Command;
    ensure_wasm_target()?;
    let target_dir = out_dir.join("wasm-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--profile", "policy", "--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, package) in packages {
        command.args(["-p", package]);
    }
    scrub_environment(&mut command);
    // A small shadow stack and initial memory keep the instance's linear
    // memory, and with it the per-evaluation reset (the host scans it for
    // dirty pages), small. Rust on wasm32 keeps only address-taken locals on
    // this stack, so 64 KiB is deep; overflowing it traps cleanly. The
    // initial memory leaves room above the stack for the module's data and
    // a Celigo-sized evaluation's heap, so the bump allocator rarely grows
    // memory (growing costs an `mprotect`).
    let stack: usize = match std::env::var("CHAPERONE_POLICY_STACK") {
        Ok(text) => text
            .parse()
            .map_err(|_| format!("CHAPERONE_POLICY_STACK=`{text}` is not a number of bytes"))?,
        Err(_) => 64 << 10,
    };
    let initial = (stack + (128 << 10)).next_multiple_of(64 << 10);
    command.env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!("-Clink-arg=-zstack-size={stack}\x1f-Clink-arg=--initial-memory={initial}"),
    );
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build {WASM_TARGET} modules: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the {WASM_TARGET} modules failed ({status}); see the output above"
        ));
    }
    for (name, package) in packages {
        let artifact = target_dir
            .join(WASM_TARGET)
            .join("policy")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&artifact, &dest).map_err(|e| {
            format!(
                "cannot copy `{}` to `{}`: {e}",
                artifact.display(),
                dest.display()
            )
        })?;
    }
    Ok(())
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("`{name}` is not set; run this through cargo"))
}

/// The nested build must not inherit what the outer cargo set up for the
/// host crate (its flags, wrappers such as clippy-driver, its target).
fn scrub_environment(command: &mut std::process::Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let inherited = key.starts_with("CARGO_")
            && key != "CARGO_HOME"
            && key != "CARGO_NET_OFFLINE"
            && key != "CARGO_REGISTRIES_CRATES_IO_PROTOCOL";
        if inherited
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "OUT_DIR"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            )
        {
            command.env_remove(key);
        }
    }
}

/// Installs the wasm target with rustup when it is missing, or explains how.
fn ensure_wasm_target() -> Result<(), String> {
    if wasm_target_installed() {
        return Ok(());
    }
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let mut rustup = std::process::Command::new("rustup");
    rustup.args(["target", "add", WASM_TARGET]);
    if let Some(toolchain) = &toolchain {
        rustup.args(["--toolchain", toolchain]);
    }
    println!("cargo:warning=installing the `{WASM_TARGET}` target with rustup");
    let installed = rustup.status().is_ok_and(|s| s.success());
    if installed && wasm_target_installed() {
        return Ok(());
    }
    Err(format!(
        "the `{WASM_TARGET}` target is not installed and could not be installed automatically; \
         run `rustup target add {WASM_TARGET}` and build again"
    ))
}

fn wasm_target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    std::path::Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir()
}
