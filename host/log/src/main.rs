//! `chaperone-verify`: an auditor's offline check of one account's audit
//! export, with nothing but the file and the log's public key. It says and
//! exits exactly as `chaperone audit verify --export FILE --pubkey KEY`:
//! `FAIL ...` lines and a summary (or `--json`); exit 0 verified, 1
//! verification failed, 2 usage or I/O error (a file that is not an export
//! included).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chaperone_log::offline::{self, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use clap::Parser;

/// Verify an audit export offline: every record's hash and place in the
/// account's chain, the record count, the checkpoint's signature, the
/// account's head in it and the head's inclusion proof.
#[derive(Debug, Parser)]
#[command(name = "chaperone-verify", version, about, long_about = None)]
struct Args {
    /// The export (`chaperone audit export` or `GET /v1/accounts/{id}/audit`).
    #[arg(value_name = "EXPORT")]
    export: PathBuf,
    /// The log's public key (the store's `PATH.pub`).
    #[arg(long, value_name = "FILE")]
    pubkey: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match offline::verify_export_file(&args.export, &args.pubkey) {
        Ok(report) => {
            let text = offline::render(&report, args.json);
            // A closed stdout (`| head`) is not a failed verification.
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::from(if report.is_ok() { EXIT_OK } else { EXIT_FAILED })
        }
        Err(error) => {
            eprintln!("error: {}", offline::error_chain(&error));
            ExitCode::from(EXIT_USAGE)
        }
    }
}
