//! `chaperone init`: create a new store and its signing key pair, install
//! the built-in modules, and make the first admin credential.

use std::process::ExitCode;

use anyhow::Context as _;
use chaperone::service::Host;
use chaperone_log::keys;

use crate::cli::{DbArg, EXIT_OK};

/// Create a new store and its Ed25519 signing key pair: the private key in
/// `PATH.key` (mode 0600), the public key in `PATH.pub`. Give the public key
/// to auditors; keep the private key secret. The built-in modules are
/// installed, and an admin token is printed once.
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
        let created = create(path)?;
        println!("created store `{}`", path.display());
        println!(
            "private key `{}` (keep it secret)",
            keys::private_key_path(path).display()
        );
        println!(
            "public key `{}`: {}",
            keys::public_key_path(path).display(),
            created.verifier
        );
        for (vendor, digest) in &created.modules {
            println!("installed built-in module `{vendor}` {digest}");
        }
        println!("admin token (shown only now): {}", created.admin_token);
        Ok(ExitCode::from(EXIT_OK))
    }
}

/// What [`create`] made.
pub struct Created {
    /// The public key, encoded.
    pub verifier: String,
    /// The built-in modules installed: vendor id and digest.
    pub modules: Vec<(String, String)>,
    /// The first admin credential's token.
    pub admin_token: String,
}

/// Creates the store at `path` (which must not exist): its keys, the
/// built-in modules installed, and one admin credential.
pub fn create(path: &std::path::Path) -> anyhow::Result<Created> {
    let host = Host::open(path, chaperone::service::HostOptions::default())
        .with_context(|| format!("cannot create store `{}`", path.display()))?;
    let verifier = host.store().verifier()?.encode();
    let now = chaperone::instant::now();
    let mut modules = Vec::new();
    for builtin in chaperone::builtin::ALL {
        let installed = host
            .install_module(now, builtin.vendor, builtin.bytes, true, "init")
            .with_context(|| format!("cannot install the built-in module `{}`", builtin.vendor))?;
        modules.push((builtin.vendor.to_string(), installed.module.digest));
    }
    let admin = host
        .create_credential(
            now,
            chaperone_store::registry::Scope::Admin,
            "created by init",
            "init",
        )
        .context("cannot create the admin credential")?;
    Ok(Created {
        verifier,
        modules,
        admin_token: admin.token,
    })
}
