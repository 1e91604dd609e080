//! `chaperone serve`: the HTTP JSON API (`chaperone::api`) on a socket,
//! with the expiry sweep and checkpoints on a schedule, until Ctrl-C or
//! SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use chaperone::api::{self, ApiOptions};
use chaperone::service::{Host, HostOptions};

use super::DbArg;

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Create the store if it does not exist (as `chaperone init` does,
    /// printing its admin token once); without it, a path that holds no
    /// store is refused.
    #[arg(long)]
    pub create: bool,
    /// Open connections at most (one more is closed at once).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds to receive a request's header (and the longest a kept-alive
    /// connection may stay idle).
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds to receive a request's body and answer it (408 past it).
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
    /// Seconds between expiry sweeps.
    #[arg(long, default_value_t = 60)]
    pub sweep_every: u64,
    /// Seconds between signed checkpoints (0: only on demand).
    #[arg(long, default_value_t = 3600)]
    pub checkpoint_every: u64,
    /// Tries of a webhook delivery before it is given up (kept as `dead`).
    #[arg(long, default_value_t = 10)]
    pub webhook_attempts: u32,
    /// The longest wait between two tries of a delivery, in seconds (the
    /// waits grow exponentially from 1 s, with jitter, up to this).
    #[arg(long, default_value_t = 600)]
    pub webhook_retry_max: u64,
    /// Seconds one delivery attempt may take, connecting included.
    #[arg(long, default_value_t = 10)]
    pub webhook_timeout: u64,
    /// Deliveries in flight to one subscription's endpoint at most.
    #[arg(long, default_value_t = 4)]
    pub webhook_concurrency: usize,
    /// Let webhook endpoints be on loopback, private, link-local or other
    /// non-public addresses (by default they are refused, so that a
    /// subscriber cannot make the server probe its own network).
    #[arg(long)]
    pub webhook_allow_private: bool,
}

impl Args {
    /// Runs the server until Ctrl-C or SIGTERM.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let path = &self.db.db;
        if !path.exists() {
            if !self.create {
                anyhow::bail!(
                    "no store `{}`: create it with `chaperone init --db {}` (or `serve --create`)",
                    path.display(),
                    path.display()
                );
            }
            let created = super::init::create(path)?;
            say(&format!(
                "chaperone: created store `{}`; admin token (shown only now): {}",
                path.display(),
                created.admin_token
            ));
        }
        let host = Host::open(path, HostOptions::default())
            .with_context(|| format!("cannot open the store `{}`", path.display()))?;
        if host.credentials()?.is_empty() {
            let admin = host
                .create_credential(
                    chaperone::instant::now(),
                    chaperone_store::registry::Scope::Admin,
                    "created by serve: the store had no credentials",
                    "serve",
                )
                .context("cannot create the admin credential")?;
            say(&format!(
                "chaperone: the store had no credentials; admin token (shown only now): {}",
                admin.token
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(self.serve(host))?;
        Ok(ExitCode::SUCCESS)
    }

    async fn serve(self, host: Host) -> anyhow::Result<()> {
        api::spawn_schedules(
            host.clone(),
            Duration::from_secs(self.sweep_every),
            Duration::from_secs(self.checkpoint_every),
        );
        let options = chaperone::webhook::worker::WebhookOptions {
            max_attempts: self.webhook_attempts.max(1),
            per_endpoint_concurrency: self.webhook_concurrency.max(1),
            request_timeout: Duration::from_secs(self.webhook_timeout.max(1)),
            retry_cap: Duration::from_secs(self.webhook_retry_max.max(1)),
            retry_base: Duration::from_secs(1)
                .min(Duration::from_secs(self.webhook_retry_max.max(1))),
            addresses: if self.webhook_allow_private {
                chaperone::webhook::Addresses::Any
            } else {
                chaperone::webhook::Addresses::PublicOnly
            },
            ..Default::default()
        };
        let (stop_sending, sending_stops) = tokio::sync::watch::channel(false);
        let sender = host
            .start_webhooks(options, async move {
                let mut stops = sending_stops;
                let _ = stops.wait_for(|stop| *stop).await;
            })
            .context("cannot start the webhook sender")?;
        let router = api::router(host, ApiOptions::default());
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on `{}`", self.listen))?;
        eprintln!(
            "chaperone: serving on http://{} (store `{}`)",
            listener.local_addr()?,
            self.db.db.display()
        );
        let limits = chaperone::server::ServeLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout.max(1)),
            request_timeout: Duration::from_secs(self.request_timeout.max(1)),
            ..Default::default()
        };
        chaperone::server::serve(listener, router, limits, shutdown_signal()).await;
        // Deliveries in flight end (each within its timeout); the pending
        // ones wait in the outbox for the next start.
        let _ = stop_sending.send(true);
        if let Err(error) = sender.join().await {
            tracing::warn!(%error, "the webhook sender did not stop cleanly");
        }
        say("chaperone: stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what service managers send):
/// the server then stops accepting, finishes the requests in flight (each
/// answered only after its audit record is durable) and exits.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    say("chaperone: stopping: finishing the requests in flight");
}

/// A line on stderr; a closed stderr is no reason to fail a shutdown.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
