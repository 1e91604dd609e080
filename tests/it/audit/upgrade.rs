//! Stores from before checkpoints stopped naming accounts (schema version
//! 3, version 1 notes listing every head): they verify as they are, open and
//! migrate, and their old checkpoints keep counting beside the new ones.

use chaperone_log::chain::{self, ChainHash};
use chaperone_log::checkpoint::{Checkpoint, NoteVersion};
use chaperone_log::export::verify_export;
use chaperone_log::keys::{self, Signer};
use chaperone_log::{ChainHead, Seq, record};
use chaperone_store::export::WithoutCheckpoint;
use chaperone_store::migrations::MIGRATIONS;
use chaperone_store::verify::{ExternalCheckpoint, VerifyOptions, open_read_only};
use rusqlite::{Connection, params};

use super::{Fixture, draft, failure, raw, store_checkpoint, v1_note, verify, verify_with};

/// Appends `count` records to `account` as every release wrote them.
fn append_raw(conn: &Connection, account: &str, count: u64) {
    let head: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_heads WHERE account = ?1",
            [account],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ok();
    let (mut seq, mut prev) = match head {
        Some((seq, hash)) => (
            u64::try_from(seq).unwrap(),
            ChainHash::from_slice(&hash).unwrap(),
        ),
        None => (0, chain::genesis(account)),
    };
    for _ in 0..count {
        seq += 1;
        let draft = draft(account, seq);
        let bytes = record::encode(&draft, Seq::new(seq).unwrap()).unwrap();
        prev = chain::link(&prev, &bytes);
        conn.execute(
            "INSERT INTO audit_records (account, seq, time_ms, kind, hash, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![account, i64::try_from(seq).unwrap(), draft.time_ms, draft.kind, prev.as_bytes().as_slice(), bytes],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO audit_heads (account, seq, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT (account) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![
            account,
            i64::try_from(seq).unwrap(),
            prev.as_bytes().as_slice()
        ],
    )
    .unwrap();
}

/// A version 1 checkpoint of every head, stored as the old release did.
fn old_checkpoint(conn: &Connection, signer: &Signer, time_ms: i64) {
    let heads = chaperone_store::read::heads(conn).unwrap();
    let note = v1_note(signer, time_ms, heads);
    let cp = Checkpoint::parse_unverified(&note).unwrap();
    assert_eq!(cp.version, NoteVersion::V1);
    store_checkpoint(conn, &cp, &[]);
}

/// A store as the release before schema version 4 left it: `acme` with 5
/// records and `globex` with 3, a version 1 checkpoint when `acme` had 3
/// records and `globex` 2, and one at the end.
fn old_store() -> (Fixture, Signer) {
    let fixture = Fixture::new();
    let signer = keys::load_or_create(&fixture.path).unwrap();
    let conn = Connection::open(&fixture.path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for migration in MIGRATIONS.iter().filter(|m| m.version <= 3) {
        conn.execute_batch(migration.sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 3).unwrap();
    append_raw(&conn, "acme", 3);
    append_raw(&conn, "globex", 2);
    old_checkpoint(&conn, &signer, 1_700_000_500_000);
    append_raw(&conn, "acme", 2);
    append_raw(&conn, "globex", 1);
    old_checkpoint(&conn, &signer, 1_700_000_600_000);
    (fixture, signer)
}

fn user_version(fixture: &Fixture) -> i64 {
    Connection::open(&fixture.path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap()
}

fn export(fixture: &Fixture, account: &str) -> (String, chaperone_store::export::ExportSummary) {
    let conn = open_read_only(&fixture.path).unwrap();
    let mut out = Vec::new();
    let summary = chaperone_store::export::export(&conn, account, &mut out, &|_| {}).unwrap();
    (String::from_utf8(out).unwrap(), summary)
}

#[test]
fn an_old_store_verifies_as_it_is_and_after_it_is_upgraded() {
    let (fixture, _) = old_store();
    // Read-only, as it is: the old notes list their heads.
    let report = verify(&fixture.path);
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        (report.accounts, report.records, report.checkpoints),
        (2, 8, 2)
    );
    assert_eq!(user_version(&fixture), 3);
    // An export never carries a note that lists every account.
    let (text, summary) = export(&fixture, "acme");
    assert_eq!(summary.without, Some(WithoutCheckpoint::VersionOne));
    assert!(!text.contains("globex"), "{text}");
    let key = keys::load_verifier(&keys::public_key_path(&fixture.path)).unwrap();
    let report = verify_export(std::io::Cursor::new(text.as_bytes()), Some(&key)).unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.checkpoints, 0);

    // Opened: migrated, the old notes kept as they are.
    let store = fixture.store();
    assert_eq!(user_version(&fixture), chaperone_store::SCHEMA_VERSION);
    assert!(verify(&fixture.path).is_ok());
    super::append_many(&store, "acme", 2);
    let cp = store.checkpoint(1_700_000_700_000).unwrap();
    assert_eq!(cp.version, NoteVersion::V2);
    assert!(!cp.note.contains("acme") && !cp.note.contains("globex"));
    drop(store);
    let report = verify(&fixture.path);
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.checkpoints, 3);
    let (text, summary) = export(&fixture, "acme");
    assert!(summary.checkpoint && summary.proof, "{summary:?}");
    assert!(!text.contains("globex"), "{text}");
    let report = verify_export(std::io::Cursor::new(text.as_bytes()), Some(&key)).unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!((report.records, report.checkpoints), (7, 1));
}

#[test]
fn old_checkpoints_still_catch_a_cut_tail_and_a_rewrite() {
    // Cut acme back to 2 records: the first old checkpoint named record 3.
    let (fixture, _) = old_store();
    let conn = raw(&fixture.path);
    conn.execute(
        "DELETE FROM audit_records WHERE account = 'acme' AND seq > 2",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE audit_heads SET seq = 2, hash = (SELECT hash FROM audit_records WHERE account = 'acme' AND seq = 2) WHERE account = 'acme'",
        [],
    )
    .unwrap();
    drop(conn);
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (3, "truncated"));
    assert!(report.failures[0].to_string().contains("checkpoint #1"));

    // Rewritten from record 2 on, consistently, after the upgrade and a new
    // checkpoint: the old checkpoint's head (record 3) shows it.
    let (fixture, _) = old_store();
    drop(fixture.store());
    let conn = raw(&fixture.path);
    let good = super::tamper::bytes_of(&conn, "acme", 2);
    let changed = String::from_utf8(good)
        .unwrap()
        .replacen("users.update", "users.delete", 1);
    super::tamper::replace_and_rechain(&conn, "acme", 2, changed.as_bytes());
    drop(conn);
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (3, "checkpoint-mismatch"));
}

#[test]
fn a_new_checkpoint_must_extend_the_old_ones() {
    let (fixture, signer) = old_store();
    drop(fixture.store());
    // Whoever holds the key signs a new checkpoint in which acme went back
    // to record 4, and the store keeps it with its heads.
    let conn = raw(&fixture.path);
    let mut heads = chaperone_store::read::heads(&conn).unwrap();
    let hash_4: Vec<u8> = conn
        .query_row(
            "SELECT hash FROM audit_records WHERE account = 'acme' AND seq = 4",
            [],
            |row| row.get(0),
        )
        .unwrap();
    heads[0].1 = ChainHead {
        seq: Seq::new(4).unwrap(),
        hash: ChainHash::from_slice(&hash_4).unwrap(),
    };
    let tree = chaperone_log::TreeHeads::new(heads.clone()).unwrap();
    let cp = Checkpoint::sign(&signer, 1_700_000_700_000, &tree);
    store_checkpoint(&conn, &cp, &heads);
    drop(conn);
    let report = verify(&fixture.path);
    assert_eq!(failure(&report, "acme"), (5, "fork"));

    // The old notes, kept outside, still count against the store.
    let (fixture, _) = old_store();
    let conn = raw(&fixture.path);
    let notes: Vec<String> = conn
        .prepare("SELECT note FROM audit_checkpoints ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    conn.execute_batch(
        "DELETE FROM audit_checkpoints;
         DELETE FROM audit_records WHERE account = 'globex' AND seq = 3;
         UPDATE audit_heads SET seq = 2, hash = (SELECT hash FROM audit_records WHERE account = 'globex' AND seq = 2) WHERE account = 'globex';",
    )
    .unwrap();
    drop(conn);
    let options = VerifyOptions {
        checkpoints: notes
            .into_iter()
            .enumerate()
            .map(|(i, note)| ExternalCheckpoint {
                label: format!("checkpoint file `old-{i}.txt`"),
                note,
            })
            .collect(),
        ..VerifyOptions::default()
    };
    let report = verify_with(&fixture.path, options);
    assert_eq!(failure(&report, "globex"), (3, "truncated"));
    assert!(report.failures[0].to_string().contains("old-1.txt"));
}
