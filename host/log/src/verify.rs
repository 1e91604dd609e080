//! Verification of the log from bytes: one chain, checkpoints, and the
//! consistency between them (`docs/audit-format.md`, "Verification").
//!
//! [`check_chain`] is the reference verifier: it walks one chain in order
//! and, at the first bad record, tells what is wrong with it. The store's
//! parallel fast path (in `chaperone-store`) checks each record against its
//! predecessor's stored hash and hands every chain it rejects to it; an
//! export is checked by it alone (`crate::export`).

use std::fmt;

use serde_json::{Value, json};

use super::chain::{self, ChainHash, Seq};
use super::checkpoint::{Checkpoint, CheckpointError};
use super::keys::Verifier;
use super::record;

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
    pub fn push_first_bad(&mut self, account: String, found: Vec<(Seq, Problem)>) {
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

/// A row of a chain as the reference verifier sees it.
#[derive(Debug, Clone)]
pub struct RawRow {
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
pub struct ChainStart {
    /// The first record to check.
    pub next: Seq,
    /// The chain hash before it.
    pub prev: ChainHash,
    /// The chain hash before that (none before the first record).
    pub prev2: Option<ChainHash>,
}

impl ChainStart {
    /// The start of a whole chain: its first record, after the genesis value.
    pub fn genesis(account: &str) -> ChainStart {
        ChainStart {
            next: Seq::FIRST,
            prev: chain::genesis(account),
            prev2: None,
        }
    }
}

/// What the reference verifier found.
#[derive(Debug, Clone)]
pub struct ChainOutcome {
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
pub fn check_chain<E>(
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

/// Opens one checkpoint note with the log's key; a note that cannot be
/// trusted (bad signature, malformed) is recorded in `report` as a failure
/// named by `label`.
pub fn open_checkpoint(
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
pub fn open_checkpoints(
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
pub fn forks(trusted: &[(String, Checkpoint)]) -> Vec<(String, Seq, Problem)> {
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
