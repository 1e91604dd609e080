//! The HTTP JSON API: a [`Router`] over a [`Host`], served by `chaperone
//! serve` and testable in-process (`tower::ServiceExt::oneshot`).
//!
//! Every `/v1` route needs `Authorization: Bearer <token>`, a credential of
//! the store (`chaperone token create`): missing or not valid → 401; valid
//! but not for this route or account → 403 (recorded as a `refused` record
//! in the account's chain, when the account exists); an account the
//! credential may reach but that does not exist → 404. Bodies are JSON
//! (`application/json`, else 415), and so is every answer, errors included
//! (`{"error": "..."}`).
//!
//! | method and path | who | body | answer |
//! |---|---|---|---|
//! | `POST /v1/requests` | vendor (its accounts; creates accounts of its vendor id only), customer (`revoke` on its account) | one request, as in the scenario format (`{"op": "grant", ...}`) | the decision, or the `sync` record |
//! | `GET /v1/accounts/{id}` | vendor, customer, admin | — | the account as its policy sees it now, with expiry instants |
//! | `GET /v1/accounts/{id}/verify` | vendor, customer, admin | — | the verification report of that chain |
//! | `GET /v1/accounts/{id}/audit` | vendor, customer, admin | — | that chain as JSON Lines, with a checkpoint and proof (streamed) |
//! | `GET /v1/checkpoint` | any | — | the latest signed checkpoint (the note), 404 if none |
//! | `GET /v1/pubkey` | any | — | the log's public key (`chaperone-verify --pubkey`) |
//! | `GET /v1/modules` | admin (all), vendor (its own) | — | the installed modules |
//! | `POST /v1/modules?vendor=V[&activate=true]` | admin | the module's bytes (`application/wasm`) | the installed module |
//! | `POST /v1/modules/diff?vendor=V[&since=T]` | admin, the vendor V | a candidate module (`application/wasm`) | `policy diff`'s report: which recorded decisions it would decide differently |
//! | `POST /v1/modules/activate` | admin | `{"vendor": V, "digest": D}` | the activation |
//! | `POST /v1/modules/rollback` | admin | `{"vendor": V}` | the activation |
//! | `GET /v1/tokens`, `POST /v1/tokens`, `DELETE /v1/tokens/{id}` | admin | `{"kind": "admin"\|"vendor"\|"customer", "subject": S, "label": L}` | credentials; a new one's token once |
//! | `POST /v1/tick` | admin | — | how many `expire` records the sweep wrote |
//! | `POST /v1/checkpoint` | admin | — | a new signed checkpoint (the note) |
//! | `GET /healthz` | anyone | — | `ok` |
//!
//! Requests are timed by the host's clock. `GET /openapi.json` is the
//! OpenAPI document of these routes, generated from the handlers the router
//! is built from (`utoipa`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use chaperone_store::registry::{Credential, RegistryError, Scope};

use crate::instant;
use crate::service::registry::{AuthError, CredentialError, InstallError};
use crate::service::webhooks::WebhookError;
use crate::service::{Host, ParsedRequest, ServiceError, parse_request, refuse_unknown_fields};
use chaperone_store::outbox::{Owner, SubscriptionError};

/// The largest request body, except a module's.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// The longest a streamed export waits for the client to take a chunk.
    pub write_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            write_timeout: crate::server::ServeLimits::default().write_timeout,
        }
    }
}

struct App {
    host: Host,
    write_timeout: Duration,
}

/// The API's routes over `host`.
pub fn router(host: Host, options: ApiOptions) -> Router {
    let app = Arc::new(App {
        host,
        write_timeout: options.write_timeout,
    });
    let (routes, document) = routes();
    let document = Arc::new(document);
    routes
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Starts the background schedules on the current tokio runtime: an expiry
/// sweep every `sweep_every` and a signed checkpoint every
/// `checkpoint_every` (zero: never).
pub fn spawn_schedules(host: Host, sweep_every: Duration, checkpoint_every: Duration) {
    if !sweep_every.is_zero() {
        let host = host.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(sweep_every);
            loop {
                interval.tick().await;
                let host = host.clone();
                let swept = tokio::task::spawn_blocking(move || host.tick(instant::now())).await;
                if let Ok(Err(error)) = swept {
                    tracing::error!(%error, "expiry sweep failed");
                }
            }
        });
    }
    if !checkpoint_every.is_zero() {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(checkpoint_every);
            loop {
                interval.tick().await;
                let host = host.clone();
                let written =
                    tokio::task::spawn_blocking(move || host.store().checkpoint(instant::now()))
                        .await;
                if let Ok(Err(error)) = written {
                    tracing::error!(%error, "scheduled checkpoint failed");
                }
            }
        });
    }
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "chaperone", summary = "Liveness (no token)", responses((status = 200, description = "`ok`", content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The body of every error answer.
#[derive(utoipa::ToSchema, serde::Serialize)]
struct ErrorBody {
    /// What was wrong.
    error: String,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Chaperone", description = "Scoped, time-bound, revocable vendor support access with a verifiable audit log. Every `/v1` route needs `Authorization: Bearer <token>`."),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of [`router`]'s routes, generated from the handlers
/// the router is built from.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The routes and their OpenAPI document, from the same handlers.
fn routes() -> (Router<Arc<App>>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    use utoipa_axum::routes;
    let module_limit = chaperone_runtime::Limits::default().module_bytes;
    let modules = utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(modules, install))
        .routes(routes!(diff))
        .layer(axum::extract::DefaultBodyLimit::max(module_limit));
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(request))
        .routes(routes!(account))
        .routes(routes!(verify))
        .routes(routes!(export))
        .routes(routes!(latest_checkpoint, checkpoint))
        .routes(routes!(pubkey))
        .merge(modules)
        .routes(routes!(activate))
        .routes(routes!(rollback))
        .routes(routes!(tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(tick))
        .routes(routes!(webhooks, add_webhook))
        .routes(routes!(webhook, remove_webhook))
        .split_for_parts()
}

async fn no_such_endpoint(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no endpoint `{method} {}`", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("`{}` does not take `{method}`", uri.path()),
    )
}

/// An API error: a status and `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let status = match &error {
            ServiceError::Shape(_)
            | ServiceError::PolicyChange { .. }
            | ServiceError::NoPolicy(_) => StatusCode::BAD_REQUEST,
            ServiceError::UnknownAccount(_)
            | ServiceError::UnknownUser { .. }
            | ServiceError::UnknownEnvironment { .. } => StatusCode::NOT_FOUND,
            ServiceError::Contended(_) => StatusCode::CONFLICT,
            ServiceError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Load { .. } | ServiceError::Runtime(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, error.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        let status = match &error {
            RegistryError::AlreadyInstalled { .. }
            | RegistryError::AlreadyActive { .. }
            | RegistryError::AlreadyRevoked(_)
            | RegistryError::DuplicateCredential(_)
            | RegistryError::NothingToRollBack(_) => StatusCode::CONFLICT,
            RegistryError::NotInstalled { .. }
            | RegistryError::NoModules(_)
            | RegistryError::UnknownCredential(_) => StatusCode::NOT_FOUND,
            RegistryError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, error.to_string())
    }
}

impl From<InstallError> for ApiError {
    fn from(error: InstallError) -> Self {
        match error {
            InstallError::Registry(e) => e.into(),
            InstallError::Runtime(e) => internal(e),
            other => ApiError(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
        }
    }
}

impl From<CredentialError> for ApiError {
    fn from(error: CredentialError) -> Self {
        match error {
            CredentialError::Registry(e) => e.into(),
            CredentialError::UnknownAccount(_) => {
                ApiError(StatusCode::NOT_FOUND, error.to_string())
            }
            other => ApiError(StatusCode::BAD_REQUEST, other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError(StatusCode::UNAUTHORIZED, error.to_string())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(format!("the request failed: {e}")))?
}

/// The credential the request's bearer token belongs to.
async fn authenticate(app: &Arc<App>, headers: &HeaderMap) -> Result<Credential, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    let app = app.clone();
    blocking(move || Ok(app.host.authenticate(token.as_deref())?)).await
}

fn forbidden(credential: &Credential, what: &str) -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        format!(
            "credential `{}` ({}) may not {what}",
            credential.id, credential.scope
        ),
    )
}

/// Requires an admin credential.
fn admin_only(credential: &Credential, what: &str) -> Result<(), ApiError> {
    match credential.scope {
        Scope::Admin => Ok(()),
        _ => Err(forbidden(credential, what)),
    }
}

/// What a request wants of an account, for [`authorize_account`].
enum Want<'a> {
    /// Read its state or log.
    Read,
    /// Carry out a request (`op`; for `account`, the vendor id it names).
    Request {
        op: &'a str,
        creates: Option<&'a str>,
    },
}

/// Checks that `credential` may do `want` on `account`: Ok, or the error to
/// answer (a refusal is recorded in the account's chain if it exists).
fn authorize_account(
    app: &App,
    credential: &Credential,
    account: &str,
    want: &Want<'_>,
    method: &Method,
    path: &str,
) -> Result<(), ApiError> {
    // An admin reads every chain (the host's own `@registry` too); each
    // route answers 404 from its own data when there is nothing.
    if matches!((&credential.scope, want), (Scope::Admin, Want::Read)) {
        return Ok(());
    }
    let vendor = app.host.account_vendor(account)?;
    let refusal = match (&credential.scope, want) {
        (Scope::Admin, Want::Read) => None,
        (Scope::Admin, Want::Request { .. }) => {
            Some("carry out account requests (use a vendor or customer credential)".to_owned())
        }
        (Scope::Vendor(own), _) => match (vendor.as_deref(), want) {
            (Some(v), _) if v == own => None,
            (Some(_), _) => Some(format!("reach account `{account}`")),
            (
                None,
                Want::Request {
                    creates: Some(p), ..
                },
            ) if p != own => Some(format!(
                "create an account of vendor `{p}` (only of `{own}`)"
            )),
            (
                None,
                Want::Request {
                    creates: Some(_), ..
                },
            ) => None,
            (None, _) => None,
        },
        (Scope::Customer(own), _) if own != account => Some(format!("reach account `{account}`")),
        (Scope::Customer(_), Want::Read) => None,
        (Scope::Customer(_), Want::Request { op, .. }) if *op == "revoke" => None,
        (Scope::Customer(_), Want::Request { op, .. }) => {
            Some(format!("send `{op}` requests (a customer may `revoke`)"))
        }
    };
    if let Some(what) = refusal {
        let error = forbidden(credential, &what);
        if vendor.is_some() {
            let mut request = json!({
                "credential": credential.id,
                "scope": credential.scope,
                "method": method.as_str(),
                "path": path,
                "error": error.1,
            });
            if let (Want::Request { op, .. }, Some(fields)) = (want, request.as_object_mut()) {
                fields.insert("op".into(), json!(op));
            }
            if let Err(e) = app.host.record_refusal(instant::now(), account, request) {
                tracing::error!(%account, error = %e, "cannot record a refused request");
                return Err(store_unavailable(e));
            }
        }
        return Err(error);
    }
    if vendor.is_none()
        && !matches!(
            want,
            Want::Request {
                creates: Some(_),
                ..
            }
        )
    {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no account `{account}`"),
        ));
    }
    Ok(())
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be `application/json` (set `Content-Type: application/json`)".into(),
        ))
    }
}

fn require_wasm(headers: &HeaderMap) -> Result<(), ApiError> {
    let wasm = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/wasm"));
    if wasm {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be the module's bytes as `application/wasm`".into(),
        ))
    }
}

fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| ApiError(rejection.status(), rejection.body_text()))
}

fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Value, ApiError> {
    require_json(headers)?;
    let body = body_bytes(body)?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

#[utoipa::path(post, path = "/v1/requests", tag = "chaperone", summary = "Carry out one request (a state step or a policy-evaluated operation) on one account; answered after its audit record is durable", request_body(content = Object, content_type = "application/json", description = "one request in the scenario format, e.g. `{\"op\": \"grant\", ...}`"), responses((status = 200, description = "the decision, or the `sync` record"), (status = 400, description = "the request has the wrong shape or members its operation does not have", body = ErrorBody), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 404, description = "no such account", body = ErrorBody), (status = 415, description = "the body is not `application/json`", body = ErrorBody)), security(("bearer" = [])))]
async fn request(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    let value = json_body(&headers, body)?;
    refuse_unknown_fields(&value).map_err(ServiceError::from)?;
    let parsed = parse_request(&value).map_err(ServiceError::from)?;
    blocking(move || {
        let op = value.get("op").and_then(Value::as_str).unwrap_or_default();
        let (account, creates) = match &parsed {
            ParsedRequest::State(step) => (
                step.account(),
                match step {
                    crate::service::StateStep::Account(spec) => Some(spec.policy.as_str()),
                    _ => None,
                },
            ),
            ParsedRequest::Operation(op) => (op.account.as_str(), None),
        };
        authorize_account(
            &app,
            &credential,
            account,
            &Want::Request { op, creates },
            &method,
            "/v1/requests",
        )?;
        let now = instant::now();
        match parsed {
            ParsedRequest::State(step) => {
                let seq = app.host.sync(now, step, value)?;
                Ok(Json(json!({ "recorded": "sync", "seq": seq })))
            }
            ParsedRequest::Operation(op) => {
                let outcome = app.host.execute(now, op)?;
                Ok(Json(json!({
                    "decision": if outcome.allowed() { "allow" } else { "deny" },
                    "rule": outcome.rule,
                    "message": outcome.message,
                    "rules": outcome.rules,
                    "id": outcome.created,
                    "expires_at": outcome.expires_at.map(instant::format),
                    "rights": outcome.rights,
                    "description": outcome.description,
                    "seq": outcome.seq,
                })))
            }
        }
    })
    .await
}

#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "chaperone", summary = "The account as its policy sees it now, with expiry instants", params(("id" = String, Path, description = "the account id")), responses((status = 200, description = "the account"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 404, description = "no such account", body = ErrorBody)), security(("bearer" = [])))]
async fn account(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    blocking(move || {
        let path = format!("/v1/accounts/{id}");
        authorize_account(&app, &credential, &id, &Want::Read, &method, &path)?;
        let now = instant::now();
        let Some(read) = app
            .host
            .store()
            .read_account(&id, now, None)
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no account `{id}`"),
            ));
        };
        let mut state = serde_json::to_value(&read.snapshot).map_err(internal)?;
        if let Some(grants) = state.get_mut("grants").and_then(Value::as_array_mut) {
            for grant in grants {
                let expires = grant.get("expires_at").and_then(Value::as_i64);
                grant["expires"] = json!(expires.map(instant::format));
            }
        }
        Ok(Json(json!({
            "account": state,
            "at": instant::format(now),
            "seq": app.host.store().head(&id).map_err(internal)?.map(|h| h.seq.get()),
        })))
    })
    .await
}

#[utoipa::path(get, path = "/v1/accounts/{id}/verify", tag = "chaperone", summary = "Verify the account's chain", params(("id" = String, Path, description = "the account id")), responses((status = 200, description = "the verification report"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 404, description = "no such account", body = ErrorBody)), security(("bearer" = [])))]
async fn verify(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    blocking(move || {
        let path = format!("/v1/accounts/{id}/verify");
        authorize_account(&app, &credential, &id, &Want::Read, &method, &path)?;
        let options = chaperone_store::verify::VerifyOptions {
            account: Some(id.clone()),
            ..Default::default()
        };
        let report = app.host.store().verify(&options).map_err(internal)?;
        if report.is_empty() {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no audit records for account `{id}`"),
            ));
        }
        Ok(Json(report.to_json()))
    })
    .await
}

/// A writer that hands what is written to an HTTP body stream in chunks.
struct ChunkWriter {
    buffer: Vec<u8>,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    runtime: tokio::runtime::Handle,
    write_timeout: Duration,
}

const EXPORT_CHUNK: usize = 64 * 1024;

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(EXPORT_CHUNK),
        ));
        // On a blocking thread of the runtime: wait for the client to take
        // the chunk, but not forever (a client that stops reading must not
        // hold the export's thread and read transaction).
        let sent = self.runtime.block_on(tokio::time::timeout(
            self.write_timeout,
            self.sender.send(Ok(chunk)),
        ));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client left",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
        }
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= EXPORT_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[utoipa::path(get, path = "/v1/accounts/{id}/audit", tag = "chaperone", summary = "The account's chain as JSON Lines, with a checkpoint and the inclusion proof of its head (streamed)", params(("id" = String, Path, description = "the account id")), responses((status = 200, description = "the export", content_type = "application/x-ndjson"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 404, description = "no such account", body = ErrorBody)), security(("bearer" = [])))]
async fn export(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    let check = app.clone();
    let account = id.clone();
    blocking(move || {
        let path = format!("/v1/accounts/{account}/audit");
        authorize_account(&check, &credential, &account, &Want::Read, &method, &path)?;
        if check
            .host
            .store()
            .head(&account)
            .map_err(internal)?
            .is_none()
        {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no audit records for account `{account}`"),
            ));
        }
        Ok(())
    })
    .await?;
    // Streamed: a bounded channel of chunks, filled by the export on a
    // blocking thread (which stops when the client goes away).
    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    let runtime = tokio::runtime::Handle::current();
    let write_timeout = app.write_timeout;
    tokio::task::spawn_blocking(move || {
        let mut writer = ChunkWriter {
            buffer: Vec::with_capacity(EXPORT_CHUNK),
            sender: sender.clone(),
            runtime: runtime.clone(),
            write_timeout,
        };
        let result = app
            .host
            .store()
            .export(&id, &mut writer)
            .map_err(|e| e.to_string())
            .and_then(|_| std::io::Write::flush(&mut writer).map_err(|e| e.to_string()));
        if let Err(error) = result {
            tracing::warn!(account = %id, %error, "export stopped");
            let _ = runtime.block_on(tokio::time::timeout(
                write_timeout,
                sender.send(Err(std::io::Error::other(error))),
            ));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/checkpoint", tag = "chaperone", summary = "The latest signed checkpoint (a signed note naming no account)", responses((status = 200, description = "the note", content_type = "text/plain"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 404, description = "no checkpoint yet", body = ErrorBody)), security(("bearer" = [])))]
async fn latest_checkpoint(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<String, ApiError> {
    authenticate(&app, &headers).await?;
    blocking(
        move || match app.host.store().latest_checkpoint().map_err(internal)? {
            Some(checkpoint) => Ok(checkpoint.note),
            None => Err(ApiError(
                StatusCode::NOT_FOUND,
                "no checkpoint has been signed yet".into(),
            )),
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/pubkey", tag = "chaperone", summary = "The log's public key, for `chaperone-verify --pubkey`", responses((status = 200, description = "the key", content_type = "text/plain"), (status = 401, description = "no valid bearer token", body = ErrorBody)), security(("bearer" = [])))]
async fn pubkey(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<String, ApiError> {
    authenticate(&app, &headers).await?;
    blocking(move || {
        let verifier = app.host.store().verifier().map_err(internal)?;
        Ok(format!("{}\n", verifier.encode()))
    })
    .await
}

#[utoipa::path(post, path = "/v1/checkpoint", tag = "chaperone", summary = "Sign a checkpoint now (admin)", responses((status = 200, description = "the note", content_type = "text/plain"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody)), security(("bearer" = [])))]
async fn checkpoint(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<String, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    admin_only(&credential, "sign checkpoints")?;
    blocking(move || {
        let checkpoint = app
            .host
            .store()
            .checkpoint(instant::now())
            .map_err(internal)?;
        Ok(checkpoint.note)
    })
    .await
}

#[utoipa::path(post, path = "/v1/tick", tag = "chaperone", summary = "Run the expiry sweep now (admin)", responses((status = 200, description = "how many `expire` records were written"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody)), security(("bearer" = [])))]
async fn tick(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    admin_only(&credential, "run the expiry sweep")?;
    blocking(move || {
        let expired = app.host.tick(instant::now())?;
        Ok(Json(json!({ "expired": expired })))
    })
    .await
}

#[utoipa::path(get, path = "/v1/modules", tag = "chaperone", summary = "The installed modules (admin: all; vendor: its own)", responses((status = 200, description = "the modules"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody)), security(("bearer" = [])))]
async fn modules(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    let vendor = match &credential.scope {
        Scope::Admin => None,
        Scope::Vendor(v) => Some(v.clone()),
        Scope::Customer(_) => return Err(forbidden(&credential, "list modules")),
    };
    blocking(move || {
        let modules = app.host.installed_modules(vendor.as_deref())?;
        Ok(Json(json!({ "modules": modules })))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallQuery {
    vendor: String,
    #[serde(default)]
    activate: bool,
}

#[utoipa::path(post, path = "/v1/modules", tag = "chaperone", summary = "Install a module for a vendor (admin); checked as `policy check` does", params(("vendor" = String, Query, description = "the vendor id; the module must describe itself so"), ("activate" = Option<bool>, Query, description = "make it active now")), request_body(content = Vec<u8>, content_type = "application/wasm", description = "the module's bytes"), responses((status = 200, description = "the installed module"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 409, description = "already installed", body = ErrorBody), (status = 415, description = "not `application/wasm`", body = ErrorBody), (status = 422, description = "the module does not load, fails `policy check`, or names another vendor", body = ErrorBody)), security(("bearer" = [])))]
async fn install(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<InstallQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    admin_only(&credential, "install modules")?;
    let Query(query) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    require_wasm(&headers)?;
    let bytes = body_bytes(body)?;
    blocking(move || {
        let installed = app.host.install_module(
            instant::now(),
            &query.vendor,
            &bytes,
            query.activate,
            &credential.id,
        )?;
        Ok(Json(serde_json::to_value(installed).map_err(internal)?))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    vendor: String,
    #[serde(default)]
    since: Option<String>,
}

#[utoipa::path(post, path = "/v1/modules/diff", tag = "chaperone", summary = "Re-decide a vendor's recorded decisions with a candidate module and list those that would change, before installing or activating it (admin, or the vendor for itself)", params(("vendor" = String, Query, description = "the vendor id; the module must describe itself so"), ("since" = Option<String>, Query, description = "only decisions at or after this RFC 3339 instant")), request_body(content = Vec<u8>, content_type = "application/wasm", description = "the candidate module's bytes"), responses((status = 200, description = "the report: decisions re-decided, unchanged, and each change (account, seq, old and new verdict and rule)"), (status = 400, description = "a bad `since`", body = ErrorBody), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 415, description = "not `application/wasm`", body = ErrorBody), (status = 422, description = "the module does not load or names another vendor", body = ErrorBody)), security(("bearer" = [])))]
async fn diff(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    let Query(query) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    match &credential.scope {
        Scope::Admin => {}
        Scope::Vendor(own) if *own == query.vendor => {}
        _ => {
            return Err(forbidden(
                &credential,
                &format!("compare modules of vendor `{}`", query.vendor),
            ));
        }
    }
    let since = query
        .since
        .as_deref()
        .map(instant::parse)
        .transpose()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("`since`: {e}")))?;
    require_wasm(&headers)?;
    let bytes = body_bytes(body)?;
    blocking(move || {
        let unprocessable = |message: String| ApiError(StatusCode::UNPROCESSABLE_ENTITY, message);
        let candidate = app
            .host
            .runtime()
            .load(&bytes)
            .map_err(|e| unprocessable(format!("the module does not load: {e}")))?;
        let described = &candidate.description().vendor;
        if *described != query.vendor {
            return Err(unprocessable(format!(
                "the module describes itself as vendor `{described}`, not `{}`",
                query.vendor
            )));
        }
        let report = crate::replay::diff(
            app.host.store(),
            app.host.runtime(),
            &candidate,
            &query.vendor,
            since,
        )
        .map_err(internal)?;
        Ok(Json(serde_json::to_value(report).map_err(internal)?))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    vendor: String,
    digest: String,
}

#[utoipa::path(post, path = "/v1/modules/activate", tag = "chaperone", summary = "Make an installed module its vendor's active one (admin)", request_body(content = Object, content_type = "application/json", description = "`{\"vendor\": V, \"digest\": D}`"), responses((status = 200, description = "the activation"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 404, description = "not installed", body = ErrorBody), (status = 409, description = "already active", body = ErrorBody)), security(("bearer" = [])))]
async fn activate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    admin_only(&credential, "activate modules")?;
    let body: ActivateBody = typed_body(&headers, body)?;
    blocking(move || {
        let activation =
            app.host
                .activate_module(instant::now(), &body.vendor, &body.digest, &credential.id)?;
        Ok(Json(serde_json::to_value(activation).map_err(internal)?))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    vendor: String,
}

#[utoipa::path(post, path = "/v1/modules/rollback", tag = "chaperone", summary = "Make the module active before a vendor's current one active again (admin)", request_body(content = Object, content_type = "application/json", description = "`{\"vendor\": V}`"), responses((status = 200, description = "the activation"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 409, description = "nothing to roll back to", body = ErrorBody)), security(("bearer" = [])))]
async fn rollback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    admin_only(&credential, "roll back modules")?;
    let body: RollbackBody = typed_body(&headers, body)?;
    blocking(move || {
        let activation = app
            .host
            .rollback_module(instant::now(), &body.vendor, &credential.id)?;
        Ok(Json(serde_json::to_value(activation).map_err(internal)?))
    })
    .await
}

fn typed_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let value = json_body(headers, body)?;
    serde_json::from_value(value)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("bad body: {e}")))
}

#[utoipa::path(get, path = "/v1/tokens", tag = "chaperone", summary = "The credentials, without secrets (admin)", responses((status = 200, description = "the credentials"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody)), security(("bearer" = [])))]
async fn tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    admin_only(&credential, "list credentials")?;
    blocking(move || {
        let credentials = app.host.credentials()?;
        Ok(Json(json!({ "credentials": credentials })))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    kind: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    label: String,
}

#[utoipa::path(post, path = "/v1/tokens", tag = "chaperone", summary = "Create a credential; its token is in this answer only (admin)", request_body(content = Object, content_type = "application/json", description = "`{\"kind\": \"admin\"|\"vendor\"|\"customer\", \"subject\": S, \"label\": L}`"), responses((status = 201, description = "the credential and its token"), (status = 400, description = "bad kind or subject", body = ErrorBody), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody)), security(("bearer" = [])))]
async fn create_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let credential = authenticate(&app, &headers).await?;
    admin_only(&credential, "create credentials")?;
    let body: TokenBody = typed_body(&headers, body)?;
    let scope = match (body.kind.as_str(), body.subject) {
        ("admin", None) => Scope::Admin,
        ("vendor", Some(s)) => Scope::Vendor(s),
        ("customer", Some(s)) => Scope::Customer(s),
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "`kind` is `admin` (no `subject`), `vendor` or `customer` (with `subject`: the vendor id or the account)".into(),
            ));
        }
    };
    blocking(move || {
        let new = app
            .host
            .create_credential(instant::now(), scope, &body.label, &credential.id)?;
        Ok((
            StatusCode::CREATED,
            Json(json!({ "credential": new.credential, "token": new.token })),
        ))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "chaperone", summary = "Revoke a credential (admin)", params(("id" = String, Path, description = "the credential id")), responses((status = 200, description = "revoked"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the credential does not reach this", body = ErrorBody), (status = 404, description = "no such credential", body = ErrorBody), (status = 409, description = "revoked already", body = ErrorBody)), security(("bearer" = [])))]
async fn revoke_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    admin_only(&credential, "revoke credentials")?;
    blocking(move || {
        let seq = app
            .host
            .revoke_credential(instant::now(), &id, &credential.id)?;
        Ok(Json(json!({ "revoked": id, "seq": seq })))
    })
    .await
}

/// Whose subscriptions a credential sees: a vendor's or a customer's own,
/// an admin every one (`None`).
fn webhook_owner(credential: &Credential) -> Option<Owner> {
    match &credential.scope {
        Scope::Admin => None,
        Scope::Vendor(v) => Some(Owner::Vendor(v.clone())),
        Scope::Customer(a) => Some(Owner::Customer(a.clone())),
    }
}

/// The subscription `id` if `credential` owns it (an admin owns all); a
/// subscription of someone else is answered as one that does not exist.
fn owned_webhook(
    app: &App,
    credential: &Credential,
    id: &str,
) -> Result<chaperone_store::outbox::SubscriptionStatus, ApiError> {
    let status = app.host.webhook_status(id).map_err(store_unavailable)?;
    match (status, webhook_owner(credential)) {
        (Some(status), None) => Ok(status),
        (Some(status), Some(owner)) if status.subscription.owner == owner => Ok(status),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no webhook subscription `{id}`"),
        )),
    }
}

fn store_unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store failed, nothing changed: {error}"),
    )
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        let status = match &error {
            WebhookError::UnknownAccount(_) => StatusCode::NOT_FOUND,
            WebhookError::Store(_) | WebhookError::Subscription(SubscriptionError::Store(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, error.to_string())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
    types: Vec<String>,
    /// An admin names the owner: a vendor id...
    #[serde(default)]
    vendor: Option<String>,
    /// ... or an account.
    #[serde(default)]
    account: Option<String>,
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "chaperone", summary = "The webhook subscriptions of the credential's vendor or account (an admin: all), removed ones too", responses((status = 200, description = "the subscriptions"), (status = 401, description = "no valid bearer token", body = ErrorBody)), security(("bearer" = [])))]
async fn webhooks(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    blocking(move || {
        let owner = webhook_owner(&credential);
        let subscriptions = app
            .host
            .webhooks(owner.as_ref())
            .map_err(store_unavailable)?;
        Ok(Json(json!({ "webhooks": subscriptions })))
    })
    .await
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "chaperone", summary = "Subscribe an endpoint to events: a vendor's for all its accounts, a customer's for its account (an admin names `vendor` or `account`). Events are signed with the log's key (`docs/webhooks.md`)", request_body(content = Object, content_type = "application/json", description = "`{\"url\": \"https://...\", \"types\": [\"grant\", \"revoke\", \"expire\", \"act.denied\", ...]}`; `*` for every type"), responses((status = 201, description = "the subscription"), (status = 400, description = "a bad URL or type", body = ErrorBody), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 404, description = "no such account", body = ErrorBody), (status = 415, description = "not `application/json`", body = ErrorBody)), security(("bearer" = [])))]
async fn add_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let credential = authenticate(&app, &headers).await?;
    let body: WebhookBody = typed_body(&headers, body)?;
    let owner = match (webhook_owner(&credential), body.vendor, body.account) {
        (Some(own), None, None) => own,
        (None, Some(vendor), None) => Owner::Vendor(vendor),
        (None, None, Some(account)) => Owner::Customer(account),
        (None, _, _) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "an admin names the subscription's owner: `vendor` or `account`, one of them"
                    .into(),
            ));
        }
        (Some(_), _, _) => {
            return Err(forbidden(
                &credential,
                "subscribe for another owner (leave out `vendor` and `account`: the subscription is the credential's own)",
            ));
        }
    };
    blocking(move || {
        let subscription = app.host.add_webhook(
            instant::now(),
            owner,
            &body.url,
            &body.types,
            &credential.id,
        )?;
        Ok((
            StatusCode::CREATED,
            Json(json!({ "webhook": subscription })),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "chaperone", summary = "A subscription's deliveries: pending, delivered, dead, the last error and the next try", params(("id" = String, Path, description = "the subscription id")), responses((status = 200, description = "the status"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 404, description = "no such subscription of the credential's", body = ErrorBody)), security(("bearer" = [])))]
async fn webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    blocking(move || {
        let status = owned_webhook(&app, &credential, &id)?;
        Ok(Json(serde_json::to_value(status).map_err(internal)?))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "chaperone", summary = "Remove a subscription: nothing more is sent to it, its pending deliveries are dropped", params(("id" = String, Path, description = "the subscription id")), responses((status = 200, description = "removed"), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 404, description = "no such live subscription of the credential's", body = ErrorBody)), security(("bearer" = [])))]
async fn remove_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let credential = authenticate(&app, &headers).await?;
    blocking(move || {
        owned_webhook(&app, &credential, &id)?;
        let removed = app
            .host
            .remove_webhook(instant::now(), &id, &credential.id)
            .map_err(store_unavailable)?;
        if !removed {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("webhook subscription `{id}` was removed already"),
            ));
        }
        Ok(Json(json!({ "removed": id })))
    })
    .await
}
