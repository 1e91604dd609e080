//! Webhook deliveries as the host writes them: which records of which
//! accounts reach which subscriptions, in the records' own transactions,
//! in order.

use std::collections::HashSet;

use chaperone::service::{Host, HostOptions, Outcome, ParsedRequest, parse_request};
use chaperone_store::outbox::{Attempt, Owner};
use serde_json::{Value, json};

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

fn subscribe(host: &Host, owner: Owner, types: &[&str]) -> String {
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    host.add_webhook(0, owner, "http://127.0.0.1:9/hook", &types, "test")
        .unwrap_or_else(|e| unreachable!("subscribe: {e}"))
        .id
}

/// Takes every due delivery as delivered, oldest first, until none is
/// left: (subscription, account, seq, type) in the order they went out.
fn drain(host: &Host) -> Vec<(String, String, u64, String)> {
    let mut sent = Vec::new();
    loop {
        let due = host
            .store()
            .outbox()
            .due(i64::MAX, 1000, &HashSet::new())
            .unwrap_or_else(|e| unreachable!("{e}"));
        if due.is_empty() {
            return sent;
        }
        for d in due {
            host.store()
                .outbox()
                .record_attempt(1, d.id, Attempt::Delivered { status: 204 })
                .unwrap_or_else(|e| unreachable!("{e}"));
            sent.push((d.subscription, d.account, d.seq, d.event_type));
        }
    }
}

fn of(sent: &[(String, String, u64, String)], subscription: &str) -> Vec<(String, u64, String)> {
    sent.iter()
        .filter(|s| s.0 == subscription)
        .map(|s| (s.1.clone(), s.2, s.3.clone()))
        .collect()
}

/// A vendor hears of its own accounts only, a customer of its own account
/// only, each of the types it asked for; `expire` comes from the sweep;
/// every delivery names the record it tells of.
#[test]
fn each_subscription_hears_of_its_own_accounts_and_types() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let host = Host::open(dir.path().join("s.db"), HostOptions::default())
        .unwrap_or_else(|e| unreachable!("{e}"));
    let day = 86_400_000;
    for account in ["acme", "initech"] {
        step(
            &host,
            1_000,
            json!({"op": "account", "id": account, "policy": "celigo", "plan": "paid",
            "environments": [{"id": "prod", "kind": "production"}]}),
        );
        step(
            &host,
            1_000,
            json!({"op": "user", "account": account, "id": "ada", "email": "ada@x.test", "role": "owner"}),
        );
    }
    step(
        &host,
        1_000,
        json!({"op": "account", "id": "globex", "policy": "xentral", "plan": "paid",
        "environments": [{"id": "live", "kind": "production"}], "settings": {"employee_access_consent": true}}),
    );

    let vendor = subscribe(
        &host,
        Owner::Vendor("celigo".into()),
        &["grant", "revoke", "expire", "act.denied"],
    );
    let customer = subscribe(&host, Owner::Customer("acme".into()), &["*"]);
    let xentral = subscribe(
        &host,
        Owner::Customer("globex".into()),
        &["service_account.created"],
    );

    let grant = |account: &str, at: i64, days: i64| {
        step(
            &host,
            at,
            json!({"op": "grant", "account": account, "actor": "ada", "environment": "prod",
            "scope": {"level": "admin"}, "expires_in": {"days": days}}),
        )
        .unwrap_or_else(|| unreachable!())
    };
    let act = |account: &str, at: i64, name: &str| {
        step(
            &host,
            at,
            json!({"op": "act", "account": account, "agent": "sam@celigo.com",
            "action": {"name": name, "environment": "prod"}}),
        )
        .unwrap_or_else(|| unreachable!())
    };
    let g1 = grant("acme", 2_000, 1);
    let read = act("acme", 3_000, "flow.read");
    let perms = act("acme", 4_000, "users.delete");
    assert!(read.allowed() && !perms.allowed());
    let g2 = grant("initech", 5_000, 5);
    let revoked = step(
        &host,
        6_000,
        json!({"op": "revoke", "account": "initech", "actor": "ada",
        "grant": g2.created.clone().unwrap_or_default()}),
    )
    .unwrap_or_else(|| unreachable!());
    assert!(revoked.allowed(), "{revoked:?}");
    let sa = step(
        &host,
        7_000,
        json!({"op": "create_service_account", "account": "globex",
        "agent": "jonas@xentral.com"}),
    )
    .unwrap_or_else(|| unreachable!());
    assert!(sa.allowed(), "{sa:?}");
    // acme's grant expires; the sweep records it.
    assert_eq!(
        host.tick(2_000 + 2 * day)
            .unwrap_or_else(|e| unreachable!("{e}")),
        1
    );
    let expire_seq = host
        .store()
        .head("acme")
        .unwrap_or_else(|e| unreachable!("{e}"))
        .unwrap_or_else(|| unreachable!())
        .seq
        .get();

    let sent = drain(&host);
    let acme = |seq: u64, t: &str| ("acme".to_owned(), seq, t.to_owned());
    let initech = |seq: u64, t: &str| ("initech".to_owned(), seq, t.to_owned());
    let mut heard = of(&sent, &vendor);
    heard.sort();
    let mut want = vec![
        acme(g1.seq, "grant"),
        acme(perms.seq, "act"),
        acme(expire_seq, "expire"),
        initech(g2.seq, "grant"),
        initech(revoked.seq, "revoke"),
    ];
    want.sort();
    assert_eq!(heard, want);
    assert_eq!(
        of(&sent, &customer),
        [
            acme(g1.seq, "grant"),
            acme(read.seq, "act"),
            acme(perms.seq, "act"),
            acme(expire_seq, "expire")
        ]
    );
    assert_eq!(
        of(&sent, &xentral),
        [(
            "globex".to_owned(),
            sa.seq,
            "service_account.created".to_owned()
        )]
    );
}

/// A subscription hears of records made after it, not before; a removed
/// one hears of nothing more.
#[test]
fn a_subscription_starts_and_stops_with_its_changes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let host = Host::open(dir.path().join("s.db"), HostOptions::default())
        .unwrap_or_else(|e| unreachable!("{e}"));
    step(
        &host,
        1_000,
        json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
        "environments": [{"id": "prod", "kind": "production"}]}),
    );
    let act = |at: i64| {
        step(
            &host,
            at,
            json!({"op": "act", "account": "acme", "agent": "sam@celigo.com",
            "action": {"name": "flow.read", "environment": "prod"}}),
        )
        .unwrap_or_else(|| unreachable!())
        .seq
    };
    act(2_000);
    let id = subscribe(&host, Owner::Customer("acme".into()), &["act"]);
    let heard = act(3_000);
    assert!(
        host.remove_webhook(4_000, &id, "test")
            .unwrap_or_else(|e| unreachable!("{e}"))
    );
    act(5_000);
    let sent = drain(&host);
    assert!(sent.is_empty(), "{sent:?}");
    let status = host
        .webhook_status(&id)
        .unwrap_or_else(|e| unreachable!("{e}"))
        .unwrap_or_else(|| unreachable!());
    // The one made while it lived was pending when it went: dropped, kept.
    assert_eq!(
        (status.pending, status.delivered, status.dead),
        (0, 0, 1),
        "{heard}"
    );
    let bad = host.add_webhook(
        0,
        Owner::Customer("nobody".into()),
        "https://x.test/h",
        &["act".into()],
        "t",
    );
    assert!(bad.is_err_and(|e| e.to_string().contains("no account `nobody`")));
    let bad = host.add_webhook(
        0,
        Owner::Vendor("Celigo!".into()),
        "https://x.test/h",
        &["act".into()],
        "t",
    );
    assert!(bad.is_err_and(|e| e.to_string().contains("not a vendor id")));
}
