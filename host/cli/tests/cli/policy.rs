//! `chaperone policy inspect|check|export`, driven as a user would.

#![expect(
    clippy::indexing_slicing,
    reason = "JSON fields of the command's output"
)]

use std::process::{Command, Output};

fn chaperone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(args)
        .output()
        .unwrap_or_else(|e| unreachable!("cannot run chaperone: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn exported(vendor: &str, dir: &tempfile::TempDir) -> String {
    let path = dir.path().join(format!("{vendor}.wasm"));
    let path = path.to_string_lossy().into_owned();
    let out = chaperone(&["policy", "export", vendor, "--out", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    path
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"))
}

#[test]
fn inspect_shows_digest_vendor_operations_and_no_imports() {
    let dir = tempdir();
    let path = exported("celigo", &dir);
    let out = chaperone(&["policy", "inspect", &path, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| unreachable!("{e}"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(json["digest"], blake3::hash(&bytes).to_hex().as_str());
    assert_eq!(json["vendor"], "celigo");
    assert_eq!(json["imports"], serde_json::json!([]));
    assert_eq!(json["size"], bytes.len());
    let operations = json["operations"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default();
    assert_eq!(operations, 5, "{json}");
    assert!(
        json["exports"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == "evaluate"))
    );

    let human = chaperone(&["policy", "inspect", &path]);
    assert!(
        text(&human.stdout).contains("vendor:     celigo"),
        "{}",
        text(&human.stdout)
    );
}

#[test]
fn check_passes_the_built_in_modules() {
    let dir = tempdir();
    for vendor in ["celigo", "xentral"] {
        let path = exported(vendor, &dir);
        let out = chaperone(&["policy", "check", &path]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{vendor}: {stdout}");
        assert!(stdout.contains("ok     fuel exhaustion"), "{stdout}");
        assert!(stdout.contains("5 times, identically"), "{stdout}");
        assert!(
            stdout.contains("ok     record act: its audit record fits"),
            "{stdout}"
        );
        // Both entry points are probed and agree.
        assert!(
            stdout.contains("`evaluate-packed` and `evaluate` decide identically"),
            "{stdout}"
        );
        assert!(
            stdout
                .lines()
                .last()
                .is_some_and(|l| l.ends_with(" passed, 0 failed")),
            "{stdout}"
        );
    }
}

#[test]
fn check_fails_a_module_that_imports_and_says_what() {
    let dir = tempdir();
    let path = dir.path().join("wasi.wasm");
    let bytes = [
        b"\0asm\x01\0\0\0".as_slice(),
        // type section: one func type () -> ()
        &[0x01, 0x04, 0x01, 0x60, 0x00, 0x00],
        // import section: "wasi" "clock" func 0
        &[
            0x02, 0x0e, 0x01, 0x04, b'w', b'a', b's', b'i', 0x05, b'c', b'l', b'o', b'c', b'k',
            0x00, 0x00,
        ],
    ]
    .concat();
    std::fs::write(&path, bytes).unwrap_or_else(|e| unreachable!("{e}"));
    let out = chaperone(&["policy", "check", &path.to_string_lossy(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("`wasi::clock`"), "{stdout}");
}

#[test]
fn unreadable_files_and_unknown_modules_are_usage_errors() {
    let out = chaperone(&["policy", "inspect", "/nonexistent/x.wasm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read `/nonexistent/x.wasm`"),
        "{}",
        text(&out.stderr)
    );
    let dir = tempdir();
    let out = chaperone(&[
        "policy",
        "export",
        "acme",
        "--out",
        &dir.path().join("a.wasm").to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no built-in module `acme`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_file_larger_than_any_module_may_be_is_refused_unread() {
    let dir = tempdir();
    let path = dir.path().join("huge.wasm");
    // Sparse: a wasm header, then a hole up to one byte over the 16 MiB limit.
    let file = std::fs::File::create(&path).unwrap_or_else(|e| unreachable!("{e}"));
    std::io::Write::write_all(&mut &file, b"\0asm\x01\0\0\0")
        .unwrap_or_else(|e| unreachable!("{e}"));
    file.set_len((16 << 20) + 1)
        .unwrap_or_else(|e| unreachable!("{e}"));
    for command in ["inspect", "check"] {
        let out = chaperone(&["policy", command, &path.to_string_lossy()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            text(&out.stderr).contains(
                "it is 16777217 bytes, and a policy module may be at most 16777216 bytes"
            ),
            "{command}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn inspect_of_random_bytes_reports_what_is_wrong() {
    let dir = tempdir();
    let path = dir.path().join("noise.wasm");
    std::fs::write(&path, b"definitely not wasm").unwrap_or_else(|e| unreachable!("{e}"));
    let out = chaperone(&["policy", "inspect", &path.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("`\\0asm` magic bytes"),
        "{}",
        text(&out.stdout)
    );
}
