//! `chaperone audit verify`: verify chains, checkpoints and signatures, in a
//! store or in an export.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chaperone_log::keys::{self, Verifier};
use chaperone_log::offline;
use chaperone_log::verify::Report;
use chaperone_store::verify::{
    ExternalCheckpoint, Progress, VerifyOptions, open_read_only, verify_store,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{DbArg, exit};

/// The fewest records worth a progress bar.
const PROGRESS_THRESHOLD: u64 = 50_000;

/// Verify the audit log: every record's hash and place in its chain, every
/// checkpoint's signature, checkpoints against each other (a fork) and
/// against the chains (a cut tail, a rewritten chain). Names the first bad
/// record of each chain by account and sequence number, and ends with a
/// summary line. Exit status: 0 verified, 1 verification failed, 2 usage or
/// I/O error.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// Verify only this account's chain.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// A checkpoint note kept outside the store; the log must be consistent
    /// with it. Repeatable.
    #[arg(long = "checkpoint", value_name = "FILE")]
    pub checkpoints: Vec<PathBuf>,
    /// The log's public key [default: the store's `PATH.pub`].
    #[arg(long, value_name = "FILE")]
    pub pubkey: Option<PathBuf>,
    /// Verify this export file offline, without the store.
    #[arg(long, value_name = "FILE", requires = "pubkey", conflicts_with_all = ["account", "checkpoints"])]
    pub export: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let report = match &self.export {
            Some(export) => self.verify_export(export)?,
            None => self.verify_store()?,
        };
        print!("{}", offline::render(&report, self.json));
        Ok(exit(report.is_ok()))
    }

    /// As the auditor's `chaperone-verify` does it (one function, the
    /// same messages).
    fn verify_export(&self, export: &Path) -> anyhow::Result<Report> {
        let Some(pubkey) = &self.pubkey else {
            anyhow::bail!("verifying an export needs `--pubkey`");
        };
        Ok(offline::verify_export_file(export, pubkey)?)
    }

    fn verify_store(&self) -> anyhow::Result<Report> {
        let path = &self.db.db;
        let verifier = self.verifier(path)?;
        let mut checkpoints = Vec::new();
        for file in &self.checkpoints {
            let note = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read checkpoint `{}`", file.display()))?;
            checkpoints.push(ExternalCheckpoint {
                label: format!("checkpoint file `{}`", file.display()),
                note,
            });
        }
        let bar = progress_bar(path, self.account.as_deref())?;
        let progress = bar
            .clone()
            .map(|bar| Arc::new(move |n: u64| bar.inc(n)) as Progress);
        let options = VerifyOptions {
            account: self.account.clone(),
            verifier,
            checkpoints,
            sequential: false,
            progress,
        };
        let report = verify_store(path, &options)?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if let Some(account) = &self.account
            && report.is_empty()
        {
            anyhow::bail!(
                "the store `{}` has no audit records for account `{account}`",
                path.display()
            );
        }
        Ok(report)
    }

    /// `--pubkey`, or the store's `PATH.pub` if there is one.
    fn verifier(&self, path: &Path) -> anyhow::Result<Option<Verifier>> {
        if let Some(pubkey) = &self.pubkey {
            return Ok(Some(keys::load_verifier(pubkey)?));
        }
        let default = keys::public_key_path(path);
        if default.exists() {
            Ok(Some(keys::load_verifier(&default)?))
        } else {
            Ok(None)
        }
    }
}

/// A progress bar on stderr when it is a terminal and the log is long.
fn progress_bar(path: &Path, account: Option<&str>) -> anyhow::Result<Option<ProgressBar>> {
    if !std::io::stderr().is_terminal() {
        return Ok(None);
    }
    let conn = open_read_only(path)?;
    let total = chaperone_store::read::count(&conn, account)?;
    if total < PROGRESS_THRESHOLD {
        return Ok(None);
    }
    let bar = ProgressBar::new(total).with_style(ProgressStyle::with_template(
        "verifying {bar:40} {pos}/{len} records ({per_sec}, {eta})",
    )?);
    Ok(Some(bar))
}
