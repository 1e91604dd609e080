//! The host's own rules (HOST-*), through the library API: every operation
//! audited, failing policies fail closed, replay, isolation, expiry.

use chaperone::service::{Host, HostOptions, Outcome, ParsedRequest, parse_request};
use chaperone::{instant, replay};
use chaperone_model::Verdict;
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    host: Host,
}

fn host_with(policies: Vec<(String, Vec<u8>)>) -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("tempdir: {e}"));
    let host = Host::open(
        dir.path().join("store.db"),
        HostOptions {
            policies,
            ..HostOptions::default()
        },
    )
    .unwrap_or_else(|e| unreachable!("open: {e}"));
    Fixture { _dir: dir, host }
}

fn at(text: &str) -> i64 {
    instant::parse(text).unwrap_or_else(|e| unreachable!("{e}"))
}

impl Fixture {
    fn step(&self, time: &str, value: Value) -> Option<Outcome> {
        let parsed = parse_request(&value).unwrap_or_else(|e| unreachable!("{value}: {e}"));
        match parsed {
            ParsedRequest::State(step) => {
                self.host
                    .sync(at(time), step, value)
                    .unwrap_or_else(|e| unreachable!("sync: {e}"));
                None
            }
            ParsedRequest::Operation(op) => Some(
                self.host
                    .execute(at(time), op)
                    .unwrap_or_else(|e| unreachable!("execute: {e}")),
            ),
        }
    }

    fn op(&self, time: &str, value: Value) -> Outcome {
        self.step(time, value)
            .unwrap_or_else(|| unreachable!("not an operation"))
    }

    fn counts(&self, account: Option<&str>) -> std::collections::BTreeMap<String, u64> {
        self.host
            .store()
            .count_by_kind(account)
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// Every record of `account`, in order.
    fn records(&self, account: &str) -> Vec<chaperone_log::StoredRecord> {
        self.host
            .store()
            .records(account)
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// An account `evil` on the module registered for `policy`.
    fn evil_account(&self, policy: &str) {
        self.step(
            "2026-01-01T09:00:00Z",
            json!({"op": "account", "id": "evil", "policy": policy, "plan": "paid",
            "environments": [{"id": "prod", "kind": "production"}]}),
        );
    }

    fn celigo_account(&self, id: &str) {
        let t = "2026-01-01T09:00:00Z";
        self.step(
            t,
            json!({"op": "account", "id": id, "policy": "celigo", "plan": "paid",
            "environments": [{"id": "prod", "kind": "production"}]}),
        );
        self.step(t, json!({"op": "user", "account": id, "id": "ada", "email": "ada@x.test", "role": "admin"}));
        self.step(
            t,
            json!({"op": "integration", "account": id, "environment": "prod", "id": "shop"}),
        );
    }
}

fn grant(account: &str, days: i64) -> Value {
    json!({"op": "grant", "account": account, "actor": "ada", "environment": "prod",
           "scope": {"level": "admin"}, "expires_in": {"days": days}})
}

fn act(account: &str, name: &str) -> Value {
    json!({"op": "act", "account": account, "agent": "sam@celigo.com",
           "action": {"name": name, "environment": "prod", "integration": "shop"}})
}

#[test]
fn host_audit_every_operation_allowed_or_denied_appends_one_record() {
    let f = host_with(vec![]);
    f.celigo_account("acme");
    let allowed = f.op("2026-01-01T09:00:00Z", grant("acme", 5));
    let denied = f.op("2026-01-01T09:00:00Z", grant("acme", 181));
    assert!(allowed.allowed());
    assert_eq!(
        (denied.verdict, denied.rule.as_str()),
        (Verdict::Deny, "CEL-EXPIRY")
    );
    assert_eq!(denied.seq, allowed.seq + 1);
    let counts = f.counts(Some("acme"));
    assert_eq!(counts.get("grant"), Some(&2));
    assert_eq!(counts.get("sync"), Some(&3));
    let records = f.records("acme");
    let last = records
        .last()
        .map(|r| &r.record)
        .unwrap_or_else(|| unreachable!());
    assert_eq!(last.kind, "grant");
    assert_eq!(
        last.decision.as_ref().map(|d| d.rule.as_str()),
        Some("CEL-EXPIRY")
    );
    assert!(
        last.policy
            .as_ref()
            .is_some_and(|p| p.digest.len() == 64 && p.vendor == "celigo")
    );
    assert!(last.input.is_some(), "the exact policy input is recorded");
    assert_eq!(last.effects, json!([]), "a deny applies nothing");
}

#[test]
fn host_fail_closed_a_failing_policy_is_an_audited_deny_and_the_host_keeps_serving() {
    let hostile =
        std::fs::read(chaperone_tests::HOSTILE_WASM).unwrap_or_else(|e| unreachable!("{e}"));
    let f = host_with(vec![("hostile".into(), hostile)]);
    let t = "2026-01-01T09:00:00Z";
    f.evil_account("hostile");
    for attack in [
        "loop",
        "grow",
        "recurse",
        "trap",
        "target",
        "message",
        "deny-effect",
        "rule",
        "many-rules",
        "zero-rules",
        "zero-effects",
        "long-rule",
        "long-message",
        "control-keys",
    ] {
        let outcome = f.op(
            t,
            json!({"op": "act", "account": "evil", "agent": "a@b.c",
            "action": {"name": attack, "environment": "prod"}}),
        );
        assert_eq!(
            (outcome.verdict, outcome.rule.as_str()),
            (Verdict::Deny, "HOST-POLICY-ERROR"),
            "{attack}: {outcome:?}"
        );
        assert!(!outcome.message.is_empty());
    }
    let fine = f.op(
        t,
        json!({"op": "act", "account": "evil", "agent": "a@b.c",
        "action": {"name": "fine", "environment": "prod"}}),
    );
    assert!(fine.allowed(), "{fine:?}");
    assert_eq!(f.counts(Some("evil")).get("act"), Some(&15));
    // Every refusal replays as recorded.
    let report = replay::replay(f.host.store(), f.host.runtime(), Some("evil"))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(report.replayed, 15);
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    // The built-in modules still work on the same host.
    f.celigo_account("acme");
    assert!(f.op(t, grant("acme", 5)).allowed());
}

/// A decision within every limit of the contract whose audit record would
/// not fit (64 entry keys of 64 KiB of U+0001, each byte escaped as six in
/// the record: 25 MB) is not applied: it is recorded as a
/// `HOST-POLICY-ERROR` deny naming the size, without its effects, and
/// replay reproduces that refusal.
#[test]
fn host_fail_closed_a_decision_whose_record_would_not_fit_is_an_audited_deny() {
    let hostile =
        std::fs::read(chaperone_tests::HOSTILE_WASM).unwrap_or_else(|e| unreachable!("{e}"));
    let f = host_with(vec![("hostile".into(), hostile)]);
    let t = "2026-01-01T09:00:00Z";
    f.evil_account("hostile");
    let outcome = f.op(
        t,
        json!({"op": "act", "account": "evil", "agent": "a@b.c",
        "action": {"name": "control-keys", "environment": "prod"}}),
    );
    assert_eq!(
        (outcome.verdict, outcome.rule.as_str()),
        (Verdict::Deny, "HOST-POLICY-ERROR"),
        "{outcome:?}"
    );
    assert!(
        outcome
            .message
            .starts_with("the decision's audit record would be ")
            && outcome
                .message
                .ends_with("bytes; a record is at most 16777216"),
        "{}",
        outcome.message
    );
    let records = f.records("evil");
    let last = records
        .last()
        .map(|r| &r.record)
        .unwrap_or_else(|| unreachable!());
    assert_eq!(last.kind, "act");
    assert_eq!(
        last.decision.as_ref().map(|d| d.message.as_str()),
        Some(outcome.message.as_str())
    );
    assert_eq!(last.effects, json!([]), "nothing of the payload is applied");
    assert!(last.input.is_some(), "the input is kept, so replay can run");
    let size = records.iter().map(|r| r.bytes.len()).max().unwrap_or(0);
    assert!(
        size < 64 << 10,
        "the refusal's record is small: {size} bytes"
    );
    let state = f
        .host
        .store()
        .read_account("evil", at(t), None)
        .unwrap_or_else(|e| unreachable!("{e}"))
        .unwrap_or_else(|| unreachable!("the account exists"));
    assert!(state.snapshot.entries.is_empty(), "no effect was applied");
    let report = replay::replay(f.host.store(), f.host.runtime(), Some("evil"))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        (report.replayed, report.mismatches.len()),
        (1, 0),
        "{report:?}"
    );
}

/// Decisions recorded while every core is busy, by a module that uses 18M
/// of its 20M fuel, replay without a mismatch (finding: 2-7 mismatches
/// per replay when the wall clock could decide).
#[test]
fn host_replay_a_store_written_under_load_by_a_near_fuel_limit_module_matches() {
    let module = chaperone_tests::modules::near_fuel_limit_module(1_200_000);
    let f = host_with(vec![("evil".into(), module)]);
    let t = "2026-01-01T09:00:00Z";
    f.evil_account("evil");
    let busy = crate::runtime::busy_cores();
    for _ in 0..10 {
        let outcome = f.op(
            t,
            json!({"op": "act", "account": "evil", "agent": "a@b.c",
            "action": {"name": "read", "environment": "prod"}}),
        );
        assert_eq!(
            (outcome.verdict, outcome.rule.as_str()),
            (Verdict::Allow, "R")
        );
    }
    let report = replay::replay(f.host.store(), f.host.runtime(), Some("evil"))
        .unwrap_or_else(|e| unreachable!("{e}"));
    drop(busy);
    assert_eq!(
        (report.replayed, report.mismatches.len()),
        (10, 0),
        "{report:?}"
    );
}

/// `policy check`'s record probe: what the host would refuse as too large
/// to record, it reports, with the host's own message.
#[test]
fn record_fits_reports_what_the_host_would_refuse() {
    use chaperone_model::{Decision, Effect, Entry, OperationKind};
    let request = chaperone_runtime::probe::sample_request("celigo", OperationKind::Act, None);
    let mut decision = Decision {
        verdict: Verdict::Allow,
        rule: "R".into(),
        message: "m".into(),
        rules: vec![],
        effects: vec![],
    };
    assert_eq!(chaperone::service::record_fits(&request, &decision), None);
    decision.effects = (0..64)
        .map(|i| {
            Effect::PutEntry(Entry {
                key: format!("{i}{}", "\u{1}".repeat(64 << 10)),
                value: "1".into(),
            })
        })
        .collect();
    let refused = chaperone::service::record_fits(&request, &decision);
    assert!(
        refused
            .as_deref()
            .is_some_and(|m| m.starts_with("the decision's audit record would be ")),
        "{refused:?}"
    );
    decision.verdict = Verdict::Deny;
    assert_eq!(
        chaperone::service::record_fits(&request, &decision),
        None,
        "a deny records no effects"
    );
}

#[test]
fn host_unsupported_an_operation_the_module_does_not_list_is_refused_and_audited() {
    let f = host_with(vec![]);
    let t = "2026-01-01T09:00:00Z";
    f.step(
        t,
        json!({"op": "account", "id": "xen", "policy": "xentral", "plan": "paid",
        "environments": [{"id": "live", "kind": "production"}]}),
    );
    f.step(
        t,
        json!({"op": "user", "account": "xen", "id": "ada", "email": "a@x.test", "role": "admin"}),
    );
    let outcome = f.op(
        t,
        json!({"op": "grant", "account": "xen", "actor": "ada",
        "environment": "live", "scope": {"level": "admin"}, "expires_in": {"days": 5}}),
    );
    assert_eq!(outcome.rule, "HOST-UNSUPPORTED");
    assert_eq!(f.counts(Some("xen")).get("grant"), Some(&1));
}

#[test]
fn host_isolation_another_accounts_grant_is_refused_and_audited_in_the_asking_chain() {
    let f = host_with(vec![]);
    f.celigo_account("acme");
    f.celigo_account("globex");
    let t = "2026-01-02T09:00:00Z";
    let g = f.op(t, grant("acme", 5));
    let id = g
        .created
        .clone()
        .unwrap_or_else(|| unreachable!("grant id"));
    let refused = f.op(
        t,
        json!({"op": "revoke", "account": "globex", "actor": "ada", "grant": id}),
    );
    assert_eq!(refused.rule, "HOST-ISOLATION");
    assert_eq!(f.counts(Some("globex")).get("revoke"), Some(&1));
    assert_eq!(f.counts(Some("acme")).get("revoke"), None);
    // The grant is untouched and honoured in its own account only.
    assert!(f.op(t, act("acme", "flow.read")).allowed());
    assert_eq!(f.op(t, act("globex", "flow.read")).rule, "CEL-NO-GRANT");
}

#[test]
fn host_revoked_a_revoked_grant_is_never_honoured_again() {
    let f = host_with(vec![]);
    f.celigo_account("acme");
    let t = "2026-01-02T09:00:00Z";
    let id = f.op(t, grant("acme", 5)).created.unwrap_or_default();
    assert!(
        f.op(
            t,
            json!({"op": "revoke", "account": "acme", "actor": "ada", "grant": id})
        )
        .allowed()
    );
    assert_eq!(f.op(t, act("acme", "flow.read")).rule, "CEL-NO-GRANT");
    let again = f.op(
        t,
        json!({"op": "modify", "account": "acme", "actor": "ada", "grant": id,
        "expires_in": {"days": 2}}),
    );
    assert_eq!(again.rule, "CEL-CHANGE");
}

#[test]
fn host_expiry_one_expire_record_per_grant_on_first_use_or_sweep() {
    let f = host_with(vec![]);
    f.celigo_account("acme");
    let g1 = f.op("2026-01-01T09:00:00Z", grant("acme", 1));
    assert_eq!(g1.expires_at, Some(at("2026-01-02T09:00:00Z")));
    let revoked = f
        .op("2026-01-01T09:00:00Z", grant("acme", 1))
        .created
        .unwrap_or_default();
    f.op(
        "2026-01-01T10:00:00Z",
        json!({"op": "revoke", "account": "acme", "actor": "ada", "grant": revoked}),
    );
    // At the instant of expiry the grant is inactive; the act records it.
    assert_eq!(
        f.op("2026-01-02T09:00:00Z", act("acme", "flow.read")).rule,
        "CEL-NO-GRANT"
    );
    assert_eq!(f.counts(Some("acme")).get("expire"), Some(&1));
    f.op("2026-01-03T09:00:00Z", act("acme", "flow.read"));
    assert_eq!(f.host.tick(at("2026-02-01T00:00:00Z")).ok(), Some(0));
    assert_eq!(
        f.counts(Some("acme")).get("expire"),
        Some(&1),
        "once per grant; none for the revoked one"
    );

    f.celigo_account("globex");
    f.op("2026-02-01T00:00:00Z", grant("globex", 2));
    assert_eq!(f.host.tick(at("2026-02-03T00:00:00Z")).ok(), Some(1));
    assert_eq!(f.counts(Some("globex")).get("expire"), Some(&1));
}

#[test]
fn host_replay_every_recorded_decision_replays_identically() {
    let f = host_with(vec![]);
    f.celigo_account("acme");
    let t = "2026-01-01T09:00:00Z";
    f.op(t, grant("acme", 5));
    f.op(t, grant("acme", 500));
    f.op(t, act("acme", "users.update"));
    f.op(t, act("acme", "flow.run"));
    let report = replay::replay(f.host.store(), f.host.runtime(), None)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(report.replayed, 4);
    assert_eq!(report.skipped, 3);
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
}

#[test]
fn host_replay_detects_kept_module_bytes_that_do_not_match_the_digest() {
    let f = host_with(vec![]);
    f.celigo_account("acme");
    f.op("2026-01-01T09:00:00Z", grant("acme", 5));
    let report = replay::replay(f.host.store(), f.host.runtime(), Some("acme"))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(report.mismatches.is_empty());
    // Swap the kept module's bytes behind the host's back (the store's
    // trigger refuses it; someone with the file drops the trigger first).
    let conn = rusqlite::Connection::open(f._dir.path().join("store.db"))
        .unwrap_or_else(|e| unreachable!("{e}"));
    let refused = conn.execute("UPDATE modules SET bytes = x'00'", []);
    assert!(
        refused.is_err_and(|e| e.to_string().contains("append-only")),
        "kept modules must be append-only"
    );
    conn.execute_batch("DROP TRIGGER modules_no_update")
        .unwrap_or_else(|e| unreachable!("{e}"));
    conn.execute(
        "UPDATE modules SET bytes = ?1",
        [chaperone::builtin::XENTRAL.bytes],
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let report = replay::replay(f.host.store(), f.host.runtime(), Some("acme"))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(report.mismatches.len(), 1, "{report:?}");
    assert!(
        report
            .mismatches
            .iter()
            .all(|m| m.reason.contains("digest")),
        "{report:?}"
    );
}
