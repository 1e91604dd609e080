//! One module per subcommand; each has an `Args` struct (its doc comments are
//! the help text) and a `run` method returning the exit code.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod audit;
pub mod conformance;
pub mod init;
pub mod policy;
pub mod registry;
pub mod serve;
pub mod token;
pub mod webhook;

/// Exit code: everything checked out.
pub const EXIT_OK: u8 = 0;
/// Exit code: a check failed (verification, a probe, a scenario).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or an I/O error.
pub const EXIT_USAGE: u8 = 2;

/// Scoped, time-bound, revocable vendor support access, with an audit log
/// any auditor can verify offline.
#[derive(Debug, Parser)]
#[command(name = "chaperone", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP JSON API with the built-in policy modules.
    Serve(serve::Args),
    /// Create a new store and its signing key pair.
    Init(init::Args),
    /// Inspect, check and export policy modules.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Verify, export, checkpoint and replay the audit log.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Run conformance scenarios against the whole host.
    #[command(subcommand)]
    Conformance(conformance::Command),
    /// Create, list and revoke the API's credentials.
    #[command(subcommand)]
    Token(token::Command),
    /// Subscribe endpoints to signed event notifications, list and remove
    /// them, see their deliveries.
    #[command(subcommand)]
    Webhook(webhook::Command),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Serve(args) => args.run(),
            Command::Init(args) => args.run(),
            Command::Policy(command) => command.run(),
            Command::Audit(command) => command.run(),
            Command::Conformance(command) => command.run(),
            Command::Token(command) => command.run(),
            Command::Webhook(command) => command.run(),
        }
    }
}

/// The store to use.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArg {
    /// The SQLite store.
    #[arg(long, env = "CHAPERONE_DB", default_value = "chaperone.db")]
    pub db: PathBuf,
}

/// Opens the host over an existing store (a missing one is an error, not
/// a new store).
pub fn open_existing(db: &DbArg) -> anyhow::Result<chaperone::service::Host> {
    use anyhow::Context;
    if !db.db.exists() {
        anyhow::bail!(
            "no store `{}`: create one with `chaperone init --db {}`",
            db.db.display(),
            db.db.display()
        );
    }
    chaperone::service::Host::open(&db.db, chaperone::service::HostOptions::default())
        .with_context(|| format!("cannot open the store `{}`", db.db.display()))
}

/// Turns a pass/fail outcome into the exit code.
pub fn exit(ok: bool) -> ExitCode {
    ExitCode::from(if ok { EXIT_OK } else { EXIT_FAILED })
}

/// Reads a policy module file. A file larger than the runtime would load is
/// refused before it is read into memory.
pub fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let limit = chaperone_runtime::Limits::default().module_bytes;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    if bytes.len() > limit {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        anyhow::bail!(
            "cannot read `{}`: it is {size} bytes, and a policy module may be at most {limit} bytes",
            path.display()
        );
    }
    Ok(bytes)
}
