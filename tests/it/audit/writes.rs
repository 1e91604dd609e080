//! The store's write semantics: group commit, per-job savepoints, audit
//! first, and the read side.

use std::collections::BTreeMap;

use chaperone_log::AuditError;
use chaperone_log::keys;
use chaperone_log::merkle;
use chaperone_store::{
    DecisionCommit, SCHEMA_VERSION, StateVersion, Storage as _, Store, StoreError, WriteError,
    WriteFailure,
};
use rusqlite::params;

use super::{Fixture, draft, populated, verify};

/// A state table of the tests' own, changed in the same jobs as appends.
fn with_state_table(store: &Store) {
    store
        .write(|tx| {
            tx.conn().execute_batch(
                "CREATE TABLE IF NOT EXISTS test_state (account TEXT, seq INTEGER, PRIMARY KEY (account, seq))",
            )
        })
        .unwrap();
}

/// How many rows `test_state` holds.
fn state_rows(store: &Store) -> i64 {
    store
        .read(|c| c.query_row("SELECT COUNT(*) FROM test_state", [], |row| row.get(0)))
        .unwrap()
}

#[test]
fn concurrent_appenders_get_contiguous_chains_and_state_in_step() {
    let fixture = Fixture::new();
    let store = fixture.store();
    with_state_table(&store);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for n in 0..25 {
                    let account = format!("acct-{}", (t + n) % 4);
                    let appended = store
                        .write(move |tx| {
                            let appended = tx.append(&draft(&account, n))?;
                            tx.conn().execute(
                                "INSERT INTO test_state (account, seq) VALUES (?1, ?2)",
                                params![account, appended.seq.to_i64()],
                            )?;
                            Ok::<_, StoreError>((account, appended))
                        })
                        .unwrap();
                    seen.push(appended);
                }
                seen
            })
        })
        .collect();
    let mut acked: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for thread in threads {
        for (account, appended) in thread.join().unwrap() {
            acked.entry(account).or_default().push(appended.seq.get());
        }
    }
    for (account, mut seqs) in acked {
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=100).collect::<Vec<u64>>(), "{account}");
        let state: i64 = store
            .read(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM test_state WHERE account = ?1",
                    [&account],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(state, 100);
    }
    assert_eq!(
        store.count_by_kind(None).unwrap().values().sum::<u64>(),
        400
    );
    assert!(store.verify(&Default::default()).unwrap().is_ok());
}

#[test]
fn a_failing_job_rolls_back_only_itself() {
    let fixture = Fixture::new();
    let store = fixture.store();
    with_state_table(&store);
    // Many concurrent jobs, every third fails after appending and changing
    // state; the others must commit, the failing ones leave nothing.
    let threads: Vec<_> = (0..12_u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                store.write(move |tx| {
                    let account = format!("a{t}");
                    let appended = tx.append(&draft(&account, t))?;
                    tx.conn().execute(
                        "INSERT INTO test_state (account, seq) VALUES (?1, ?2)",
                        params![account, appended.seq.to_i64()],
                    )?;
                    if t % 3 == 0 {
                        return Err(StoreError::Audit(AuditError::InvalidDraft(
                            "refused by the test".into(),
                        )));
                    }
                    Ok(appended)
                })
            })
        })
        .collect();
    for (t, thread) in threads.into_iter().enumerate() {
        let result = thread.join().unwrap();
        let account = format!("a{t}");
        let head = store.head(&account).unwrap();
        if t % 3 == 0 {
            assert!(matches!(
                result,
                Err(WriteError::Job(StoreError::Audit(
                    AuditError::InvalidDraft(_)
                )))
            ));
            assert_eq!(head, None);
        } else {
            assert_eq!(result.unwrap().seq.get(), 1);
            assert_eq!(head.unwrap().seq.get(), 1);
        }
    }
    let rows = state_rows(&store);
    assert_eq!(rows, 8);
    assert!(store.verify(&Default::default()).unwrap().is_ok());
}

#[test]
fn a_change_without_an_audit_record_is_rolled_back() {
    let fixture = Fixture::new();
    let store = fixture.store();
    with_state_table(&store);
    let result = store.write(|tx| {
        tx.conn()
            .execute("INSERT INTO test_state (account, seq) VALUES ('x', 1)", [])
    });
    assert!(matches!(result, Err(WriteError::Unaudited)), "{result:?}");
    let rows = state_rows(&store);
    assert_eq!(rows, 0);
}

#[test]
fn a_failed_append_fails_the_job_even_if_the_job_ignores_it() {
    let fixture = Fixture::new();
    let store = fixture.store();
    with_state_table(&store);
    let result = store.write(|tx| {
        tx.conn()
            .execute("INSERT INTO test_state (account, seq) VALUES ('x', 1)", [])?;
        let ignored = tx.append(&draft("not a valid id", 1));
        assert!(matches!(
            ignored,
            Err(StoreError::Audit(AuditError::InvalidAccount(_)))
        ));
        Ok::<_, rusqlite::Error>(())
    });
    assert!(matches!(result, Err(WriteError::Unaudited)), "{result:?}");
    let rows = state_rows(&store);
    assert_eq!(rows, 0);
}

#[test]
fn a_panicking_job_is_rolled_back_and_the_store_keeps_working() {
    let fixture = Fixture::new();
    let store = fixture.store();
    let result = store.write(|tx| -> Result<(), StoreError> {
        tx.append(&draft("acme", 1)).unwrap();
        panic!("a bug in a job")
    });
    assert!(matches!(result, Err(WriteError::Panicked)));
    assert_eq!(store.head("acme").unwrap(), None);
    let appended = store.write(|tx| tx.append(&draft("acme", 1))).unwrap();
    assert_eq!(appended.seq.get(), 1);
}

#[test]
fn records_read_back_decoded_and_in_order() {
    let fixture = populated();
    let store = fixture.store();
    let records = store.records("acme").unwrap();
    assert_eq!(records.len(), 10);
    for (i, stored) in records.iter().enumerate() {
        let n = u64::try_from(i).unwrap() + 1;
        assert_eq!(stored.seq.get(), n);
        assert_eq!(stored.record.seq, n);
        assert_eq!(stored.record.account, "acme");
        let expected = draft("acme", n);
        assert_eq!(stored.record.kind, expected.kind);
        assert_eq!(stored.record.actor, expected.actor);
        assert_eq!(stored.record.decision, expected.decision);
        assert_eq!(stored.record.request, expected.request);
        assert_eq!(stored.record.input, expected.input);
    }
    assert_eq!(store.head("acme").unwrap().unwrap().hash, records[9].hash);
    assert_eq!(store.accounts().unwrap(), ["acme", "globex", "initech"]);
    let acme = store.count_by_kind(Some("acme")).unwrap();
    assert_eq!(
        acme,
        BTreeMap::from([
            ("act".to_owned(), 3),
            ("expire".to_owned(), 2),
            ("grant".to_owned(), 3),
            ("sync".to_owned(), 2)
        ])
    );
    let all: u64 = store.count_by_kind(None).unwrap().values().sum();
    assert_eq!(all, 20);
}

#[test]
fn the_store_is_versioned_and_keyed() {
    let fixture = Fixture::new();
    let store = fixture.store();
    let version: i64 = store
        .read(|c| c.query_row("PRAGMA user_version", [], |row| row.get(0)))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = store
        .read(|c| c.query_row("PRAGMA journal_mode", [], |row| row.get(0)))
        .unwrap();
    assert_eq!(mode, "wal");
    let public = store.verifier().unwrap();
    drop(store);
    // Reopening migrates nothing and keeps the key.
    let store = fixture.store();
    assert_eq!(store.verifier().unwrap(), public);
    drop(store);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(keys::private_key_path(&fixture.path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Without its private key the store opens, but cannot sign.
    std::fs::remove_file(keys::private_key_path(&fixture.path)).unwrap();
    let store = fixture.store();
    assert!(matches!(
        store.checkpoint(1),
        Err(StoreError::NoSigningKey(_))
    ));
    assert_eq!(store.verifier().unwrap(), public);
}

/// A store made by an older release is brought to the newest schema in
/// place when opened, and keeps its rows.
#[test]
fn a_store_of_an_older_schema_is_migrated_in_place() {
    use chaperone_store::migrations::MIGRATIONS;
    let fixture = Fixture::new();
    {
        let conn = rusqlite::Connection::open(&fixture.path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        for migration in MIGRATIONS.iter().filter(|m| m.version <= 2) {
            conn.execute_batch(migration.sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts (id, policy, plan) VALUES ('acme', 'celigo', 'paid');
             INSERT INTO grants (id, account, environment, granted_by, scope, expires_at, created_at, metadata)
             VALUES ('grant-1', 'acme', 'prod', 'ada', '{\"level\":\"admin\"}', 100, 0, '{}');",
        )
        .unwrap();
    }
    let store = fixture.store();
    let (version, indexes, grants) = store
        .read(|c| {
            let version: i64 = c.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            let indexes: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'grants' AND sql IS NOT NULL ORDER BY name")?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let grants: i64 = c.query_row("SELECT COUNT(*) FROM grants", [], |row| row.get(0))?;
            Ok((version, indexes, grants))
        })
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(indexes, ["grants_live"]);
    assert_eq!(grants, 1);
    // Accounts start at state version 0, and their changes bump it.
    let version = |store: &Store| {
        store
            .read_account("acme", 0, None)
            .unwrap()
            .unwrap()
            .version
    };
    let before = version(&store);
    assert_eq!(before.get(), 0);
    let revoke = chaperone_model::Effect::RevokeGrant("grant-1".into());
    decide(&store, before, vec![revoke]).unwrap();
    assert!(version(&store) > before);
}

/// The per-request reads of grants (the snapshot's live grants, the
/// expiries due) go through the index of live grants, so their cost does not
/// grow with an account's history of expired and revoked grants.
#[test]
fn grant_reads_use_the_index_of_live_grants() {
    let fixture = Fixture::new();
    let store = fixture.store();
    use chaperone_store::state::{
        ALL_DUE_EXPIRIES_SQL, ANY_DUE_EXPIRY_SQL, DUE_EXPIRIES_SQL, LIVE_GRANTS_SQL,
    };
    let queries: [(&str, &[&dyn rusqlite::ToSql]); 4] = [
        (LIVE_GRANTS_SQL, params!["acme", 0]),
        (DUE_EXPIRIES_SQL, params![0, "acme"]),
        (ANY_DUE_EXPIRY_SQL, params![0, "acme"]),
        (ALL_DUE_EXPIRIES_SQL, params![0]),
    ];
    for (query, args) in queries {
        let plan: Vec<String> = store
            .read(|c| {
                c.prepare(&format!("EXPLAIN QUERY PLAN {query}"))?
                    .query_map(args, |row| row.get::<_, String>(3))?
                    .collect()
            })
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX grants_live")),
            "{query}: {plan:?}"
        );
    }
}

/// SQLite is built without its global memory accounting and shared page
/// cache group (`.cargo/config.toml`), whose two process-wide mutexes every
/// reader thread would contend on.
#[test]
fn sqlite_is_built_without_global_memory_accounting() {
    let fixture = Fixture::new();
    let store = fixture.store();
    let options: Vec<String> = store
        .read(|c| {
            c.prepare("PRAGMA compile_options")?
                .query_map([], |row| row.get(0))?
                .collect()
        })
        .unwrap();
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "{options:?}"
    );
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "{options:?}"
    );
}

#[test]
fn every_head_has_an_inclusion_proof_in_the_latest_checkpoint() {
    let fixture = Fixture::new();
    let store = fixture.store();
    for i in 0..7 {
        super::append_many(&store, &format!("tenant-{i}"), i + 1);
    }
    let cp = store.checkpoint(1_700_000_000_000).unwrap();
    assert_eq!(store.latest_checkpoint().unwrap().unwrap(), cp);
    // Checkpoint times never go back (verifiers order checkpoints by time).
    assert!(matches!(
        store.checkpoint(1_699_999_999_999),
        Err(StoreError::Audit(AuditError::CheckpointTime { .. }))
    ));
    assert_eq!(cp.tree_size, 7);
    // The note names no account: the store keeps the heads, one per chain.
    assert!(!cp.note.contains("tenant-"), "{}", cp.note);
    let kept = store
        .read(|c| chaperone_store::checkpoints::kept_heads(c, 1))
        .unwrap()
        .unwrap();
    assert_eq!((kept.len(), kept.root()), (7, cp.root));
    for (account, head) in kept.iter() {
        let proof = kept.proof(account).unwrap();
        assert_eq!(proof.proof.size.0, 7);
        assert_eq!(proof.head, head);
        let leaf = merkle::leaf_hash(chaperone_log::heads::head_line(account, &head).as_bytes());
        merkle::verify_inclusion(&leaf, &proof.proof, &cp.root).unwrap();
        assert_eq!(store.head(account).unwrap().as_ref(), Some(&head));
    }
    drop(store);
    assert!(verify(&fixture.path).is_ok());
}

#[test]
fn the_writer_refuses_updates_and_deletes_of_checkpoints_and_their_heads() {
    let fixture = populated();
    let store = fixture.store();
    for sql in [
        "DELETE FROM audit_checkpoint_heads WHERE account = 'acme'",
        "UPDATE audit_checkpoint_heads SET seq = 1",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_checkpoints SET time_ms = 0",
    ] {
        let result = store.write(move |tx| {
            tx.allow_unaudited_changes();
            tx.conn().execute(sql, [])
        });
        assert!(result.is_err(), "{sql}");
    }
    drop(store);
    assert!(verify(&fixture.path).is_ok());
}

#[test]
fn reads_do_not_wait_for_the_writer() {
    let fixture = Fixture::new();
    let store = fixture.store();
    super::append_many(&store, "acme", 3);
    let (started, wait) = std::sync::mpsc::channel();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.write(move |tx| {
                tx.append(&draft("acme", 4))?;
                started.send(()).unwrap();
                held.recv().unwrap();
                Ok::<_, StoreError>(())
            })
        })
    };
    wait.recv().unwrap();
    // The writer holds its transaction open; a read sees the last commit.
    assert_eq!(store.head("acme").unwrap().unwrap().seq.get(), 3);
    release.send(()).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(store.head("acme").unwrap().unwrap().seq.get(), 4);
}

/// A state step of the request format, parsed.
fn step(value: serde_json::Value) -> chaperone_model::StateStep {
    match chaperone::service::parse_request(&value).unwrap() {
        chaperone::service::ParsedRequest::State(step) => step,
        chaperone::service::ParsedRequest::Operation(_) => {
            unreachable!("not a state step: {value}")
        }
    }
}

/// Commits a decision of `ada` in `acme` at `version` with `effects`.
fn decide(
    store: &Store,
    version: StateVersion,
    effects: Vec<chaperone_model::Effect>,
) -> Result<chaperone_store::Committed, WriteFailure> {
    let mut record = chaperone_store::RecordDraft {
        account: "acme".into(),
        time_ms: 1,
        kind: "custom".into(),
        actor: Some(chaperone_store::ActorRef::User {
            id: "ada".into(),
            email: None,
        }),
        request: serde_json::json!({}),
        decision: Some(chaperone_store::DecisionRecord {
            verdict: chaperone_store::Verdict::Allow,
            rule: "R".into(),
            message: "m".into(),
            rules: vec![],
        }),
        effects: serde_json::Value::Null,
        policy: None,
        input: None,
    };
    let mut commit = DecisionCommit::new(
        &mut record,
        chaperone_model::Actor::User("ada".into()),
        effects,
    )
    .unwrap();
    commit.expected_version = version;
    store.commit_decision(commit)
}

/// An account's state version changes with each change of what its
/// snapshot is made of (each state step, each kind of effect, a recorded
/// `expire`) and with nothing else (a decision without effects, a module
/// kept). A decision is written only at the version it was decided on, and
/// then after whatever the chain's head is.
#[test]
fn the_state_version_changes_exactly_when_the_account_state_does() {
    use chaperone_model::{
        Effect, Entry, GrantUpdate, NewGrant, NewServiceAccount, Origin, RightsUpdate, Setting,
    };
    let fixture = Fixture::new();
    let store = fixture.store();
    let read = |store: &Store, at: i64| store.read_account("acme", at, None).unwrap().unwrap();
    let steps = [
        serde_json::json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
               "environments": [{"id": "prod", "kind": "production"}]}),
        serde_json::json!({"op": "user", "account": "acme", "id": "ada", "email": "ada@x.test", "role": "admin"}),
        serde_json::json!({"op": "user", "account": "acme", "id": "bob", "email": "bob@x.test", "role": "admin"}),
        serde_json::json!({"op": "remove_user", "account": "acme", "id": "bob"}),
        serde_json::json!({"op": "integration", "account": "acme", "environment": "prod", "id": "shop"}),
        serde_json::json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "trial",
               "environments": [{"id": "prod", "kind": "production"}]}),
    ];
    let mut version = None;
    for value in steps {
        store.sync(0, &step(value.clone()), value.clone()).unwrap();
        let now = read(&store, 0).version;
        assert!(version < Some(now), "{value}");
        version = Some(now);
    }
    let mut version = version.unwrap();

    // Records that change nothing leave it; the decision after them is
    // written at the chain's head.
    let first = decide(&store, version, vec![]).unwrap();
    let second = decide(&store, version, vec![]).unwrap();
    assert_eq!(second.appended.seq.get(), first.appended.seq.get() + 1);
    assert_eq!(read(&store, 0).version, version);

    let grant = |expires_at| {
        Effect::CreateGrant(NewGrant {
            environment: "prod".into(),
            grantee: None,
            scope: "{}".into(),
            expires_at,
            metadata: "{}".into(),
        })
    };
    let effects = [
        grant(Some(100)),
        grant(None),
        Effect::UpdateGrant(GrantUpdate {
            id: "grant-2".into(),
            scope: "{\"level\":\"admin\"}".into(),
            expires_at: None,
            metadata: "{}".into(),
        }),
        Effect::RevokeGrant("grant-2".into()),
        Effect::CreateServiceAccount(NewServiceAccount {
            agent_email: "sam@xentral.com".into(),
            rights: vec!["*".into()],
            origin: Origin::Consent,
            description: "d".into(),
        }),
        Effect::SetServiceAccountRights(RightsUpdate {
            id: "sa-1".into(),
            rights: vec![],
        }),
        Effect::RemoveServiceAccount("sa-1".into()),
        Effect::SetSetting(Setting {
            key: "k".into(),
            value: "true".into(),
        }),
        Effect::CreateInvitation("sam@xentral.com".into()),
        Effect::UseInvitation("inv-1".into()),
        Effect::PutEntry(Entry {
            key: "k".into(),
            value: "1".into(),
        }),
        Effect::DeleteEntry("k".into()),
    ];
    for effect in effects {
        let before = version;
        decide(&store, version, vec![effect.clone()]).unwrap();
        version = read(&store, 0).version;
        assert!(version > before, "{effect:?}");
        // A decision made before that change is not written.
        let head = store.head("acme").unwrap();
        assert!(matches!(
            decide(&store, before, vec![]),
            Err(WriteFailure::Stale)
        ));
        assert_eq!(store.head("acme").unwrap(), head);
    }

    // Recording an `expire` is a change: the grant leaves every snapshot.
    assert!(read(&store, 100).expiry_due && !read(&store, 99).expiry_due);
    assert_eq!(store.sweep_expiries(100).unwrap(), 1);
    assert!(!read(&store, 100).expiry_due);
    assert!(read(&store, 0).version > version);
}

/// Every table of account state beside the audit log (each has an
/// `account` column) bumps the account's state version on insert, update
/// and delete, and so does a change of the account's own row: a table
/// added later without its triggers fails here. The webhook outbox's
/// tables name accounts too, but no snapshot reads them: they are not
/// account state.
#[test]
fn every_table_of_account_state_bumps_the_state_version() {
    let fixture = Fixture::new();
    let store = fixture.store();
    let (tables, triggers) = store
        .read(|c| {
            let tables: Vec<String> = c
                .prepare(
                    "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
                     WHERE m.type = 'table' AND p.name = 'account' AND m.name NOT LIKE 'audit_%'
                       AND m.name NOT LIKE 'webhook_%'
                     ORDER BY m.name",
                )?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let triggers: Vec<(String, String)> = c
                .prepare("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok((tables, triggers))
        })
        .unwrap();
    assert_eq!(tables.len(), 8, "{tables:?}");
    let bumps = |table: &str, event: &str| {
        triggers.iter().any(|(on, sql)| {
            on == table
                && sql.contains(&format!("AFTER {event}"))
                && sql.contains("SET version = version + 1")
        })
    };
    for table in &tables {
        for event in ["INSERT", "UPDATE", "DELETE"] {
            assert!(bumps(table, event), "{table}: no trigger after {event}");
        }
    }
    assert!(bumps("accounts", "UPDATE OF id, policy, plan, seat_limit"));
}
