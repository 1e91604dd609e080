//! `chaperone policy install|list|activate|rollback`: the module registry
//! of a store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use chaperone::instant;

use super::{DbArg, open_existing};

/// Arguments of `policy install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The module (a component, or a core module built with the SDK).
    pub file: PathBuf,
    /// The vendor id it decides for; its `describe()` must give the same.
    #[arg(long)]
    pub vendor: String,
    /// Make it the vendor's active module now (a vendor's first module is
    /// active anyway).
    #[arg(long)]
    pub activate: bool,
    #[command(flatten)]
    pub db: DbArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl InstallArgs {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let bytes = super::read_module(&self.file)?;
        let host = open_existing(&self.db)?;
        let installed = host
            .install_module(instant::now(), &self.vendor, &bytes, self.activate, "cli")
            .with_context(|| {
                format!(
                    "cannot install `{}` for vendor `{}`",
                    self.file.display(),
                    self.vendor
                )
            })?;
        if self.json {
            println!("{}", serde_json::to_string(&installed)?);
        } else {
            let m = &installed.module;
            println!(
                "installed {} for vendor `{}` (version {}, {} bytes){}",
                m.digest,
                m.vendor,
                m.version,
                m.size,
                if m.active {
                    "; active"
                } else {
                    "; not active: `chaperone policy activate` it"
                }
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Arguments of `policy list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this vendor's modules.
    #[arg(long)]
    pub vendor: Option<String>,
    #[command(flatten)]
    pub db: DbArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ListArgs {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let host = open_existing(&self.db)?;
        let modules = host.installed_modules(self.vendor.as_deref())?;
        if self.json {
            println!("{}", serde_json::to_string(&modules)?);
            return Ok(ExitCode::SUCCESS);
        }
        for m in &modules {
            println!(
                "{} {:<16} {}  version {:<10} {:>9} bytes  installed {}",
                if m.active { "*" } else { " " },
                m.vendor,
                m.digest,
                m.version,
                m.size,
                instant::format(m.installed_at)
            );
        }
        if modules.is_empty() {
            eprintln!(
                "no modules installed (accounts of the built-in vendors use the built-in modules)"
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Arguments of `policy activate`.
#[derive(Debug, clap::Args)]
pub struct ActivateArgs {
    /// The digest of an installed module (as `policy list` shows it).
    pub digest: String,
    /// The vendor it is installed for.
    #[arg(long)]
    pub vendor: String,
    #[command(flatten)]
    pub db: DbArg,
}

impl ActivateArgs {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let host = open_existing(&self.db)?;
        let digest = self.digest.trim_start_matches("blake3:");
        let activation = host
            .activate_module(instant::now(), &self.vendor, digest, "cli")
            .context("cannot activate the module")?;
        println!(
            "vendor `{}` now uses {} (was {})",
            activation.vendor,
            activation.digest,
            activation.previous.as_deref().unwrap_or("none")
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Arguments of `policy rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The vendor whose previous module becomes active again.
    #[arg(long)]
    pub vendor: String,
    #[command(flatten)]
    pub db: DbArg,
}

impl RollbackArgs {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let host = open_existing(&self.db)?;
        let activation = host
            .rollback_module(instant::now(), &self.vendor, "cli")
            .context("cannot roll back")?;
        println!(
            "vendor `{}` rolled back to {} (was {})",
            activation.vendor,
            activation.digest,
            activation.previous.as_deref().unwrap_or("none")
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Arguments of `policy diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The candidate module.
    pub file: PathBuf,
    /// The vendor whose recorded decisions it re-decides; its `describe()`
    /// must give the same vendor id.
    #[arg(long)]
    pub vendor: String,
    /// Only decisions recorded at or after this instant (RFC 3339, e.g.
    /// `2026-11-01T00:00:00Z`).
    #[arg(long, value_parser = parse_instant)]
    pub since: Option<i64>,
    #[command(flatten)]
    pub db: DbArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_instant(text: &str) -> Result<i64, String> {
    instant::parse(text).map_err(|e| e.to_string())
}

impl DiffArgs {
    /// Runs the subcommand: exit 0 if no decision changes, 1 if any does.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let bytes = super::read_module(&self.file)?;
        let host = open_existing(&self.db)?;
        let candidate = host
            .runtime()
            .load(&bytes)
            .with_context(|| format!("cannot load `{}`", self.file.display()))?;
        let described = &candidate.description().vendor;
        if *described != self.vendor {
            anyhow::bail!(
                "`{}` describes itself as vendor `{described}`, not `{}`",
                self.file.display(),
                self.vendor
            );
        }
        let report = chaperone::replay::diff(
            host.store(),
            host.runtime(),
            &candidate,
            &self.vendor,
            self.since,
        )?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            for c in &report.changes {
                println!(
                    "{} {} {} {}: {} `{}` -> {} `{}` ({})",
                    c.account,
                    c.seq,
                    c.time,
                    c.kind,
                    c.old.verdict,
                    c.old.rule,
                    c.new.verdict,
                    c.new.rule,
                    c.detail
                );
            }
            println!(
                "{} of {} decisions in {} accounts of vendor `{}` would change with {}",
                report.changes.len(),
                report.decisions,
                report.accounts,
                report.vendor,
                report.candidate
            );
        }
        Ok(super::exit(report.changes.is_empty()))
    }
}
