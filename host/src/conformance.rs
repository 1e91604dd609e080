//! Conformance scenarios (`CONFORMANCE.md`): JSON files that drive the
//! whole host (state, policy module, audit log) through a sequence of steps
//! on a fresh store, and say what each step must return.
//!
//! ```no_run
//! use chaperone::conformance::{Options, Runner, find_scenarios, summary};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let files = find_scenarios(&["tests/scenarios".into()])?;
//! let mut runner = Runner::new(Options::default());
//! let reports: Vec<_> = files.iter().map(|file| runner.run_file(file)).collect();
//! for report in &reports {
//!     println!("{}", report.line());
//! }
//! println!("{}", summary(&reports)); // `N passed, M failed`
//! # Ok(()) }
//! ```
//!
//! Concepts:
//! - a [`Scenario`] is read and checked whole before it runs
//!   ([`scenario::parse`]): a broken file (invalid JSON, an unknown op, a
//!   missing field or one of the wrong type, an undefined name, time going
//!   backwards) is reported with its step index and field, and runs nothing;
//! - each scenario runs on a fresh store: a temporary directory that is
//!   removed afterwards, or `DIR/<file stem>.db` with [`Options::store_dir`];
//! - names: `as` binds a name to the id of the object an allowed step
//!   created; steps refer to objects by those names, and the runner hands the
//!   host the ids (so a name bound in one account and used in another reaches
//!   the host as that other account's object, and the host refuses it);
//! - a step's [`Failure`] is a mismatch (what was expected, what came back),
//!   an error in the scenario (a field of a step, or a request the host
//!   could not carry out, like removing a user that does not exist), or a
//!   failure of the host itself.
//!
//! Step indexes count from 0, like the positions in the `steps` list.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::service::{Host, HostOptions};
use chaperone_runtime::Limits;

mod run;
pub mod scenario;

pub use scenario::{Decision, Expect, LoadError, Scenario, ScenarioError, Step, StepAction};

/// How scenarios run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Modules to use for accounts that name these vendor ids, instead of the
    /// built-in ones (`--policy ID=FILE.wasm`).
    pub policies: Vec<(String, Vec<u8>)>,
    /// Keep each scenario's store as `DIR/<file stem>.db` (removed first if
    /// it exists) instead of in a temporary directory.
    pub store_dir: Option<PathBuf>,
    /// The sandbox's limits.
    pub limits: Limits,
}

/// Runs scenario files, each on a fresh store.
#[derive(Debug)]
pub struct Runner {
    options: Options,
    /// One sandbox for every scenario: modules compile once per digest.
    /// Each scenario still gets a fresh store and fresh instances.
    runtime: Option<chaperone_runtime::Runtime>,
    /// How many stores of each file stem this runner has kept in `store_dir`.
    stems: HashMap<String, usize>,
}

/// What one scenario came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The scenario file.
    pub file: PathBuf,
    /// Its name, when the file gives one.
    pub name: Option<String>,
    /// The rule ids it names.
    pub rules: Vec<String>,
    /// How many of its steps ran and passed.
    pub steps_passed: usize,
    /// Where its store was kept (with [`Options::store_dir`]).
    pub store: Option<PathBuf>,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
}

/// Why a scenario failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The failing step's index in `steps` (from 0), when a step failed.
    pub step: Option<usize>,
    /// The failing step's `op`, when known.
    pub op: Option<String>,
    /// What went wrong.
    pub problem: Problem,
}

/// What went wrong in a failed scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The step returned something other than its `expect`.
    Mismatch {
        /// The `expect` fields that were checked.
        expected: Value,
        /// What came back, for the same fields (and the decision's rule and
        /// message).
        got: Value,
    },
    /// The file is not a valid scenario, or a step is an error in the
    /// scenario (an undefined or unbound name, a name bound twice, a
    /// request the host refused as impossible).
    Scenario {
        /// The field at fault (a dotted path inside the step), when known.
        field: Option<String>,
        /// What is wrong.
        detail: String,
    },
    /// The host failed (the store, the runtime): not the scenario's fault.
    Host {
        /// What failed.
        detail: String,
    },
}

impl Failure {
    pub(crate) fn scenario(
        step: Option<&Step>,
        field: Option<&str>,
        detail: impl Into<String>,
    ) -> Failure {
        Failure {
            step: step.map(|s| s.index),
            op: step.map(|s| s.op.clone()),
            problem: Problem::Scenario {
                field: field.map(str::to_string),
                detail: detail.into(),
            },
        }
    }

    pub(crate) fn host(step: Option<&Step>, detail: impl Into<String>) -> Failure {
        Failure {
            step: step.map(|s| s.index),
            op: step.map(|s| s.op.clone()),
            problem: Problem::Host {
                detail: detail.into(),
            },
        }
    }

    fn load(error: &LoadError) -> Failure {
        match error {
            LoadError::Scenario(e) => Failure {
                step: e.step,
                op: None,
                problem: Problem::Scenario {
                    field: Some(e.field.clone()),
                    detail: e.problem.clone(),
                },
            },
            other => Failure {
                step: None,
                op: None,
                problem: Problem::Scenario {
                    field: None,
                    detail: other.to_string(),
                },
            },
        }
    }

    /// The failure as JSON: `step`, `op`, `kind` (`mismatch`, `scenario` or
    /// `host`), `field`, `expected`, `got`, and `message` (the text form).
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "step": self.step,
            "op": self.op,
            "message": self.to_string(),
        });
        if let Value::Object(map) = &mut out {
            match &self.problem {
                Problem::Mismatch { expected, got } => {
                    map.insert("kind".into(), "mismatch".into());
                    map.insert("expected".into(), expected.clone());
                    map.insert("got".into(), got.clone());
                }
                Problem::Scenario { field, detail } => {
                    map.insert("kind".into(), "scenario".into());
                    map.insert("field".into(), json!(field));
                    map.insert("error".into(), detail.clone().into());
                }
                Problem::Host { detail } => {
                    map.insert("kind".into(), "host".into());
                    map.insert("error".into(), detail.clone().into());
                }
            }
        }
        out
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.step, &self.op) {
            (Some(step), Some(op)) => write!(f, "step {step} ({op})")?,
            (Some(step), None) => write!(f, "step {step}")?,
            (None, _) => {}
        }
        let lead = if self.step.is_some() { ", " } else { "" };
        match &self.problem {
            Problem::Mismatch { expected, got } => {
                write!(f, ": expected {expected}, got {got}")
            }
            Problem::Scenario {
                field: Some(field),
                detail,
            } => write!(f, "{lead}field `{field}`: {detail}"),
            Problem::Scenario {
                field: None,
                detail,
            } => {
                let sep = if self.step.is_some() { ": " } else { "" };
                write!(f, "{sep}{detail}")
            }
            Problem::Host { detail } => {
                let sep = if self.step.is_some() { ": " } else { "" };
                write!(f, "{sep}the host failed: {detail}")
            }
        }
    }
}

impl Report {
    /// Whether every step passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// One line: `ok NAME`, or `FAILED NAME (FILE): step I (OP): expected
    /// ..., got ...` (or what is wrong with the step or the file).
    pub fn line(&self) -> String {
        let file = self.file.display();
        match (&self.failure, &self.name) {
            (None, Some(name)) => format!("ok {name}"),
            (None, None) => format!("ok {file}"),
            (Some(failure), Some(name)) => format!("FAILED {name} ({file}): {failure}"),
            (Some(failure), None) => format!("FAILED {file}: {failure}"),
        }
    }

    /// The report as one JSON object: `file`, `name`, `rules`, `ok`,
    /// `steps_passed`, `store`, and `failure` (see [`Failure::to_json`]).
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file.display().to_string(),
            "name": self.name,
            "rules": self.rules,
            "ok": self.passed(),
            "steps_passed": self.steps_passed,
            "store": self.store.as_ref().map(|p| p.display().to_string()),
            "failure": self.failure.as_ref().map(Failure::to_json),
        })
    }
}

/// The last line of a run: exactly `N passed, M failed`.
pub fn summary(reports: &[Report]) -> String {
    let passed = reports.iter().filter(|r| r.passed()).count();
    format!("{passed} passed, {} failed", reports.len() - passed)
}

/// Why the scenario files could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// A path given does not exist.
    #[error("no such file or directory `{0}`")]
    Missing(PathBuf),
    /// A directory could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The scenario files of `paths`, in order: a file is taken as it is; a
/// directory is searched recursively for `*.json` files, which come sorted
/// by path. Symbolic links to directories are not followed.
pub fn find_scenarios(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FindError> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = fs::metadata(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => FindError::Missing(path.clone()),
            _ => FindError::Io {
                path: path.clone(),
                source,
            },
        })?;
        if metadata.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), FindError> {
    let io = |source| FindError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io)?;
        if file_type.is_dir() {
            walk(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "json")
            && (file_type.is_file() || path.is_file())
        {
            found.push(path);
        }
    }
    Ok(())
}

impl Runner {
    /// A runner with these options.
    pub fn new(options: Options) -> Runner {
        Runner {
            options,
            runtime: None,
            stems: HashMap::new(),
        }
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Reads, checks and runs one scenario file on a fresh store.
    pub fn run_file(&mut self, file: &Path) -> Report {
        match fs::read_to_string(file) {
            Ok(text) => self.run_text(file, &text),
            Err(e) => Report {
                file: file.to_path_buf(),
                name: None,
                rules: Vec::new(),
                steps_passed: 0,
                store: None,
                failure: Some(Failure::load(&LoadError::Read(e.to_string()))),
            },
        }
    }

    /// Checks and runs one scenario given as text (`file` names it in the
    /// report and, with [`Options::store_dir`], its store).
    pub fn run_text(&mut self, file: &Path, text: &str) -> Report {
        let (name, rules) = scenario::header(text);
        let mut report = Report {
            file: file.to_path_buf(),
            name,
            rules,
            steps_passed: 0,
            store: None,
            failure: None,
        };
        let scenario = match scenario::parse(text) {
            Ok(scenario) => scenario,
            Err(e) => {
                let mut failure = Failure::load(&e);
                failure.op = failure.step.and_then(|step| scenario::step_op(text, step));
                report.failure = Some(failure);
                return report;
            }
        };
        let (steps_passed, failure) = match self.options.store_dir.clone() {
            Some(dir) => {
                let db = self.kept_store(&dir, file);
                report.store = Some(db.clone());
                match fresh(&db) {
                    Ok(()) => self.run_on(&scenario, &db),
                    Err(e) => (
                        0,
                        Some(Failure::host(
                            None,
                            format!("cannot make a fresh store `{}`: {e}", db.display()),
                        )),
                    ),
                }
            }
            None => match tempfile::Builder::new()
                .prefix("chaperone-conformance-")
                .tempdir()
            {
                // The directory and the store in it go when `dir` drops.
                Ok(dir) => self.run_on(&scenario, &dir.path().join("scenario.db")),
                Err(e) => (
                    0,
                    Some(Failure::host(
                        None,
                        format!("cannot make a temporary directory: {e}"),
                    )),
                ),
            },
        };
        report.steps_passed = steps_passed;
        report.failure = failure;
        report
    }

    /// Runs an already checked scenario on a fresh store at `db`.
    fn run_on(&mut self, scenario: &Scenario, db: &Path) -> (usize, Option<Failure>) {
        if self.runtime.is_none() {
            match chaperone_runtime::Runtime::new(self.options.limits.clone()) {
                Ok(runtime) => self.runtime = Some(runtime),
                Err(e) => return (0, Some(Failure::host(None, e.to_string()))),
            }
        }
        let options = HostOptions {
            limits: self.options.limits.clone(),
            policies: self.options.policies.clone(),
            runtime: self.runtime.clone(),
            compile_cache: None,
        };
        let host = match Host::open(db, options) {
            Ok(host) => host,
            Err(e) => {
                return (
                    0,
                    Some(Failure::host(None, format!("cannot open the store: {e}"))),
                );
            }
        };
        match run::run(scenario, &host) {
            Ok(()) => (scenario.steps.len(), None),
            Err((passed, failure)) => (passed, Some(failure)),
        }
    }

    /// `DIR/<file stem>.db`, or `DIR/<file stem>-N.db` for the N-th file of
    /// that stem this runner has seen.
    fn kept_store(&mut self, dir: &Path, file: &Path) -> PathBuf {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into());
        let seen = self.stems.entry(stem.clone()).or_insert(0);
        *seen += 1;
        if *seen == 1 {
            dir.join(format!("{stem}.db"))
        } else {
            dir.join(format!("{stem}-{seen}.db"))
        }
    }
}

/// Removes a store and its companion files, so that it is created afresh.
fn fresh(db: &Path) -> io::Result<()> {
    if let Some(dir) = db.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut files = vec![
        db.to_path_buf(),
        chaperone_log::keys::private_key_path(db),
        chaperone_log::keys::public_key_path(db),
    ];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        files.push(PathBuf::from(path));
    }
    for file in files {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_passed_and_failed() {
        let report = |failure: Option<Failure>| Report {
            file: "f.json".into(),
            name: Some("n".into()),
            rules: Vec::new(),
            steps_passed: 0,
            store: None,
            failure,
        };
        let failed = Failure::scenario(None, Some("steps"), "is missing");
        let reports = [report(None), report(Some(failed.clone())), report(None)];
        assert_eq!(summary(&reports), "2 passed, 1 failed");
        assert_eq!(summary(&[]), "0 passed, 0 failed");
        let lines: Vec<String> = reports.iter().map(Report::line).collect();
        assert_eq!(
            lines,
            [
                "ok n",
                "FAILED n (f.json): field `steps`: is missing",
                "ok n"
            ]
        );
    }

    #[test]
    fn renders_mismatches_with_step_expected_and_got() {
        let failure = Failure {
            step: Some(4),
            op: Some("act".into()),
            problem: Problem::Mismatch {
                expected: json!({"decision": "deny"}),
                got: json!({"decision": "allow"}),
            },
        };
        assert_eq!(
            failure.to_string(),
            r#"step 4 (act): expected {"decision":"deny"}, got {"decision":"allow"}"#
        );
        let failure = Failure {
            step: Some(2),
            op: Some("revoke".into()),
            problem: Problem::Scenario {
                field: Some("grant".into()),
                detail: "undefined".into(),
            },
        };
        assert_eq!(
            failure.to_string(),
            "step 2 (revoke), field `grant`: undefined"
        );
    }
}
