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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(token: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let db = dir.path().join("api.db");
    let mut command = Command::new(env!("CARGO_BIN_EXE_chaperone"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_remove("CHAPERONE_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.args(["--token", token]);
    }
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
        None,
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn the_api_decides_records_and_verifies() {
    let server = start(None);
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
    let (status, _) = call(&server, "POST", "/v1/requests", Some("{not json"), None);
    assert_eq!(status, 400);

    let (status, note) = call(&server, "POST", "/v1/checkpoint", None, None);
    assert_eq!(status, 200);
    assert!(
        note.contains("\nversion 2\n") && !note.contains("acme"),
        "{note}"
    );
    let (status, report) = call(&server, "GET", "/v1/accounts/acme/verify", None, None);
    assert_eq!(status, 200);
    let report: Value = serde_json::from_str(&report).unwrap_or(Value::Null);
    assert_eq!(report.get("ok"), Some(&json!(true)), "{report}");
    assert_eq!(report.get("records"), Some(&json!(5)), "{report}");
    let (status, export) = call(&server, "GET", "/v1/accounts/acme/audit", None, None);
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
fn a_token_is_required_when_configured() {
    let server = start(Some("s3cret"));
    let body = json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
        "environments": []})
    .to_string();
    let (status, _) = call(&server, "POST", "/v1/requests", Some(&body), None);
    assert_eq!(status, 401);
    let (status, _) = call(&server, "POST", "/v1/requests", Some(&body), Some("wrong!"));
    assert_eq!(status, 401);
    let (status, _) = call(&server, "POST", "/v1/requests", Some(&body), Some("s3cret"));
    assert_eq!(status, 200);
    let (status, _) = call(&server, "GET", "/healthz", None, None);
    assert_eq!(status, 200);
}

/// Every refusal is a JSON `{"error": ...}` naming what was wrong: a body
/// over the limit, a path or method the API does not have, an account the
/// log has never heard of.
#[test]
fn refusals_are_json_errors_that_say_what_was_wrong() {
    let server = start(None);
    let error_of = |body: &str| {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| unreachable!("not a JSON error: {body}"))
    };
    let huge = "x".repeat((2 << 20) + 1);
    let (status, body) = call(&server, "POST", "/v1/requests", Some(&huge), None);
    assert_eq!(status, 413);
    assert!(error_of(&body).contains("length limit exceeded"), "{body}");
    let (status, body) = call(&server, "GET", "/v1/nothing", None, None);
    assert_eq!(status, 404);
    assert_eq!(error_of(&body), "no endpoint `GET /v1/nothing`");
    let (status, body) = call(&server, "GET", "/v1/requests", None, None);
    assert_eq!(status, 405);
    assert_eq!(error_of(&body), "`/v1/requests` does not take `GET`");
    let (status, body) = call(&server, "GET", "/v1/accounts/nobody/verify", None, None);
    assert_eq!(status, 404);
    assert_eq!(error_of(&body), "no audit records for account `nobody`");
}

/// SIGTERM (what a service manager sends) stops the server cleanly: it
/// exits 0 and says so, and what it answered is in the store.
#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_cleanly_and_keeps_what_it_recorded() {
    let mut server = start(None);
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
        .args(["audit", "verify", "--json", "--db"])
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
