//! Serving the API on a socket with the limits a public endpoint needs,
//! which `axum::serve` does not set: HTTP/1.1 connections through hyper
//! with a header read timeout (a client that sends half a header, or
//! leaves a kept-alive connection idle, is cut off), a whole-request
//! timeout (a body sent a byte a second is answered 408), a cap on open
//! connections (over it, a new connection is closed at once), and a
//! graceful shutdown that finishes the requests in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tower::ServiceExt as _;

/// The limits of a served API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Open connections at most; one more is closed as soon as accepted.
    pub max_connections: usize,
    /// Time to receive a request's whole header, also the longest a
    /// kept-alive connection may wait idle for its next request.
    pub header_timeout: Duration,
    /// Time from a request's header to its response's header, reading the
    /// body included (408 past it). A streamed export's body is not bound
    /// by it; each of its chunks must be taken by the client within
    /// [`ServeLimits::write_timeout`].
    pub request_timeout: Duration,
    /// The longest a streamed response waits for the client to take a chunk.
    pub write_timeout: Duration,
    /// On shutdown, the longest the requests in flight are waited for.
    pub drain_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits (at most [`ServeLimits::drain_timeout`]) for the
/// connections to finish their requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let timeout = limits.request_timeout;
    let router = router.layer(axum::middleware::from_fn(
        move |request: Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => timed_out(timeout),
            }
        },
    ));
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut refused = Refused::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off a little.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(stream);
            refused.note(peer, limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(|request: hyper::Request<hyper::body::Incoming>| request.map(Body::new));
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain timeout; stopping anyway");
    }
}

/// Connections closed for the limit, logged at most once per
/// [`Refused::EVERY`] with their number: a flood of connections must not
/// become a flood of log lines (nor block the accept loop on a slow log).
#[derive(Debug, Default)]
struct Refused {
    since_logged: u64,
    logged_at: Option<tokio::time::Instant>,
}

impl Refused {
    const EVERY: Duration = Duration::from_secs(5);

    fn note(&mut self, peer: std::net::SocketAddr, limit: usize) {
        self.since_logged += 1;
        let now = tokio::time::Instant::now();
        if self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= Self::EVERY)
        {
            tracing::warn!(
                %peer,
                limit,
                closed = self.since_logged,
                "too many connections; closing new ones (`closed` counts those since the last warning)"
            );
            self.since_logged = 0;
            self.logged_at = Some(now);
        }
    }
}

fn timed_out(timeout: Duration) -> Response {
    (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(json!({
            "error": format!("the request was not received and answered within {} s", timeout.as_secs())
        })),
    )
        .into_response()
}
