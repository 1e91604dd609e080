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
use super::heads::TreeHeads;
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
        last_missing: u64,
    },
    /// The record at this position is another position's record.
    Reordered {
        /// The position it is stored at or claims.
        found: i128,
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
    /// A store column that repeats hashed or signed data disagrees with it:
    /// a record's `time_ms` or `kind`, or a stored checkpoint's `time_ms`,
    /// `tree_size` or `root`.
    IndexMismatch {
        /// The stored checkpoint whose columns disagree with its note; `None`
        /// for a record's columns.
        checkpoint: Option<String>,
    },
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
    /// The store keeps no heads for a signed (version 2) checkpoint that
    /// reproduce its root: it cannot show what the checkpoint committed to.
    BadHeads {
        /// The checkpoint.
        checkpoint: String,
        /// What is wrong.
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
            Problem::IndexMismatch { .. } => "index-mismatch",
            Problem::Truncated { .. } => "truncated",
            Problem::CheckpointMismatch { .. } => "checkpoint-mismatch",
            Problem::HeadMismatch { .. } => "head-mismatch",
            Problem::BadSignature { .. } => "bad-signature",
            Problem::BadCheckpoint { .. } => "bad-checkpoint",
            Problem::Fork { .. } => "fork",
            Problem::DecodedMismatch => "decoded-mismatch",
            Problem::BadProof { .. } => "bad-proof",
            Problem::BadHeads { .. } => "bad-heads",
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
            Problem::IndexMismatch { checkpoint: None } => f.write_str(
                "index mismatch: the stored time or kind disagrees with the record's bytes",
            ),
            Problem::IndexMismatch {
                checkpoint: Some(checkpoint),
            } => write!(
                f,
                "index mismatch: the stored time, tree size or root of {checkpoint} disagrees with its note"
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
            Problem::BadHeads { checkpoint, detail } => {
                write!(f, "bad checkpoint heads: {checkpoint}: {detail}")
            }
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
    /// An export of another version than this verifier reads.
    #[error(
        "export version {0} is not supported: this verifier reads version 2 (export the account again with this version of Chaperone)"
    )]
    UnsupportedVersion(String),
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

/// The reference verifier (`docs/audit-format.md`, "Record checks"): walks
/// one account's rows in checking order from `start` and stops at the first
/// bad record. Calls `on_good` with each good record's sequence number and
/// chain hash.
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
    let mut header = Vec::with_capacity(128);
    while let Some(row) = rows.next() {
        let row = row?;
        let at = i.get();
        let stored = ChainHash::from_slice(&row.hash);
        let computed = chain::link(&prev, &row.bytes);
        let hash_ok = stored == Some(computed);
        // `misplaced(c)`: the row at `i` is stored at or claims `c != i`.
        // It is record `i - 1` if it chains from record `i - 2` (and not
        // from the row before it, which was then inserted).
        let inserted_before = |c: i128| {
            c + 1 == i128::from(at)
                && stored != Some(prev)
                && prev2.is_some_and(|p2| stored == Some(chain::link(&p2, &row.bytes)))
        };
        header.clear();
        record::header_prefix(&mut header, account, at);
        // 1. Position.
        if row.seq != i.to_i64() {
            let c = i128::from(row.seq);
            let before = inserted_before(c);
            return misplaced(c, i, before, (prev, prev2), &mut rows, account);
        }
        // 2. Header.
        if !row.bytes.starts_with(&header) {
            let problem = match record::claimed_position(&row.bytes) {
                None if hash_ok => Problem::Malformed {
                    detail: "it does not begin with a record header".into(),
                },
                None => Problem::HashMismatch,
                Some((claimed, _)) if claimed != account => {
                    Problem::WrongAccount { found: claimed }
                }
                Some((_, s)) if s != at => {
                    let c = i128::from(s);
                    let before = inserted_before(c);
                    return misplaced(c, i, before, (prev, prev2), &mut rows, account);
                }
                Some(_) if hash_ok => Problem::Malformed {
                    detail: "its header is not in its exact form".into(),
                },
                Some(_) => Problem::HashMismatch,
            };
            return Ok(fail(i, problem, prev));
        }
        // 3. Hash.
        if !hash_ok {
            let next_is_real = matches!(rows.peek(), Some(Ok(next))
                if next.bytes.starts_with(&header)
                    && ChainHash::from_slice(&next.hash) == Some(chain::link(&prev, &next.bytes)));
            let problem = if next_is_real {
                Problem::Inserted
            } else {
                Problem::HashMismatch
            };
            return Ok(fail(i, problem, prev));
        }
        // 4. Record.
        let fields = match record::check_record(&row.bytes, account, at) {
            Ok(fields) => fields,
            Err(why) => {
                let detail = why.to_string();
                return Ok(fail(i, Problem::Malformed { detail }, prev));
            }
        };
        // 5. Columns (store only).
        if let Some((time_ms, kind)) = &row.columns
            && (*time_ms != Some(fields.time_ms) || kind.as_deref() != Some(fields.kind))
        {
            return Ok(fail(i, Problem::IndexMismatch { checkpoint: None }, prev));
        }
        // 6. Decoded (export only).
        if let Some(decoded) = &row.decoded {
            let parsed: Option<Value> = serde_json::from_slice(&row.bytes).ok();
            if parsed.as_ref() != Some(decoded) {
                return Ok(fail(i, Problem::DecodedMismatch, prev));
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

/// The outcome of a chain that fails at `at`, good through the record
/// before it, whose chain hash is `last_hash`.
fn fail(at: Seq, problem: Problem, last_hash: ChainHash) -> ChainOutcome {
    ChainOutcome {
        valid_through: at.get() - 1,
        last_hash,
        failure: Some((at, problem)),
    }
}

/// `misplaced(c)` of the record checks: the row at `i` is stored at or
/// claims position `c != i`. `inserted_before`: it is the real record
/// `i - 1` (it chains from `prev2`, not from `prev`).
fn misplaced<E>(
    c: i128,
    i: Seq,
    inserted_before: bool,
    (prev, prev2): (ChainHash, Option<ChainHash>),
    later: &mut impl Iterator<Item = Result<RawRow, E>>,
    account: &str,
) -> Result<ChainOutcome, E> {
    let at = i128::from(i.get());
    if c > at {
        let problem = if held_later(later, account, i)? {
            Problem::Reordered { found: c }
        } else {
            Problem::Gap {
                last_missing: u64::try_from(c - 1).unwrap_or(u64::MAX),
            }
        };
        return Ok(fail(i, problem, prev));
    }
    match (inserted_before, i.prev(), prev2) {
        (true, Some(before), Some(prev2)) => Ok(fail(before, Problem::Inserted, prev2)),
        _ => Ok(fail(i, Problem::Reordered { found: c }, prev)),
    }
}

/// Whether record `i` is held later: a row after the current one is stored
/// at position `i`, or its bytes begin with the header of `account` and `i`.
fn held_later<E>(
    later: &mut impl Iterator<Item = Result<RawRow, E>>,
    account: &str,
    i: Seq,
) -> Result<bool, E> {
    let mut header = Vec::with_capacity(64 + account.len());
    record::header_prefix(&mut header, account, i.get());
    for row in later {
        let row = row?;
        if row.seq == i.to_i64() || row.bytes.starts_with(&header) {
            return Ok(true);
        }
    }
    Ok(false)
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

/// A signed checkpoint with the heads of its tree: the heads its note lists
/// (version 1), or those the store keeps for it, checked against its root
/// (version 2).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedHeads {
    /// How reports name the checkpoint.
    pub label: String,
    /// Its time.
    pub time_ms: i64,
    /// Its heads.
    pub heads: TreeHeads,
}

/// Puts signed checkpoints in the order their consistency is checked in
/// (step S4): by time, then by the sum of their heads' sequence numbers,
/// then as they were given (the sort is stable). So of two checkpoints with
/// the same time, the one that can extend the other comes second, whatever
/// order they were found in.
pub fn order_checkpoints(trusted: &mut [SignedHeads]) {
    trusted.sort_by_cached_key(|signed| (signed.time_ms, signed.heads.seq_sum()));
}

/// Heads that went backwards, changed at the same sequence number, or
/// vanished between consecutive checkpoints: each checkpoint must extend the
/// one before it, as far as the earlier one's heads go.
pub fn forks(trusted: &[SignedHeads]) -> Vec<(String, Seq, Problem)> {
    let mut out = Vec::new();
    for pair in trusted.windows(2) {
        let [older, newer] = pair else {
            continue;
        };
        let mut found: Vec<(String, Seq, Problem)> = Vec::new();
        for (account, old) in older.heads.iter() {
            let detail = match newer.heads.head(account) {
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
                found.push((
                    account.to_owned(),
                    old.seq,
                    Problem::Fork {
                        older: older.label.clone(),
                        newer: newer.label.clone(),
                        detail,
                    },
                ));
            }
        }
        // By account, whatever the order of the older tree's leaves.
        found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        out.extend(found);
    }
    out
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use crate::record::RecordDraft;
    use serde_json::json;

    /// The rows of a good chain of `n` records of `acme`, as an export
    /// holds them.
    fn chain(n: u64) -> Vec<RawRow> {
        let mut prev = chain::genesis("acme");
        (1..=n)
            .map(|seq| {
                let bytes = encoded(seq, seq);
                prev = chain::link(&prev, &bytes);
                row(seq, prev, bytes)
            })
            .collect()
    }

    /// Record `seq`'s bytes, with content `n`.
    fn encoded(seq: u64, n: u64) -> Vec<u8> {
        let draft = RecordDraft {
            account: "acme".into(),
            time_ms: 1_700_000_000_000 + i64::try_from(n).unwrap(),
            kind: "sync".into(),
            actor: None,
            request: json!({"n": n}),
            decision: None,
            effects: json!([]),
            policy: None,
            input: None,
        };
        record::encode(&draft, Seq::new(seq).unwrap()).unwrap()
    }

    fn row(seq: u64, hash: ChainHash, bytes: Vec<u8>) -> RawRow {
        RawRow {
            seq: i64::try_from(seq).unwrap(),
            hash: hash.as_bytes().to_vec(),
            decoded: serde_json::from_slice(&bytes).ok(),
            bytes,
            columns: None,
        }
    }

    fn check(rows: Vec<RawRow>) -> (u64, Option<(u64, Problem)>) {
        let rows = rows.into_iter().map(Ok::<_, ()>);
        let outcome = check_chain("acme", ChainStart::genesis("acme"), rows, |_, _| {}).unwrap();
        let failure = outcome.failure.map(|(s, p)| (s.get(), p));
        (outcome.valid_through, failure)
    }

    fn hash(row: &RawRow) -> ChainHash {
        ChainHash::from_slice(&row.hash).unwrap()
    }

    #[test]
    fn a_good_chain_passes() {
        assert_eq!(check(chain(5)), (5, None));
    }

    #[test]
    fn swapped_rows_are_reordered_and_a_cut_is_a_gap() {
        let mut rows = chain(6);
        rows.swap(2, 3);
        assert_eq!(check(rows), (2, Some((3, Problem::Reordered { found: 4 }))));
        let mut rows = chain(6);
        rows.swap(1, 4);
        assert_eq!(check(rows), (1, Some((2, Problem::Reordered { found: 5 }))));
        let mut rows = chain(6);
        rows.remove(2);
        let gap = Problem::Gap { last_missing: 3 };
        assert_eq!(check(rows), (2, Some((3, gap.clone()))));
        // Cut, and the rest renumbered: the bytes still claim their place.
        let mut rows = chain(6);
        rows.remove(2);
        for (i, row) in rows.iter_mut().enumerate() {
            row.seq = i64::try_from(i).unwrap() + 1;
        }
        assert_eq!(check(rows), (2, Some((3, gap))));
        // Two removed: records 3 and 4 are missing.
        let mut rows = chain(6);
        rows.drain(2..4);
        assert_eq!(
            check(rows),
            (2, Some((3, Problem::Gap { last_missing: 4 })))
        );
    }

    #[test]
    fn a_row_claimed_later_by_its_bytes_is_held_later() {
        // Rows renumbered in place but their bytes swapped: positions agree,
        // the bytes of 3 hold record 4's header and record 3 comes next.
        let mut rows = chain(6);
        let (a, b) = (rows[2].clone(), rows[3].clone());
        rows[2] = RawRow { seq: 3, ..b };
        rows[3] = RawRow { seq: 4, ..a };
        assert_eq!(check(rows), (2, Some((3, Problem::Reordered { found: 4 }))));
    }

    #[test]
    fn a_duplicated_row_is_reordered() {
        let mut rows = chain(5);
        rows.insert(3, rows[2].clone());
        assert_eq!(check(rows), (3, Some((4, Problem::Reordered { found: 3 }))));
        let mut rows = chain(5);
        rows.push(rows[1].clone());
        assert_eq!(check(rows), (5, Some((6, Problem::Reordered { found: 2 }))));
        let mut rows = chain(5);
        rows[0].seq = 0;
        assert_eq!(check(rows), (0, Some((1, Problem::Reordered { found: 0 }))));
    }

    #[test]
    fn a_row_inserted_without_renumbering_is_inserted() {
        // Chained correctly from record 4, at position 5, before the real 5.
        let rows = chain(6);
        let bytes = encoded(5, 77);
        let forged = row(5, chain::link(&hash(&rows[3]), &bytes), bytes);
        let mut tampered = rows.clone();
        tampered.insert(4, forged);
        assert_eq!(check(tampered), (4, Some((5, Problem::Inserted))));
        // With a wrong hash: seen at the row itself.
        let mut tampered = rows.clone();
        tampered.insert(4, row(5, ChainHash::from_bytes([7; 32]), encoded(5, 77)));
        assert_eq!(check(tampered), (4, Some((5, Problem::Inserted))));
        // Inserted with the rest renumbered: the real 5 is stored at 6.
        let bytes = encoded(5, 77);
        let forged = row(5, chain::link(&hash(&rows[3]), &bytes), bytes);
        let mut tampered = rows;
        tampered.insert(4, forged);
        for row in tampered.iter_mut().skip(5) {
            row.seq += 1;
        }
        assert_eq!(check(tampered), (4, Some((5, Problem::Inserted))));
    }

    #[test]
    fn a_valid_hash_over_bytes_that_are_not_a_record_is_malformed() {
        let mut rows = chain(4);
        let text = String::from_utf8(rows[2].bytes.clone()).unwrap();
        let bytes = text
            .replace("\"input\":null}", "\"input\":null,\"x\":1}")
            .into_bytes();
        rows[2] = row(3, chain::link(&hash(&rows[1]), &bytes), bytes);
        rows.truncate(3);
        let (good, failure) = check(rows);
        assert_eq!(good, 2);
        assert!(
            matches!(failure, Some((3, Problem::Malformed { .. }))),
            "{failure:?}"
        );
    }

    #[test]
    fn checkpoints_at_equal_times_are_ordered_by_their_heads() {
        let signed = |label: &str, seq| SignedHeads {
            label: label.to_owned(),
            time_ms: 5,
            heads: TreeHeads::new(vec![(
                "acme".to_owned(),
                crate::ChainHead {
                    seq: Seq::new(seq).unwrap(),
                    hash: chain::genesis("acme"),
                },
            )])
            .unwrap(),
        };
        let mut trusted = vec![signed("b", 7), signed("a", 3)];
        order_checkpoints(&mut trusted);
        assert_eq!(trusted[0].label, "a");
        assert!(forks(&trusted).is_empty());
        trusted.swap(0, 1);
        let found = forks(&trusted);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0.as_str(), found[0].1.get()), ("acme", 7));
    }
}
