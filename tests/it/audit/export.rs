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

#[test]
fn swapped_lines_are_reordered_and_a_cut_is_a_gap() {
    let fixture = populated();
    let key = public_key(&fixture);
    let values = lines(&export(&fixture, "acme"));
    // Lines 4 and 5 hold records 4 and 5.
    let mut swapped = values.clone();
    swapped.swap(4, 5);
    let report = check(&unlines(&swapped), &key);
    assert_eq!(super::failure(&report, "acme"), (4, "reordered"));
    assert!(report.failures[0].to_string().contains("is record 5"));
    // Far apart.
    let mut swapped = values.clone();
    swapped.swap(2, 8);
    assert_eq!(
        super::failure(&check(&unlines(&swapped), &key), "acme"),
        (2, "reordered")
    );
    // A line cut out of the middle is still a gap.
    let mut cut = values.clone();
    cut.remove(4);
    cut[0]["records"] = 9.into();
    assert_eq!(
        super::failure(&check(&unlines(&cut), &key), "acme"),
        (4, "gap")
    );
    // A duplicated line is reordered, where it repeats.
    let mut doubled = values;
    doubled.insert(4, doubled[3].clone());
    doubled[0]["records"] = 11.into();
    let report = check(&unlines(&doubled), &key);
    assert_eq!(super::failure(&report, "acme"), (4, "reordered"));
    assert!(report.failures[0].to_string().contains("is record 3"));
}

#[test]
fn a_line_inserted_without_renumbering_is_inserted() {
    use base64::Engine as _;
    use chaperone_log::chain::{self, ChainHash};
    use chaperone_log::{Seq, record};
    let fixture = populated();
    let key = public_key(&fixture);
    let values = lines(&export(&fixture, "acme"));
    let bytes = record::encode(&super::draft("acme", 77), Seq::new(5).unwrap()).unwrap();
    let line = |hash: &ChainHash| {
        serde_json::json!({
            "type": "record",
            "seq": 5,
            "hash": hash.to_hex(),
            "bytes": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "record": serde_json::from_slice::<Value>(&bytes).unwrap(),
        })
    };
    let hash_4 = ChainHash::from_hex(values[4]["hash"].as_str().unwrap()).unwrap();
    // Chained from record 4, before the real record 5 (also at 5).
    for hash in [chain::link(&hash_4, &bytes), ChainHash::from_bytes([7; 32])] {
        let mut inserted = values.clone();
        inserted.insert(5, line(&hash));
        inserted[0]["records"] = 11.into();
        let report = check(&unlines(&inserted), &key);
        assert_eq!(super::failure(&report, "acme"), (5, "inserted"), "{hash:?}");
    }
}

#[test]
fn bytes_that_are_not_a_record_are_malformed_in_the_export_as_in_the_store() {
    let template = populated();
    let good = String::from_utf8(super::tamper::bytes_of(
        &super::raw(&template.path),
        "acme",
        5,
    ))
    .unwrap();
    for (bytes, what) in super::tamper::not_records(&good) {
        let fixture = template.copy();
        let conn = super::raw(&fixture.path);
        super::tamper::replace_and_rechain(&conn, "acme", 5, bytes.as_bytes());
        drop(conn);
        let db = super::verify(&fixture.path);
        assert_eq!(super::failure(&db, "acme"), (5, "malformed"), "{what}");
        let report = check(&export(&fixture, "acme"), &public_key(&fixture));
        assert_eq!(super::failure(&report, "acme"), (5, "malformed"), "{what}");
        assert_eq!(db.failure_for("acme"), report.failure_for("acme"), "{what}");
    }
}

#[test]
fn a_header_without_a_valid_account_id_is_malformed() {
    let fixture = populated();
    let key = public_key(&fixture);
    let mut values = lines(&export(&fixture, "acme"));
    for account in [
        Value::from(""),
        Value::from("ac me"),
        Value::from("ac\"me"),
        Value::from("x".repeat(257)),
        Value::from(7),
    ] {
        values[0]["account"] = account.clone();
        let text = unlines(&values);
        assert!(
            verify_export(Cursor::new(text.as_bytes()), Some(&key)).is_err(),
            "{account}"
        );
    }
}

#[test]
fn an_export_needs_the_public_key_and_lines_at_most_65_levels_deep() {
    let fixture = populated();
    let key = public_key(&fixture);
    let text = export(&fixture, "acme");
    assert!(verify_export(Cursor::new(text.as_bytes()), None).is_err());
    // The header is level 1: 64 levels of arrays inside it are the most.
    let nested = |levels| (0..levels).fold(Value::Null, |inner, _| Value::Array(vec![inner]));
    let mut deep = lines(&text);
    deep[0]["extra"] = nested(65);
    assert!(verify_export(Cursor::new(unlines(&deep).as_bytes()), Some(&key)).is_err());
    let mut shallow = lines(&text);
    shallow[0]["extra"] = nested(64);
    assert!(check(&unlines(&shallow), &key).is_ok());
}

#[test]
fn only_lines_of_json_whitespace_are_skipped() {
    let fixture = populated();
    let key = public_key(&fixture);
    let text = export(&fixture, "globex");
    let (head, rest) = text.split_once('\n').unwrap();
    assert!(check(&format!("{head}\n \t\r\n\n{rest}"), &key).is_ok());
    let spaced = format!("{head}\n\u{a0}\n{rest}");
    assert!(verify_export(Cursor::new(spaced.as_bytes()), Some(&key)).is_err());
}

#[test]
fn a_line_with_a_member_name_twice_is_not_json() {
    let fixture = populated();
    let key = public_key(&fixture);
    let text = export(&fixture, "globex");
    assert!(check(&text, &key).is_ok());
    // The header's `records` given twice: serde_json would keep the last.
    let (head, rest) = text.split_once('\n').unwrap();
    let twice = head.replacen(
        "{\"type\":\"header\",",
        "{\"type\":\"header\",\"records\":1,",
        1,
    );
    assert_ne!(twice, head);
    let error = verify_export(
        Cursor::new(format!("{twice}\n{rest}").as_bytes()),
        Some(&key),
    )
    .err()
    .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("line 1 is not JSON")),
        "{error:?}"
    );
}
