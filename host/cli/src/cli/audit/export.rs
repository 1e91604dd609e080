//! `chaperone audit export`: one account's chain as JSON Lines.

use std::io::{BufWriter, IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chaperone_store::export::WithoutCheckpoint;
use chaperone_store::{export, read, verify};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{DbArg, EXIT_OK};

/// The fewest records worth a progress bar.
const PROGRESS_THRESHOLD: u64 = 50_000;

/// Export one account's chain as JSON Lines: a header, each record's exact
/// bytes (base64) with its decoded fields, the latest signed checkpoint
/// (which names no account), and the account's own head with its inclusion
/// proof against the checkpoint's root. An auditor verifies the
/// file offline with `chaperone audit verify --export FILE --pubkey FILE`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account whose chain to export.
    #[arg(long, value_name = "ID")]
    pub account: String,
    #[command(flatten)]
    pub db: DbArg,
    /// Write the export to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON Lines.
    Jsonl,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let conn = verify::open_read_only(&self.db.db)?;
        let total = read::count(&conn, Some(&self.account))?;
        if total == 0 && read::head(&conn, &self.account)?.is_none() {
            anyhow::bail!("account `{}` has no audit records", self.account);
        }
        let bar = (std::io::stderr().is_terminal() && total >= PROGRESS_THRESHOLD).then(|| {
            ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "exporting {bar:40} {pos}/{len} records ({per_sec}, {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            )
        });
        let progress = |n: u64| {
            if let Some(bar) = &bar {
                bar.set_position(n);
            }
        };
        let summary = match &self.out {
            Some(out) => {
                let file = std::fs::File::create(out)
                    .with_context(|| format!("cannot create `{}`", out.display()))?;
                let mut writer = BufWriter::new(file);
                let summary = export::export(&conn, &self.account, &mut writer, &progress)?;
                writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("cannot write `{}`", out.display()))?;
                summary
            }
            None => {
                let stdout = std::io::stdout();
                let mut writer = BufWriter::new(stdout.lock());
                let summary = export::export(&conn, &self.account, &mut writer, &progress)?;
                writer.flush()?;
                summary
            }
        };
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let message = format!(
            "exported {} record{} of account `{}`{}",
            summary.records,
            if summary.records == 1 { "" } else { "s" },
            self.account,
            match (summary.proof, summary.without) {
                (true, _) => " with the latest checkpoint and its head's inclusion proof in it",
                (false, Some(WithoutCheckpoint::NoneSigned)) =>
                    " (the store has no checkpoint yet)",
                (false, Some(WithoutCheckpoint::VersionOne)) => {
                    " without a checkpoint (the latest is of version 1, which lists every account: sign one with `chaperone audit checkpoint`)"
                }
                (false, Some(WithoutCheckpoint::NotInIt)) => {
                    " without a checkpoint (the latest was signed before the account's chain began)"
                }
                (false, None) => {
                    " with the latest checkpoint but no proof of its head (the store's heads for it are not its tree)"
                }
            }
        );
        match &self.out {
            Some(out) => println!("{message} to `{}`", out.display()),
            None => eprintln!("{message}"),
        }
        Ok(ExitCode::from(EXIT_OK))
    }
}
