//! `chaperone audit ...`

use std::process::ExitCode;

use clap::Subcommand;

mod checkpoint;
mod export;
mod replay;
mod verify;

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify hash chains, checkpoints and signatures.
    Verify(verify::Args),
    /// Export one account's chain as JSON Lines, with a checkpoint and proof.
    Export(export::Args),
    /// Write a signed checkpoint of every chain head.
    Checkpoint(checkpoint::Args),
    /// Re-evaluate recorded decisions and report any that differ.
    Replay(replay::Args),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Verify(args) => args.run(),
            Command::Export(args) => args.run(),
            Command::Checkpoint(args) => args.run(),
            Command::Replay(args) => args.run(),
        }
    }
}
