//! Audit log tests: the documented format (known-answer test), the store's
//! write semantics, tamper detection (each case, then random tamperings),
//! export verification, stores from before checkpoints stopped naming
//! accounts, and crash safety under SIGKILL.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod crash;
mod export;
mod kat;
mod proptests;
mod tamper;
mod upgrade;
mod writes;

use std::path::{Path, PathBuf};

use chaperone_log::ChainHead;
use chaperone_log::checkpoint::Checkpoint;
use chaperone_log::heads::head_line;
use chaperone_log::keys::{self, Signer};
use chaperone_log::merkle::{self, TreeHash};
use chaperone_log::verify::Report;
use chaperone_store::verify::{self, VerifyOptions};
use chaperone_store::{ActorRef, DecisionRecord, PolicyRef, RecordDraft, Store, Verdict};
use serde_json::json;

/// A store in its own temporary directory.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        Fixture { _dir: dir, path }
    }

    pub fn store(&self) -> Store {
        Store::open(&self.path).unwrap()
    }

    /// A copy of this fixture's store files in a new directory.
    pub fn copy(&self) -> Fixture {
        let copy = Fixture::new();
        for suffix in ["", ".key", ".pub", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", self.path.display()));
            if from.exists() {
                let to = format!("{}{suffix}", copy.path.display());
                std::fs::copy(&from, to).unwrap();
            }
        }
        copy
    }
}

/// A varied draft: the kind, actor and decision depend on `n`.
pub fn draft(account: &str, n: u64) -> RecordDraft {
    let time_ms = 1_700_000_000_000 + i64::try_from(n).unwrap() * 1000;
    let digest = blake3::hash(b"test module").to_hex().to_string();
    match n % 4 {
        0 => RecordDraft {
            account: account.into(),
            time_ms,
            kind: "sync".into(),
            actor: None,
            request: json!({"step": "user", "id": format!("u{n}"), "role": "admin"}),
            decision: None,
            effects: json!([]),
            policy: None,
            input: None,
        },
        1 => RecordDraft {
            account: account.into(),
            time_ms,
            kind: "grant".into(),
            actor: Some(ActorRef::User {
                id: "u1".into(),
                email: Some("ann@example.test".into()),
            }),
            request: json!({"environment": "prod", "scope": {"level": "admin"}, "expires_in": {"days": n}}),
            decision: Some(DecisionRecord {
                verdict: Verdict::Allow,
                rule: "CEL-WHO".into(),
                message: "an owner may grant".into(),
                rules: vec!["CEL-PLAN".into(), "CEL-WHO".into()],
            }),
            effects: json!([{"create_grant": {"environment": "prod", "expires_at": time_ms + 432_000_000}}]),
            policy: Some(PolicyRef {
                digest,
                vendor: "celigo".into(),
                version: "0.1.0".into(),
            }),
            input: Some(json!({"now": time_ms, "operation": "grant", "n": n})),
        },
        2 => RecordDraft {
            account: account.into(),
            time_ms,
            kind: "act".into(),
            actor: Some(ActorRef::Agent {
                email: "sam@vendor.test".into(),
            }),
            request: json!({"action": {"name": "users.update", "environment": "prod"}}),
            decision: Some(DecisionRecord {
                verdict: Verdict::Deny,
                rule: "CEL-PERMS".into(),
                message: "agents never change users: \"no\"\n".into(),
                rules: vec![],
            }),
            effects: json!([]),
            policy: Some(PolicyRef {
                digest,
                vendor: "celigo".into(),
                version: "0.1.0".into(),
            }),
            input: Some(json!({"now": time_ms, "operation": "act"})),
        },
        _ => RecordDraft {
            account: account.into(),
            time_ms,
            kind: "expire".into(),
            actor: None,
            request: json!({"grant": format!("g{n}")}),
            decision: None,
            effects: json!([{"expire_grant": format!("g{n}")}]),
            policy: None,
            input: None,
        },
    }
}

/// Appends `count` records to `account`, in one write job.
pub fn append_many(store: &Store, account: &str, count: u64) {
    let account = account.to_owned();
    let start = store.head(&account).unwrap().map_or(0, |h| h.seq.get());
    store
        .write(move |tx| {
            for n in start + 1..=start + count {
                tx.append(&draft(&account, n))?;
            }
            Ok::<_, chaperone_store::StoreError>(())
        })
        .unwrap();
}

/// The standard tamper fixture: `acme` with 10 records, `globex` with 6 and
/// `initech` with 4; a checkpoint when `acme` had 3 records, and one at the
/// end. The store is closed when this returns.
pub fn populated() -> Fixture {
    let fixture = Fixture::new();
    let store = fixture.store();
    append_many(&store, "acme", 3);
    append_many(&store, "globex", 2);
    store.checkpoint(1_700_000_500_000).unwrap();
    append_many(&store, "acme", 7);
    append_many(&store, "globex", 4);
    append_many(&store, "initech", 4);
    store.checkpoint(1_700_000_900_000).unwrap();
    drop(store);
    fixture
}

/// A raw connection for tampering, with the append-only triggers dropped (as
/// an attacker with the file would).
pub fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_records_no_update;
         DROP TRIGGER IF EXISTS audit_records_no_delete;
         DROP TRIGGER IF EXISTS audit_checkpoints_no_update;
         DROP TRIGGER IF EXISTS audit_checkpoints_no_delete;
         DROP TRIGGER IF EXISTS audit_checkpoint_heads_no_update;
         DROP TRIGGER IF EXISTS audit_checkpoint_heads_no_delete;
         PRAGMA ignore_check_constraints = ON;
         PRAGMA foreign_keys = OFF;",
    )
    .unwrap();
    conn
}

/// A version 1 checkpoint note, as stores signed them before checkpoints
/// stopped naming accounts (`docs/audit-format.md`, "Checkpoints"): every
/// head listed, sorted by account id, and the root over them in that order.
/// Built here from the format, since the log no longer writes one.
pub fn v1_note(signer: &Signer, time_ms: i64, mut heads: Vec<(String, ChainHead)>) -> String {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    heads.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let lines: Vec<String> = heads.iter().map(|(a, h)| head_line(a, h)).collect();
    let leaves: Vec<TreeHash> = lines
        .iter()
        .map(|line| merkle::leaf_hash(line.as_bytes()))
        .collect();
    let mut text = format!(
        "{}\n{}\n{}\ntime {time_ms}\n",
        signer.name(),
        heads.len(),
        base64.encode(merkle::root(&leaves).as_bytes())
    );
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let mut blob = signer.verifier().id().to_vec();
    blob.extend_from_slice(&signer.sign(text.as_bytes()).to_bytes());
    format!(
        "{text}\n\u{2014} {} {}\n",
        signer.name(),
        base64.encode(&blob)
    )
}

/// Stores a checkpoint with the heads its tree commits to, as the store
/// does (a version 2 `cp`) or did before (a version 1 note, no kept heads):
/// for a signer who signs what they like, or a store from before version 4.
/// Returns its id.
pub fn store_checkpoint(
    conn: &rusqlite::Connection,
    cp: &Checkpoint,
    heads: &[(String, ChainHead)],
) -> i64 {
    conn.execute(
        "INSERT INTO audit_checkpoints (time_ms, tree_size, root, note) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![
            cp.time_ms,
            i64::try_from(cp.tree_size).unwrap(),
            cp.root.as_bytes().as_slice(),
            cp.note
        ],
    )
    .unwrap();
    let id = conn.last_insert_rowid();
    if cp.listed.is_none() {
        for (account, head) in heads {
            conn.execute(
                "INSERT INTO audit_checkpoint_heads (checkpoint, account, seq, hash) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id, account, head.seq.to_i64(), head.hash.as_bytes().as_slice()],
            )
            .unwrap();
        }
    }
    id
}

/// The store's signing key.
pub fn signer(fixture: &Fixture) -> Signer {
    keys::load_signer(&fixture.path).unwrap().unwrap()
}

/// Verifies with the store's public key (and `extra` options), with both the
/// parallel fast path and the reference verifier, which must agree.
pub fn verify_with(path: &Path, mut options: VerifyOptions) -> Report {
    if options.verifier.is_none() {
        options.verifier = keys::load_verifier(&keys::public_key_path(path)).ok();
    }
    let fast = verify::verify_store(path, &options).unwrap();
    options.sequential = true;
    let reference = verify::verify_store(path, &options).unwrap();
    assert_eq!(
        fast, reference,
        "the fast path and the reference verifier disagree"
    );
    fast
}

pub fn verify(path: &Path) -> Report {
    verify_with(path, VerifyOptions::default())
}

/// The failure reported for `account`: its sequence number and reason code.
pub fn failure(report: &Report, account: &str) -> (u64, &'static str) {
    let failure = report
        .failure_for(account)
        .unwrap_or_else(|| panic!("no failure for `{account}` in {report:#?}"));
    (failure.seq.map_or(0, |s| s.get()), failure.problem.code())
}
