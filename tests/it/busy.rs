//! A busy account just works: operations sent concurrently to ONE account
//! through `Host::execute` are never refused for being concurrent, the
//! chain stays linear and verifies, and every decision is made on the
//! state its record follows: running the chain's requests again one at a
//! time, in chain order, on a fresh store gives the same chain byte for
//! byte, and every decision replays.

#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use chaperone::replay;
use chaperone::service::{Host, HostOptions, Outcome, ParsedRequest, ServiceError, parse_request};
use chaperone_log::keys::Verifier;
use chaperone_log::verify::Report;
use chaperone_log::{Appended, ChainHead, Checkpoint, StoredRecord};
use chaperone_model::{StateStep, Verdict};
use chaperone_store::export::ExportSummary;
use chaperone_store::verify::VerifyOptions;
use chaperone_store::{
    AccountRead, Committed, DecisionCommit, NamedObject, Storage, Store, StoreError, SyncError,
    WriteFailure,
};
use serde_json::{Value, json};

const START: i64 = 1_767_258_000_000; // 2026-01-01T09:00:00Z
const MINUTE: i64 = 60_000;

struct Fixture {
    _dir: tempfile::TempDir,
    host: Host,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(dir.path().join("store.db"), HostOptions::default()).unwrap();
    Fixture { _dir: dir, host }
}

/// Runs one request (a state step or an operation) at `at`.
fn run(host: &Host, at: i64, value: &Value) -> Result<Option<Outcome>, String> {
    match parse_request(value).map_err(|e| e.to_string())? {
        ParsedRequest::State(step) => host
            .sync(at, step, value.clone())
            .map(|_| None)
            .map_err(|e| e.to_string()),
        ParsedRequest::Operation(op) => host.execute(at, op).map(Some).map_err(|e| e.to_string()),
    }
}

fn op(host: &Host, at: i64, value: &Value) -> Outcome {
    run(host, at, value).unwrap().unwrap()
}

/// A paid Celigo account with an admin (`ada`) and one integration.
fn celigo_account(host: &Host, id: &str) {
    for step in [
        json!({"op": "account", "id": id, "policy": "celigo", "plan": "paid",
               "environments": [{"id": "prod", "kind": "production"}]}),
        json!({"op": "user", "account": id, "id": "ada", "email": "ada@x.test", "role": "admin"}),
        json!({"op": "integration", "account": id, "environment": "prod", "id": "shop"}),
    ] {
        run(host, START, &step).unwrap();
    }
}

fn grant(account: &str, expires_in: Value) -> Value {
    json!({"op": "grant", "account": account, "actor": "ada", "environment": "prod",
           "scope": {"level": "admin"}, "expires_in": expires_in})
}

fn modify(account: &str, grant: &str, days: i64) -> Value {
    json!({"op": "modify", "account": account, "actor": "ada", "grant": grant,
           "expires_in": {"days": days}})
}

fn revoke(account: &str, grant: &str) -> Value {
    json!({"op": "revoke", "account": account, "actor": "ada", "grant": grant})
}

fn act(account: &str, name: &str) -> Value {
    json!({"op": "act", "account": account, "agent": "sam@celigo.com",
           "action": {"name": name, "environment": "prod", "integration": "shop"}})
}

/// The chain of `account` verifies and is linear: records 1 to n.
fn assert_linear_and_verified(host: &Host, account: &str) -> Vec<StoredRecord> {
    let records = host.store().records(account).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq.get()).collect();
    let expected: Vec<u64> = (1..=u64::try_from(records.len()).unwrap()).collect();
    assert_eq!(seqs, expected, "the chain has a gap or a fork");
    let report = host
        .store()
        .verify(&VerifyOptions {
            account: Some(account.into()),
            ..VerifyOptions::default()
        })
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    records
}

/// Every recorded decision of `account` replays to the same decision from
/// its recorded input; returns how many replayed.
fn assert_replays(host: &Host, account: &str) -> u64 {
    let report = replay::replay(host.store(), host.runtime(), Some(account)).unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    report.replayed
}

/// Runs the requests of `account`'s chain again, one at a time in chain
/// order and at their recorded times, on a fresh store, and asserts that
/// this makes the very same chain: each decision (and its recorded input,
/// the snapshot it was decided on) is the one the state its record follows
/// gives. `expire` records are not requests: the `act` after them records
/// them again.
fn assert_serial_equivalent(host: &Host, account: &str) {
    let records = host.store().records(account).unwrap();
    let fresh = fixture();
    for stored in records.iter().filter(|r| r.record.kind != "expire") {
        run(&fresh.host, stored.record.time_ms, &stored.record.request).unwrap();
    }
    let again = fresh.host.store().records(account).unwrap();
    assert_eq!(again.len(), records.len());
    for (concurrent, serial) in records.iter().zip(&again) {
        assert!(
            concurrent.bytes == serial.bytes,
            "record {} ({}) differs from the one decided serially:\n{}\n{}",
            concurrent.seq,
            concurrent.record.kind,
            String::from_utf8_lossy(&concurrent.bytes),
            String::from_utf8_lossy(&serial.bytes),
        );
    }
}

/// 64 client threads send grants, modifies and acts to ONE account, with
/// grants expiring while they do (so acts record `expire`s): none is
/// refused, each answer is its record, the chain is linear and verifies,
/// every decision replays, and the chain is what deciding its requests one
/// at a time in chain order makes.
#[test]
fn a_busy_account_refuses_no_concurrent_operation_and_decides_each_on_the_state_its_record_follows()
{
    const THREADS: usize = 64;
    const PER_THREAD: usize = 4;
    let f = fixture();
    celigo_account(&f.host, "acme");
    let kept = op(&f.host, START, &grant("acme", json!({"days": 5})))
        .created
        .unwrap();
    // A minute passes per operation and threads' grants last an hour.
    let clock = Arc::new(AtomicI64::new(1));
    let barrier = Arc::new(Barrier::new(THREADS));
    let host = Arc::new(f.host.clone());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (host, clock, barrier, kept) =
                (host.clone(), clock.clone(), barrier.clone(), kept.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..PER_THREAD)
                    .map(|i| {
                        let value = match (t * PER_THREAD + i) % 5 {
                            0 => grant("acme", json!({"hours": 1})),
                            1 => modify("acme", &kept, 1 + i64::try_from(t % 4).unwrap()),
                            2 => act("acme", "users.update"),
                            _ => act("acme", "flow.run"),
                        };
                        let at = START + clock.fetch_add(1, Ordering::Relaxed) * MINUTE;
                        let outcome = run(&host, at, &value);
                        (value, outcome)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.join().unwrap());
    }
    let refused: Vec<_> = answers.iter().filter(|(_, o)| o.is_err()).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");

    let records = assert_linear_and_verified(&f.host, "acme");
    let mut seqs = BTreeSet::new();
    for (value, outcome) in &answers {
        let outcome = outcome.as_ref().unwrap().as_ref().unwrap();
        assert!(
            seqs.insert(outcome.seq),
            "two answers name record {}",
            outcome.seq
        );
        let record = &records[usize::try_from(outcome.seq - 1).unwrap()].record;
        let decision = record.decision.as_ref().unwrap();
        assert_eq!(&record.request, value);
        assert_eq!(
            (decision.verdict.as_str(), decision.rule.as_str()),
            (
                if outcome.allowed() { "allow" } else { "deny" },
                outcome.rule.as_str()
            )
        );
    }
    let kinds = f.host.store().count_by_kind(Some("acme")).unwrap();
    assert!(
        kinds.get("expire").copied().unwrap_or(0) > 0,
        "grants expired during the run: {kinds:?}"
    );
    assert_eq!(
        assert_replays(&f.host, "acme"),
        u64::try_from(THREADS * PER_THREAD + 1).unwrap()
    );
    assert_serial_equivalent(&f.host, "acme");
}

/// Agents act while an admin revokes the grant they act under: every act
/// recorded before the revoke is allowed, every act recorded after it is
/// decided on the revoked state (CEL-NO-GRANT), whatever order they were
/// sent in; none is refused.
#[test]
fn an_act_recorded_after_a_concurrent_revoke_is_decided_on_the_revoked_state() {
    const ACTORS: usize = 16;
    const PER_ACTOR: usize = 4;
    let f = fixture();
    celigo_account(&f.host, "acme");
    let host = Arc::new(f.host.clone());
    let (mut before, mut after) = (0, 0);
    for round in 0..4 {
        let at = START + round * MINUTE;
        let id = op(&f.host, at, &grant("acme", json!({"days": 5})))
            .created
            .unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(ACTORS + 1));
        let actors: Vec<_> = (0..ACTORS)
            .map(|_| {
                let (host, done, barrier) = (host.clone(), done.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..PER_ACTOR)
                        .map(|_| {
                            let outcome = op(&host, at, &act("acme", "flow.run"));
                            done.fetch_add(1, Ordering::Relaxed);
                            outcome
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let revoker = {
            let (host, done, barrier, id) = (host.clone(), done.clone(), barrier.clone(), id);
            std::thread::spawn(move || {
                barrier.wait();
                // Revoke while acts are in flight: after a few are answered.
                while done.load(Ordering::Relaxed) < ACTORS / 2 {
                    std::thread::yield_now();
                }
                op(&host, at, &revoke("acme", &id))
            })
        };
        let revoked = revoker.join().unwrap();
        assert!(revoked.allowed(), "{revoked:?}");
        for outcome in actors.into_iter().flat_map(|a| a.join().unwrap()) {
            if outcome.seq < revoked.seq {
                assert!(outcome.allowed(), "{outcome:?} before the revoke");
                before += 1;
            } else {
                assert_eq!(
                    (outcome.verdict, outcome.rule.as_str()),
                    (Verdict::Deny, "CEL-NO-GRANT"),
                    "{outcome:?} after the revoke at {}",
                    revoked.seq
                );
                after += 1;
            }
        }
    }
    assert!(before > 0 && after > 0, "before {before}, after {after}");
    assert_linear_and_verified(&f.host, "acme");
    assert_replays(&f.host, "acme");
    assert_serial_equivalent(&f.host, "acme");
}

type Interference = Box<dyn FnMut() + Send>;

/// A store that runs something else between a decision's snapshot and its
/// write (at the next `times` writes), and counts the writes it is asked
/// for.
struct Interfering {
    inner: Arc<Store>,
    before_commit: Mutex<Option<Interference>>,
    times: AtomicUsize,
    commits: AtomicUsize,
}

impl Interfering {
    fn interfere(&self, times: usize, interference: impl FnMut() + Send + 'static) {
        *self.before_commit.lock().unwrap() = Some(Box::new(interference));
        self.times.store(times, Ordering::Relaxed);
    }
}

impl fmt::Debug for Interfering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interfering").finish_non_exhaustive()
    }
}

impl Storage for Interfering {
    fn registry(&self) -> &dyn chaperone_store::registry::Registry {
        self.inner.as_ref()
    }

    fn outbox(&self) -> &dyn chaperone_store::outbox::Outbox {
        self.inner.as_ref()
    }

    fn signer(&self) -> Option<std::sync::Arc<chaperone_log::keys::Signer>> {
        Storage::signer(self.inner.as_ref())
    }

    fn read_account(
        &self,
        account: &str,
        at: i64,
        named: Option<&NamedObject>,
    ) -> Result<Option<AccountRead>, StoreError> {
        self.inner.read_account(account, at, named)
    }
    fn sync(&self, at: i64, step: &StateStep, request: Value) -> Result<Appended, SyncError> {
        self.inner.sync(at, step, request)
    }
    fn commit_decision(&self, commit: DecisionCommit) -> Result<Committed, WriteFailure> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let due = self
            .times
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if due && let Some(interference) = self.before_commit.lock().unwrap().as_mut() {
            interference();
        }
        self.inner.commit_decision(commit)
    }
    fn sweep_expiries(&self, at: i64) -> Result<usize, StoreError> {
        self.inner.sweep_expiries(at)
    }
    fn module_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.module_bytes(digest)
    }
    fn checkpoint(&self, now_ms: i64) -> Result<Checkpoint, StoreError> {
        Storage::checkpoint(self.inner.as_ref(), now_ms)
    }
    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Storage::latest_checkpoint(self.inner.as_ref())
    }
    fn verifier(&self) -> Result<Verifier, StoreError> {
        Storage::verifier(self.inner.as_ref())
    }
    fn head(&self, account: &str) -> Result<Option<ChainHead>, StoreError> {
        Storage::head(self.inner.as_ref(), account)
    }
    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        Storage::accounts(self.inner.as_ref())
    }
    fn scan_records(
        &self,
        account: &str,
        f: &mut dyn FnMut(StoredRecord) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.scan_records(account, f)
    }
    fn count_by_kind(
        &self,
        account: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        Storage::count_by_kind(self.inner.as_ref(), account)
    }
    fn verify(&self, options: &VerifyOptions) -> Result<Report, StoreError> {
        Storage::verify(self.inner.as_ref(), options)
    }
    fn export(&self, account: &str, out: &mut dyn Write) -> Result<ExportSummary, StoreError> {
        Storage::export(self.inner.as_ref(), account, out)
    }
}

/// A host whose decisions meet `interference` once, between snapshot and
/// write, and another host on the same store to interfere with.
fn interfered() -> (tempfile::TempDir, Host, Host, Arc<Interfering>) {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(Store::open(dir.path().join("store.db")).unwrap());
    let other = Host::with_store(inner.clone(), HostOptions::default()).unwrap();
    let interfering = Arc::new(Interfering {
        inner,
        before_commit: Mutex::new(None),
        times: AtomicUsize::new(0),
        commits: AtomicUsize::new(0),
    });
    let host = Host::with_store(
        interfering.clone(),
        HostOptions {
            runtime: Some(other.runtime().clone()),
            ..HostOptions::default()
        },
    )
    .unwrap();
    celigo_account(&other, "acme");
    (dir, host, other, interfering)
}

/// A revoke recorded between an act's snapshot and its write changes the
/// state the act was decided on: the act is decided again, on the revoked
/// state, and recorded after the revoke.
#[test]
fn a_decision_whose_state_changed_before_its_write_is_decided_again_after_the_change() {
    let (_dir, host, other, interfering) = interfered();
    let id = op(&other, START, &grant("acme", json!({"days": 5})))
        .created
        .unwrap();
    let revoked = Arc::new(Mutex::new(None));
    interfering.interfere(1, {
        let revoked = revoked.clone();
        move || *revoked.lock().unwrap() = Some(op(&other, START, &revoke("acme", &id)))
    });
    let acted = op(&host, START, &act("acme", "flow.run"));
    let revoked = revoked.lock().unwrap().take().unwrap();
    assert!(revoked.allowed());
    assert_eq!(
        (acted.verdict, acted.rule.as_str(), acted.seq),
        (Verdict::Deny, "CEL-NO-GRANT", revoked.seq + 1)
    );
    assert_eq!(interfering.commits.load(Ordering::Relaxed), 2);
    assert_serial_equivalent(&host, "acme");
}

/// A record that changes no state, appended between a decision's snapshot
/// and its write, does not invalidate the decision: it is written at once,
/// after that record.
#[test]
fn a_record_that_changes_nothing_does_not_invalidate_a_decision_in_flight() {
    let (_dir, host, other, interfering) = interfered();
    op(&other, START, &grant("acme", json!({"days": 5})));
    let acted = Arc::new(Mutex::new(None));
    interfering.interfere(1, {
        let acted = acted.clone();
        move || *acted.lock().unwrap() = Some(op(&other, START, &act("acme", "flow.read")))
    });
    // A grant (it changes the state) decided while an act is recorded.
    let granted = op(&host, START, &grant("acme", json!({"days": 1})));
    let acted = acted.lock().unwrap().take().unwrap();
    assert!(acted.allowed() && granted.allowed());
    assert_eq!(granted.seq, acted.seq + 1);
    assert_eq!(
        interfering.commits.load(Ordering::Relaxed),
        1,
        "one attempt"
    );
    assert_serial_equivalent(&host, "acme");
}

/// A user step (it changes the state) between each snapshot and its write.
fn user_step(other: Host) -> impl FnMut() + Send + 'static {
    let mut n = 0;
    move || {
        n += 1;
        let step = json!({"op": "user", "account": "acme", "id": "bo", "email": format!("bo{n}@x.test"), "role": "admin"});
        run(&other, START, &step).unwrap();
    }
}

/// More changes between snapshot and write than the old bound of 16
/// attempts: the decision is still made, on the state after the last.
#[test]
fn a_decision_outlasts_many_changes_under_it() {
    let (_dir, host, other, interfering) = interfered();
    op(&other, START, &grant("acme", json!({"days": 5})));
    interfering.interfere(40, user_step(other));
    let acted = op(&host, START, &act("acme", "flow.run"));
    assert!(acted.allowed());
    assert_eq!(interfering.commits.load(Ordering::Relaxed), 41);
    let records = assert_linear_and_verified(&host, "acme");
    assert_eq!(records.last().unwrap().seq.get(), acted.seq);
    assert_serial_equivalent(&host, "acme");
}

/// The bound is a safety net for a store that another writer keeps
/// changing under every attempt: then the caller gets a clear error, and
/// nothing of the operation is recorded.
#[test]
fn a_store_changed_under_every_attempt_ends_in_a_clear_error_and_records_nothing() {
    let (_dir, host, other, interfering) = interfered();
    interfering.interfere(usize::MAX, user_step(other));
    let value = act("acme", "flow.run");
    let ParsedRequest::Operation(operation) = parse_request(&value).unwrap() else {
        unreachable!("an operation")
    };
    let error = host.execute(START, operation).unwrap_err();
    assert!(matches!(&error, ServiceError::Contended(account) if account == "acme"));
    assert_eq!(
        error.to_string(),
        "account `acme` changed under the operation at each of its 1000 attempts; nothing was recorded, try again"
    );
    assert_eq!(interfering.commits.load(Ordering::Relaxed), 1000);
    let kinds = host.store().count_by_kind(Some("acme")).unwrap();
    assert_eq!(kinds.get("act"), None, "{kinds:?}");
}
