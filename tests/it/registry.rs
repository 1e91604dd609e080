//! The module registry through the library API: install, `policy diff`,
//! activate and roll back a vendor's module, with replay green at every
//! step; what install refuses; an activation made by another process
//! picked up without a restart.

#![expect(clippy::indexing_slicing, reason = "tests")]

use std::time::{Duration, Instant};

use chaperone::replay;
use chaperone::service::registry::InstallError;
use chaperone::service::{Host, HostOptions, Outcome, ParsedRequest, parse_request};
use chaperone_store::registry::RegistryError;
use serde_json::{Value, json};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| unreachable!("{path}: {e}"))
}

fn open(path: &std::path::Path) -> Host {
    Host::open(path, HostOptions::default()).unwrap_or_else(|e| unreachable!("open: {e}"))
}

fn step(host: &Host, at: i64, value: Value) -> Option<Outcome> {
    match parse_request(&value).unwrap_or_else(|e| unreachable!("{value}: {e}")) {
        ParsedRequest::State(s) => {
            host.sync(at, s, value)
                .unwrap_or_else(|e| unreachable!("sync: {e}"));
            None
        }
        ParsedRequest::Operation(op) => Some(
            host.execute(at, op)
                .unwrap_or_else(|e| unreachable!("execute: {e}")),
        ),
    }
}

fn act(host: &Host, at: i64, name: &str) -> Outcome {
    step(
        host,
        at,
        json!({"op": "act", "account": "shop", "agent": "sam@rollout.test", "action": {"name": name}}),
    )
    .unwrap_or_else(|| unreachable!("an operation"))
}

/// The digest of the module that decided `shop`'s record `seq`.
fn decided_by(host: &Host, seq: u64) -> String {
    let records = host
        .store()
        .records("shop")
        .unwrap_or_else(|e| unreachable!("{e}"));
    let record = records
        .iter()
        .find(|r| r.seq.get() == seq)
        .unwrap_or_else(|| unreachable!("no record {seq}"));
    let value: Value =
        serde_json::from_slice(&record.bytes).unwrap_or_else(|e| unreachable!("{e}"));
    value["policy"]["digest"]
        .as_str()
        .unwrap_or_else(|| unreachable!("no digest in {value}"))
        .to_owned()
}

fn replay_is_green(host: &Host) {
    let report = replay::replay(host.store(), host.runtime(), None)
        .unwrap_or_else(|e| unreachable!("replay: {e}"));
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    assert!(report.replayed > 0);
}

#[test]
fn install_diff_activate_and_roll_back_with_replay_green_throughout() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let host = open(&dir.path().join("store.db"));
    let (v1, v2) = (
        read(chaperone_tests::ROLLOUT_V1_WASM),
        read(chaperone_tests::ROLLOUT_V2_WASM),
    );

    // No module for the vendor yet: its accounts cannot be created.
    let account = json!({"op": "account", "id": "shop", "policy": "rollout", "plan": "paid", "environments": []});
    let parsed = parse_request(&account).unwrap_or_else(|e| unreachable!("{e}"));
    let ParsedRequest::State(s) = parsed else {
        unreachable!("a step")
    };
    assert!(host.sync(1_000, s, account.clone()).is_err());

    // The first module is active once installed.
    let first = host
        .install_module(1_000, "rollout", &v1, false, "test")
        .unwrap_or_else(|e| unreachable!("install v1: {e}"));
    assert!(first.module.active);
    assert_eq!(first.module.version, "1.0.0");
    step(&host, 2_000, account);
    let read_ok = act(&host, 3_000, "read.flow");
    let delete_ok = act(&host, 4_000, "delete.flow");
    assert_eq!(
        (read_ok.rule.as_str(), delete_ok.allowed()),
        ("RO-ACT", true)
    );
    assert_eq!(decided_by(&host, delete_ok.seq), first.module.digest);

    // A later module is installed inactive; the vendor's accounts are still
    // decided by the first.
    let second = host
        .install_module(5_000, "rollout", &v2, false, "test")
        .unwrap_or_else(|e| unreachable!("install v2: {e}"));
    assert!(!second.module.active);
    assert_ne!(second.module.digest, first.module.digest);
    let still = act(&host, 6_000, "delete.more");
    assert!(still.allowed());
    assert_eq!(decided_by(&host, still.seq), first.module.digest);
    replay_is_green(&host);

    // `policy diff`: exactly the recorded deletes would change.
    let candidate = host
        .runtime()
        .load(&v2)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let diff = replay::diff(host.store(), host.runtime(), &candidate, "rollout", None)
        .unwrap_or_else(|e| unreachable!("diff: {e}"));
    let changed: Vec<u64> = diff.changes.iter().map(|c| c.seq).collect();
    assert_eq!(changed, vec![delete_ok.seq, still.seq], "{diff:?}");
    assert_eq!((diff.decisions, diff.unchanged), (3, 1));
    let change = &diff.changes[0];
    assert_eq!(
        (change.old.verdict.as_str(), change.old.rule.as_str()),
        ("allow", "RO-ACT")
    );
    assert_eq!(
        (change.new.verdict.as_str(), change.new.rule.as_str()),
        ("deny", "RO-FREEZE")
    );
    let since = replay::diff(
        host.store(),
        host.runtime(),
        &candidate,
        "rollout",
        Some(5_000),
    )
    .unwrap_or_else(|e| unreachable!("diff: {e}"));
    assert_eq!(since.decisions, 1);
    assert_eq!(since.changes.len(), 1);

    // Activated: the next decision is the new module's, named in its record.
    let activation = host
        .activate_module(7_000, "rollout", &second.module.digest, "test")
        .unwrap_or_else(|e| unreachable!("activate: {e}"));
    assert_eq!(
        activation.previous.as_deref(),
        Some(first.module.digest.as_str())
    );
    let frozen = act(&host, 8_000, "delete.flow");
    assert_eq!(
        (frozen.allowed(), frozen.rule.as_str()),
        (false, "RO-FREEZE")
    );
    assert_eq!(decided_by(&host, frozen.seq), second.module.digest);
    replay_is_green(&host);

    // Rolled back: the first module decides again.
    let back = host
        .rollback_module(9_000, "rollout", "test")
        .unwrap_or_else(|e| unreachable!("rollback: {e}"));
    assert_eq!(back.digest, first.module.digest);
    let thawed = act(&host, 10_000, "delete.flow");
    assert!(thawed.allowed());
    assert_eq!(decided_by(&host, thawed.seq), first.module.digest);
    replay_is_green(&host);

    // Each change is a record of the @registry chain, and the chains verify.
    let kinds: Vec<String> = host
        .store()
        .records("@registry")
        .unwrap_or_else(|e| unreachable!("{e}"))
        .iter()
        .map(|r| r.record.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "policy-install",
            "policy-install",
            "policy-activate",
            "policy-rollback"
        ]
    );
    let report = host
        .store()
        .verify(&Default::default())
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(report.is_ok(), "{}", report.to_json());

    // What the registry refuses, changing nothing.
    let again = host.install_module(11_000, "rollout", &v2, false, "test");
    assert!(
        matches!(
            again,
            Err(InstallError::Registry(
                RegistryError::AlreadyInstalled { .. }
            ))
        ),
        "{again:?}"
    );
    let wrong_vendor = host.install_module(11_000, "celigo", &v1, false, "test");
    assert!(
        matches!(&wrong_vendor, Err(InstallError::VendorMismatch { module, .. }) if module == "rollout"),
        "{wrong_vendor:?}"
    );
    let importing = chaperone_tests::modules::wat(
        r#"(module (import "env" "clock" (func)) (memory (export "memory") 1))"#,
    );
    let refused = host.install_module(11_000, "rollout", &importing, false, "test");
    assert!(matches!(refused, Err(InstallError::Load(_))), "{refused:?}");
    let unknown = host.activate_module(11_000, "rollout", &"0".repeat(64), "test");
    assert!(
        matches!(unknown, Err(RegistryError::NotInstalled { .. })),
        "{unknown:?}"
    );
    let active = host.activate_module(11_000, "rollout", &first.module.digest, "test");
    assert!(
        matches!(active, Err(RegistryError::AlreadyActive { .. })),
        "{active:?}"
    );
    assert_eq!(
        host.store()
            .records("@registry")
            .unwrap_or_else(|e| unreachable!("{e}"))
            .len(),
        4
    );
}

/// A host serving the store picks up an activation another process made
/// (here: a second host on the same file) without a restart.
#[test]
fn a_running_host_picks_up_another_process_activation() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let path = dir.path().join("store.db");
    let serving = open(&path);
    let v1 = read(chaperone_tests::ROLLOUT_V1_WASM);
    let v2 = read(chaperone_tests::ROLLOUT_V2_WASM);
    serving
        .install_module(1_000, "rollout", &v1, false, "test")
        .unwrap_or_else(|e| unreachable!("{e}"));
    step(
        &serving,
        2_000,
        json!({"op": "account", "id": "shop", "policy": "rollout", "plan": "paid", "environments": []}),
    );
    assert!(act(&serving, 3_000, "delete.x").allowed());

    let other = open(&path);
    let installed = other
        .install_module(4_000, "rollout", &v2, true, "cli")
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(installed.module.active);
    drop(other);

    // Within the refresh interval, decisions move to the new module; never
    // a decision by a module that is not installed.
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut at = 5_000;
    loop {
        let outcome = act(&serving, at, "delete.x");
        let digest = decided_by(&serving, outcome.seq);
        if digest == installed.module.digest {
            assert_eq!(outcome.rule, "RO-FREEZE");
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the activation was never picked up"
        );
        std::thread::sleep(Duration::from_millis(50));
        at += 1;
    }
    replay_is_green(&serving);
}
