//! `chaperone serve`: the HTTP JSON API, driven over a real socket on
//! loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};

use serde_json::{Value, json};

struct Server {
    child: Child,
    addr: String,
    /// The rest of the server's stderr (kept open: the server writes to it
    /// when it stops).
    stderr: BufReader<ChildStderr>,
    dir: tempfile::TempDir,
    /// The admin token `init` printed.
    admin: String,
    /// A vendor token for `celigo`.
    vendor: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to the end; its stdout.
fn run(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(args)
        .output()
        .unwrap_or_else(|e| unreachable!("spawn: {e}"));
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap_or_else(|e| unreachable!("{e}"))
}

/// `init` (its admin token), a vendor token for `celigo`, then `serve`.
fn start() -> Server {
    start_with(&[])
}

/// As [`start`], with more arguments to `serve`.
fn start_with(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let db = dir.path().join("api.db");
    let init = run(&["init".as_ref(), "--db".as_ref(), db.as_os_str()]);
    let admin = init
        .lines()
        .find_map(|l| l.strip_prefix("admin token (shown only now): "))
        .unwrap_or_else(|| unreachable!("no admin token in {init}"))
        .to_string();
    let vendor = run(&[
        "token".as_ref(),
        "create".as_ref(),
        "--vendor".as_ref(),
        "celigo".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
    ])
    .trim()
    .to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_chaperone"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| unreachable!("spawn: {e}"));
    let stderr = child
        .stderr
        .take()
        .unwrap_or_else(|| unreachable!("stderr"));
    let mut stderr = BufReader::new(stderr);
    let mut line = String::new();
    stderr
        .read_line(&mut line)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| unreachable!("no address in `{line}`"))
        .to_string();
    Server {
        child,
        addr,
        stderr,
        dir,
        admin,
        vendor,
    }
}

/// One HTTP/1.1 request; returns the status and the body.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(&server.addr).unwrap_or_else(|e| unreachable!("{e}"));
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| unreachable!("{e}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn post(server: &Server, value: &Value) -> (u16, Value) {
    let (status, body) = call(
        server,
        "POST",
        "/v1/requests",
        Some(&value.to_string()),
        Some(&server.vendor),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn the_api_decides_records_and_verifies() {
    let server = start();
    let (status, _) = post(
        &server,
        &json!({"op": "account", "id": "acme", "policy": "celigo",
        "plan": "paid", "environments": [{"id": "prod", "kind": "production"}]}),
    );
    assert_eq!(status, 200);
    post(
        &server,
        &json!({"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "admin"}),
    );
    let (status, grant) = post(
        &server,
        &json!({"op": "grant", "account": "acme", "actor": "ada",
        "environment": "prod", "scope": {"level": "admin"}, "expires_in": {"days": 5}}),
    );
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant.get("decision"), Some(&json!("allow")), "{grant}");
    assert!(grant.get("id").and_then(Value::as_str).is_some(), "{grant}");
    assert!(
        grant.get("expires_at").and_then(Value::as_str).is_some(),
        "{grant}"
    );
    let (_, denied) = post(
        &server,
        &json!({"op": "act", "account": "acme", "agent": "sam@celigo.com",
        "action": {"name": "users.update", "environment": "prod"}}),
    );
    assert_eq!(denied.get("rule"), Some(&json!("CEL-PERMS")), "{denied}");

    // A scope of another shape is the module's to judge (CEL-LEVEL), not
    // the host's; a missing field is the host's.
    let (status, denied) = post(
        &server,
        &json!({"op": "grant", "account": "acme", "actor": "ada",
        "environment": "prod", "scope": "admin", "expires_in": {"days": 5}}),
    );
    assert_eq!(status, 200, "{denied}");
    assert_eq!(denied.get("rule"), Some(&json!("CEL-LEVEL")), "{denied}");
    let (status, error) = post(
        &server,
        &json!({"op": "grant", "account": "acme", "actor": "ada", "scope": "admin"}),
    );
    assert_eq!(status, 400);
    assert!(
        error.to_string().contains("`environment` is missing"),
        "{error}"
    );
    let (status, error) = post(
        &server,
        &json!({"op": "act", "account": "nobody", "agent": "a@b.c",
        "action": {"name": "x"}}),
    );
    assert_eq!(status, 404, "{error}");
    let (status, _) = call(
        &server,
        "POST",
        "/v1/requests",
        Some("{not json"),
        Some(&server.vendor),
    );
    assert_eq!(status, 400);

    let (status, note) = call(&server, "POST", "/v1/checkpoint", None, Some(&server.admin));
    assert_eq!(status, 200);
    assert!(
        note.contains("\nversion 2\n") && !note.contains("acme"),
        "{note}"
    );
    let (status, report) = call(
        &server,
        "GET",
        "/v1/accounts/acme/verify",
        None,
        Some(&server.vendor),
    );
    assert_eq!(status, 200);
    let report: Value = serde_json::from_str(&report).unwrap_or(Value::Null);
    assert_eq!(report.get("ok"), Some(&json!(true)), "{report}");
    assert_eq!(report.get("records"), Some(&json!(5)), "{report}");
    let (status, export) = call(
        &server,
        "GET",
        "/v1/accounts/acme/audit",
        None,
        Some(&server.vendor),
    );
    assert_eq!(status, 200);
    assert_eq!(
        export
            .lines()
            .filter(|l| l.contains("\"type\":\"record\""))
            .count(),
        5,
        "{export}"
    );
}

#[test]
fn a_valid_token_is_required() {
    let server = start();
    let body = json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
        "environments": []})
    .to_string();
    let (status, _) = call(&server, "POST", "/v1/requests", Some(&body), None);
    assert_eq!(status, 401);
    let (status, _) = call(&server, "POST", "/v1/requests", Some(&body), Some("wrong!"));
    assert_eq!(status, 401);
    let (status, _) = call(
        &server,
        "POST",
        "/v1/requests",
        Some(&body),
        Some(&server.admin),
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        "POST",
        "/v1/requests",
        Some(&body),
        Some(&server.vendor),
    );
    assert_eq!(status, 200);
    let (status, _) = call(&server, "GET", "/healthz", None, None);
    assert_eq!(status, 200);
}

/// `serve` on a path that holds no store refuses (a mistyped path does not
/// become a new store with a new key), unless `--create`, which makes the
/// store as `init` does and prints its admin token once.
#[test]
fn serve_makes_a_store_only_when_asked() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let db = dir.path().join("typo.db");
    let refused = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .output()
        .unwrap_or_else(|e| unreachable!("spawn: {e}"));
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("no store") && stderr.contains("--create"),
        "{stderr}"
    );
    assert!(!db.exists());

    let mut child = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["serve", "--create", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| unreachable!("spawn: {e}"));
    let mut stderr = BufReader::new(child.stderr.take().unwrap_or_else(|| unreachable!()));
    let mut first = String::new();
    stderr
        .read_line(&mut first)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.contains("admin token (shown only now): chp_"),
        "{first}"
    );
    let token = first
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    // The token works: `token list` shows its credential, not its secret.
    let listed = run(&[
        "token".as_ref(),
        "list".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    assert!(listed.contains(token.get(..20).unwrap_or("?")), "{listed}");
    assert!(!listed.contains(token.get(21..).unwrap_or("?")), "{listed}");
}

/// Every refusal is a JSON `{"error": ...}` naming what was wrong: a body
/// over the limit, a path or method the API does not have, an account the
/// log has never heard of.
#[test]
fn refusals_are_json_errors_that_say_what_was_wrong() {
    let server = start();
    let error_of = |body: &str| {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| unreachable!("not a JSON error: {body}"))
    };
    let huge = "x".repeat((2 << 20) + 1);
    let (status, body) = call(
        &server,
        "POST",
        "/v1/requests",
        Some(&huge),
        Some(&server.vendor),
    );
    assert_eq!(status, 413);
    assert!(error_of(&body).contains("length limit exceeded"), "{body}");
    let (status, body) = call(&server, "GET", "/v1/nothing", None, None);
    assert_eq!(status, 404);
    assert_eq!(error_of(&body), "no endpoint `GET /v1/nothing`");
    let (status, body) = call(&server, "GET", "/v1/requests", None, None);
    assert_eq!(status, 405);
    assert_eq!(error_of(&body), "`/v1/requests` does not take `GET`");
    let (status, body) = call(
        &server,
        "GET",
        "/v1/accounts/nobody/verify",
        None,
        Some(&server.vendor),
    );
    assert_eq!(status, 404);
    assert_eq!(error_of(&body), "no account `nobody`");
}

/// SIGTERM (what a service manager sends) stops the server cleanly: it
/// exits 0 and says so, and what it answered is in the store.
#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_cleanly_and_keeps_what_it_recorded() {
    let mut server = start();
    let (status, _) = post(
        &server,
        &json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
                "environments": [{"id": "prod", "kind": "production"}]}),
    );
    assert_eq!(status, 200);
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap_or_else(|e| unreachable!("kill: {e}"));
    assert!(killed.success());
    let exit = server
        .child
        .wait()
        .unwrap_or_else(|e| unreachable!("wait: {e}"));
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let mut rest = String::new();
    server
        .stderr
        .read_to_string(&mut rest)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(rest.contains("chaperone: stopped"), "{rest}");
    let verified = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["audit", "verify", "--json", "--account", "acme", "--db"])
        .arg(server.dir.path().join("api.db"))
        .output()
        .unwrap_or_else(|e| unreachable!("verify: {e}"));
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap_or(Value::Null);
    assert_eq!(verified.status.code(), Some(0), "{report}");
    assert_eq!(
        (report.get("accounts"), report.get("records")),
        (Some(&json!(1)), Some(&json!(1))),
        "{report}"
    );
}

/// Reads until the server closes the connection (or `limit` passes: then
/// `None`). What was read, if it closed.
fn read_until_closed(stream: &mut TcpStream, limit: std::time::Duration) -> Option<String> {
    stream
        .set_read_timeout(Some(limit))
        .unwrap_or_else(|e| unreachable!("{e}"));
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(buffer.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
            Err(_) => return None,
        }
    }
}

/// A client that sends half a header is cut off after the header timeout;
/// one that sends its body a byte at a time is answered 408 after the
/// request timeout.
#[test]
fn slow_clients_are_cut_off() {
    let server = start_with(&["--header-timeout", "1", "--request-timeout", "2"]);
    let patience = std::time::Duration::from_secs(20);

    let mut half = TcpStream::connect(&server.addr).unwrap_or_else(|e| unreachable!("{e}"));
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(
        read_until_closed(&mut half, patience).is_some(),
        "a half-sent header kept its connection open"
    );

    let mut slow = TcpStream::connect(&server.addr).unwrap_or_else(|e| unreachable!("{e}"));
    let body = json!({"op": "account", "id": "slow", "policy": "celigo", "plan": "paid", "environments": []}).to_string();
    write!(
        slow,
        "POST /v1/requests HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n",
        server.vendor,
        body.len()
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let mut answer = None;
    for byte in body.bytes() {
        if slow.write_all(&[byte]).is_err() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        slow.set_nonblocking(true)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let mut buffer = [0u8; 1024];
        let read = slow.read(&mut buffer);
        slow.set_nonblocking(false)
            .unwrap_or_else(|e| unreachable!("{e}"));
        if let Ok(n) = read
            && n > 0
        {
            answer =
                Some(String::from_utf8_lossy(buffer.get(..n).unwrap_or_default()).into_owned());
            break;
        }
    }
    let answer = answer.unwrap_or_else(|| unreachable!("the slow body was never answered"));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Nothing of it was recorded.
    let (status, _) = call(
        &server,
        "GET",
        "/v1/accounts/slow",
        None,
        Some(&server.vendor),
    );
    assert_eq!(status, 404);
}

/// Past the connection limit a new connection is closed at once, without
/// an answer; once connections go, the server serves again.
#[test]
fn connections_past_the_limit_are_closed() {
    let server = start_with(&["--header-timeout", "60", "--max-connections", "3"]);
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&server.addr).unwrap_or_else(|e| unreachable!("{e}")))
        .collect();
    // The three are accepted (and hold the permits) before the fourth comes.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut excess = TcpStream::connect(&server.addr).unwrap_or_else(|e| unreachable!("{e}"));
    let _ = excess.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n");
    let got = read_until_closed(&mut excess, std::time::Duration::from_secs(20));
    assert_eq!(
        got.as_deref(),
        Some(""),
        "a connection over the limit was served"
    );
    drop(idle);
    let mut served = false;
    for _ in 0..100 {
        if call(&server, "GET", "/healthz", None, None).0 == 200 {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(served);
}

/// SIGTERM while clients keep sending: the server stops accepting, answers
/// what it took, and every decision it acknowledged (200, with its seq) is
/// in the store afterwards with the verdict it answered; the chains verify.
#[cfg(unix)]
#[test]
fn sigterm_during_load_loses_no_acknowledged_decision() {
    let mut server = start();
    for n in 0..4 {
        let (status, _) = post(
            &server,
            &json!({"op": "account", "id": format!("load{n}"), "policy": "celigo", "plan": "paid",
                    "environments": [{"id": "prod", "kind": "production"}]}),
        );
        assert_eq!(status, 200);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let (addr, token) = (server.addr.clone(), server.vendor.clone());
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let body = json!({"op": "act", "account": format!("load{n}"), "agent": "sam@celigo.com",
                                  "action": {"name": "flow.read", "environment": "prod"}})
                .to_string();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(&addr) else {
                        break;
                    };
                    let request = format!(
                        "POST /v1/requests HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(request.as_bytes()).is_err() {
                        break;
                    }
                    let mut response = String::new();
                    if stream.read_to_string(&mut response).is_err() {
                        continue;
                    }
                    if response.starts_with("HTTP/1.1 200")
                        && let Some(answer) = response
                            .split("\r\n\r\n")
                            .nth(1)
                            .and_then(|b| serde_json::from_str::<Value>(b).ok())
                    {
                        acknowledged
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((format!("load{n}"), answer));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap_or_else(|e| unreachable!("kill: {e}"));
    assert!(killed.success());
    let exit = server
        .child
        .wait()
        .unwrap_or_else(|e| unreachable!("wait: {e}"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let acknowledged = acknowledged
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(
        acknowledged.len() > 4,
        "too little load: {}",
        acknowledged.len()
    );
    let db = server.dir.path().join("api.db");
    for (account, answer) in &acknowledged {
        let export = Command::new(env!("CARGO_BIN_EXE_chaperone"))
            .args(["audit", "export", "--account", account, "--db"])
            .arg(&db)
            .output()
            .unwrap_or_else(|e| unreachable!("export: {e}"));
        let text = String::from_utf8_lossy(&export.stdout);
        let seq = answer.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let verdict = answer
            .get("decision")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let found = text.lines().any(|line| {
            serde_json::from_str::<Value>(line).ok().is_some_and(|l| {
                l.get("seq").and_then(Value::as_u64) == Some(seq)
                    && l.pointer("/record/decision/verdict")
                        .and_then(Value::as_str)
                        == Some(verdict)
            })
        });
        assert!(
            found,
            "{account} seq {seq} ({verdict}) was acknowledged but is not in the store"
        );
    }
    let verified = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .output()
        .unwrap_or_else(|e| unreachable!("verify: {e}"));
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
}
