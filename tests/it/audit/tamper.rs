//! Each kind of tampering the log must detect, and the record and reason it
//! names.

use chaperone_log::chain::{self, ChainHash};
use chaperone_log::checkpoint::Checkpoint;
use chaperone_log::keys::Signer;
use chaperone_log::record;
use chaperone_log::{ChainHead, Seq, TreeHeads};
use chaperone_store::verify::{ExternalCheckpoint, VerifyOptions};
use rusqlite::{Connection, params};

use super::{
    draft, failure, populated, raw, signer, store_checkpoint, v1_note, verify, verify_with,
};

pub(super) fn bytes_of(conn: &Connection, account: &str, seq: i64) -> Vec<u8> {
    conn.query_row(
        "SELECT bytes FROM audit_records WHERE account = ?1 AND seq = ?2",
        params![account, seq],
        |row| row.get(0),
    )
    .unwrap()
}

fn hash_of(conn: &Connection, account: &str, seq: i64) -> ChainHash {
    let hash: Vec<u8> = conn
        .query_row(
            "SELECT hash FROM audit_records WHERE account = ?1 AND seq = ?2",
            params![account, seq],
            |row| row.get(0),
        )
        .unwrap();
    ChainHash::from_slice(&hash).unwrap()
}

/// Moves rows `from..` of `account` up by one position.
fn shift_up(conn: &Connection, account: &str, from: i64) {
    let max: i64 = conn
        .query_row(
            "SELECT MAX(seq) FROM audit_records WHERE account = ?1",
            [account],
            |row| row.get(0),
        )
        .unwrap();
    for seq in (from..=max).rev() {
        conn.execute(
            "UPDATE audit_records SET seq = seq + 1 WHERE account = ?1 AND seq = ?2",
            params![account, seq],
        )
        .unwrap();
    }
}

fn set_head(conn: &Connection, account: &str, seq: i64) {
    let hash = hash_of(conn, account, seq);
    conn.execute(
        "UPDATE audit_heads SET seq = ?2, hash = ?3 WHERE account = ?1",
        params![account, seq, hash.as_bytes().as_slice()],
    )
    .unwrap();
}

fn insert(conn: &Connection, account: &str, seq: i64, bytes: &[u8], hash: &ChainHash) {
    let d = record::decode(bytes).unwrap();
    conn.execute(
        "INSERT INTO audit_records (account, seq, time_ms, kind, hash, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![account, seq, d.time_ms, d.kind, hash.as_bytes().as_slice(), bytes],
    )
    .unwrap();
}

#[test]
fn an_untouched_log_verifies() {
    let fixture = populated();
    let report = verify(&fixture.path);
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        (report.accounts, report.records, report.checkpoints),
        (3, 20, 2)
    );
    assert!(
        report
            .summary()
            .starts_with("ok: verified 3 accounts, 20 records, 2 checkpoints")
    );
}

#[test]
fn one_changed_byte_is_a_hash_mismatch_at_that_record() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    let mut bytes = bytes_of(&conn, "acme", 5);
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    conn.execute(
        "UPDATE audit_records SET bytes = ?1 WHERE account = 'acme' AND seq = 5",
        [&bytes],
    )
    .unwrap();
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (5, "hash-mismatch"));
    assert_eq!(report.failures.len(), 1, "{report:#?}");
    assert!(
        report
            .summary()
            .contains("account `acme` record 5: hash mismatch")
    );
}

#[test]
fn a_changed_stored_hash_is_a_hash_mismatch_at_that_record() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    conn.execute(
        "UPDATE audit_records SET hash = zeroblob(32) WHERE account = 'globex' AND seq = 2",
        [],
    )
    .unwrap();
    assert_eq!(
        failure(&verify(&fixture.path), "globex"),
        (2, "hash-mismatch")
    );
}

#[test]
fn a_deleted_record_is_a_gap() {
    let fixture = populated();
    raw(&fixture.path)
        .execute(
            "DELETE FROM audit_records WHERE account = 'acme' AND seq = 4",
            [],
        )
        .unwrap();
    assert_eq!(failure(&verify(&fixture.path), "acme"), (4, "gap"));
}

#[test]
fn a_deleted_record_with_the_rest_renumbered_is_a_gap() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    conn.execute(
        "DELETE FROM audit_records WHERE account = 'acme' AND seq = 4",
        [],
    )
    .unwrap();
    for seq in 5..=10 {
        conn.execute(
            "UPDATE audit_records SET seq = seq - 1 WHERE account = 'acme' AND seq = ?1",
            [seq],
        )
        .unwrap();
    }
    set_head(&conn, "acme", 9);
    assert_eq!(failure(&verify(&fixture.path), "acme"), (4, "gap"));
}

#[test]
fn an_inserted_record_with_a_valid_hash_is_named() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    shift_up(&conn, "acme", 5);
    // A forger who knows the format: header for seq 5, hash chained from 4.
    let bytes = record::encode(&draft("acme", 77), Seq::new(5).unwrap()).unwrap();
    let hash = chain::link(&hash_of(&conn, "acme", 4), &bytes);
    insert(&conn, "acme", 5, &bytes, &hash);
    set_head(&conn, "acme", 11);
    assert_eq!(failure(&verify(&fixture.path), "acme"), (5, "inserted"));
}

#[test]
fn an_inserted_record_with_a_wrong_hash_is_named() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    shift_up(&conn, "acme", 5);
    let bytes = record::encode(&draft("acme", 77), Seq::new(5).unwrap()).unwrap();
    insert(&conn, "acme", 5, &bytes, &ChainHash::from_bytes([7; 32]));
    set_head(&conn, "acme", 11);
    assert_eq!(failure(&verify(&fixture.path), "acme"), (5, "inserted"));
}

fn swap(conn: &Connection, account: &str, a: i64, b: i64) {
    conn.execute(
        "UPDATE audit_records SET seq = -1 WHERE account = ?1 AND seq = ?2",
        params![account, a],
    )
    .unwrap();
    conn.execute(
        "UPDATE audit_records SET seq = ?2 WHERE account = ?1 AND seq = ?3",
        params![account, a, b],
    )
    .unwrap();
    conn.execute(
        "UPDATE audit_records SET seq = ?2 WHERE account = ?1 AND seq = -1",
        params![account, b],
    )
    .unwrap();
}

#[test]
fn two_swapped_records_are_a_reordering() {
    let fixture = populated();
    swap(&raw(&fixture.path), "acme", 6, 7);
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (6, "reordered"));
    assert!(report.failures[0].to_string().contains("is record 7"));

    let fixture = populated();
    swap(&raw(&fixture.path), "globex", 2, 5);
    assert_eq!(failure(&verify(&fixture.path), "globex"), (2, "reordered"));
}

/// Cuts `acme` to 7 records, consistently (the store's head follows).
fn truncate_acme(conn: &Connection) {
    conn.execute(
        "DELETE FROM audit_records WHERE account = 'acme' AND seq > 7",
        [],
    )
    .unwrap();
    set_head(conn, "acme", 7);
}

#[test]
fn a_cut_tail_is_invisible_without_a_checkpoint() {
    // The limitation checkpoints exist for: a consistent cut leaves a valid
    // chain.
    let fixture = populated();
    let conn = raw(&fixture.path);
    truncate_acme(&conn);
    conn.execute("DELETE FROM audit_checkpoints", []).unwrap();
    drop(conn);
    assert!(verify(&fixture.path).is_ok());
}

#[test]
fn a_cut_tail_is_detected_against_a_stored_checkpoint() {
    let fixture = populated();
    truncate_acme(&raw(&fixture.path));
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (8, "truncated"));
    assert!(report.failures[0].to_string().contains("checkpoint #2"));
}

#[test]
fn a_cut_tail_is_detected_against_a_checkpoint_kept_elsewhere() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    let note: String = conn
        .query_row(
            "SELECT note FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    truncate_acme(&conn);
    conn.execute("DELETE FROM audit_checkpoints", []).unwrap();
    drop(conn);
    let options = VerifyOptions {
        checkpoints: vec![ExternalCheckpoint {
            label: "checkpoint file `kept.txt`".into(),
            note,
        }],
        ..VerifyOptions::default()
    };
    let report = verify_with(&fixture.path, options.clone());
    assert_eq!(failure(&report, "acme"), (8, "truncated"));
    assert!(report.failures[0].to_string().contains("kept.txt"));

    // The note names no head: what it signed is what the store keeps for
    // it. Heads gone, the store cannot show it, and that is the failure.
    raw(&fixture.path)
        .execute("DELETE FROM audit_checkpoint_heads", [])
        .unwrap();
    let report = verify_with(&fixture.path, options.clone());
    let codes: Vec<_> = report.failures.iter().map(|f| f.problem.code()).collect();
    assert_eq!(codes, ["bad-heads"], "{report:#?}");
    assert_eq!(
        (&report.failures[0].account, report.failures[0].seq),
        (&None, None)
    );
    assert!(report.failures[0].to_string().contains("kept.txt"));

    // Heads cut with the chain (acme at 7, as the store now says) do not
    // reproduce the signed root either.
    let conn = raw(&fixture.path);
    let mut cut = heads(&conn);
    cut[0].1 = ChainHead {
        seq: Seq::new(7).unwrap(),
        hash: hash_of(&conn, "acme", 7),
    };
    for (account, head) in &cut {
        conn.execute(
            "INSERT INTO audit_checkpoint_heads (checkpoint, account, seq, hash) VALUES (2, ?1, ?2, ?3)",
            params![account, head.seq.to_i64(), head.hash.as_bytes().as_slice()],
        )
        .unwrap();
    }
    drop(conn);
    let report = verify_with(&fixture.path, options);
    let codes: Vec<_> = report.failures.iter().map(|f| f.problem.code()).collect();
    assert_eq!(codes, ["bad-heads"], "{report:#?}");
}

#[test]
fn a_tail_cut_without_moving_the_head_is_detected_by_the_head() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    conn.execute(
        "DELETE FROM audit_records WHERE account = 'initech' AND seq > 2",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM audit_checkpoints", []).unwrap();
    drop(conn);
    assert_eq!(failure(&verify(&fixture.path), "initech"), (3, "truncated"));
}

/// Rewrites `acme` from record 3 on, consistently: new content, every hash
/// recomputed, the head updated.
fn rewrite_acme(conn: &Connection) {
    let mut prev = hash_of(conn, "acme", 2);
    for seq in 3..=10_i64 {
        let mut d = draft("acme", u64::try_from(seq).unwrap());
        d.request = serde_json::json!({"rewritten": true});
        let bytes = record::encode(&d, Seq::new(u64::try_from(seq).unwrap()).unwrap()).unwrap();
        let hash = chain::link(&prev, &bytes);
        conn.execute(
            "UPDATE audit_records SET bytes = ?3, hash = ?4 WHERE account = ?1 AND seq = ?2",
            params!["acme", seq, bytes, hash.as_bytes().as_slice()],
        )
        .unwrap();
        prev = hash;
    }
    set_head(conn, "acme", 10);
}

#[test]
fn a_consistently_rewritten_chain_is_detected_by_the_signed_checkpoint() {
    let fixture = populated();
    rewrite_acme(&raw(&fixture.path));
    // The first checkpoint signed acme's head at record 3, the first
    // rewritten record.
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (3, "checkpoint-mismatch"));
    assert_eq!(report.failures.len(), 1);
}

#[test]
fn a_rewritten_chain_with_rewritten_checkpoint_heads_fails_them() {
    let template = populated();
    let rewritten = |fixture: &super::Fixture| {
        let conn = raw(&fixture.path);
        rewrite_acme(&conn);
        // The attacker puts the new heads where the checkpoints keep theirs.
        for seq in [3, 10] {
            conn.execute(
                "UPDATE audit_checkpoint_heads SET hash = ?2 WHERE account = 'acme' AND seq = ?1",
                params![seq, hash_of(&conn, "acme", seq).as_bytes().as_slice()],
            )
            .unwrap();
        }
        conn
    };
    // The kept heads no longer hash to the signed roots.
    let fixture = template.copy();
    drop(rewritten(&fixture));
    let report = verify(&fixture.path);
    let codes: Vec<_> = report.failures.iter().map(|f| f.problem.code()).collect();
    assert_eq!(codes, ["bad-heads", "bad-heads"], "{report:#?}");
    assert!(report.summary().starts_with("FAILED"));

    // And the notes with the new roots are not signed.
    let fixture = template.copy();
    let conn = rewritten(&fixture);
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM audit_checkpoints")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for id in ids {
        let heads = chaperone_store::checkpoints::kept_heads(&conn, id)
            .unwrap()
            .unwrap();
        let (note, old_root): (String, Vec<u8>) = conn
            .query_row(
                "SELECT note, root FROM audit_checkpoints WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let note = note.replace(&b64.encode(&old_root), &b64.encode(heads.root().as_bytes()));
        conn.execute(
            "UPDATE audit_checkpoints SET note = ?2, root = ?3 WHERE id = ?1",
            params![id, note, heads.root().as_bytes().as_slice()],
        )
        .unwrap();
    }
    drop(conn);
    let report = verify(&fixture.path);
    let codes: Vec<_> = report.failures.iter().map(|f| f.problem.code()).collect();
    assert_eq!(codes, ["bad-signature", "bad-signature"], "{report:#?}");
}

#[test]
fn a_record_moved_to_another_account_is_named_in_both() {
    let fixture = populated();
    raw(&fixture.path)
        .execute(
            "UPDATE audit_records SET account = 'globex', seq = 7 WHERE account = 'acme' AND seq = 5",
            [],
        )
        .unwrap();
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "globex"), (7, "wrong-account"));
    assert!(
        report
            .failure_for("globex")
            .unwrap()
            .to_string()
            .contains("`acme`")
    );
    assert_eq!(failure(&report, "acme"), (5, "gap"));
}

#[test]
fn a_record_copied_into_another_chain_with_a_valid_hash_is_named() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    let bytes = bytes_of(&conn, "acme", 5);
    let hash = chain::link(&hash_of(&conn, "initech", 4), &bytes);
    insert(&conn, "initech", 5, &bytes, &hash);
    set_head(&conn, "initech", 5);
    assert_eq!(
        failure(&verify(&fixture.path), "initech"),
        (5, "wrong-account")
    );
}

#[test]
fn a_changed_index_column_is_named() {
    let fixture = populated();
    raw(&fixture.path)
        .execute(
            "UPDATE audit_records SET kind = 'sync' WHERE account = 'acme' AND seq = 2",
            [],
        )
        .unwrap();
    assert_eq!(
        failure(&verify(&fixture.path), "acme"),
        (2, "index-mismatch")
    );
}

fn heads(conn: &Connection) -> Vec<(String, ChainHead)> {
    chaperone_store::read::heads(conn).unwrap()
}

/// Signs a version 2 checkpoint of `heads` with the store's key.
fn sign(fixture: &super::Fixture, time_ms: i64, heads: &[(String, ChainHead)]) -> Checkpoint {
    Checkpoint::sign(
        &signer(fixture),
        time_ms,
        &TreeHeads::new(heads.to_vec()).unwrap(),
    )
}

#[test]
fn a_newer_checkpoint_whose_head_went_back_is_a_fork() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    // Whoever holds the key signs a later checkpoint in which acme is
    // shorter, and the store keeps it with its heads.
    let mut forked = heads(&conn);
    forked[0].1 = ChainHead {
        seq: Seq::new(6).unwrap(),
        hash: hash_of(&conn, "acme", 6),
    };
    let cp = sign(&fixture, 1_700_000_950_000, &forked);
    store_checkpoint(&conn, &cp, &forked);
    drop(conn);
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (10, "fork"));
    let text = report.failure_for("acme").unwrap().to_string();
    assert!(
        text.contains("checkpoint #3") && text.contains("went back"),
        "{text}"
    );

    // An old (version 1) note kept outside lists its heads itself.
    let fixture = populated();
    let conn = raw(&fixture.path);
    let note = v1_note(&signer(&fixture), 1_700_000_950_000, forked);
    drop(conn);
    let options = VerifyOptions {
        checkpoints: vec![ExternalCheckpoint {
            label: "checkpoint file `later.txt`".into(),
            note,
        }],
        ..VerifyOptions::default()
    };
    let report = verify_with(&fixture.path, options);
    assert_eq!(failure(&report, "acme"), (10, "fork"));
    let text = report.failure_for("acme").unwrap().to_string();
    assert!(
        text.contains("later.txt") && text.contains("went back"),
        "{text}"
    );
}

#[test]
fn a_newer_checkpoint_with_another_hash_at_the_same_head_is_a_fork() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    let mut forked = heads(&conn);
    forked[1].1.hash = ChainHash::from_bytes([9; 32]);
    let cp = sign(&fixture, 1_700_000_950_000, &forked);
    store_checkpoint(&conn, &cp, &forked);
    drop(conn);
    // globex's head (6) is named twice with different hashes; the chain
    // itself matches the older one, so the newer is both a fork and wrong.
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "globex"), (6, "fork"));
}

#[test]
fn a_checkpoint_signed_by_another_key_is_a_bad_signature() {
    let fixture = populated();
    let impostor = Signer::from_seed(signer(&fixture).name(), [1; 32]).unwrap();
    let conn = raw(&fixture.path);
    let cp = Checkpoint::sign(
        &impostor,
        1_700_000_950_000,
        &TreeHeads::new(heads(&conn)).unwrap(),
    );
    drop(conn);
    let options = VerifyOptions {
        checkpoints: vec![ExternalCheckpoint {
            label: "checkpoint file `impostor.txt`".into(),
            note: cp.note,
        }],
        ..VerifyOptions::default()
    };
    let report = verify_with(&fixture.path, options);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].problem.code(), "bad-signature");
    assert_eq!(report.failures[0].account, None);
}

#[test]
fn one_account_can_be_verified_alone() {
    let fixture = populated();
    raw(&fixture.path)
        .execute(
            "DELETE FROM audit_records WHERE account = 'acme' AND seq = 2",
            [],
        )
        .unwrap();
    let only = |account: &str| {
        verify_with(
            &fixture.path,
            VerifyOptions {
                account: Some(account.into()),
                ..VerifyOptions::default()
            },
        )
    };
    let globex = only("globex");
    assert!(globex.is_ok());
    assert_eq!((globex.accounts, globex.records), (1, 6));
    assert_eq!(failure(&only("acme"), "acme"), (2, "gap"));
}

#[test]
fn the_writer_refuses_updates_and_deletes_of_records() {
    let fixture = populated();
    let store = fixture.store();
    let result = store.write(|tx| {
        tx.allow_unaudited_changes();
        tx.conn()
            .execute("DELETE FROM audit_records WHERE account = 'acme'", [])
    });
    assert!(result.is_err());
    let result = store.write(|tx| {
        tx.allow_unaudited_changes();
        tx.conn().execute("UPDATE audit_records SET kind = 'x'", [])
    });
    assert!(result.is_err());
    drop(store);
    assert!(verify(&fixture.path).is_ok());
}

/// Replaces record `seq` of `account` with `bytes` (its columns set from
/// them) and chains it and every record after it again, head included, as
/// a forger who knows the format would.
pub(super) fn replace_and_rechain(conn: &Connection, account: &str, seq: i64, bytes: &[u8]) {
    let mut prev = match seq {
        1 => chain::genesis(account),
        _ => hash_of(conn, account, seq - 1),
    };
    let max: i64 = conn
        .query_row(
            "SELECT MAX(seq) FROM audit_records WHERE account = ?1",
            [account],
            |row| row.get(0),
        )
        .unwrap();
    for at in seq..=max {
        let bytes = if at == seq {
            bytes.to_vec()
        } else {
            bytes_of(conn, account, at)
        };
        let hash = chain::link(&prev, &bytes);
        conn.execute(
            "UPDATE audit_records SET bytes = ?3, hash = ?4 WHERE account = ?1 AND seq = ?2",
            params![account, at, bytes, hash.as_bytes().as_slice()],
        )
        .unwrap();
        prev = hash;
    }
    set_head(conn, account, max);
}

/// Bytes of `acme` 5 with a valid header and hash that are not a record,
/// each with what is wrong with it.
pub(super) fn not_records(good: &str) -> Vec<(String, &'static str)> {
    vec![
        (
            good.replace("\"input\":", "\"extra\":1,\"input\":"),
            "a member the format does not have",
        ),
        (
            good.replace(",\"request\":", ", \"request\":"),
            "whitespace",
        ),
        (format!("{good} "), "a trailing space"),
        (
            good.replace("\"request\":{", "\"request\":{\"big\":1e400,"),
            "a number that is not finite",
        ),
        (
            good.replace("\"request\":{", "\"request\":{\"s\":\"\\udc00\","),
            "an unpaired surrogate",
        ),
        (
            // `effects` is level 2: 63 levels more inside it is one too many.
            good.replace(
                "\"effects\":[",
                &format!("\"effects\":[{}{},", "[".repeat(63), "]".repeat(63)),
            ),
            "nesting 65 levels deep",
        ),
        (
            good.replacen(",\"kind\":\"", ",\"kind\":\"X", 1),
            "a kind that is not a kind",
        ),
        (
            good.replace("\"time_ms\":", "\"time_ms\":0"),
            "a time that is not canonical",
        ),
    ]
}

#[test]
fn a_valid_hash_over_bytes_that_are_not_a_record_is_malformed() {
    let template = populated();
    let good = String::from_utf8(bytes_of(&raw(&template.path), "acme", 5)).unwrap();
    for (bytes, what) in not_records(&good) {
        let fixture = template.copy();
        let conn = raw(&fixture.path);
        replace_and_rechain(&conn, "acme", 5, bytes.as_bytes());
        drop(conn);
        // Both paths (`verify` checks that they agree).
        let report = verify(&fixture.path);
        assert_eq!(failure(&report, "acme"), (5, "malformed"), "{what}");
    }
}

#[test]
fn a_store_without_a_head_row_fails_at_record_1() {
    let fixture = populated();
    raw(&fixture.path)
        .execute("DELETE FROM audit_heads WHERE account = 'acme'", [])
        .unwrap();
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (1, "head-mismatch"));
    assert_eq!(report.failures.len(), 1, "{report:#?}");
}

#[test]
fn stored_checkpoint_columns_must_repeat_the_note() {
    for change in [
        "time_ms = time_ms + 1",
        "time_ms = 'soon'",
        "tree_size = 2",
        "tree_size = 'three'",
        "root = zeroblob(32)",
        "root = substr(root, 1, 31)",
    ] {
        let fixture = populated();
        raw(&fixture.path)
            .execute(
                &format!("UPDATE audit_checkpoints SET {change} WHERE id = 2"),
                [],
            )
            .unwrap();
        let report = verify(&fixture.path);
        assert_eq!(report.failures.len(), 1, "{change}: {report:#?}");
        let failure = &report.failures[0];
        assert_eq!(failure.problem.code(), "index-mismatch", "{change}");
        assert_eq!((&failure.account, failure.seq), (&None, None), "{change}");
        assert!(failure.to_string().contains("checkpoint #2"), "{failure}");
    }
}

#[test]
fn a_signed_checkpoint_whose_columns_disagree_still_counts() {
    // The note, not its columns, is what counts: the cut tail is still
    // caught by checkpoint #2, besides the column mismatch.
    let fixture = populated();
    let conn = raw(&fixture.path);
    truncate_acme(&conn);
    conn.execute(
        "UPDATE audit_checkpoints SET tree_size = 0 WHERE id = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let report = verify(&fixture.path);
    let codes: Vec<_> = report.failures.iter().map(|f| f.problem.code()).collect();
    assert_eq!(codes, ["index-mismatch", "truncated"], "{report:#?}");
    assert_eq!(failure(&report, "acme"), (8, "truncated"));
}

/// Heads of the populated store as they were when `acme` had 7 records.
fn heads_at_acme_7(conn: &Connection) -> Vec<(String, ChainHead)> {
    let mut heads = heads(conn);
    heads[0].1 = ChainHead {
        seq: Seq::new(7).unwrap(),
        hash: hash_of(conn, "acme", 7),
    };
    heads
}

/// Stores `cp` with id 0, before every other checkpoint, with its heads.
fn store_first(conn: &Connection, cp: &Checkpoint, heads: &[(String, ChainHead)]) {
    conn.execute(
        "INSERT INTO audit_checkpoints (id, time_ms, tree_size, root, note) VALUES (0, ?1, 3, ?2, ?3)",
        params![cp.time_ms, cp.root.as_bytes().as_slice(), cp.note],
    )
    .unwrap();
    for (account, head) in heads {
        conn.execute(
            "INSERT INTO audit_checkpoint_heads (checkpoint, account, seq, hash) VALUES (0, ?1, ?2, ?3)",
            params![account, head.seq.to_i64(), head.hash.as_bytes().as_slice()],
        )
        .unwrap();
    }
}

#[test]
fn an_earlier_state_signed_at_the_same_time_is_not_a_fork() {
    // Checkpoint #2's time, the log as it was a little before: consistent.
    // Kept outside as an old (version 1) note, which lists its heads.
    let fixture = populated();
    let conn = raw(&fixture.path);
    let earlier = heads_at_acme_7(&conn);
    let note = v1_note(&signer(&fixture), 1_700_000_900_000, earlier.clone());
    drop(conn);
    let options = VerifyOptions {
        checkpoints: vec![ExternalCheckpoint {
            label: "checkpoint file `same-time.txt`".into(),
            note,
        }],
        ..VerifyOptions::default()
    };
    let report = verify_with(&fixture.path, options);
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.checkpoints, 3);

    // Stored before checkpoint #2 (a smaller id), with its heads: the same.
    let conn = raw(&fixture.path);
    let cp = sign(&fixture, 1_700_000_900_000, &earlier);
    store_first(&conn, &cp, &earlier);
    drop(conn);
    assert!(verify(&fixture.path).is_ok());
}

#[test]
fn another_hash_at_the_same_head_and_time_is_a_fork_in_either_order() {
    let fixture = populated();
    let conn = raw(&fixture.path);
    let mut forked = heads(&conn);
    forked[1].1.hash = ChainHash::from_bytes([9; 32]);
    drop(conn);
    // After checkpoint #2 (an old note kept outside).
    let options = VerifyOptions {
        checkpoints: vec![ExternalCheckpoint {
            label: "checkpoint file `other.txt`".into(),
            note: v1_note(&signer(&fixture), 1_700_000_900_000, forked.clone()),
        }],
        ..VerifyOptions::default()
    };
    let report = verify_with(&fixture.path, options);
    assert_eq!(failure(&report, "globex"), (6, "fork"));
    assert_eq!(report.failures.len(), 1, "{report:#?}");
    // Before it (stored, with its heads).
    let conn = raw(&fixture.path);
    let cp = sign(&fixture, 1_700_000_900_000, &forked);
    store_first(&conn, &cp, &forked);
    drop(conn);
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "globex"), (6, "fork"));
    assert!(
        report.failures[0]
            .to_string()
            .contains("checkpoint #2 is inconsistent with checkpoint #0"),
        "{report:#?}"
    );
}

#[test]
fn wrongly_typed_columns_are_read_as_the_format_says() {
    // A `seq` that is not an integer is position 0, after the integers.
    let fixture = populated();
    raw(&fixture.path)
        .execute(
            "UPDATE audit_records SET seq = 'five' WHERE account = 'acme' AND seq = 5",
            [],
        )
        .unwrap();
    assert_eq!(failure(&verify(&fixture.path), "acme"), (5, "reordered"));

    // A head `seq` that is not an integer is read as 0.
    let fixture = populated();
    raw(&fixture.path)
        .execute(
            "UPDATE audit_heads SET seq = 'four' WHERE account = 'initech'",
            [],
        )
        .unwrap();
    assert_eq!(
        failure(&verify(&fixture.path), "initech"),
        (1, "head-mismatch")
    );

    // A `time_ms` column that is not an integer disagrees with the bytes.
    let fixture = populated();
    raw(&fixture.path)
        .execute(
            "UPDATE audit_records SET time_ms = 'then' WHERE account = 'globex' AND seq = 3",
            [],
        )
        .unwrap();
    assert_eq!(
        failure(&verify(&fixture.path), "globex"),
        (3, "index-mismatch")
    );
}

#[test]
fn an_account_id_that_is_not_utf8_hides_no_other_chain() {
    // `acme` then 0xFF sorts before `globex`: the chains after it must
    // still be found from their records (no head row, no checkpoint here).
    let fixture = populated();
    let conn = raw(&fixture.path);
    conn.execute(
        "INSERT INTO audit_records (account, seq, time_ms, kind, hash, bytes)
         VALUES (CAST(X'61636d65ff' AS TEXT), 1, 0, 'sync', zeroblob(32), X'7b7d')",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM audit_checkpoints", []).unwrap();
    conn.execute("DELETE FROM audit_heads WHERE account = 'globex'", [])
        .unwrap();
    drop(conn);
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "globex"), (1, "head-mismatch"));
    assert_eq!(report.accounts, 3);
}

#[test]
fn changed_checkpoint_heads_are_bad_heads() {
    for change in [
        "UPDATE audit_checkpoint_heads SET seq = seq + 1 WHERE checkpoint = 2 AND account = 'globex'",
        "UPDATE audit_checkpoint_heads SET hash = zeroblob(32) WHERE checkpoint = 2 AND account = 'initech'",
        "DELETE FROM audit_checkpoint_heads WHERE checkpoint = 2 AND account = 'initech'",
        "INSERT INTO audit_checkpoint_heads VALUES (2, 'umbrella', 1, zeroblob(32))",
        "UPDATE audit_checkpoint_heads SET account = 'acme2' WHERE checkpoint = 2 AND account = 'acme'",
        "UPDATE audit_checkpoint_heads SET account = 'ac me' WHERE checkpoint = 2 AND account = 'acme'",
        "UPDATE audit_checkpoint_heads SET seq = 'ten' WHERE checkpoint = 2 AND account = 'acme'",
        "UPDATE audit_checkpoint_heads SET hash = substr(hash, 1, 31) WHERE checkpoint = 2 AND account = 'acme'",
        "UPDATE audit_checkpoint_heads SET checkpoint = 'two' WHERE checkpoint = 2",
    ] {
        let fixture = populated();
        raw(&fixture.path).execute(change, []).unwrap();
        let report = verify(&fixture.path);
        let codes: Vec<_> = report.failures.iter().map(|f| f.problem.code()).collect();
        assert_eq!(codes, ["bad-heads"], "{change}: {report:#?}");
        let failure = &report.failures[0];
        assert_eq!((&failure.account, failure.seq), (&None, None), "{change}");
        assert!(failure.to_string().contains("checkpoint #2"), "{failure}");
    }
    // The table gone: neither checkpoint can show its heads.
    let fixture = populated();
    raw(&fixture.path)
        .execute_batch("DROP TABLE audit_checkpoint_heads")
        .unwrap();
    let report = verify(&fixture.path);
    let codes: Vec<_> = report.failures.iter().map(|f| f.problem.code()).collect();
    assert_eq!(codes, ["bad-heads", "bad-heads"], "{report:#?}");
}

#[test]
fn a_checkpoint_with_bad_heads_is_left_out_of_the_other_checks() {
    // Checkpoint #1 (acme at 3) keeps heads that do not reproduce its
    // root; checkpoint #2 still catches the cut tail, and #1 is no fork.
    let fixture = populated();
    let conn = raw(&fixture.path);
    conn.execute(
        "UPDATE audit_checkpoint_heads SET seq = 99 WHERE checkpoint = 1 AND account = 'acme'",
        [],
    )
    .unwrap();
    truncate_acme(&conn);
    drop(conn);
    let report = verify(&fixture.path);
    let codes: Vec<_> = report.failures.iter().map(|f| f.problem.code()).collect();
    assert_eq!(codes, ["bad-heads", "truncated"], "{report:#?}");
    assert_eq!(failure(&report, "acme"), (8, "truncated"));
}
