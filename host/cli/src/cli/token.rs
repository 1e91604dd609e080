//! `chaperone token create|list|revoke`: the API's credentials.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use chaperone::instant;
use chaperone_store::registry::Scope;

use super::{DbArg, open_existing};

/// The token subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a credential and print its token once (only a hash of its
    /// secret is stored).
    Create(CreateArgs),
    /// List the credentials (never their secrets).
    List(ListArgs),
    /// Revoke a credential: its token is refused from then on (by a running
    /// server within half a second).
    Revoke(RevokeArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Create(args) => args.run(),
            Command::List(args) => args.run(),
            Command::Revoke(args) => args.run(),
        }
    }
}

/// Arguments of `token create`: exactly one of `--admin`, `--vendor`,
/// `--customer`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["admin", "vendor", "customer"])))]
pub struct CreateArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// An admin credential: modules, credentials, checkpoints.
    #[arg(long)]
    pub admin: bool,
    /// A vendor's credential: every operation on the accounts whose policy
    /// is this vendor id.
    #[arg(long, value_name = "VENDOR")]
    pub vendor: Option<String>,
    /// A customer's credential: this account's state and log, and revoking
    /// support access.
    #[arg(long, value_name = "ACCOUNT")]
    pub customer: Option<String>,
    /// A label for people (who holds it, what for).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl CreateArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let scope = match (self.admin, self.vendor, self.customer) {
            (true, None, None) => Scope::Admin,
            (false, Some(vendor), None) => Scope::Vendor(vendor),
            (false, None, Some(account)) => Scope::Customer(account),
            _ => anyhow::bail!("give exactly one of --admin, --vendor, --customer"),
        };
        let host = open_existing(&self.db)?;
        let new = host
            .create_credential(instant::now(), scope, &self.label, "cli")
            .context("cannot create the credential")?;
        if self.json {
            println!(
                "{}",
                serde_json::json!({"credential": new.credential, "token": new.token})
            );
        } else {
            println!("{}", new.token);
            eprintln!(
                "created credential `{}` ({}); the token above is shown only now",
                new.credential.id, new.credential.scope
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Arguments of `token list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ListArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let host = open_existing(&self.db)?;
        let credentials = host.credentials()?;
        if self.json {
            println!("{}", serde_json::to_string(&credentials)?);
            return Ok(ExitCode::SUCCESS);
        }
        for c in &credentials {
            let status = match c.revoked_at {
                Some(at) => format!("revoked {}", instant::format(at)),
                None => "live".into(),
            };
            println!(
                "{}  {:<32}  created {}  {status}  {}",
                c.id,
                c.scope.to_string(),
                instant::format(c.created_at),
                c.label
            );
        }
        if credentials.is_empty() {
            eprintln!("no credentials");
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Arguments of `token revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The credential's id (`chp_` and 16 hex digits; the token's first part).
    pub id: String,
}

impl RevokeArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let host = open_existing(&self.db)?;
        let id = self
            .id
            .get(..20)
            .filter(|_| self.id.len() > 20)
            .unwrap_or(&self.id);
        let seq = host
            .revoke_credential(instant::now(), id, "cli")
            .context("cannot revoke the credential")?;
        eprintln!("revoked credential `{id}` (@registry record {seq})");
        Ok(ExitCode::SUCCESS)
    }
}
