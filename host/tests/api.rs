//! The HTTP API as a library: driven in-process through the router
//! (`tower::ServiceExt::oneshot`), and once over a real socket.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::io::{Read as _, Write as _};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chaperone::api::{self, ApiOptions};
use chaperone::service::{Host, HostOptions};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    host: Host,
    pubkey: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("api.db");
    let host = Host::open(&db, HostOptions::default()).unwrap();
    let pubkey = chaperone_log::keys::public_key_path(&db);
    Fixture {
        _dir: dir,
        host,
        pubkey,
    }
}

fn router(fixture: &Fixture, token: Option<&str>) -> Router {
    api::router(
        fixture.host.clone(),
        ApiOptions {
            token: token.map(str::to_owned),
        },
    )
}

async fn call(router: &Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

async fn setup_acme(router: &Router) {
    for step in [
        json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
               "environments": [{"id": "prod", "kind": "production"}]}),
        json!({"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "owner"}),
    ] {
        let (status, body) = call(router, post("/v1/requests", &step)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json_of(&body)["recorded"], "sync");
    }
}

#[tokio::test]
async fn a_grant_is_decided_recorded_and_exported_verifiably() {
    let fixture = fixture();
    let router = router(&fixture, None);
    setup_acme(&router).await;
    let (status, body) = call(
        &router,
        post(
            "/v1/requests",
            &json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
                    "scope": {"level": "admin"}, "expires_in": {"days": 5}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let decision = json_of(&body);
    assert_eq!(decision["decision"], "allow", "{decision}");
    assert_eq!(decision["seq"], 3);
    assert!(decision["id"].is_string(), "{decision}");

    // A scope of the wrong shape is the module's to refuse, not the host's.
    let (status, body) = call(
        &router,
        post(
            "/v1/requests",
            &json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
                    "scope": "admin", "expires_in": {"days": 5}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let decision = json_of(&body);
    assert_eq!(
        (decision["decision"].as_str(), decision["rule"].as_str()),
        (Some("deny"), Some("CEL-LEVEL")),
        "{decision}"
    );

    let (status, body) = call(&router, get("/v1/accounts/acme/verify")).await;
    assert_eq!(status, StatusCode::OK);
    let report = json_of(&body);
    assert_eq!(report["ok"], true, "{report}");

    let (status, _) = call(&router, post("/v1/checkpoint", &json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, export) = call(&router, get("/v1/accounts/acme/audit")).await;
    assert_eq!(status, StatusCode::OK);
    let verifier = chaperone_log::keys::load_verifier(&fixture.pubkey).unwrap();
    let report =
        chaperone_log::export::verify_export(std::io::Cursor::new(export), Some(&verifier))
            .unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 4);
}

#[tokio::test]
async fn refusals_are_json_errors_naming_what_was_wrong() {
    let fixture = fixture();
    let router = router(&fixture, None);
    let cases = [
        (
            post("/v1/requests", &json!({"op": "fly"})),
            StatusCode::BAD_REQUEST,
            "`op`",
        ),
        (
            Request::post("/v1/requests")
                .body(Body::from("{not json"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            post(
                "/v1/requests",
                &json!({"op": "act", "account": "nobody", "agent": "a@v.test",
                        "action": {"name": "flow.read"}}),
            ),
            StatusCode::NOT_FOUND,
            "nobody",
        ),
        (get("/v2/nothing"), StatusCode::NOT_FOUND, "/v2/nothing"),
        (get("/v1/tick"), StatusCode::METHOD_NOT_ALLOWED, "GET"),
        (
            get("/v1/accounts/ghost/verify"),
            StatusCode::NOT_FOUND,
            "ghost",
        ),
    ];
    for (request, status, needle) in cases {
        let (got, body) = call(&router, request).await;
        assert_eq!(got, status, "{}", String::from_utf8_lossy(&body));
        let error = json_of(&body);
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

#[tokio::test]
async fn a_token_guards_every_v1_call() {
    let fixture = fixture();
    let router = router(&fixture, Some("s3cret"));
    let (status, body) = call(&router, post("/v1/tick", &json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json_of(&body)["error"].as_str().unwrap().contains("bearer"));
    let wrong = Request::post("/v1/tick")
        .header("authorization", "Bearer s3creT")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&router, wrong).await.0, StatusCode::UNAUTHORIZED);
    let right = Request::post("/v1/tick")
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(&router, right).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["expired"], 0);
    // Health needs no token.
    assert_eq!(call(&router, get("/healthz")).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_over_a_socket() {
    let fixture = fixture();
    let router = router(&fixture, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let body = json!({"op": "account", "id": "globex", "policy": "xentral", "plan": "paid",
                      "environments": [{"id": "prod", "kind": "production"}]})
    .to_string();
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /v1/requests HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    server.abort();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json = response.split("\r\n\r\n").nth(1).expect("a body");
    assert_eq!(json_of(json.as_bytes())["seq"], 1, "{response}");
}
