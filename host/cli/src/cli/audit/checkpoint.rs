//! `chaperone audit checkpoint`: sign and store a checkpoint of every chain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use chaperone_store::Store;

use crate::cli::{DbArg, EXIT_OK};

/// Write a signed checkpoint of every chain head: the store keeps it with the
/// heads it commits to, and its note (the number of chains and the Merkle
/// root over their heads, no account) is printed, or written to `--out`, so
/// that it can be kept elsewhere too. A note kept outside the store is what
/// shows a cut tail later: the store's heads for it must still reproduce its
/// root, and the chains must still extend them.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// Write the signed checkpoint note to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let path = &self.db.db;
        if !path.exists() {
            anyhow::bail!(
                "no store at `{}` (create one with `chaperone init`)",
                path.display()
            );
        }
        let store =
            Store::open(path).with_context(|| format!("cannot open store `{}`", path.display()))?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_millis();
        let now_ms = i64::try_from(now_ms).context("the system clock is out of range")?;
        let checkpoint = store.checkpoint(now_ms)?;
        match &self.out {
            Some(out) => {
                std::fs::write(out, &checkpoint.note)
                    .with_context(|| format!("cannot write `{}`", out.display()))?;
                println!(
                    "wrote a checkpoint of {} chain{} to `{}`",
                    checkpoint.tree_size,
                    if checkpoint.tree_size == 1 { "" } else { "s" },
                    out.display()
                );
            }
            None => print!("{}", checkpoint.note),
        }
        Ok(ExitCode::from(EXIT_OK))
    }
}
