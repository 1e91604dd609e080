//! `chaperone conformance ...`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chaperone::conformance::{Options, Runner, find_scenarios, summary};
use chaperone_runtime::{Limits, Runtime};
use clap::Subcommand;

/// The conformance subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenario files against the whole host, each on a fresh store.
    ///
    /// Prints one line per scenario (`ok` or `FAILED`, its name, and for a
    /// failure the step, what was expected and what came back), then
    /// `N passed, M failed`. Steps are counted from 0, like the positions
    /// in a scenario's `steps` list. Exits 0 only when nothing failed, 1 when
    /// a scenario failed (a broken file counts as failed), 2 on bad usage or
    /// a path that does not exist.
    Run(RunArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(args) => args.run(),
        }
    }
}

/// `chaperone conformance run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario files, or folders searched recursively for `*.json` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Use the module in FILE for accounts whose `policy` is ID (repeatable).
    #[arg(long = "policy", value_name = "ID=FILE.wasm", value_parser = parse_policy)]
    policies: Vec<(String, PathBuf)>,
    /// Print one JSON object per scenario on stdout (the summary line then
    /// goes to stderr).
    #[arg(long)]
    json: bool,
    /// Keep each scenario's store as DIR/<file stem>.db for inspection.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
}

fn parse_policy(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((id, file)) if !id.is_empty() && !file.is_empty() => {
            Ok((id.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("`{text}` is not of the form ID=FILE.wasm")),
    }
}

impl RunArgs {
    /// Runs the scenarios.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let files = find_scenarios(&self.paths)?;
        let limits = Limits::default();
        let mut policies = Vec::with_capacity(self.policies.len());
        if !self.policies.is_empty() {
            let runtime = Runtime::new(limits.clone()).context("cannot set up the sandbox")?;
            for (id, file) in &self.policies {
                let bytes = super::read_module(file)?;
                runtime.load(&bytes).with_context(|| {
                    format!("cannot load the policy module `{}`", file.display())
                })?;
                policies.push((id.clone(), bytes));
            }
        }
        if let Some(dir) = &self.store {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        if files.is_empty() {
            eprintln!("warning: no scenario files found");
        }

        let mut runner = Runner::new(Options {
            policies,
            store_dir: self.store,
            limits,
        });
        let mut reports = Vec::with_capacity(files.len());
        let mut out = std::io::stdout().lock();
        for file in &files {
            let report = runner.run_file(file);
            if self.json {
                writeln!(out, "{}", report.to_json())?;
            } else {
                writeln!(out, "{}", report.line())?;
            }
            out.flush()?;
            reports.push(report);
        }
        let last = summary(&reports);
        if self.json {
            eprintln!("{last}");
        } else {
            writeln!(out, "{last}")?;
        }
        Ok(super::exit(reports.iter().all(|r| r.passed())))
    }
}
