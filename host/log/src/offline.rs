//! Verifying an export file offline, as `chaperone audit verify --export`
//! and the auditor's `chaperone-verify` both do: one function, so that the
//! two say the same and exit the same.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::export::verify_export;
use crate::keys::{self, KeyError};
use crate::verify::{Report, VerifyError};

/// Exit code: everything checked out.
pub const EXIT_OK: u8 = 0;
/// Exit code: verification found a problem.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage, or a file that cannot be read or is not an export.
pub const EXIT_USAGE: u8 = 2;

/// Why an export could not be verified at all (as opposed to verifying and
/// failing, which is a [`Report`] with failures).
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The public key could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The export file could not be opened.
    #[error("cannot open export `{}`", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The export could not be read, or is not an export.
    #[error("cannot verify export `{}`", path.display())]
    Verify {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: VerifyError,
    },
}

/// Verifies the export at `export` with the public key in `pubkey` (a
/// `chaperone.db.pub`-style file).
pub fn verify_export_file(export: &Path, pubkey: &Path) -> Result<Report, OfflineError> {
    let verifier = keys::load_verifier(pubkey)?;
    let file = std::fs::File::open(export).map_err(|source| OfflineError::Open {
        path: export.to_owned(),
        source,
    })?;
    verify_export(BufReader::new(file), Some(&verifier)).map_err(|source| OfflineError::Verify {
        path: export.to_owned(),
        source,
    })
}

/// The report as the command line prints it: one `FAIL ...` line per
/// failure and a summary line, or (`json`) one JSON object.
pub fn render(report: &Report, json: bool) -> String {
    if json {
        return format!("{}\n", report.to_json());
    }
    let mut out = String::new();
    for failure in &report.failures {
        out.push_str(&format!("FAIL {failure}\n"));
    }
    out.push_str(&report.summary());
    out.push('\n');
    out
}

/// An error and its causes, as the command line prints them after
/// `error: ` (`outer: inner: innermost`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    struct Chain<'e>(&'e dyn std::error::Error);
    impl fmt::Display for Chain<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0)?;
            let mut source = self.0.source();
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
            Ok(())
        }
    }
    Chain(error).to_string()
}
