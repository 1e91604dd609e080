//! The README's quick start, run as written (with this build's binary, a
//! free port and a temporary directory): every decision it shows comes out
//! as the README says, and the export it fetches verifies.

use std::process::Command;

/// The quick start's shell block.
fn quick_start() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .unwrap_or_else(|e| unreachable!("README.md: {e}"));
    let section = readme
        .split("## Quick start")
        .nth(1)
        .unwrap_or_else(|| unreachable!("no quick start in the README"));
    section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| unreachable!("no shell block in the quick start"))
        .to_string()
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let block = quick_start();
    assert!(block.contains("cargo build --release\n"), "{block}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| unreachable!("{e}"))
        .port();
    let script = block
        .replace("cargo build --release\n", "")
        .replace(
            "B=target/release/chaperone",
            &format!("B={}", env!("CARGO_BIN_EXE_chaperone")),
        )
        .replace("8080", &port.to_string());
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| unreachable!("bash: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let decisions: Vec<(String, String)> = answers
        .iter()
        .filter_map(|a| {
            Some((
                a.get("decision")?.as_str()?.to_owned(),
                a.get("rule")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    let decided: Vec<(&str, &str)> = decisions
        .iter()
        .map(|(d, r)| (d.as_str(), r.as_str()))
        .collect();
    // grant, act, revoke, act after the revoke
    assert_eq!(decided.len(), 4, "{stdout}");
    assert_eq!(decided.first().map(|d| d.0), Some("allow"), "{stdout}");
    assert_eq!(decided.get(1).map(|d| d.0), Some("allow"), "{stdout}");
    assert_eq!(decided.get(2).map(|d| d.0), Some("allow"), "{stdout}");
    assert_eq!(decided.get(3).map(|d| d.0), Some("deny"), "{stdout}");
    // The customer saw its account with the grant and its expiry.
    assert!(
        answers.iter().any(|a| a
            .pointer("/account/grants/0/expires")
            .is_some_and(serde_json::Value::is_string)),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("ok: ")),
        "the export did not verify:\n{stdout}"
    );
    assert!(!stdout.contains("\"error\""), "{stdout}");
}
