//! `chaperone audit replay`

use std::process::ExitCode;

use anyhow::Context;

use chaperone::replay::replay;
use chaperone_runtime::{Limits, Runtime};
use chaperone_store::Store;

use crate::cli::{DbArg, exit};

/// Re-evaluates every recorded decision with the module whose digest the
/// record names and the exact input it recorded; exit 1 if any differs.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// Only this account's chain.
    #[arg(long)]
    pub account: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// Runs the replay.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.db.db.exists(),
            "no store at `{}`",
            self.db.db.display()
        );
        let store = Store::open(&self.db.db)
            .with_context(|| format!("cannot open the store `{}`", self.db.db.display()))?;
        // The modules `serve` compiled for this store, if it kept them.
        let cache = chaperone_runtime::CompileCache::open(chaperone::service::compile_cache_dir(
            &self.db.db,
        ))
        .ok();
        let runtime = Runtime::with_cache(Limits::default(), cache)?;
        let report = replay(&store, &runtime, self.account.as_deref())?;
        if let Some(account) = &self.account
            && report.replayed + report.skipped == 0
        {
            anyhow::bail!(
                "the store `{}` has no audit records for account `{account}`",
                self.db.db.display()
            );
        }
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            for mismatch in &report.mismatches {
                println!(
                    "MISMATCH {} #{}: {}",
                    mismatch.account, mismatch.seq, mismatch.reason
                );
            }
            println!(
                "{} replayed, {} differ, {} not policy-decided",
                report.replayed,
                report.mismatches.len(),
                report.skipped
            );
        }
        Ok(exit(report.mismatches.is_empty()))
    }
}
