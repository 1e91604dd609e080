//! Exports, verified offline with nothing but the file and the public key.

use std::io::Cursor;

use chaperone_log::export::verify_export;
use chaperone_log::keys::{self, Signer, Verifier};
use chaperone_log::verify::{Report, VerifyError};
use chaperone_store::export::WithoutCheckpoint;
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
    assert_eq!(values[0]["version"], 2);
    assert!(
        values[8]["head"]
            .as_str()
            .unwrap()
            .starts_with("head globex 6 "),
        "{}",
        values[8]
    );
    assert_eq!(values[8]["tree_size"], 3);
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

/// The reasons in `report`, in report order, with the account and record
/// each names.
fn reasons(report: &Report) -> Vec<(Option<&str>, Option<u64>, &'static str)> {
    report
        .failures
        .iter()
        .map(|f| {
            (
                f.account.as_deref(),
                f.seq.map(|s| s.get()),
                f.problem.code(),
            )
        })
        .collect()
}

/// A change to a proof line.
type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;

#[test]
fn a_tampered_head_index_proof_or_root_is_named() {
    use base64::Engine as _;
    let fixture = populated();
    let key = public_key(&fixture);
    let values = lines(&export(&fixture, "acme"));
    assert!(check(&unlines(&values), &key).is_ok());
    let last = values.len() - 1;
    let proof = values[last].clone();
    let head = proof["head"].as_str().unwrap().to_owned();
    let index = proof["leaf_index"].as_u64().unwrap();
    let path: Vec<String> = proof["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    let (_, hash) = head.rsplit_once(' ').unwrap();
    let globex_head = lines(&export(&fixture, "globex")).last().unwrap()["head"].clone();
    let bad_proof = [(Some("acme"), None, "bad-proof")];
    let edits: Vec<(&str, Edit<'_>)> = vec![
        (
            "an earlier head",
            Box::new(|p: &mut Value| {
                p["head"] = head.replace("head acme 10 ", "head acme 9 ").into();
            }),
        ),
        (
            "another hash",
            Box::new(|p: &mut Value| {
                p["head"] = head.replace(hash, &"0".repeat(64)).into();
            }),
        ),
        (
            "another account's head",
            Box::new(|p: &mut Value| {
                p["head"] = globex_head.clone();
            }),
        ),
        (
            "a head that is no head line",
            Box::new(|p: &mut Value| {
                p["head"] = head.replace("head acme", "head  acme").into();
            }),
        ),
        (
            "another leaf index",
            Box::new(|p: &mut Value| {
                p["leaf_index"] = ((index + 1) % 3).into();
            }),
        ),
        (
            "an index past the tree",
            Box::new(|p: &mut Value| {
                p["leaf_index"] = 3.into();
            }),
        ),
        (
            "another tree size",
            Box::new(|p: &mut Value| {
                p["tree_size"] = 4.into();
            }),
        ),
        (
            "a changed path",
            Box::new(|p: &mut Value| {
                p["path"][0] = path[1].clone().into();
            }),
        ),
        (
            "a shorter path",
            Box::new(|p: &mut Value| {
                p["path"].as_array_mut().unwrap().pop();
            }),
        ),
        (
            "a longer path",
            Box::new(|p: &mut Value| {
                p["path"]
                    .as_array_mut()
                    .unwrap()
                    .push(path[0].clone().into());
            }),
        ),
        (
            "a path of non-hashes",
            Box::new(|p: &mut Value| {
                p["path"][0] = "xyz".into();
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut tampered = values.clone();
        edit(&mut tampered[last]);
        let report = check(&unlines(&tampered), &key);
        assert_eq!(reasons(&report), bad_proof, "{what}: {report:#?}");
    }
    // No proof line: the checkpoint vouches for nothing, and says so.
    let mut cut = values.clone();
    cut.pop();
    assert_eq!(reasons(&check(&unlines(&cut), &key)), bad_proof);
    // A proof without a checkpoint is not an export.
    let mut cut = values.clone();
    cut.remove(last - 1);
    assert!(verify_export(Cursor::new(unlines(&cut).as_bytes()), Some(&key)).is_err());

    // The root is in the signed note: changing it breaks the signature.
    let b64 = base64::engine::general_purpose::STANDARD;
    let note = values[last - 1]["note"].as_str().unwrap().to_owned();
    let root_line = note.lines().nth(2).unwrap().to_owned();
    let root = b64.decode(&root_line).unwrap();
    let other_root = b64.encode(root.iter().map(|b| b ^ 1).collect::<Vec<u8>>());
    let mut tampered = values.clone();
    tampered[last - 1]["note"] = note.replacen(&root_line, &other_root, 1).into();
    let report = check(&unlines(&tampered), &key);
    assert_eq!(
        reasons(&report),
        [(None, None, "bad-signature")],
        "{report:#?}"
    );
}

#[test]
fn the_proven_head_catches_a_rewritten_or_cut_chain() {
    use base64::Engine as _;
    use chaperone_log::chain;
    let fixture = populated();
    let key = public_key(&fixture);
    let values = lines(&export(&fixture, "acme"));
    // Records 8 to 10 rewritten and chained again, the header as it was:
    // only the signed head (record 10) shows it.
    let mut rewritten = values.clone();
    let mut prev = chain::ChainHash::from_hex(values[7]["hash"].as_str().unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for line in &mut rewritten[8..=10] {
        let bytes = b64.decode(line["bytes"].as_str().unwrap()).unwrap();
        let text =
            String::from_utf8(bytes)
                .unwrap()
                .replacen("\"time_ms\":1700", "\"time_ms\":1600", 1);
        prev = chain::link(&prev, text.as_bytes());
        line["bytes"] = b64.encode(text.as_bytes()).into();
        line["hash"] = prev.to_hex().into();
        line["record"] = serde_json::from_str(&text).unwrap();
    }
    let report = check(&unlines(&rewritten), &key);
    assert_eq!(
        reasons(&report),
        [(Some("acme"), Some(10), "checkpoint-mismatch")],
        "{report:#?}"
    );
    // Cut to 9 records with the header fixed: truncated at 10.
    let mut cut = values.clone();
    cut.remove(10);
    cut[0]["records"] = 9.into();
    assert_eq!(
        reasons(&check(&unlines(&cut), &key)),
        [(Some("acme"), Some(10), "truncated")]
    );
}

#[test]
fn a_note_and_an_export_name_no_other_account() {
    // Ids with `-`, which neither hex nor base64 has: no false alarm.
    let ids = [
        "tenant-alpha",
        "tenant-beta",
        "tenant-gamma",
        "tenant-delta",
    ];
    let fixture = Fixture::new();
    let store = fixture.store();
    for (n, id) in ids.iter().enumerate() {
        super::append_many(&store, id, n as u64 + 1);
    }
    let cp = store.checkpoint(1_700_000_900_000).unwrap();
    assert_eq!(cp.tree_size, 4);
    let key = public_key(&fixture);
    for id in ids {
        assert!(!cp.note.contains(id), "{id} in the note: {}", cp.note);
    }
    for id in ids {
        let mut out = Vec::new();
        let summary = store.export(id, &mut out).unwrap();
        assert!(summary.checkpoint && summary.proof, "{summary:?}");
        let text = String::from_utf8(out).unwrap();
        for other in ids.iter().filter(|other| **other != id) {
            assert!(!text.contains(other), "{other} in the export of {id}");
        }
        let report = check(&text, &key);
        assert!(report.is_ok(), "{id}: {report:#?}");
        assert_eq!(report.checkpoints, 1);
    }
}

#[test]
fn an_account_newer_than_the_checkpoint_is_exported_without_one() {
    let fixture = populated();
    let store = fixture.store();
    super::append_many(&store, "umbrella", 2);
    let mut out = Vec::new();
    let summary = store.export("umbrella", &mut out).unwrap();
    assert_eq!(
        (summary.checkpoint, summary.proof, summary.without),
        (false, false, Some(WithoutCheckpoint::NotInIt))
    );
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(check(&text, &public_key(&fixture)).is_ok());
}

#[test]
fn only_version_2_is_read_and_it_carries_a_version_2_note() {
    let fixture = populated();
    let key = public_key(&fixture);
    let values = lines(&export(&fixture, "acme"));
    for version in [
        Value::from(1),
        Value::from(3),
        Value::from("2"),
        Value::Null,
    ] {
        let mut other = values.clone();
        other[0]["version"] = version.clone();
        let error = verify_export(Cursor::new(unlines(&other).as_bytes()), Some(&key)).err();
        assert!(
            matches!(error, Some(VerifyError::UnsupportedVersion(_))),
            "{version}: {error:?}"
        );
    }
    // An old note (listing every account) in a version 2 export.
    let conn = super::raw(&fixture.path);
    let heads = chaperone_store::read::heads(&conn).unwrap();
    let note = super::v1_note(&super::signer(&fixture), 1_700_000_950_000, heads);
    let mut old = values.clone();
    let last = old.len() - 1;
    old[last - 1]["note"] = note.into();
    let report = check(&unlines(&old), &key);
    assert_eq!(
        reasons(&report),
        [(None, None, "bad-checkpoint")],
        "{report:#?}"
    );
}

/// What `docs/audit-format.md` says an auditor holding two exports of their
/// account can check: the later one's chain holds the earlier one's records
/// as they were, and its proven head extends the earlier proven head.
#[test]
fn two_exports_of_one_account_can_be_compared() {
    let fixture = populated();
    let key = public_key(&fixture);
    let earlier = lines(&export(&fixture, "acme"));
    let store = fixture.store();
    super::append_many(&store, "acme", 3);
    store.checkpoint(1_700_000_990_000).unwrap();
    drop(store);
    let later = lines(&export(&fixture, "acme"));
    assert!(check(&unlines(&earlier), &key).is_ok());
    assert!(check(&unlines(&later), &key).is_ok());
    let n = earlier[0]["records"].as_u64().unwrap() as usize;
    assert_eq!(later[0]["records"], 13);
    for i in 1..=n {
        for member in ["seq", "hash", "bytes"] {
            assert_eq!(earlier[i][member], later[i][member], "record {i}");
        }
    }
    let proven = |values: &[Value]| {
        let head = values.last().unwrap()["head"].as_str().unwrap().to_owned();
        let (_, rest) = head.split_once(" acme ").unwrap();
        let (seq, hash) = rest.split_once(' ').unwrap();
        (seq.parse::<usize>().unwrap(), hash.to_owned())
    };
    let (s1, h1) = proven(&earlier);
    let (s2, _) = proven(&later);
    assert!(s2 >= s1);
    assert_eq!(later[s1]["hash"].as_str().unwrap(), h1);
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
