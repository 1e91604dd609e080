//! The HTTP JSON API: a [`Router`] over a [`Host`], served by `chaperone
//! serve` and testable in-process (`tower::ServiceExt::oneshot`).
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/requests` | one request, as in the scenario format (`{"op": "grant", ...}`) | the decision, or the `sync` record |
//! | `POST /v1/tick` | — | how many `expire` records the sweep wrote |
//! | `POST /v1/checkpoint` | — | a new signed checkpoint (the note) |
//! | `GET /v1/accounts/{id}/verify` | — | the verification report of that chain |
//! | `GET /v1/accounts/{id}/audit` | — | that chain as JSON Lines, with a checkpoint and proof |
//! | `GET /healthz` | — | `ok` |
//!
//! Requests are timed by the host's clock. With `--token` (or
//! `CHAPERONE_TOKEN`) every `/v1` call needs `Authorization: Bearer <token>`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::instant;
use crate::service::{Host, ParsedRequest, ServiceError, parse_request};

/// How the API is served.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// Require this bearer token on every `/v1` call.
    pub token: Option<String>,
}

struct App {
    host: Host,
    token: Option<String>,
}

/// The API's routes over `host`.
pub fn router(host: Host, options: ApiOptions) -> Router {
    let app = Arc::new(App {
        host,
        token: options.token,
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/requests", post(request))
        .route("/v1/tick", post(tick))
        .route("/v1/checkpoint", post(checkpoint))
        .route("/v1/accounts/{id}/verify", get(verify))
        .route("/v1/accounts/{id}/audit", get(export))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
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

async fn no_such_endpoint(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no endpoint `{method} {}`", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("`{}` does not take `{method}`", uri.path()),
    )
}

/// An API error: a status and `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
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
            ServiceError::Load { .. } | ServiceError::Runtime(_) | ServiceError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, error.to_string())
    }
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.token else {
        return Ok(());
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required".into(),
        ))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed: {e}"),
        )
    })?
}

async fn request(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let body = body.map_err(|rejection| ApiError(rejection.status(), rejection.body_text()))?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let parsed = parse_request(&value).map_err(ServiceError::from)?;
    blocking(move || {
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

async fn tick(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    blocking(move || {
        let expired = app.host.tick(instant::now())?;
        Ok(Json(json!({ "expired": expired })))
    })
    .await
}

async fn checkpoint(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<String, ApiError> {
    authorize(&app, &headers)?;
    blocking(move || {
        let checkpoint = app
            .host
            .store()
            .checkpoint(instant::now())
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(checkpoint.note)
    })
    .await
}

async fn verify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    blocking(move || {
        let options = chaperone_store::verify::VerifyOptions {
            account: Some(id),
            ..Default::default()
        };
        let report = app
            .host
            .store()
            .verify(&options)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if report.is_empty() {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "no audit records for account `{}`",
                    options.account.unwrap_or_default()
                ),
            ));
        }
        Ok(Json(report.to_json()))
    })
    .await
}

async fn export(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    blocking(move || {
        let mut out = Vec::new();
        app.host
            .store()
            .export(&id, &mut out)
            .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
        Ok(([("content-type", "application/x-ndjson")], out).into_response())
    })
    .await
}
