//! `chaperone conformance ...`

use std::process::ExitCode;

use clap::Subcommand;

/// The conformance subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {}
    }
}
