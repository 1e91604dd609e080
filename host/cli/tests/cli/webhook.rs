//! Webhook deliveries from a real `chaperone serve` to a receiver on
//! loopback, across `kill -9`.

#![expect(
    clippy::indexing_slicing,
    reason = "JSON values: a missing key indexes to null, which the assertion reports"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chaperone::webhook::sign::{ReceivedHeaders, verify};
use chaperone_tests::receiver::{Mode, Receiver};
use serde_json::{Value, json};

use crate::serve_cli::{Server, call, exported, post, start_with};

/// Retries come quickly in these tests, and never give up; the receiver is
/// on loopback.
const FAST: &[&str] = &[
    "--webhook-attempts",
    "1000",
    "--webhook-retry-max",
    "1",
    "--webhook-allow-private",
];

/// Every event the receiver accepted is signed with the log's key and is,
/// byte for byte, a record of the export with the same seq and hash; the
/// first arrivals of each account come in seq order; the set of events is
/// exactly the export's records of `types`.
fn check_against_export(server: &Server, receiver: &Receiver, account: &str, types: &[&str]) {
    let verifier =
        chaperone_log::keys::load_verifier(&chaperone_log::keys::public_key_path(&server.db()))
            .unwrap_or_else(|e| unreachable!("{e}"));
    let export: BTreeMap<u64, Value> = exported(server, account)
        .into_iter()
        .filter_map(|line| Some((line.get("seq")?.as_u64()?, line)))
        .collect();
    let wanted: BTreeSet<u64> = export
        .iter()
        .filter(|(_, l)| {
            let kind = l
                .pointer("/record/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            types.contains(&kind)
        })
        .map(|(seq, _)| *seq)
        .collect();
    let got = receiver.received();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut first_seen = Vec::new();
    let mut seen = BTreeSet::new();
    for event in &got {
        let headers = ReceivedHeaders::from_fn(|name| event.header(name));
        verify(
            &verifier,
            &headers,
            &event.body,
            now,
            Duration::from_secs(600),
        )
        .unwrap_or_else(|e| unreachable!("an event does not verify: {e}"));
        let body = event.json();
        let seq = body["seq"]
            .as_u64()
            .unwrap_or_else(|| unreachable!("{body}"));
        assert_eq!(body["account"], account);
        assert_eq!(body["id"], format!("{account}:{seq}"));
        assert_eq!(
            event.header("chaperone-event-id"),
            Some(format!("{account}:{seq}").as_str())
        );
        let line = export
            .get(&seq)
            .unwrap_or_else(|| unreachable!("event {seq} is no record of the export"));
        assert_eq!(body["hash"], line["hash"], "seq {seq}");
        assert_eq!(body["record"], line["record"], "seq {seq}");
        if seen.insert(seq) {
            first_seen.push(seq);
        }
    }
    let mut sorted = first_seen.clone();
    sorted.sort_unstable();
    assert_eq!(first_seen, sorted, "events arrived out of order");
    assert_eq!(
        seen, wanted,
        "the events are not exactly the records of {types:?}"
    );
}

/// `kill -9` while events are pending (the receiver answers 503 the whole
/// time the first server runs): after a restart, every event of every
/// recorded decision, acknowledged ones included, arrives once the receiver
/// is back, signed, in order, matching the export.
#[cfg(unix)]
#[test]
#[expect(
    clippy::indexing_slicing,
    reason = "JSON values: a missing key indexes to null, which the assertion reports"
)]
fn every_event_of_an_acknowledged_decision_arrives_across_kill_9() {
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Fail(503));
    let mut server = start_with(FAST);
    for step in [
        json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
               "environments": [{"id": "prod", "kind": "production"}]}),
        json!({"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "owner"}),
    ] {
        assert_eq!(post(&server, &step).0, 200);
    }
    let (status, made) = call(
        &server,
        "POST",
        "/v1/tokens",
        Some(&json!({"kind": "customer", "subject": "acme"}).to_string()),
        Some(&server.admin),
    );
    assert_eq!(status, 201, "{made}");
    let customer = serde_json::from_str::<Value>(&made).unwrap_or(Value::Null)["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, made) = call(
        &server,
        "POST",
        "/v1/webhooks",
        Some(&json!({"url": receiver.url, "types": ["grant", "revoke", "act"]}).to_string()),
        Some(&customer),
    );
    assert_eq!(status, 201, "{made}");

    // Load: grants, acts and revokes from three clients.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let addr = server.addr.clone();
    let vendor = server.vendor.clone();
    let clients: Vec<_> = (0..3)
        .map(|n| {
            let (stop, acknowledged, addr, vendor) =
                (stop.clone(), acknowledged.clone(), addr.clone(), vendor.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = if (n + i).is_multiple_of(4) {
                        json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
                               "scope": {"level": "admin"}, "expires_in": {"days": 1}})
                    } else {
                        json!({"op": "act", "account": "acme", "agent": "sam@celigo.com",
                               "action": {"name": "flow.read", "environment": "prod"}})
                    };
                    let Some(answer) = raw_post(&addr, &vendor, &body) else {
                        break;
                    };
                    acknowledged
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(answer);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // Killed mid-load, with every event still pending.
    server.kill_and_restart(FAST);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let acknowledged = acknowledged
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        acknowledged.len() > 5,
        "too little load: {}",
        acknowledged.len()
    );
    assert_eq!(receiver.received().len(), 0);
    assert!(
        receiver.attempts() > 0,
        "nothing was tried while the receiver was down"
    );

    receiver.set_mode(Mode::Accept);
    let recorded = exported(&server, "acme")
        .iter()
        .filter(|l| {
            matches!(
                l.pointer("/record/kind").and_then(Value::as_str),
                Some("grant" | "revoke" | "act")
            )
        })
        .count();
    let got = receiver.wait_for(recorded, Duration::from_secs(120));
    assert!(
        got.len() >= recorded,
        "{} of {recorded} events arrived",
        got.len()
    );
    let ids: BTreeSet<String> = got
        .iter()
        .filter_map(|e| e.json()["id"].as_str().map(str::to_owned))
        .collect();
    for answer in &acknowledged {
        let seq = answer["seq"].as_u64().unwrap_or_default();
        assert!(
            ids.contains(&format!("acme:{seq}")),
            "acknowledged acme:{seq} never arrived"
        );
    }
    check_against_export(&server, &receiver, "acme", &["grant", "revoke", "act"]);
}

/// One POST on its own connection; the answer's JSON if it was 200.
fn raw_post(addr: &str, token: &str, body: &Value) -> Option<Value> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    let body = body.to_string();
    let request = format!(
        "POST /v1/requests HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(response.split("\r\n\r\n").nth(1)?).ok()
}

/// `chaperone webhook add|list|status|remove` on a store: what it adds is
/// listed and has a status; bad types and owners are refused naming them;
/// a second removal exits 2.
#[test]
fn the_webhook_commands_manage_subscriptions() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let db = dir.path().join("w.db");
    let db = db.to_str().unwrap_or_default();
    let chaperone = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
            .args(args)
            .output()
            .unwrap_or_else(|e| unreachable!("{e}"))
    };
    assert!(chaperone(&["init", "--db", db]).status.success());
    let added = chaperone(&[
        "webhook",
        "add",
        "--url",
        "https://hooks.celigo.test/h",
        "--types",
        "grant,act.denied",
        "--vendor",
        "celigo",
        "--db",
        db,
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let id = String::from_utf8_lossy(&added.stdout).trim().to_owned();
    assert!(id.starts_with("wh_"), "{id}");

    let listed = chaperone(&["webhook", "list", "--json", "--db", db]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap_or(Value::Null);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["types"], json!(["act.denied", "grant"]));
    assert_eq!(
        listed[0]["owner"],
        json!({"kind": "vendor", "subject": "celigo"})
    );

    let status = chaperone(&["webhook", "status", &id, "--json", "--db", db]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
    assert_eq!(
        (status[0]["pending"].clone(), status[0]["dead"].clone()),
        (json!(0), json!(0))
    );

    let refused = chaperone(&[
        "webhook",
        "add",
        "--url",
        "https://x.test/",
        "--types",
        "grants",
        "--vendor",
        "celigo",
        "--db",
        db,
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`grants`"));
    let refused = chaperone(&[
        "webhook",
        "add",
        "--url",
        "https://x.test/",
        "--types",
        "grant",
        "--account",
        "nobody",
        "--db",
        db,
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no account `nobody`"));

    assert!(
        chaperone(&["webhook", "remove", &id, "--db", db])
            .status
            .success()
    );
    assert_eq!(
        chaperone(&["webhook", "remove", &id, "--db", db])
            .status
            .code(),
        Some(2)
    );
    let listed = chaperone(&["webhook", "list", "--json", "--db", db]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap_or(Value::Null);
    assert!(listed[0]["removed_ms"].is_i64(), "{listed}");
}
