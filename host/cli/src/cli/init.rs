//! `chaperone init`: create a new store and its signing key pair.

use std::process::ExitCode;

use anyhow::Context as _;
use chaperone_log::keys;
use chaperone_store::Store;

use crate::cli::{DbArg, EXIT_OK};

/// Create a new store and its Ed25519 signing key pair: the private key in
/// `PATH.key` (mode 0600), the public key in `PATH.pub`. Give the public key
/// to auditors; keep the private key secret.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let path = &self.db.db;
        if path.exists() {
            anyhow::bail!("store `{}` already exists", path.display());
        }
        let store = Store::open(path)
            .with_context(|| format!("cannot create store `{}`", path.display()))?;
        let verifier = store.verifier()?;
        println!("created store `{}`", path.display());
        println!(
            "private key `{}` (keep it secret)",
            keys::private_key_path(path).display()
        );
        println!(
            "public key `{}`: {}",
            keys::public_key_path(path).display(),
            verifier.encode()
        );
        Ok(ExitCode::from(EXIT_OK))
    }
}
