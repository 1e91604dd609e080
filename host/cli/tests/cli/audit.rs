//! `chaperone init` and `chaperone audit verify|export|checkpoint`, driven as
//! an auditor would: exit codes, the lines they print, `--json`.

#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chaperone_store::StoreError;
use chaperone_store::{RecordDraft, Store};
use serde_json::{Value, json};

fn chaperone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(args)
        .env_remove("CHAPERONE_DB")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// `chaperone init`, then 5 records in `acme` and 3 in `globex`.
fn store_with_records(dir: &Dir) -> PathBuf {
    let db = dir.path("audit.db");
    let init = chaperone(&["init", "--db", &dir.arg("audit.db")]);
    assert_eq!(code(&init), 0, "{init:?}");
    let store = Store::open(&db).unwrap();
    for (account, count) in [("acme", 5), ("globex", 3)] {
        store
            .write(move |tx| {
                for n in 0..count {
                    tx.append(&RecordDraft {
                        account: account.into(),
                        time_ms: 1_700_000_000_000 + n,
                        kind: "sync".into(),
                        actor: None,
                        request: json!({"step": "user", "n": n}),
                        decision: None,
                        effects: json!([]),
                        policy: None,
                        input: None,
                    })?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
    db
}

fn tamper(db: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_records_no_update;
         DROP TRIGGER IF EXISTS audit_records_no_delete;
         DROP TRIGGER IF EXISTS audit_checkpoints_no_delete;
         DROP TRIGGER IF EXISTS audit_checkpoint_heads_no_delete;
         PRAGMA foreign_keys = OFF;",
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn init_creates_a_store_and_its_key_pair_once() {
    let dir = Dir::new();
    let init = chaperone(&["init", "--db", &dir.arg("x.db")]);
    assert_eq!(code(&init), 0);
    assert!(stdout(&init).contains("created store"));
    assert!(dir.path("x.db").exists() && dir.path("x.db.pub").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path("x.db.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = chaperone(&["init", "--db", &dir.arg("x.db")]);
    assert_eq!(code(&again), 2);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn verify_passes_then_names_the_bad_record() {
    let dir = Dir::new();
    let db = store_with_records(&dir);
    let ok = chaperone(&["audit", "verify", "--db", &dir.arg("audit.db")]);
    assert_eq!(code(&ok), 0, "{ok:?}");
    assert_eq!(
        stdout(&ok).trim(),
        // acme, globex, and `@registry` (init installed the built-in modules
        // and made the admin credential: 3 records).
        "ok: verified 3 accounts, 11 records, 0 checkpoints"
    );

    tamper(
        &db,
        "DELETE FROM audit_records WHERE account = 'acme' AND seq = 3",
    );
    let bad = chaperone(&["audit", "verify", "--db", &dir.arg("audit.db")]);
    assert_eq!(code(&bad), 1);
    let text = stdout(&bad);
    assert!(text.contains("FAIL account `acme` record 3: gap"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("FAILED: 1 problem"),
        "{text}"
    );

    let json = chaperone(&["audit", "verify", "--db", &dir.arg("audit.db"), "--json"]);
    assert_eq!(code(&json), 1);
    let report: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["failures"][0]["account"], "acme");
    assert_eq!(report["failures"][0]["seq"], 3);
    assert_eq!(report["failures"][0]["reason"], "gap");

    let globex = chaperone(&[
        "audit",
        "verify",
        "--db",
        &dir.arg("audit.db"),
        "--account",
        "globex",
    ]);
    assert_eq!(code(&globex), 0);
}

/// `audit checkpoint` of `audit.db`, written to `cp.txt` as well.
fn checkpoint_to_file(dir: &Dir) -> Output {
    chaperone(&[
        "audit",
        "checkpoint",
        "--db",
        &dir.arg("audit.db"),
        "--out",
        &dir.arg("cp.txt"),
    ])
}

#[test]
fn a_checkpoint_kept_outside_shows_a_cut_tail() {
    let dir = Dir::new();
    let db = store_with_records(&dir);
    let cp = checkpoint_to_file(&dir);
    assert_eq!(code(&cp), 0, "{cp:?}");
    assert!(stdout(&cp).contains("wrote a checkpoint of 3 chains"));
    let note = std::fs::read_to_string(dir.path("cp.txt")).unwrap();
    // The note names no account: the store keeps the heads it commits to.
    assert!(!note.contains("acme") && !note.contains("globex"), "{note}");

    tamper(
        &db,
        "DELETE FROM audit_records WHERE account = 'acme' AND seq > 3;
         UPDATE audit_heads SET seq = 3, hash = (SELECT hash FROM audit_records WHERE account = 'acme' AND seq = 3) WHERE account = 'acme';
         DELETE FROM audit_checkpoints;",
    );
    // Inside the store, nothing shows any more...
    let inside = chaperone(&["audit", "verify", "--db", &dir.arg("audit.db")]);
    assert_eq!(code(&inside), 0);
    // ...but the checkpoint kept outside does.
    let outside = chaperone(&[
        "audit",
        "verify",
        "--db",
        &dir.arg("audit.db"),
        "--checkpoint",
        &dir.arg("cp.txt"),
    ]);
    assert_eq!(code(&outside), 1);
    assert!(
        stdout(&outside).contains("account `acme` record 4: truncated"),
        "{}",
        stdout(&outside)
    );

    // With the heads the store kept for it gone too, the note still fails
    // the store: nothing there reproduces its root.
    tamper(&db, "DELETE FROM audit_checkpoint_heads;");
    let outside = chaperone(&[
        "audit",
        "verify",
        "--db",
        &dir.arg("audit.db"),
        "--checkpoint",
        &dir.arg("cp.txt"),
        "--json",
    ]);
    assert_eq!(code(&outside), 1);
    let report: Value = serde_json::from_str(&stdout(&outside)).unwrap();
    assert_eq!(report["failures"][0]["reason"], "bad-heads", "{report}");
    assert_eq!(report["failures"][0]["account"], Value::Null, "{report}");
    assert!(
        report["failures"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cp.txt"),
        "{report}"
    );
}

/// An account whose whole chain is gone is not an unknown account when a
/// checkpoint names it: that is a failure, not a usage error.
#[test]
fn a_chain_deleted_whole_fails_against_its_checkpoint() {
    let dir = Dir::new();
    let db = store_with_records(&dir);
    let cp = checkpoint_to_file(&dir);
    assert_eq!(code(&cp), 0, "{cp:?}");
    let verify_globex = || {
        let db = dir.arg("audit.db");
        chaperone(&["audit", "verify", "--db", &db, "--account", "globex"])
    };
    let ok = verify_globex();
    assert_eq!(code(&ok), 0, "{ok:?}");
    tamper(
        &db,
        "DELETE FROM audit_records WHERE account = 'globex';
         DELETE FROM audit_heads WHERE account = 'globex';",
    );
    let gone = verify_globex();
    assert_eq!(code(&gone), 1, "{gone:?}");
    assert!(
        stdout(&gone).contains("account `globex` record 1: truncated"),
        "{}",
        stdout(&gone)
    );
}

/// `audit replay` re-evaluates a store's decisions (here, a scenario's
/// store kept by the conformance runner) and finds them all the same; an
/// account the log does not know is a usage error.
#[test]
fn replay_re_evaluates_recorded_decisions() {
    let dir = Dir::new();
    let scenario = dir.path("s.json");
    std::fs::write(
        &scenario,
        json!({"name": "replay", "steps": [
            {"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
             "environments": [{"id": "prod", "kind": "production"}]},
            {"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "admin"},
            {"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
             "scope": {"level": "admin"}, "expires_in": {"days": 5},
             "expect": {"decision": "allow"}},
            {"op": "act", "account": "acme", "agent": "sam@celigo.com",
             "action": {"name": "users.update", "environment": "prod"},
             "expect": {"decision": "deny", "rule": "CEL-PERMS"}}
        ]})
        .to_string(),
    )
    .unwrap();
    let run = chaperone(&[
        "conformance",
        "run",
        &dir.arg("s.json"),
        "--store",
        &dir.arg("stores"),
    ]);
    assert_eq!(code(&run), 0, "{run:?}");
    let db = dir.path("stores").join("s.db").display().to_string();
    let replay = chaperone(&["audit", "replay", "--db", &db]);
    assert_eq!(code(&replay), 0, "{replay:?}");
    assert_eq!(
        stdout(&replay).trim(),
        "2 replayed, 0 differ, 2 not policy-decided"
    );
    let unknown = chaperone(&["audit", "replay", "--db", &db, "--account", "nobody"]);
    assert_eq!(code(&unknown), 2);
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no audit records for account `nobody`"),
        "{unknown:?}"
    );
}

#[test]
fn checkpoint_prints_a_signed_note() {
    let dir = Dir::new();
    store_with_records(&dir);
    let cp = chaperone(&["audit", "checkpoint", "--db", &dir.arg("audit.db")]);
    assert_eq!(code(&cp), 0);
    let note = stdout(&cp);
    let lines: Vec<&str> = note.lines().collect();
    assert!(lines[0].starts_with("chaperone/"));
    assert_eq!(lines[1], "3"); // acme, globex, @registry
    assert_eq!(lines[3], "version 2");
    assert!(lines[4].starts_with("time "));
    assert_eq!(lines[5], "");
    assert_eq!(lines.len(), 7, "{note}");
    assert!(lines.last().unwrap().starts_with("\u{2014} chaperone/"));
    let missing = chaperone(&["audit", "checkpoint", "--db", &dir.arg("nope.db")]);
    assert_eq!(code(&missing), 2);
    assert!(!dir.path("nope.db").exists());
}

#[test]
fn an_export_verifies_offline_and_a_changed_one_does_not() {
    let dir = Dir::new();
    store_with_records(&dir);
    assert_eq!(
        code(&chaperone(&[
            "audit",
            "checkpoint",
            "--db",
            &dir.arg("audit.db")
        ])),
        0
    );
    let export = chaperone(&[
        "audit",
        "export",
        "--account",
        "acme",
        "--db",
        &dir.arg("audit.db"),
        "--out",
        &dir.arg("acme.jsonl"),
    ]);
    assert_eq!(code(&export), 0, "{export:?}");
    assert!(stdout(&export).contains(
        "exported 5 records of account `acme` with the latest checkpoint and its head's inclusion proof in it"
    ));

    // Offline: only the export and the public key, no store.
    std::fs::copy(dir.path("audit.db.pub"), dir.path("log.pub")).unwrap();
    std::fs::remove_file(dir.path("audit.db")).unwrap();
    let args = |file: &str| {
        vec![
            "audit".to_owned(),
            "verify".into(),
            "--export".into(),
            dir.arg(file),
            "--pubkey".into(),
            dir.arg("log.pub"),
        ]
    };
    let run = |file: &str| {
        let args = args(file);
        chaperone(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let ok = run("acme.jsonl");
    assert_eq!(code(&ok), 0, "{ok:?}");
    assert_eq!(
        stdout(&ok).trim(),
        "ok: verified 1 account, 5 records, 1 checkpoint"
    );

    let text = std::fs::read_to_string(dir.path("acme.jsonl")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.remove(2); // record 2
    std::fs::write(dir.path("cut.jsonl"), lines.join("\n") + "\n").unwrap();
    let bad = run("cut.jsonl");
    assert_eq!(code(&bad), 1);
    assert!(
        stdout(&bad).contains("account `acme` record 2: gap"),
        "{}",
        stdout(&bad)
    );

    let usage = chaperone(&["audit", "verify", "--export", &dir.arg("acme.jsonl")]);
    assert_eq!(code(&usage), 2);
}

#[test]
fn errors_are_usage_errors_not_verdicts() {
    let dir = Dir::new();
    let missing = chaperone(&["audit", "verify", "--db", &dir.arg("nope.db")]);
    assert_eq!(code(&missing), 2);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no store at"));
    let export = chaperone(&[
        "audit",
        "export",
        "--db",
        &dir.arg("nope.db"),
        "--account",
        "acme",
    ]);
    assert_eq!(code(&export), 2);
    store_with_records(&dir);
    let unknown = chaperone(&[
        "audit",
        "export",
        "--db",
        &dir.arg("audit.db"),
        "--account",
        "nobody",
    ]);
    assert_eq!(code(&unknown), 2);
    let unknown = chaperone(&[
        "audit",
        "verify",
        "--db",
        &dir.arg("audit.db"),
        "--account",
        "nobody",
    ]);
    assert_eq!(code(&unknown), 2);
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no audit records for account `nobody`"),
        "{unknown:?}"
    );
    // A checkpoint signed with another key than the one given.
    assert_eq!(
        code(&chaperone(&[
            "audit",
            "checkpoint",
            "--db",
            &dir.arg("audit.db")
        ])),
        0
    );
    let other = chaperone(&["init", "--db", &dir.arg("other.db")]);
    assert_eq!(code(&other), 0);
    let wrong_key = chaperone(&[
        "audit",
        "verify",
        "--db",
        &dir.arg("audit.db"),
        "--pubkey",
        &dir.arg("other.db.pub"),
    ]);
    assert_eq!(code(&wrong_key), 1);
    assert!(stdout(&wrong_key).contains("bad signature"));
}
