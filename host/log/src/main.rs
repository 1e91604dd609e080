//! `chaperone-verify`: an auditor's offline check of one account's audit
//! export, with nothing but the file and the log's public key. It says and
//! exits exactly as `chaperone audit verify --export FILE --pubkey KEY`:
//! `FAIL ...` lines and a summary (or `--json`); exit 0 verified, 1
//! verification failed, 2 usage or I/O error (a file that is not an export
//! included).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chaperone_log::offline::{self, EXIT_FAILED, EXIT_OK, EXIT_USAGE};

const USAGE: &str = "\
Verify an audit export offline: every record's hash and place in the
account's chain, the record count, the checkpoint's signature, the inclusion
proof of the account's head against the checkpoint's root, and the chain
against that head.

Usage: chaperone-verify <EXPORT> --pubkey <FILE> [--json]

Arguments:
  <EXPORT>         the export (`chaperone audit export`, or
                   `GET /v1/accounts/{id}/audit`)

Options:
  --pubkey <FILE>  the log's public key (the store's `PATH.pub`)
  --json           print the report as JSON
  -h, --help       print this help
  -V, --version    print the version

Exit status: 0 verified, 1 verification failed, 2 usage or I/O error.
";

/// The command line, parsed.
#[derive(Debug, PartialEq)]
struct Args {
    export: PathBuf,
    pubkey: PathBuf,
    json: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Parsed {
    Verify(Args),
    Help,
    Version,
}

/// Three arguments do not need an argument parser's build time: this binary
/// is what an auditor compiles, and a minute matters.
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut export = None;
    let mut pubkey = None;
    let mut json = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(Parsed::Help),
            Some("-V" | "--version") => return Ok(Parsed::Version),
            Some("--json") => json = true,
            Some("--pubkey") => match args.next() {
                Some(file) => pubkey = Some(PathBuf::from(file)),
                None => return Err("`--pubkey` needs a file".into()),
            },
            Some(flag) if flag.starts_with("--pubkey=") => {
                pubkey = Some(PathBuf::from(flag.trim_start_matches("--pubkey=")));
            }
            Some(flag) if flag.starts_with('-') && flag != "-" => {
                return Err(format!("unknown option `{flag}`"));
            }
            _ if export.is_none() => export = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument `{}`", arg.to_string_lossy())),
        }
    }
    match (export, pubkey) {
        (Some(export), Some(pubkey)) => Ok(Parsed::Verify(Args {
            export,
            pubkey,
            json,
        })),
        (None, _) => Err("the export file is missing".into()),
        (_, None) => Err("`--pubkey <FILE>` is missing".into()),
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Verify(args)) => args,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::from(EXIT_OK);
        }
        Ok(Parsed::Version) => {
            println!("chaperone-verify {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::from(EXIT_OK);
        }
        Err(problem) => {
            eprintln!("error: {problem}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn reads_the_three_arguments_in_any_order() {
        let want = Ok(Parsed::Verify(Args {
            export: "e.jsonl".into(),
            pubkey: "k.pub".into(),
            json: true,
        }));
        assert_eq!(parsed(&["e.jsonl", "--pubkey", "k.pub", "--json"]), want);
        assert_eq!(parsed(&["--json", "--pubkey=k.pub", "e.jsonl"]), want);
        assert_eq!(parsed(&["--help"]), Ok(Parsed::Help));
    }

    #[test]
    fn names_what_is_missing_or_unknown() {
        let cases = [
            (&["e.jsonl"][..], "`--pubkey <FILE>` is missing"),
            (&["--pubkey", "k"][..], "the export file is missing"),
            (&["e", "--pubkey"][..], "`--pubkey` needs a file"),
            (
                &["e", "--pubkey", "k", "--fast"][..],
                "unknown option `--fast`",
            ),
            (&["e", "f", "--pubkey", "k"][..], "unexpected argument `f`"),
        ];
        for (args, problem) in cases {
            assert_eq!(parsed(args), Err(problem.to_owned()), "{args:?}");
        }
    }
}
