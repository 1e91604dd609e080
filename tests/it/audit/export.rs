//! Exports, verified offline with nothing but the file and the public key.

use std::io::Cursor;

use chaperone_log::export::verify_export;
use chaperone_log::keys::{self, Signer, Verifier};
use chaperone_log::verify::Report;
use serde_json::Value;

use super::{Fixture, populated};

fn export(fixture: &Fixture, account: &str) -> String {
    let store = fixture.store();
    let mut out = Vec::new();
    let summary = store.export(account, &mut out).unwrap();
    assert!(summary.checkpoint && summary.proof);
    String::from_utf8(out).unwrap()
}

fn public_key(fixture: &Fixture) -> Verifier {
    keys::load_verifier(&keys::public_key_path(&fixture.path)).unwrap()
}

fn check(text: &str, key: &Verifier) -> Report {
    verify_export(Cursor::new(text.as_bytes()), Some(key)).unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn unlines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

#[test]
fn an_export_verifies_offline() {
    let fixture = populated();
    let text = export(&fixture, "globex");
    let values = lines(&text);
    assert_eq!(values.len(), 1 + 6 + 2);
    assert_eq!(values[0]["records"], 6);
    assert_eq!(values[1]["record"]["seq"], 1);
    assert_eq!(values[7]["type"], "checkpoint");
    assert_eq!(values[8]["type"], "proof");
    let report = check(&text, &public_key(&fixture));
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        (report.accounts, report.records, report.checkpoints),
        (1, 6, 1)
    );
}

#[test]
fn a_changed_record_in_an_export_is_a_hash_mismatch() {
    let fixture = populated();
    let mut values = lines(&export(&fixture, "acme"));
    // Change one character of record 4's bytes (and its decoded copy, to
    // look consistent).
    let text = values[4]["record"].to_string().replace("prod", "prud");
    use base64::Engine as _;
    values[4]["bytes"] = base64::engine::general_purpose::STANDARD
        .encode(text.as_bytes())
        .into();
    values[4]["record"] = serde_json::from_str(&text).unwrap();
    let report = check(&unlines(&values), &public_key(&fixture));
    assert_eq!(super::failure(&report, "acme"), (4, "hash-mismatch"));
}

#[test]
fn decoded_fields_that_disagree_with_the_bytes_are_named() {
    let fixture = populated();
    let mut values = lines(&export(&fixture, "acme"));
    values[2]["record"]["kind"] = "sync".into();
    let report = check(&unlines(&values), &public_key(&fixture));
    assert_eq!(super::failure(&report, "acme"), (2, "decoded-mismatch"));
}

#[test]
fn a_cut_export_is_truncated() {
    let fixture = populated();
    let mut values = lines(&export(&fixture, "acme"));
    values.remove(10); // the last record line
    let report = check(&unlines(&values), &public_key(&fixture));
    assert_eq!(super::failure(&report, "acme"), (10, "truncated"));
}

#[test]
fn a_cut_export_with_a_fixed_header_is_caught_by_the_checkpoint() {
    let fixture = populated();
    let mut values = lines(&export(&fixture, "acme"));
    values.remove(10);
    values[0]["records"] = 9.into();
    let report = check(&unlines(&values), &public_key(&fixture));
    assert_eq!(super::failure(&report, "acme"), (10, "truncated"));
    assert!(report.failures[0].to_string().contains("checkpoint"));
}

#[test]
fn a_wrong_proof_is_named() {
    let fixture = populated();
    let mut values = lines(&export(&fixture, "acme"));
    let last = values.len() - 1;
    values[last]["leaf_index"] = 1.into();
    let report = check(&unlines(&values), &public_key(&fixture));
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].problem.code(), "bad-proof");
}

#[test]
fn another_key_is_a_bad_signature() {
    let fixture = populated();
    let text = export(&fixture, "initech");
    let other = Signer::from_seed(public_key(&fixture).name(), [5; 32])
        .unwrap()
        .verifier();
    let report = check(&text, &other);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].problem.code(), "bad-signature");
}

#[test]
fn garbage_is_an_error_not_a_verdict() {
    let fixture = populated();
    let key = public_key(&fixture);
    assert!(verify_export(Cursor::new(b"not json\n".as_slice()), Some(&key)).is_err());
    assert!(verify_export(Cursor::new(b"".as_slice()), Some(&key)).is_err());
    assert!(
        verify_export(
            Cursor::new(b"{\"type\":\"record\"}\n".as_slice()),
            Some(&key)
        )
        .is_err()
    );
}
