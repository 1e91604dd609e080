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
use chaperone_store::registry::Scope;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    host: Host,
    pubkey: std::path::PathBuf,
    admin: String,
    celigo: String,
    xentral: String,
}

fn token(host: &Host, scope: Scope) -> String {
    host.create_credential(1, scope, "test", "test")
        .unwrap()
        .token
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("api.db");
    let host = Host::open(&db, HostOptions::default()).unwrap();
    let pubkey = chaperone_log::keys::public_key_path(&db);
    Fixture {
        admin: token(&host, Scope::Admin),
        celigo: token(&host, Scope::Vendor("celigo".into())),
        xentral: token(&host, Scope::Vendor("xentral".into())),
        _dir: dir,
        host,
        pubkey,
    }
}

fn router(fixture: &Fixture) -> Router {
    api::router(fixture.host.clone(), ApiOptions::default())
}

async fn call(router: &Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

fn post_as(token: &str, path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get_as(token: &str, path: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

async fn setup_acme(fixture: &Fixture, router: &Router) {
    for step in [
        json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
               "environments": [{"id": "prod", "kind": "production"}]}),
        json!({"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "owner"}),
    ] {
        let (status, body) = call(router, post_as(&fixture.celigo, "/v1/requests", &step)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json_of(&body)["recorded"], "sync");
    }
}

async fn setup_globex(fixture: &Fixture, router: &Router) {
    let step = json!({"op": "account", "id": "globex", "policy": "xentral", "plan": "paid",
                      "environments": [{"id": "prod", "kind": "production"}]});
    let (status, body) = call(router, post_as(&fixture.xentral, "/v1/requests", &step)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

fn grant() -> Value {
    json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
           "scope": {"level": "admin"}, "expires_in": {"days": 5}})
}

#[tokio::test]
async fn a_grant_is_decided_recorded_and_exported_verifiably() {
    let fixture = fixture();
    let router = router(&fixture);
    setup_acme(&fixture, &router).await;
    let vendor = fixture.celigo.as_str();
    let (status, body) = call(&router, post_as(vendor, "/v1/requests", &grant())).await;
    assert_eq!(status, StatusCode::OK);
    let decision = json_of(&body);
    assert_eq!(decision["decision"], "allow", "{decision}");
    assert_eq!(decision["seq"], 3);
    assert!(decision["id"].is_string(), "{decision}");

    // A scope of the wrong shape is the module's to refuse, not the host's.
    let mut bad_scope = grant();
    bad_scope["scope"] = json!("admin");
    let (status, body) = call(&router, post_as(vendor, "/v1/requests", &bad_scope)).await;
    assert_eq!(status, StatusCode::OK);
    let decision = json_of(&body);
    assert_eq!(
        (decision["decision"].as_str(), decision["rule"].as_str()),
        (Some("deny"), Some("CEL-LEVEL")),
        "{decision}"
    );

    let (status, body) = call(&router, get_as(vendor, "/v1/accounts/acme/verify")).await;
    assert_eq!(status, StatusCode::OK);
    let report = json_of(&body);
    assert_eq!(report["ok"], true, "{report}");

    let (status, _) = call(
        &router,
        post_as(&fixture.admin, "/v1/checkpoint", &json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, export) = call(&router, get_as(vendor, "/v1/accounts/acme/audit")).await;
    assert_eq!(status, StatusCode::OK);
    let verifier = chaperone_log::keys::load_verifier(&fixture.pubkey).unwrap();
    let report =
        chaperone_log::export::verify_export(std::io::Cursor::new(export), Some(&verifier))
            .unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 4);

    // The state route shows the grant with its expiry instant.
    let (status, body) = call(&router, get_as(vendor, "/v1/accounts/acme")).await;
    assert_eq!(status, StatusCode::OK);
    let state = json_of(&body);
    assert_eq!(
        state["account"]["grants"][0]["expires"],
        decision_expiry(&state)
    );
    assert_eq!(state["seq"], 4, "{state}");
}

fn decision_expiry(state: &Value) -> Value {
    let ms = state["account"]["grants"][0]["expires_at"]
        .as_i64()
        .unwrap();
    json!(chaperone::instant::format(ms))
}

#[tokio::test]
async fn refusals_are_json_errors_naming_what_was_wrong() {
    let fixture = fixture();
    let router = router(&fixture);
    let vendor = fixture.celigo.as_str();
    let cases = [
        (
            post_as(vendor, "/v1/requests", &json!({"op": "fly"})),
            StatusCode::BAD_REQUEST,
            "`op`",
        ),
        (
            Request::post("/v1/requests")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {vendor}"))
                .body(Body::from("{not json"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            Request::post("/v1/requests")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("Bearer {vendor}"))
                .body(Body::from("op=tick"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            post_as(
                vendor,
                "/v1/requests",
                &json!({"op": "act", "account": "nobody", "agent": "a@v.test",
                        "action": {"name": "flow.read"}}),
            ),
            StatusCode::NOT_FOUND,
            "nobody",
        ),
        (
            post_as(vendor, "/v1/requests", &{
                let mut g = grant();
                if let Some(fields) = g.as_object_mut() {
                    fields.insert("note".into(), json!("x".repeat(900_000)));
                }
                g
            }),
            StatusCode::BAD_REQUEST,
            "`note` is not a field of `grant`",
        ),
        (
            post_as(
                vendor,
                "/v1/requests",
                &json!({"op": "grant", "pad": "x".repeat(2 << 20)}),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "length limit",
        ),
        (
            get_as(vendor, "/v2/nothing"),
            StatusCode::NOT_FOUND,
            "/v2/nothing",
        ),
        (
            get_as(vendor, "/v1/tick"),
            StatusCode::METHOD_NOT_ALLOWED,
            "GET",
        ),
        (
            get_as(vendor, "/v1/accounts/ghost/verify"),
            StatusCode::NOT_FOUND,
            "ghost",
        ),
        (
            get_as(vendor, "/v1/accounts/ghost/audit"),
            StatusCode::NOT_FOUND,
            "ghost",
        ),
        (
            get_as(vendor, "/v1/accounts/ghost"),
            StatusCode::NOT_FOUND,
            "ghost",
        ),
        (
            post_as(
                vendor,
                "/v1/requests",
                &json!({"op": "account", "id": "@registry", "policy": "celigo", "plan": "paid", "environments": []}),
            ),
            StatusCode::BAD_REQUEST,
            "`@`",
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
async fn a_valid_token_guards_every_v1_call() {
    let fixture = fixture();
    let router = router(&fixture);
    let (status, body) = call(
        &router,
        Request::post("/v1/tick").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json_of(&body)["error"].as_str().unwrap().contains("bearer"));
    let mut wrong = fixture.admin.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    for token in [wrong.as_str(), "s3cret", "", "chp_0123456789abcdef_x"] {
        let (status, _) = call(&router, post_as(token, "/v1/tick", &json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    let (status, body) = call(&router, post_as(&fixture.admin, "/v1/tick", &json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["expired"], 0);
    // Health needs no token.
    let health = Request::get("/healthz").body(Body::empty()).unwrap();
    assert_eq!(call(&router, health).await.0, StatusCode::OK);
}

/// The records of `account`'s chain, as JSON.
fn records(fixture: &Fixture, account: &str) -> Vec<Value> {
    fixture
        .host
        .store()
        .records(account)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.bytes).unwrap())
        .collect()
}

#[tokio::test]
async fn each_credential_reaches_only_its_own() {
    let fixture = fixture();
    let router = router(&fixture);
    setup_acme(&fixture, &router).await;
    setup_globex(&fixture, &router).await;
    let customer = token(&fixture.host, Scope::Customer("acme".into()));
    let (admin, celigo, xentral) = (&fixture.admin, &fixture.celigo, &fixture.xentral);
    let revoke_nothing =
        json!({"op": "revoke", "account": "acme", "actor": "ada", "grant": "grant-404"});
    let act_on_globex = json!({"op": "act", "account": "globex", "agent": "a@v.test", "action": {"name": "flow.read"}});
    let cases: Vec<(&str, Request<Body>, StatusCode)> = vec![
        // An admin manages, but carries out no account request.
        (
            "admin grant",
            post_as(admin, "/v1/requests", &grant()),
            StatusCode::FORBIDDEN,
        ),
        (
            "admin reads",
            get_as(admin, "/v1/accounts/acme/verify"),
            StatusCode::OK,
        ),
        ("admin tokens", get_as(admin, "/v1/tokens"), StatusCode::OK),
        (
            "admin modules",
            get_as(admin, "/v1/modules"),
            StatusCode::OK,
        ),
        // A vendor: its accounts only; creates accounts of its vendor only.
        (
            "vendor grant",
            post_as(celigo, "/v1/requests", &grant()),
            StatusCode::OK,
        ),
        (
            "vendor, other's account",
            post_as(celigo, "/v1/requests", &act_on_globex),
            StatusCode::FORBIDDEN,
        ),
        (
            "vendor, other's log",
            get_as(celigo, "/v1/accounts/globex/audit"),
            StatusCode::FORBIDDEN,
        ),
        (
            "vendor, other's state",
            get_as(xentral, "/v1/accounts/acme"),
            StatusCode::FORBIDDEN,
        ),
        (
            "vendor creates another vendor's account",
            post_as(
                celigo,
                "/v1/requests",
                &json!({"op": "account", "id": "initech", "policy": "xentral", "plan": "paid", "environments": []}),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "vendor takes an account id of another vendor",
            post_as(
                xentral,
                "/v1/requests",
                &json!({"op": "account", "id": "acme", "policy": "xentral", "plan": "paid", "environments": []}),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "vendor tokens",
            get_as(celigo, "/v1/tokens"),
            StatusCode::FORBIDDEN,
        ),
        (
            "vendor tick",
            post_as(celigo, "/v1/tick", &json!({})),
            StatusCode::FORBIDDEN,
        ),
        (
            "vendor checkpoint",
            post_as(celigo, "/v1/checkpoint", &json!({})),
            StatusCode::FORBIDDEN,
        ),
        (
            "vendor rollback",
            post_as(celigo, "/v1/modules/rollback", &json!({"vendor": "celigo"})),
            StatusCode::FORBIDDEN,
        ),
        // A customer: its account's state and log, and revoking.
        (
            "customer state",
            get_as(&customer, "/v1/accounts/acme"),
            StatusCode::OK,
        ),
        (
            "customer log",
            get_as(&customer, "/v1/accounts/acme/audit"),
            StatusCode::OK,
        ),
        (
            "customer verify",
            get_as(&customer, "/v1/accounts/acme/verify"),
            StatusCode::OK,
        ),
        (
            "customer revoke",
            post_as(&customer, "/v1/requests", &revoke_nothing),
            StatusCode::OK,
        ),
        (
            "customer grant",
            post_as(&customer, "/v1/requests", &grant()),
            StatusCode::FORBIDDEN,
        ),
        (
            "customer, other's state",
            get_as(&customer, "/v1/accounts/globex"),
            StatusCode::FORBIDDEN,
        ),
        (
            "customer, unknown account",
            get_as(&customer, "/v1/accounts/ghost"),
            StatusCode::FORBIDDEN,
        ),
        (
            "customer modules",
            get_as(&customer, "/v1/modules"),
            StatusCode::FORBIDDEN,
        ),
        (
            "customer tokens",
            get_as(&customer, "/v1/tokens"),
            StatusCode::FORBIDDEN,
        ),
        (
            "anyone: pubkey",
            get_as(&customer, "/v1/pubkey"),
            StatusCode::OK,
        ),
    ];
    for (name, request, expected) in cases {
        let (status, body) = call(&router, request).await;
        assert_eq!(
            status,
            expected,
            "{name}: {}",
            String::from_utf8_lossy(&body)
        );
        if status != StatusCode::OK {
            let error = json_of(&body);
            assert!(error["error"].is_string(), "{name}: {error}");
        }
    }
    // Every refusal on an existing account is in that account's chain,
    // naming the credential; none is recorded for an unknown account.
    let refused = |account: &str| -> Vec<Value> {
        records(&fixture, account)
            .into_iter()
            .filter(|r| r["kind"] == "refused")
            .collect()
    };
    let on_acme = refused("acme");
    assert_eq!(on_acme.len(), 4, "{on_acme:#?}"); // admin grant, xentral state, xentral takeover, customer grant
    assert!(on_acme.iter().all(|r| {
        r["request"]["credential"]
            .as_str()
            .unwrap()
            .starts_with("chp_")
    }));
    let on_globex = refused("globex");
    assert_eq!(on_globex.len(), 3, "{on_globex:#?}"); // celigo act and log, customer state
    assert!(fixture.host.store().head("ghost").unwrap().is_none());
    assert!(fixture.host.store().head("initech").unwrap().is_none());
    // The customer's revoke went to the policy.
    let revoke = records(&fixture, "acme")
        .into_iter()
        .find(|r| r["kind"] == "revoke");
    assert!(revoke.is_some_and(|r| r["decision"]["verdict"] == "deny"));
}

#[tokio::test]
async fn tokens_are_created_listed_and_revoked_over_the_api() {
    let fixture = fixture();
    let router = router(&fixture);
    let (status, body) = call(
        &router,
        post_as(
            &fixture.admin,
            "/v1/tokens",
            &json!({"kind": "vendor", "subject": "celigo", "label": "backend 2"}),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let created = json_of(&body);
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["credential"]["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with(&id));
    let (status, body) = call(&router, get_as(&fixture.admin, "/v1/tokens")).await;
    assert_eq!(status, StatusCode::OK);
    let listed = String::from_utf8(body).unwrap();
    assert!(
        listed.contains(&id) && !listed.contains(&token[id.len() + 1..]),
        "{listed}"
    );
    assert_eq!(
        call(&router, get_as(&token, "/v1/modules")).await.0,
        StatusCode::OK
    );
    let revoke = Request::delete(format!("/v1/tokens/{id}"))
        .header("authorization", format!("Bearer {}", fixture.admin))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&router, revoke).await.0, StatusCode::OK);
    assert_eq!(
        call(&router, get_as(&token, "/v1/modules")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Bad bodies are named.
    for (body, needle) in [
        (json!({"kind": "vendor"}), "subject"),
        (json!({"kind": "customer", "subject": "ghost"}), "ghost"),
        (json!({"kind": "admin", "extra": 1}), "extra"),
    ] {
        let (status, answer) = call(&router, post_as(&fixture.admin, "/v1/tokens", &body)).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert!(
            String::from_utf8_lossy(&answer).contains(needle),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // Each change is in the @registry chain, without a secret; an admin
    // reads that chain like any other, a vendor cannot.
    let (status, _) = call(
        &router,
        get_as(&fixture.admin, "/v1/accounts/@registry/verify"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &router,
        get_as(&fixture.celigo, "/v1/accounts/@registry/audit"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let registry = records(&fixture, "@registry");
    let kinds: Vec<&str> = registry
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "credential-create").count(),
        4
    );
    assert_eq!(kinds.last(), Some(&"credential-revoke"));
    let text = serde_json::to_string(&registry).unwrap();
    assert!(!text.contains(&token[id.len() + 1..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_over_a_socket() {
    let fixture = fixture();
    let router = router(&fixture);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let body = json!({"op": "account", "id": "globex", "policy": "xentral", "plan": "paid",
                      "environments": [{"id": "prod", "kind": "production"}]})
    .to_string();
    let token = fixture.xentral.clone();
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /v1/requests HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// `/openapi.json` is generated from the handlers the router is built from:
/// every documented path and method reaches a handler (never the
/// no-such-endpoint or wrong-method answer), and every route is documented.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let fixture = fixture();
    let router = router(&fixture);
    let open = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let (status, body) = call(&router, open).await;
    assert_eq!(status, StatusCode::OK);
    let document = json_of(&body);
    let paths = document["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path.replace("{id}", "acme");
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let (status, body) = call(&router, request).await;
            let text = String::from_utf8_lossy(&body);
            assert!(
                !text.contains("no endpoint") && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {status} {text}"
            );
        }
    }
    documented.sort();
    let mut expected = vec![
        "GET /healthz",
        "POST /v1/requests",
        "GET /v1/accounts/{id}",
        "GET /v1/accounts/{id}/verify",
        "GET /v1/accounts/{id}/audit",
        "GET /v1/checkpoint",
        "POST /v1/checkpoint",
        "GET /v1/pubkey",
        "GET /v1/modules",
        "POST /v1/modules",
        "POST /v1/modules/activate",
        "POST /v1/modules/rollback",
        "POST /v1/modules/diff",
        "GET /v1/tokens",
        "POST /v1/tokens",
        "DELETE /v1/tokens/{id}",
        "POST /v1/tick",
        "GET /v1/webhooks",
        "POST /v1/webhooks",
        "GET /v1/webhooks/{id}",
        "DELETE /v1/webhooks/{id}",
    ];
    expected.sort_unstable();
    assert_eq!(documented, expected);
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

/// The customer's kill switch under load: while the vendor's agents act on
/// the account, the customer revokes support access. Every request is
/// answered (none refused for being concurrent), and every act recorded
/// after the revoke is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_revokes_while_the_vendors_agents_act() {
    let fixture = fixture();
    let router = router(&fixture);
    setup_acme(&fixture, &router).await;
    let (status, body) = call(&router, post_as(&fixture.celigo, "/v1/requests", &grant())).await;
    assert_eq!(status, StatusCode::OK);
    let granted = json_of(&body);
    let grant_id = granted["id"].as_str().unwrap().to_owned();
    let customer = token(&fixture.host, Scope::Customer("acme".into()));
    let act = json!({"op": "act", "account": "acme", "agent": "sam@celigo.com",
                     "action": {"name": "flow.read", "environment": "prod"}});
    let mut agents = Vec::new();
    for _ in 0..8 {
        let (router, token, act) = (router.clone(), fixture.celigo.clone(), act.clone());
        agents.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..15 {
                statuses.push(call(&router, post_as(&token, "/v1/requests", &act)).await.0);
            }
            statuses
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let revoke = json!({"op": "revoke", "account": "acme", "actor": "ada", "grant": grant_id});
    let (status, body) = call(&router, post_as(&customer, "/v1/requests", &revoke)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let revoked = json_of(&body);
    assert_eq!(revoked["decision"], "allow", "{revoked}");
    for agent in agents {
        for status in agent.await.unwrap() {
            assert_eq!(status, StatusCode::OK);
        }
    }
    let revoke_seq = revoked["seq"].as_u64().unwrap();
    let acts: Vec<Value> = records(&fixture, "acme")
        .into_iter()
        .filter(|r| r["kind"] == "act")
        .collect();
    assert_eq!(acts.len(), 120);
    for record in &acts {
        if record["seq"].as_u64().unwrap() > revoke_seq {
            assert_eq!(record["decision"]["verdict"], "deny", "{record}");
        }
    }
    let report = fixture.host.store().verify(&Default::default()).unwrap();
    assert!(report.is_ok(), "{}", report.to_json());
}

/// `POST /v1/modules/diff`: the candidate re-decides the vendor's recorded
/// decisions; the admin or the vendor itself may ask, nobody else; a module
/// of another vendor is refused.
#[tokio::test]
async fn a_candidate_module_is_compared_over_the_api() {
    let fixture = fixture();
    let router = router(&fixture);
    setup_acme(&fixture, &router).await;
    let (status, _) = call(&router, post_as(&fixture.celigo, "/v1/requests", &grant())).await;
    assert_eq!(status, StatusCode::OK);
    let wasm = |token: &str, query: &str, bytes: &'static [u8]| {
        Request::post(format!("/v1/modules/diff?{query}"))
            .header("content-type", "application/wasm")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(bytes))
            .unwrap()
    };
    let celigo = chaperone::builtin::CELIGO.bytes;
    for token in [&fixture.admin, &fixture.celigo] {
        let (status, body) = call(&router, wasm(token, "vendor=celigo", celigo)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let report = json_of(&body);
        assert_eq!(report["decisions"], 1, "{report}");
        assert_eq!(report["changes"], json!([]), "{report}");
    }
    let (status, body) = call(
        &router,
        wasm(
            &fixture.admin,
            "vendor=celigo&since=2999-01-01T00:00:00Z",
            celigo,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["decisions"], 0);
    let (status, _) = call(&router, wasm(&fixture.xentral, "vendor=celigo", celigo)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(&router, wasm(&fixture.admin, "vendor=xentral", celigo)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(String::from_utf8_lossy(&body).contains("`celigo`, not `xentral`"));
    let (status, _) = call(
        &router,
        wasm(&fixture.admin, "vendor=celigo&since=yesterday", celigo),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// `POST /v1/modules`: an admin installs a module (checked as `policy
/// check` does); a second install of the same digest, another content
/// type, or another credential kind is refused.
#[tokio::test]
async fn an_admin_installs_a_module_over_the_api() {
    let fixture = fixture();
    let router = router(&fixture);
    let install = |token: &str, content_type: &str| {
        Request::post("/v1/modules?vendor=celigo")
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(chaperone::builtin::CELIGO.bytes))
            .unwrap()
    };
    let (status, _) = call(&router, install(&fixture.celigo, "application/wasm")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&router, install(&fixture.admin, "application/json")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = call(&router, install(&fixture.admin, "application/wasm")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let installed = json_of(&body);
    assert_eq!(installed["module"]["active"], true, "{installed}");
    let (status, _) = call(&router, install(&fixture.admin, "application/wasm")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = call(&router, get_as(&fixture.celigo, "/v1/modules")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_of(&body)["modules"][0]["digest"],
        installed["module"]["digest"]
    );
    let kinds: Vec<Value> = records(&fixture, "@registry")
        .into_iter()
        .map(|r| r["kind"].clone())
        .collect();
    assert!(kinds.contains(&json!("policy-install")), "{kinds:?}");
}

fn delete_as(token: &str, path: &str) -> Request<Body> {
    Request::delete(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// `/v1/webhooks`: each credential subscribes for itself and sees,
/// inspects and removes only its own subscriptions (another's is 404); an
/// admin names the owner; bad URLs and types are 400 naming them.
#[tokio::test]
async fn webhook_subscriptions_belong_to_their_credential() {
    let fixture = fixture();
    let router = router(&fixture);
    setup_acme(&fixture, &router).await;
    let customer = token(&fixture.host, Scope::Customer("acme".into()));
    let body =
        json!({"url": "https://hooks.celigo.test/chaperone", "types": ["grant", "act.denied"]});

    let (status, made) = call(&router, post_as(&fixture.celigo, "/v1/webhooks", &body)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&made)
    );
    let vendor_hook = json_of(&made)["webhook"].clone();
    assert_eq!(
        vendor_hook["owner"],
        json!({"kind": "vendor", "subject": "celigo"})
    );
    let vendor_id = vendor_hook["id"].as_str().unwrap().to_owned();
    assert!(vendor_id.starts_with("wh_"), "{vendor_id}");

    let (status, made) = call(
        &router,
        post_as(
            &customer,
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/h", "types": ["*"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let customer_id = json_of(&made)["webhook"]["id"].as_str().unwrap().to_owned();

    // Each lists its own; the admin lists all.
    for (token, want) in [
        (&fixture.celigo, vec![&vendor_id]),
        (&customer, vec![&customer_id]),
        (&fixture.xentral, vec![]),
    ] {
        let (status, listed) = call(&router, get_as(token, "/v1/webhooks")).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<String> = json_of(&listed)["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.iter().collect::<Vec<_>>(), want);
    }
    let (_, listed) = call(&router, get_as(&fixture.admin, "/v1/webhooks")).await;
    assert_eq!(json_of(&listed)["webhooks"].as_array().unwrap().len(), 2);

    // Another's subscription does not exist for you.
    let path = format!("/v1/webhooks/{vendor_id}");
    for token in [&fixture.xentral, &customer] {
        assert_eq!(
            call(&router, get_as(token, &path)).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&router, delete_as(token, &path)).await.0,
            StatusCode::NOT_FOUND
        );
    }
    let (status, seen) = call(&router, get_as(&fixture.celigo, &path)).await;
    assert_eq!(status, StatusCode::OK);
    let seen = json_of(&seen);
    assert_eq!(
        (seen["pending"].clone(), seen["delivered"].clone()),
        (json!(0), json!(0)),
        "{seen}"
    );

    // A grant makes a pending delivery for both subscriptions.
    let (status, _) = call(&router, post_as(&fixture.celigo, "/v1/requests", &grant())).await;
    assert_eq!(status, StatusCode::OK);
    let (_, seen) = call(&router, get_as(&fixture.celigo, &path)).await;
    assert_eq!(json_of(&seen)["pending"], 1);

    // Refusals name what was wrong.
    let cases = [
        (
            json!({"url": "ftp://x.test", "types": ["grant"]}),
            "ftp://x.test",
        ),
        (
            json!({"url": "https://x.test", "types": ["grants"]}),
            "`grants`",
        ),
        (
            json!({"url": "https://x.test", "types": []}),
            "at least one event type",
        ),
        (
            json!({"url": "https://x.test", "types": ["grant"], "vendor": "xentral"}),
            "another owner",
        ),
    ];
    for (body, says) in cases {
        let (status, answer) = call(&router, post_as(&fixture.celigo, "/v1/webhooks", &body)).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert!(
            String::from_utf8_lossy(&answer).contains(says),
            "{body}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let (status, _) = call(
        &router,
        post_as(
            &fixture.admin,
            "/v1/webhooks",
            &json!({"url": "https://x.test", "types": ["grant"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, made) = call(
        &router,
        post_as(
            &fixture.admin,
            "/v1/webhooks",
            &json!({"url": "https://x.test", "types": ["grant"], "account": "acme"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        json_of(&made)["webhook"]["owner"],
        json!({"kind": "customer", "subject": "acme"})
    );

    // Removed: its pending delivery is dropped; a second removal is 404.
    let (status, _) = call(&router, delete_as(&fixture.celigo, &path)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, seen) = call(&router, get_as(&fixture.celigo, &path)).await;
    let seen = json_of(&seen);
    assert_eq!(
        (seen["pending"].clone(), seen["dead"].clone()),
        (json!(0), json!(1)),
        "{seen}"
    );
    assert_eq!(
        call(&router, delete_as(&fixture.celigo, &path)).await.0,
        StatusCode::NOT_FOUND
    );
}
