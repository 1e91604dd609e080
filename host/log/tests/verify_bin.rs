//! `chaperone-verify`, the auditor's binary, on exports built from this
//! crate alone: it says what the library's report says and exits 0, 1 or 2
//! as `chaperone audit verify --export` does.

#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;

use chaperone_log::chain::{self, ChainHead, Seq};
use chaperone_log::export::{checkpoint_line, header_line, proof_line, push_record_line};
use chaperone_log::keys;
use chaperone_log::record::{self, RecordDraft};
use chaperone_log::{Checkpoint, TreeHeads, offline};
use serde_json::json;

/// Writes an export of `count` records of `account`, with a checkpoint of
/// its head and the head's proof, signed by a fresh key whose public half
/// is written beside it. Returns (export, public key).
fn write_export(dir: &Path, account: &str, count: u64) -> (PathBuf, PathBuf) {
    let db = dir.join("log.db");
    let signer = keys::load_or_create(&db).unwrap();
    let mut out = format!("{}\n", header_line(account, count)).into_bytes();
    let mut prev = chain::genesis(account);
    let mut head = None;
    for n in 1..=count {
        let seq = Seq::new(n).unwrap();
        let draft = RecordDraft {
            account: account.into(),
            time_ms: 1_700_000_000_000 + i64::try_from(n).unwrap(),
            kind: "sync".into(),
            actor: None,
            request: json!({"step": n}),
            decision: None,
            effects: json!([]),
            policy: None,
            input: None,
        };
        let bytes = record::encode(&draft, seq).unwrap();
        prev = chain::link(&prev, &bytes);
        push_record_line(&mut out, seq.to_i64(), prev.as_bytes(), &bytes);
        head = Some(ChainHead { seq, hash: prev });
    }
    let heads = vec![
        (account.to_owned(), head.unwrap()),
        (
            "other".to_owned(),
            ChainHead {
                seq: Seq::FIRST,
                hash: chain::genesis("other"),
            },
        ),
    ];
    let tree = TreeHeads::new(heads).unwrap();
    let checkpoint = Checkpoint::sign(&signer, 1_800_000_000_000, &tree);
    assert!(!checkpoint.note.contains("other"), "{}", checkpoint.note);
    out.extend_from_slice(format!("{}\n", checkpoint_line(&checkpoint.note)).as_bytes());
    let proof = tree.proof(account).unwrap();
    out.extend_from_slice(format!("{}\n", proof_line(&proof)).as_bytes());
    let export = dir.join("acme.jsonl");
    std::fs::write(&export, out).unwrap();
    (export, keys::public_key_path(&db))
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_chaperone-verify"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_good_export_verifies_and_says_what_the_library_says() {
    let dir = tempfile::tempdir().unwrap();
    let (export, pubkey) = write_export(dir.path(), "acme", 3);
    let (code, stdout, _) = run(&[export.as_os_str(), "--pubkey".as_ref(), pubkey.as_os_str()]);
    let report = offline::verify_export_file(&export, &pubkey).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 3);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(stdout, offline::render(&report, false));

    let (code, stdout, _) = run(&[
        export.as_os_str(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["ok"], true, "{json}");
}

#[test]
fn a_tampered_record_fails_with_exit_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (export, pubkey) = write_export(dir.path(), "acme", 3);
    let text = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Record 2's line, re-encoded with one byte of its record changed.
    let mut line: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    let bytes = chaperone_log_test_base64(line["bytes"].as_str().unwrap());
    let forged = String::from_utf8(bytes)
        .unwrap()
        .replace("\"step\":2", "\"step\":9");
    let mut again = Vec::new();
    push_record_line(
        &mut again,
        2,
        &hex_decode(line["hash"].as_str().unwrap()),
        forged.as_bytes(),
    );
    line = serde_json::from_slice(&again).unwrap();
    lines[2] = line.to_string();
    std::fs::write(&export, lines.join("\n") + "\n").unwrap();
    let (code, stdout, _) = run(&[export.as_os_str(), "--pubkey".as_ref(), pubkey.as_os_str()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("FAIL "), "{stdout}");
    assert!(stdout.contains("acme"), "{stdout}");
    assert!(stdout.contains('2'), "{stdout}");
}

#[test]
fn a_file_that_is_no_export_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pubkey) = write_export(dir.path(), "acme", 1);
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "{\"type\":\"nonsense\"}\n").unwrap();
    let (code, stdout, stderr) = run(&[junk.as_os_str(), "--pubkey".as_ref(), pubkey.as_os_str()]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.starts_with("error: cannot verify export"),
        "{stderr}"
    );
    assert!(stderr.contains("malformed export"), "{stderr}");

    let missing = dir.path().join("missing.jsonl");
    let (code, _, stderr) = run(&[missing.as_os_str(), "--pubkey".as_ref(), pubkey.as_os_str()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot open export"), "{stderr}");

    // No key given: usage.
    let (code, _, _) = run(&[junk.as_os_str()]);
    assert_eq!(code, 2);
}

/// An export of version 1 (whose checkpoint listed every account) is not
/// read: no verdict, exit 2, saying what to do.
#[test]
fn a_version_1_export_is_a_usage_error_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let (export, pubkey) = write_export(dir.path(), "acme", 2);
    let text = std::fs::read_to_string(&export).unwrap();
    std::fs::write(
        &export,
        text.replacen("\"version\":2,", "\"version\":1,", 1),
    )
    .unwrap();
    let (code, stdout, stderr) =
        run(&[export.as_os_str(), "--pubkey".as_ref(), pubkey.as_os_str()]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("export version 1 is not supported")
            && stderr.contains("export the account again"),
        "{stderr}"
    );
}

fn chaperone_log_test_base64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn hex_decode(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}
