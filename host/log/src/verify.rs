//! Verification of the log: every chain, every checkpoint, and the
//! consistency between them (`docs/audit-format.md`, "Verification").
//!
//! Two verifiers share one definition of a good chain:
//! - the fast path checks each record against its predecessor's stored hash,
//!   so any range of records can be checked on its own; ranges run in
//!   parallel on every core;
//! - the reference path (`check_chain`) walks one chain in order and, at
//!   the first bad record, tells what is wrong with it. It runs on every
//!   chain the fast path rejects (or on every chain, with
//!   [`VerifyOptions::sequential`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use serde_json::{Value, json};

use super::chain::{self, ChainHash, Seq};
use super::checkpoint::{self, Checkpoint, CheckpointError};
use super::keys::Verifier;
use super::read;
use super::record;

/// How much of the store a verifying connection maps into memory.
const MMAP_BYTES: i64 = 1 << 30;

/// Called with the number of records just checked.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// What to verify, and against what.
#[derive(Default, Clone)]
pub struct VerifyOptions {
    /// Only this account's chain (checkpoint signatures are still checked).
    pub account: Option<String>,
    /// The log's public key; required when there is any checkpoint to check.
    pub verifier: Option<Verifier>,
    /// Checkpoints kept outside the store, checked like the stored ones.
    pub checkpoints: Vec<ExternalCheckpoint>,
    /// Walk every chain with the reference verifier instead of the parallel
    /// fast path (slower; same result).
    pub sequential: bool,
    /// Progress callback.
    pub progress: Option<Progress>,
}

impl fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("account", &self.account)
            .field("verifier", &self.verifier)
            .field("checkpoints", &self.checkpoints.len())
            .field("sequential", &self.sequential)
            .finish_non_exhaustive()
    }
}

/// A checkpoint note from outside the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCheckpoint {
    /// How reports name it (e.g. `checkpoint file `cp.txt``).
    pub label: String,
    /// The signed note.
    pub note: String,
}

/// What is wrong with a record, a chain or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The stored hash is not `BLAKE3(tag || previous hash || bytes)`.
    HashMismatch,
    /// Records from the failure's sequence number to `last_missing` are missing.
    Gap {
        /// The last missing sequence number.
        last_missing: Seq,
    },
    /// The record at this position is another position's record.
    Reordered {
        /// The sequence number it holds or claims.
        found: i64,
    },
    /// This record is not part of the chain: the next one chains from the
    /// record before it.
    Inserted,
    /// The record's bytes name another account.
    WrongAccount {
        /// The account its bytes name.
        found: String,
    },
    /// The record's bytes are not a record.
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// The store's `time_ms` or `kind` column disagrees with the bytes.
    IndexMismatch,
    /// The chain ends below a sequence number that something names.
    Truncated {
        /// The sequence number named.
        expected: Seq,
        /// What names it (a checkpoint, the store's head, an export header).
        evidence: String,
    },
    /// The chain's hash at a signed checkpoint's head differs from it.
    CheckpointMismatch {
        /// The checkpoint.
        checkpoint: String,
    },
    /// The store's recorded head disagrees with the chain.
    HeadMismatch {
        /// How.
        detail: String,
    },
    /// A checkpoint has no valid signature by the log's key.
    BadSignature {
        /// The checkpoint.
        checkpoint: String,
        /// The key's name.
        key: String,
    },
    /// A signed checkpoint is not well formed.
    BadCheckpoint {
        /// The checkpoint.
        checkpoint: String,
        /// What is wrong.
        detail: String,
    },
    /// A newer checkpoint is inconsistent with an older one.
    Fork {
        /// The older checkpoint.
        older: String,
        /// The newer checkpoint.
        newer: String,
        /// How.
        detail: String,
    },
    /// An export's decoded fields differ from the record's bytes.
    DecodedMismatch,
    /// An export's inclusion proof does not prove the head.
    BadProof {
        /// Why.
        detail: String,
    },
}

impl Problem {
    /// The stable reason code (`--json`'s `reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Problem::HashMismatch => "hash-mismatch",
            Problem::Gap { .. } => "gap",
            Problem::Reordered { .. } => "reordered",
            Problem::Inserted => "inserted",
            Problem::WrongAccount { .. } => "wrong-account",
            Problem::Malformed { .. } => "malformed",
            Problem::IndexMismatch => "index-mismatch",
            Problem::Truncated { .. } => "truncated",
            Problem::CheckpointMismatch { .. } => "checkpoint-mismatch",
            Problem::HeadMismatch { .. } => "head-mismatch",
            Problem::BadSignature { .. } => "bad-signature",
            Problem::BadCheckpoint { .. } => "bad-checkpoint",
            Problem::Fork { .. } => "fork",
            Problem::DecodedMismatch => "decoded-mismatch",
            Problem::BadProof { .. } => "bad-proof",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::HashMismatch => f.write_str(
                "hash mismatch: the stored hash is not the hash of the record's bytes chained to its predecessor",
            ),
            Problem::Gap { last_missing } => {
                write!(f, "gap: records up to {last_missing} are missing")
            }
            Problem::Reordered { found } => write!(
                f,
                "reordering: the record at this position is record {found}"
            ),
            Problem::Inserted => f.write_str(
                "inserted: the record is not part of the chain (the next record chains from the one before it)",
            ),
            Problem::WrongAccount { found } => write!(
                f,
                "moved from another account: the record's bytes name account `{found}`"
            ),
            Problem::Malformed { detail } => write!(f, "malformed record: {detail}"),
            Problem::IndexMismatch => f.write_str(
                "index mismatch: the stored time or kind disagrees with the record's bytes",
            ),
            Problem::Truncated { expected, evidence } => write!(
                f,
                "truncated: {evidence} names record {expected} but the chain ends before it"
            ),
            Problem::CheckpointMismatch { checkpoint } => write!(
                f,
                "hash mismatch against a checkpoint: the chain's hash here differs from the head signed in {checkpoint}"
            ),
            Problem::HeadMismatch { detail } => write!(f, "head mismatch: {detail}"),
            Problem::BadSignature { checkpoint, key } => write!(
                f,
                "bad signature: {checkpoint} has no valid signature by key `{key}`"
            ),
            Problem::BadCheckpoint { checkpoint, detail } => {
                write!(f, "bad checkpoint: {checkpoint}: {detail}")
            }
            Problem::Fork {
                older,
                newer,
                detail,
            } => write!(f, "fork: {newer} is inconsistent with {older}: {detail}"),
            Problem::DecodedMismatch => {
                f.write_str("the export's decoded fields differ from the record's bytes")
            }
            Problem::BadProof { detail } => write!(f, "bad inclusion proof: {detail}"),
        }
    }
}

/// One verification failure: the first bad record of one chain, or a bad
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The account, when the failure is in (or about) one chain.
    pub account: Option<String>,
    /// The first bad record's sequence number, when there is one.
    pub seq: Option<Seq>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.account, self.seq) {
            (Some(account), Some(seq)) => {
                write!(f, "account `{account}` record {seq}: {}", self.problem)
            }
            (Some(account), None) => write!(f, "account `{account}`: {}", self.problem),
            _ => write!(f, "{}", self.problem),
        }
    }
}

impl Failure {
    /// The failure as JSON: `account`, `seq`, `reason` (a code) and `message`.
    pub fn to_json(&self) -> Value {
        json!({
            "account": self.account,
            "seq": self.seq.map(Seq::get),
            "reason": self.problem.code(),
            "message": self.problem.to_string(),
        })
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Accounts checked.
    pub accounts: u64,
    /// Records verified (up to each chain's first bad record).
    pub records: u64,
    /// Checkpoints whose signatures were checked.
    pub checkpoints: u64,
    /// Every failure: checkpoint failures first, then the first bad record
    /// of each failing chain, by account.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Records the earliest of `found`, the problems seen in `account`'s
    /// chain by sequence number: a chain is reported at its first bad
    /// record.
    pub(crate) fn push_first_bad(&mut self, account: String, found: Vec<(Seq, Problem)>) {
        if let Some((seq, problem)) = found.into_iter().min_by_key(|(seq, _)| *seq) {
            self.failures.push(Failure {
                account: Some(account),
                seq: Some(seq),
                problem,
            });
        }
    }

    /// Whether everything verified.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failure a one-line summary names.
    pub fn first_failure(&self) -> Option<&Failure> {
        self.failures
            .iter()
            .find(|f| f.seq.is_some())
            .or(self.failures.first())
    }

    /// Whether nothing was checked and nothing was wrong. Verifying one
    /// account, this means the log has never heard of it: every account's
    /// chain starts with the record of its creation, and a chain that a
    /// checkpoint knows but the store lost is a failure, not an empty chain.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.failures.is_empty()
    }

    /// The failure for one account, if any.
    pub fn failure_for(&self, account: &str) -> Option<&Failure> {
        self.failures
            .iter()
            .find(|f| f.account.as_deref() == Some(account))
    }

    /// One line: the counts, and `ok` or the first failure.
    pub fn summary(&self) -> String {
        let counts = format!(
            "{} account{}, {} record{}, {} checkpoint{}",
            self.accounts,
            plural(self.accounts),
            self.records,
            plural(self.records),
            self.checkpoints,
            plural(self.checkpoints)
        );
        match self.first_failure() {
            None => format!("ok: verified {counts}"),
            Some(first) => format!(
                "FAILED: {} problem{} ({counts} verified); first: {first}",
                self.failures.len(),
                plural(self.failures.len() as u64)
            ),
        }
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.is_ok(),
            "accounts": self.accounts,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "failures": self.failures.iter().map(Failure::to_json).collect::<Vec<_>>(),
            "summary": self.summary(),
        })
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Why verification could not run (as opposed to finding a problem).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// There is no store file.
    #[error("no store at `{0}`")]
    Missing(PathBuf),
    /// The store could not be opened.
    #[error("cannot open store `{path}`")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The store could not be opened again for a parallel check.
    #[error("cannot open store `{0}` again for a parallel check")]
    Reopen(PathBuf),
    /// The store's schema is not one this version reads.
    #[error("store `{path}` has schema version {found}, which this version cannot read")]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// Reading the store failed.
    #[error("reading the store failed")]
    Query(#[from] rusqlite::Error),
    /// There are checkpoints to check but no public key.
    #[error("there are checkpoints to check but no public key")]
    NoPublicKey,
    /// An export could not be read.
    #[error("cannot read the export")]
    Io(#[source] std::io::Error),
    /// An export is not in the export format.
    #[error("malformed export: {0}")]
    Export(String),
}

/// Opens the store at `path` read-only, checking its schema version.
pub fn open_read_only(path: &Path) -> Result<Connection, VerifyError> {
    if !path.exists() {
        return Err(VerifyError::Missing(path.to_owned()));
    }
    let open = |source| VerifyError::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(open)?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(open)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open)?;
    if !(crate::store::AUDIT_SCHEMA_VERSION..=crate::store::SCHEMA_VERSION).contains(&version) {
        return Err(VerifyError::Schema {
            path: path.to_owned(),
            found: version,
        });
    }
    Ok(conn)
}

/// A row of a chain as the reference verifier sees it.
#[derive(Debug, Clone)]
pub(crate) struct RawRow {
    /// The stored position (the `seq` column, or an export's `seq` field).
    pub seq: i64,
    /// The stored chain hash.
    pub hash: Vec<u8>,
    /// The stored record bytes.
    pub bytes: Vec<u8>,
    /// The store's `time_ms` and `kind` columns (`None` inside: not the
    /// right type).
    pub columns: Option<(Option<i64>, Option<String>)>,
    /// An export's decoded fields.
    pub decoded: Option<Value>,
}

/// Where the reference verifier starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChainStart {
    /// The first record to check.
    pub next: Seq,
    /// The chain hash before it.
    pub prev: ChainHash,
    /// The chain hash before that (none before the first record).
    pub prev2: Option<ChainHash>,
}

impl ChainStart {
    pub(crate) fn genesis(account: &str) -> ChainStart {
        ChainStart {
            next: Seq::FIRST,
            prev: chain::genesis(account),
            prev2: None,
        }
    }
}

/// What the reference verifier found.
#[derive(Debug, Clone)]
pub(crate) struct ChainOutcome {
    /// The last good record (0: none).
    pub valid_through: u64,
    /// The chain hash after it.
    pub last_hash: ChainHash,
    /// The first bad record, and what is wrong with it.
    pub failure: Option<(Seq, Problem)>,
}

/// The reference verifier: walks one account's rows in stored order from
/// `start` and stops at the first bad record. Calls `on_good` with each good
/// record's sequence number and chain hash.
pub(crate) fn check_chain<E>(
    account: &str,
    start: ChainStart,
    rows: impl Iterator<Item = Result<RawRow, E>>,
    mut on_good: impl FnMut(Seq, &ChainHash),
) -> Result<ChainOutcome, E> {
    let mut rows = rows.peekable();
    let ChainStart {
        next: mut i,
        mut prev,
        mut prev2,
    } = start;
    let mut prefix = Vec::with_capacity(128);
    let outcome = |at: Seq, problem: Problem, last_hash: ChainHash| ChainOutcome {
        valid_through: at.get() - 1,
        last_hash,
        failure: Some((at, problem)),
    };
    while let Some(row) = rows.next() {
        let row = row?;
        let at = i.get();
        if row.seq != i.to_i64() {
            let problem = match Seq::from_i64(row.seq) {
                Some(found) if found > i => Problem::Gap {
                    last_missing: found.prev().unwrap_or(i),
                },
                _ => Problem::Reordered { found: row.seq },
            };
            return Ok(outcome(i, problem, prev));
        }
        let computed = chain::link(&prev, &row.bytes);
        let stored = ChainHash::from_slice(&row.hash);
        let hash_ok = stored == Some(computed);
        prefix.clear();
        record::header_prefix(&mut prefix, account, at);
        if !row.bytes.starts_with(&prefix) {
            let problem = match record::claimed_position(&row.bytes) {
                None if hash_ok => Problem::Malformed {
                    detail: "it does not begin with a record header".into(),
                },
                None => Problem::HashMismatch,
                Some((claimed, _)) if claimed != account => {
                    Problem::WrongAccount { found: claimed }
                }
                Some((_, s)) if s < at => {
                    let inserted_before = s + 1 == at
                        && stored != Some(prev)
                        && prev2.is_some_and(|p2| stored == Some(chain::link(&p2, &row.bytes)));
                    if inserted_before {
                        let before = i.prev().unwrap_or(i);
                        return Ok(ChainOutcome {
                            valid_through: before.get() - 1,
                            last_hash: prev2.unwrap_or(prev),
                            failure: Some((before, Problem::Inserted)),
                        });
                    }
                    Problem::Reordered {
                        found: i64::try_from(s).unwrap_or(i64::MAX),
                    }
                }
                Some((_, s)) if s > at => {
                    let mut held_later = false;
                    prefix.clear();
                    record::header_prefix(&mut prefix, account, at);
                    for later in rows.by_ref() {
                        if later?.bytes.starts_with(&prefix) {
                            held_later = true;
                            break;
                        }
                    }
                    if held_later {
                        Problem::Reordered {
                            found: i64::try_from(s).unwrap_or(i64::MAX),
                        }
                    } else {
                        Problem::Gap {
                            last_missing: Seq::new(s - 1).unwrap_or(i),
                        }
                    }
                }
                Some(_) if hash_ok => Problem::Malformed {
                    detail: "its header is not in canonical form".into(),
                },
                Some(_) => Problem::HashMismatch,
            };
            return Ok(outcome(i, problem, prev));
        }
        if !hash_ok {
            prefix.clear();
            record::header_prefix(&mut prefix, account, at);
            let next_is_real = matches!(rows.peek(), Some(Ok(next))
                if next.seq == i.to_i64().saturating_add(1)
                    && next.bytes.starts_with(&prefix)
                    && ChainHash::from_slice(&next.hash) == Some(chain::link(&prev, &next.bytes)));
            let problem = if next_is_real {
                Problem::Inserted
            } else {
                Problem::HashMismatch
            };
            return Ok(outcome(i, problem, prev));
        }
        if let Some((time_ms, kind)) = &row.columns {
            let matches = match (time_ms, kind) {
                (Some(time_ms), Some(kind)) => {
                    prefix.clear();
                    record::full_prefix(&mut prefix, account, at, *time_ms, kind);
                    row.bytes.starts_with(&prefix)
                }
                _ => false,
            };
            if !matches {
                return Ok(outcome(i, Problem::IndexMismatch, prev));
            }
        }
        if let Some(decoded) = &row.decoded {
            let parsed: Option<Value> = serde_json::from_slice(&row.bytes).ok();
            if parsed.as_ref() != Some(decoded) {
                return Ok(outcome(i, Problem::DecodedMismatch, prev));
            }
        }
        on_good(i, &computed);
        prev2 = Some(prev);
        prev = computed;
        match i.next() {
            Some(next) => i = next,
            None => break,
        }
    }
    Ok(ChainOutcome {
        valid_through: i.get() - 1,
        last_hash: prev,
        failure: None,
    })
}

/// The result of checking one chain of the store.
#[derive(Debug, Clone)]
struct ChainResult {
    account: String,
    outcome: ChainOutcome,
}

/// Verifies the store at `path`: every chain (or one), every stored and
/// given checkpoint, and their consistency.
pub fn verify_store(path: &Path, options: &VerifyOptions) -> Result<Report, VerifyError> {
    let conn = open_read_only(path)?;
    let mut report = Report::default();
    let mut account_failures: BTreeMap<String, Vec<(Seq, Problem)>> = BTreeMap::new();

    // Checkpoints: signatures, then consistency between them.
    let mut notes: Vec<(String, String)> = checkpoint::stored(&conn)?
        .into_iter()
        .map(|c| (format!("checkpoint #{}", c.id), c.note))
        .collect();
    notes.extend(
        options
            .checkpoints
            .iter()
            .map(|c| (c.label.clone(), c.note.clone())),
    );
    let trusted = open_checkpoints(notes, options.verifier.as_ref(), &mut report)?;
    let in_scope = |account: &str| options.account.as_deref().is_none_or(|a| a == account);
    for (account, seq, problem) in forks(&trusted) {
        if in_scope(&account) {
            account_failures
                .entry(account)
                .or_default()
                .push((seq, problem));
        }
    }

    // Which chains.
    let mut accounts: BTreeSet<String> = match &options.account {
        Some(account) => BTreeSet::from([account.clone()]),
        None => {
            let mut all: BTreeSet<String> = read::accounts(&conn)?.into_iter().collect();
            let mut stmt = conn.prepare_cached("SELECT account FROM audit_heads")?;
            let heads = stmt.query_map([], |row| row.get::<_, String>(0))?;
            for account in heads {
                all.insert(account?);
            }
            for (_, cp) in &trusted {
                all.extend(cp.heads.iter().map(|(a, _)| a.clone()));
            }
            all
        }
    };
    accounts.retain(|a| !a.is_empty());
    let accounts: Vec<String> = accounts.into_iter().collect();
    report.accounts = accounts.len() as u64;

    // Chains.
    let results = if options.sequential {
        accounts
            .iter()
            .map(|account| {
                let outcome = reference_check(&conn, account, None)?;
                if let Some(progress) = &options.progress {
                    progress(outcome.valid_through);
                }
                Ok(ChainResult {
                    account: account.clone(),
                    outcome,
                })
            })
            .collect::<Result<Vec<_>, VerifyError>>()?
    } else {
        fast_check(path, &conn, &accounts, options.progress.as_ref())?
    };

    // Chains against checkpoints.
    for result in &results {
        let account = &result.account;
        let outcome = &result.outcome;
        report.records += outcome.valid_through;
        let mut found: Vec<(Seq, Problem)> = outcome.failure.iter().cloned().collect();
        let limit = outcome.failure.as_ref().map_or(u64::MAX, |(s, _)| s.get());
        for (label, cp) in &trusted {
            let Some(head) = cp.head(account) else {
                continue;
            };
            if head.seq.get() >= limit {
                continue;
            }
            if head.seq.get() > outcome.valid_through {
                let at = Seq::new(outcome.valid_through + 1).unwrap_or(Seq::FIRST);
                found.push((
                    at,
                    Problem::Truncated {
                        expected: head.seq,
                        evidence: label.clone(),
                    },
                ));
                continue;
            }
            let hash = if head.seq.get() == outcome.valid_through {
                Some(outcome.last_hash)
            } else {
                stored_hash(&conn, account, head.seq)?
            };
            if hash != Some(head.hash) {
                found.push((
                    head.seq,
                    Problem::CheckpointMismatch {
                        checkpoint: label.clone(),
                    },
                ));
            }
        }
        if !found.is_empty() {
            account_failures
                .entry(account.clone())
                .or_default()
                .extend(found);
        }
    }

    for (account, found) in account_failures {
        report.push_first_bad(account, found);
    }
    Ok(report)
}

/// Opens one checkpoint note with the log's key; a note that cannot be
/// trusted (bad signature, malformed) is recorded in `report` as a failure
/// named by `label`.
pub(crate) fn open_checkpoint(
    label: &str,
    note: &str,
    verifier: &Verifier,
    report: &mut Report,
) -> Option<Checkpoint> {
    report.checkpoints += 1;
    let problem = match Checkpoint::open(note, verifier) {
        Ok(cp) => return Some(cp),
        Err(CheckpointError::BadSignature(key)) => Problem::BadSignature {
            checkpoint: label.to_owned(),
            key,
        },
        Err(other) => Problem::BadCheckpoint {
            checkpoint: label.to_owned(),
            detail: other.to_string(),
        },
    };
    report.failures.push(Failure {
        account: None,
        seq: None,
        problem,
    });
    None
}

/// Checks checkpoint notes, recording bad ones in `report`; returns the
/// trusted ones, oldest first.
fn open_checkpoints(
    notes: Vec<(String, String)>,
    verifier: Option<&Verifier>,
    report: &mut Report,
) -> Result<Vec<(String, Checkpoint)>, VerifyError> {
    if notes.is_empty() {
        return Ok(Vec::new());
    }
    let verifier = verifier.ok_or(VerifyError::NoPublicKey)?;
    let mut trusted = Vec::new();
    for (label, note) in notes {
        if let Some(cp) = open_checkpoint(&label, &note, verifier, report) {
            trusted.push((label, cp));
        }
    }
    trusted.sort_by_key(|(_, cp)| cp.time_ms);
    Ok(trusted)
}

/// Heads that went backwards, changed at the same sequence number, or
/// vanished between consecutive checkpoints.
fn forks(trusted: &[(String, Checkpoint)]) -> Vec<(String, Seq, Problem)> {
    let mut out = Vec::new();
    for pair in trusted.windows(2) {
        let [(older_label, older), (newer_label, newer)] = pair else {
            continue;
        };
        for (account, old) in &older.heads {
            let detail = match newer.head(account) {
                None => Some("it no longer names the chain".to_owned()),
                Some(new) if new.seq < old.seq => Some(format!(
                    "the head went back from record {} to {}",
                    old.seq, new.seq
                )),
                Some(new) if new.seq == old.seq && new.hash != old.hash => {
                    Some(format!("the hash of record {} changed", old.seq))
                }
                Some(_) => None,
            };
            if let Some(detail) = detail {
                out.push((
                    account.clone(),
                    old.seq,
                    Problem::Fork {
                        older: older_label.clone(),
                        newer: newer_label.clone(),
                        detail,
                    },
                ));
            }
        }
    }
    out
}

fn stored_hash(conn: &Connection, account: &str, seq: Seq) -> rusqlite::Result<Option<ChainHash>> {
    let hash: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM audit_records WHERE account = ?1 AND seq = ?2")?
        .query_row(params![account, seq.to_i64()], |row| row.get(0))
        .optional()?;
    Ok(hash.and_then(|h| ChainHash::from_slice(&h)))
}

/// Runs the reference verifier on one chain of the store, from the start or
/// from a record whose predecessors are known good, then checks the store's
/// head against it.
fn reference_check(
    conn: &Connection,
    account: &str,
    from: Option<Seq>,
) -> Result<ChainOutcome, VerifyError> {
    let start = match from.filter(|s| s.get() > 1) {
        None => ChainStart::genesis(account),
        Some(next) => {
            let before = next.prev().unwrap_or(Seq::FIRST);
            let prev = stored_hash(conn, account, before)?;
            let prev2 = match before.prev() {
                None => Some(chain::genesis(account)),
                Some(s) => stored_hash(conn, account, s)?,
            };
            match prev {
                Some(prev) => ChainStart { next, prev, prev2 },
                None => ChainStart::genesis(account),
            }
        }
    };
    super::read::in_snapshot(conn, || reference_check_in_tx(conn, account, start))
}

fn reference_check_in_tx(
    conn: &Connection,
    account: &str,
    start: ChainStart,
) -> Result<ChainOutcome, VerifyError> {
    let low = if start.next == Seq::FIRST {
        i64::MIN
    } else {
        start.next.to_i64()
    };
    let mut stmt = conn.prepare_cached(
        "SELECT seq, time_ms, kind, hash, bytes FROM audit_records
         WHERE account = ?1 AND seq >= ?2 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![account, low], |row| {
        Ok(RawRow {
            seq: row.get(0)?,
            columns: Some((
                row.get_ref(1)?.as_i64().ok(),
                row.get_ref(2)?.as_str().ok().map(str::to_owned),
            )),
            hash: blob(row.get_ref(3)?),
            bytes: blob(row.get_ref(4)?),
            decoded: None,
        })
    })?;
    let mut outcome = check_chain(account, start, rows, |_, _| {})?;
    if outcome.failure.is_none() {
        let head = conn
            .prepare_cached("SELECT seq, hash FROM audit_heads WHERE account = ?1")?
            .query_row([account], |row| {
                Ok((row.get::<_, i64>(0)?, blob(row.get_ref(1)?)))
            })
            .optional()?;
        outcome.failure = head_problem(head, &outcome);
    }
    Ok(outcome)
}

fn blob(value: rusqlite::types::ValueRef<'_>) -> Vec<u8> {
    match value {
        rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b.to_vec(),
        _ => Vec::new(),
    }
}

/// Compares the store's recorded head with a chain that verified.
fn head_problem(head: Option<(i64, Vec<u8>)>, outcome: &ChainOutcome) -> Option<(Seq, Problem)> {
    let last = outcome.valid_through;
    let after = Seq::new(last + 1).unwrap_or(Seq::FIRST);
    let Some((seq, hash)) = head else {
        return (last > 0).then(|| {
            (
                Seq::new(last).unwrap_or(Seq::FIRST),
                Problem::HeadMismatch {
                    detail: "the store records no head for this chain".into(),
                },
            )
        });
    };
    let head_seq = u64::try_from(seq).unwrap_or(0);
    if head_seq > last {
        return Some((
            after,
            Problem::Truncated {
                expected: Seq::new(head_seq).unwrap_or(after),
                evidence: "the store's head".into(),
            },
        ));
    }
    if head_seq < last {
        return Some((
            Seq::new(head_seq + 1).unwrap_or(Seq::FIRST),
            Problem::HeadMismatch {
                detail: format!(
                    "the store's head is record {head_seq}, before the end of the chain"
                ),
            },
        ));
    }
    if ChainHash::from_slice(&hash) != Some(outcome.last_hash) {
        return Some((
            Seq::new(last).unwrap_or(Seq::FIRST),
            Problem::HeadMismatch {
                detail: "the store's head hash differs from the chain's".into(),
            },
        ));
    }
    None
}

/// How many id ranges per worker thread the fast path scans.
const CHUNKS_PER_THREAD: usize = 4;

/// The most record bytes one id range of the fast path keeps to check the
/// first record of each of its runs at the join; past it, a run's start is
/// looked up in the store instead.
const DEFERRED_BYTES_PER_RANGE: usize = 16 << 20;

/// What one id range of the fast path found for one account.
#[derive(Debug, Clone)]
struct Run {
    /// The first record seen.
    first: u64,
    /// How the run starts.
    start: RunStart,
    /// The last good record seen.
    last: u64,
    /// The chain hash after it.
    hash: ChainHash,
    /// Whether a record failed a check.
    bad: bool,
}

/// How a run of the fast path starts.
#[derive(Debug, Clone)]
enum RunStart {
    /// From this hash (the genesis value, or the predecessor's stored hash):
    /// the first record was checked against it, and the run before must end
    /// with it.
    From(ChainHash),
    /// Not checked yet: the first record's bytes and stored hash, checked at
    /// the join with the hash the run before ended with.
    Deferred {
        /// The first record's bytes.
        bytes: Vec<u8>,
        /// Its stored hash.
        stored: ChainHash,
    },
}

impl Run {
    /// A run that cannot join.
    fn bad() -> Run {
        let zero = ChainHash::from_bytes([0; 32]);
        Run {
            first: 0,
            start: RunStart::From(zero),
            last: 0,
            hash: zero,
            bad: true,
        }
    }
}

/// Joins an account's runs, in id order, onto its genesis: the chain's last
/// record and hash, or `None` if a run is bad or does not follow on.
fn join_runs<'r>(account: &str, runs: impl Iterator<Item = &'r Run>) -> Option<(u64, ChainHash)> {
    let mut last = 0;
    let mut hash = chain::genesis(account);
    for run in runs {
        let follows = match &run.start {
            RunStart::From(start) => *start == hash,
            RunStart::Deferred { bytes, stored } => chain::link(&hash, bytes) == *stored,
        };
        if run.bad || run.first != last + 1 || !follows {
            return None;
        }
        last = run.last;
        hash = run.hash;
    }
    Some((last, hash))
}

/// The fast path: scans the records in append order (id order), split into
/// ranges checked in parallel. In each range, each account's records must
/// come with consecutive sequence numbers, begin with their header, and hash
/// to their stored hash from the stored hash of their predecessor; across
/// ranges, each account's runs must join up: consecutive, and each run's
/// first record hashing to its stored hash from the hash the run before
/// ended with (or the genesis value). Chains that fail anything go to
/// the reference verifier, which names the first bad record.
fn fast_check(
    path: &Path,
    conn: &Connection,
    accounts: &[String],
    progress: Option<&Progress>,
) -> Result<Vec<ChainResult>, VerifyError> {
    // One snapshot for the id range and the heads; rows committed later have
    // larger ids and are left out.
    let (low, high, heads) = super::read::in_snapshot(conn, || -> Result<_, VerifyError> {
        let (low, high): (Option<i64>, Option<i64>) = conn
            // Two subqueries: SQLite answers a lone MIN or MAX from the
            // end of the primary key, but scans the table for both at once.
            .prepare_cached(
                "SELECT (SELECT MIN(id) FROM audit_records), (SELECT MAX(id) FROM audit_records)",
            )?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let mut heads = std::collections::HashMap::new();
        let mut stmt = conn.prepare_cached("SELECT account, seq, hash FROM audit_heads")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            heads.insert(
                row.get::<_, String>(0)?,
                (row.get::<_, i64>(1)?, blob(row.get_ref(2)?)),
            );
        }
        Ok((low, high, heads))
    })?;

    let mut ranges = Vec::new();
    if let (Some(low), Some(high)) = (low, high) {
        let chunks = i64::try_from(rayon::current_num_threads() * CHUNKS_PER_THREAD)
            .unwrap_or(8)
            .max(1);
        let span = (high - low) / chunks + 1;
        let mut start = low;
        while start <= high {
            let end = start.saturating_add(span - 1).min(high);
            ranges.push((start, end));
            start = end.saturating_add(1);
        }
    }

    // One connection per worker, kept across its ranges: each connection
    // maps the file, and opening and closing one per range costs page faults
    // and unmapping (which also stalls the other workers' page faults).
    let connections: std::sync::Mutex<Vec<Connection>> = std::sync::Mutex::new(Vec::new());
    let scanned = ranges
        .par_iter()
        .map(|&(start, end)| {
            let pooled = connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_read_only(path).map_err(|_| VerifyError::Reopen(path.to_owned()))?,
            };
            let runs = scan_range(&conn, start, end, progress);
            connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(conn);
            runs
        })
        .collect::<Result<Vec<std::collections::HashMap<String, Run>>, VerifyError>>();
    connections
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_par_iter()
        .for_each(drop);
    let scanned = scanned?;

    let joined: Vec<Option<(u64, ChainHash)>> = accounts
        .par_iter()
        .map(|account| join_runs(account, scanned.iter().filter_map(|runs| runs.get(account))))
        .collect();
    let mut results = Vec::with_capacity(accounts.len());
    for (account, joined) in accounts.iter().zip(joined) {
        if let Some((last, hash)) = joined {
            let outcome = ChainOutcome {
                valid_through: last,
                last_hash: hash,
                failure: None,
            };
            if head_problem(heads.get(account.as_str()).cloned(), &outcome).is_none() {
                results.push(ChainResult {
                    account: account.clone(),
                    outcome,
                });
                continue;
            }
        }
        results.push(ChainResult {
            account: account.clone(),
            outcome: reference_check(conn, account, None)?,
        });
    }
    Ok(results)
}

/// Checks the records with ids `start..=end`, in id order.
fn scan_range(
    conn: &Connection,
    start: i64,
    end: i64,
    progress: Option<&Progress>,
) -> Result<std::collections::HashMap<String, Run>, VerifyError> {
    super::read::in_snapshot(conn, || scan_range_in_tx(conn, start, end, progress))
}

fn scan_range_in_tx(
    conn: &Connection,
    start: i64,
    end: i64,
    progress: Option<&Progress>,
) -> Result<std::collections::HashMap<String, Run>, VerifyError> {
    let mut runs: std::collections::HashMap<String, Run> = std::collections::HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT account, seq, time_ms, kind, hash, bytes FROM audit_records
         WHERE id >= ?1 AND id <= ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![start, end])?;
    let mut deferred = 0_usize;
    let mut unreported = 0_u64;
    while let Some(row) = rows.next()? {
        unreported += 1;
        if unreported == 1 << 16 {
            if let Some(progress) = progress {
                progress(unreported);
            }
            unreported = 0;
        }
        let Ok(account) = row.get_ref(0)?.as_str() else {
            continue; // not text: no account can own it; the reference path
            // of every account is unaffected, and the heads check catches a
            // chain that lost it.
        };
        let run = runs.get_mut(account);
        if run.as_ref().is_some_and(|run| run.bad) {
            continue;
        }
        // The record's own checks; the link to its predecessor waits for the
        // join when it is the first of its run here.
        let checked = (|| {
            let seq = u64::try_from(row.get_ref(1).ok()?.as_i64().ok()?).ok()?;
            let time_ms = row.get_ref(2).ok()?.as_i64().ok()?;
            let kind = row.get_ref(3).ok()?.as_str().ok()?;
            let hash = ChainHash::from_slice(row.get_ref(4).ok()?.as_blob().ok()?)?;
            let bytes = row.get_ref(5).ok()?.as_blob().ok()?;
            record::starts_with_full_prefix(bytes, account, seq, time_ms, kind)
                .then_some((seq, hash, bytes))
        })();
        match (run, checked) {
            (Some(run), Some((seq, stored, bytes)))
                if seq == run.last + 1 && chain::link(&run.hash, bytes) == stored =>
            {
                run.last = seq;
                run.hash = stored;
            }
            (Some(run), _) => run.bad = true,
            (None, Some((seq, stored, bytes))) if seq >= 1 => {
                let start = if seq == 1 {
                    Some(RunStart::From(chain::genesis(account)))
                } else if deferred + bytes.len() <= DEFERRED_BYTES_PER_RANGE {
                    deferred += bytes.len();
                    Some(RunStart::Deferred {
                        bytes: bytes.to_vec(),
                        stored,
                    })
                } else {
                    Seq::new(seq - 1)
                        .map(|before| stored_hash(conn, account, before))
                        .transpose()?
                        .flatten()
                        .map(RunStart::From)
                };
                let checked = match &start {
                    Some(RunStart::From(from)) => chain::link(from, bytes) == stored,
                    Some(RunStart::Deferred { .. }) => true,
                    None => false,
                };
                let run = match start {
                    Some(start) if checked => Run {
                        first: seq,
                        start,
                        last: seq,
                        hash: stored,
                        bad: false,
                    },
                    _ => Run::bad(),
                };
                runs.insert(account.to_owned(), run);
            }
            (None, _) => {
                runs.insert(account.to_owned(), Run::bad());
            }
        }
    }
    if let Some(progress) = progress {
        progress(unreported);
    }
    Ok(runs)
}
