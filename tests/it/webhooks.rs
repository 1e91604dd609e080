//! Webhook deliveries as the host writes them: which records of which
//! accounts reach which subscriptions, in the records' own transactions,
//! in order.

#![expect(
    clippy::indexing_slicing,
    reason = "JSON values: a missing key indexes to null, which the assertion reports"
)]

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
            .due(i64::MAX, 1000, &HashSet::new(), usize::MAX)
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

/// Every operation type makes its event type, and a module activation
/// reaches its vendor's subscription, as a record of `@registry`.
#[test]
fn every_type_of_event_is_made() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let host = Host::open(dir.path().join("s.db"), HostOptions::default())
        .unwrap_or_else(|e| unreachable!("{e}"));
    step(
        &host,
        1_000,
        json!({"op": "account", "id": "globex", "policy": "xentral", "plan": "paid",
        "environments": [{"id": "live", "kind": "production"}], "settings": {"employee_access_consent": false}}),
    );
    step(
        &host,
        1_000,
        json!({"op": "user", "account": "globex", "id": "mia", "email": "mia@globex.test", "role": "admin"}),
    );
    step(
        &host,
        1_000,
        json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
        "environments": [{"id": "prod", "kind": "production"}]}),
    );
    step(
        &host,
        1_000,
        json!({"op": "user", "account": "acme", "id": "ada", "email": "ada@x.test", "role": "owner"}),
    );
    let globex = subscribe(&host, Owner::Customer("globex".into()), &["*"]);
    let acme = subscribe(
        &host,
        Owner::Customer("acme".into()),
        &["modify", "grant.denied"],
    );
    let rollout = subscribe(
        &host,
        Owner::Vendor("rollout".into()),
        &["module.activated"],
    );

    let mut at = 2_000;
    let mut decide = |value: Value| {
        at += 1_000;
        let outcome = step(&host, at, value).unwrap_or_else(|| unreachable!());
        assert!(outcome.allowed(), "{outcome:?}");
        outcome
    };
    decide(
        json!({"op": "set_setting", "account": "globex", "actor": "mia", "key": "employee_access_consent", "value": true}),
    );
    decide(
        json!({"op": "invite", "account": "globex", "actor": "mia", "email": "jonas@xentral.com"}),
    );
    let sa = decide(
        json!({"op": "create_service_account", "account": "globex", "agent": "jonas@xentral.com"}),
    );
    let sa = sa.created.clone().unwrap_or_default();
    decide(
        json!({"op": "set_rights", "account": "globex", "actor": "mia", "service_account": sa, "rights": ["orders.read"]}),
    );
    decide(
        json!({"op": "remove_service_account", "account": "globex", "actor": "mia", "service_account": sa}),
    );
    let grant = decide(
        json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
        "scope": {"level": "admin"}, "expires_in": {"days": 5}}),
    );
    let modified = decide(json!({"op": "modify", "account": "acme", "actor": "ada",
        "grant": grant.created.clone().unwrap_or_default(), "expires_in": {"days": 1}}));
    let v1 =
        std::fs::read(chaperone_tests::ROLLOUT_V1_WASM).unwrap_or_else(|e| unreachable!("{e}"));
    let installed = host
        .install_module(at + 1_000, "rollout", &v1, false, "test")
        .unwrap_or_else(|e| unreachable!("{e}"));

    let sent = drain(&host);
    let types = |subscription: &str| -> Vec<String> {
        of(&sent, subscription)
            .into_iter()
            .map(|(_, _, t)| t)
            .collect()
    };
    assert_eq!(
        types(&globex),
        [
            "setting",
            "invitation",
            "service_account.created",
            "service_account.rights_changed",
            "service_account.removed"
        ]
    );
    assert_eq!(
        of(&sent, &acme),
        [("acme".to_owned(), modified.seq, "modify".to_owned())]
    );
    assert_eq!(
        of(&sent, &rollout),
        [(
            "@registry".to_owned(),
            installed.seq,
            "module.activated".to_owned()
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

mod sender {
    //! The sender through the host, to receivers on loopback.

    use std::collections::BTreeSet;
    use std::time::Duration;

    use chaperone::service::Host;
    use chaperone::webhook::Addresses;
    use chaperone::webhook::sign::{ReceivedHeaders, verify};
    use chaperone::webhook::worker::{WebhookOptions, WorkerHandle};
    use chaperone_store::outbox::Owner;
    use chaperone_tests::receiver::{Mode, Received, Receiver};
    use serde_json::{Value, json};

    use super::step;

    struct Running {
        _dir: tempfile::TempDir,
        host: Host,
        runtime: tokio::runtime::Runtime,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        worker: Option<WorkerHandle>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(worker) = self.worker.take() {
                let _ = self.runtime.block_on(worker.join());
            }
        }
    }

    /// A host over a new store with acme (Celigo, owner ada), its sender
    /// running with quick retries and a 1 s request timeout.
    fn running() -> Running {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let host = Host::open(dir.path().join("s.db"), Default::default())
            .unwrap_or_else(|e| unreachable!("{e}"));
        step(
            &host,
            1_000,
            json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
            "environments": [{"id": "prod", "kind": "production"}]}),
        );
        step(
            &host,
            1_000,
            json!({"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "owner"}),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = WebhookOptions {
            max_attempts: 1000,
            request_timeout: Duration::from_secs(1),
            retry_base: Duration::from_millis(20),
            retry_cap: Duration::from_millis(200),
            // The receivers are on loopback.
            addresses: Addresses::Any,
            ..Default::default()
        };
        let worker = {
            let _entered = runtime.enter();
            host.start_webhooks(options, async {
                let _ = stopped.await;
            })
            .unwrap_or_else(|e| unreachable!("{e}"))
        };
        Running {
            _dir: dir,
            host,
            runtime,
            stop: Some(stop),
            worker: Some(worker),
        }
    }

    fn subscribe(host: &Host, url: &str, types: &[&str]) {
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        host.add_webhook(0, Owner::Customer("acme".into()), url, &types, "test")
            .unwrap_or_else(|e| unreachable!("{e}"));
    }

    fn now() -> i64 {
        chaperone::instant::now()
    }

    fn grant(host: &Host, at: i64, hours: i64) -> chaperone::service::Outcome {
        step(
            host,
            at,
            json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
            "scope": {"level": "admin"}, "expires_in": {"hours": hours}}),
        )
        .unwrap_or_else(|| unreachable!())
    }

    fn act(host: &Host, at: i64) -> u64 {
        step(
            host,
            at,
            json!({"op": "act", "account": "acme", "agent": "sam@celigo.com",
            "action": {"name": "flow.read", "environment": "prod"}}),
        )
        .unwrap_or_else(|| unreachable!())
        .seq
    }

    /// Checks every event: signed with the log's key, the exact record and
    /// hash of its seq; returns the seqs in order of first arrival.
    fn checked(host: &Host, got: &[Received]) -> Vec<u64> {
        let verifier = host
            .store()
            .verifier()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let records = host
            .store()
            .records("acme")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let mut order = Vec::new();
        for event in got {
            let headers = ReceivedHeaders::from_fn(|name| event.header(name));
            verify(
                &verifier,
                &headers,
                &event.body,
                now() / 1000,
                Duration::from_secs(300),
            )
            .unwrap_or_else(|e| unreachable!("{e}"));
            let body = event.json();
            let seq = body["seq"]
                .as_u64()
                .unwrap_or_else(|| unreachable!("{body}"));
            let record = records
                .iter()
                .find(|r| r.seq.get() == seq)
                .unwrap_or_else(|| unreachable!("no record {seq}"));
            assert_eq!(body["hash"], hex(record.hash.as_bytes()));
            let embedded: Value = body["record"].clone();
            let stored: Value = serde_json::from_slice(&record.bytes).unwrap_or(Value::Null);
            assert_eq!(embedded, stored);
            assert_eq!(body["id"], format!("acme:{seq}"));
            if !order.contains(&seq) {
                order.push(seq);
            }
        }
        order
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The bar: a customer's endpoint gets a signed `grant`, then
    /// the `revoke` and the `expire`, in order, each matching its record.
    #[test]
    fn a_customer_hears_grant_revoke_and_expire_in_order() {
        let running = running();
        let host = &running.host;
        let receiver = Receiver::start();
        subscribe(host, &receiver.url, &["grant", "revoke", "expire"]);
        let first = grant(host, now(), 1);
        let got = receiver.wait_for(1, Duration::from_secs(20));
        assert_eq!(checked(host, &got), [first.seq]);
        assert_eq!(got[0].json()["type"], "grant");
        let revoke = step(
            host,
            now(),
            json!({"op": "revoke", "account": "acme", "actor": "ada",
            "grant": first.created.clone().unwrap_or_default()}),
        )
        .unwrap_or_else(|| unreachable!());
        let second = grant(host, now(), 1);
        // Two hours on, the sweep records the second grant's expiry.
        assert_eq!(
            host.tick(now() + 2 * 3_600_000)
                .unwrap_or_else(|e| unreachable!("{e}")),
            1
        );
        let expire = host
            .store()
            .head("acme")
            .unwrap_or_else(|e| unreachable!("{e}"))
            .unwrap_or_else(|| unreachable!())
            .seq
            .get();
        let got = receiver.wait_for(4, Duration::from_secs(20));
        assert_eq!(
            checked(host, &got),
            [first.seq, revoke.seq, second.seq, expire]
        );
        let types: Vec<Value> = got.iter().map(|e| e.json()["type"].clone()).collect();
        assert_eq!(
            types,
            [
                json!("grant"),
                json!("revoke"),
                json!("grant"),
                json!("expire")
            ]
        );
    }

    /// The receiver down (connections closed, then 500s) while events are
    /// made, then back: every event arrives, in order, exactly the ones
    /// recorded.
    #[test]
    fn a_receiver_down_for_a_while_gets_everything_in_order_once_back() {
        let running = running();
        let host = &running.host;
        let receiver = Receiver::start();
        subscribe(host, &receiver.url, &["act"]);
        receiver.set_mode(Mode::Close);
        let mut made: Vec<u64> = (0..15).map(|_| act(host, now())).collect();
        std::thread::sleep(Duration::from_millis(300));
        receiver.set_mode(Mode::Fail(500));
        made.extend((0..15).map(|_| act(host, now())));
        std::thread::sleep(Duration::from_millis(300));
        assert!(receiver.received().is_empty());
        assert!(receiver.attempts() >= 1);
        receiver.set_mode(Mode::Accept);
        let got = receiver.wait_for(made.len(), Duration::from_secs(30));
        let order = checked(host, &got);
        assert_eq!(order, made);
        let distinct: BTreeSet<u64> = order.iter().copied().collect();
        assert_eq!(distinct.len(), made.len());
    }

    /// An endpoint that hangs does not hold up another endpoint's events;
    /// once it answers again it gets its own, in order.
    #[test]
    fn a_hanging_endpoint_does_not_delay_another() {
        let running = running();
        let host = &running.host;
        let (stuck, fine) = (Receiver::start(), Receiver::start());
        subscribe(host, &stuck.url, &["act"]);
        subscribe(host, &fine.url, &["act"]);
        stuck.set_mode(Mode::Hang);
        let made: Vec<u64> = (0..10).map(|_| act(host, now())).collect();
        let got = fine.wait_for(made.len(), Duration::from_secs(20));
        assert_eq!(checked(host, &got), made);
        assert!(stuck.received().is_empty());
        stuck.set_mode(Mode::Accept);
        let got = stuck.wait_for(made.len(), Duration::from_secs(30));
        assert_eq!(checked(host, &got), made);
    }
}
