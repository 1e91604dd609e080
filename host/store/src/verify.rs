//! Verifying the store: every chain (in parallel, with the reference
//! verifier of `chaperone_log::verify` naming the first bad record), every
//! stored and given checkpoint with the heads it commits to (listed in a
//! version 1 note, kept by the store for a version 2 one), and the store's
//! heads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

use chaperone_log::chain::{self, ChainHash, Seq};
use chaperone_log::keys::Verifier;
use chaperone_log::verify::{
    ChainOutcome, ChainStart, Failure, Problem, RawRow, Report, SignedHeads, check_chain, forks,
    open_checkpoint, order_checkpoints,
};
use chaperone_log::{Checkpoint, TreeHeads, record};

use crate::checkpoints;
use crate::read;

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

/// Why verification could not run (as opposed to finding a problem).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// There is no store file.
    #[error("no store at `{0}`")]
    Missing(PathBuf),
    /// The store could not be opened.
    #[error("cannot open store `{}`", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::DatabaseError,
    },
    /// The store could not be opened again for a parallel check.
    #[error("cannot open store `{0}` again for a parallel check")]
    Reopen(PathBuf),
    /// The store's schema is not one this version reads.
    #[error("store `{}` has schema version {found}, which this version cannot read", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// Reading the store failed.
    #[error("reading the store failed")]
    Query(#[source] crate::DatabaseError),
    /// Checking bytes failed (no public key for the checkpoints).
    #[error(transparent)]
    Log(#[from] chaperone_log::verify::VerifyError),
}

impl From<rusqlite::Error> for VerifyError {
    fn from(e: rusqlite::Error) -> Self {
        VerifyError::Query(Box::new(e))
    }
}

/// Opens the store at `path` read-only, checking its schema version.
pub fn open_read_only(path: &Path) -> Result<Connection, VerifyError> {
    if !path.exists() {
        return Err(VerifyError::Missing(path.to_owned()));
    }
    let open = |source: rusqlite::Error| VerifyError::Open {
        path: path.to_owned(),
        source: Box::new(source),
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
    if !(crate::AUDIT_SCHEMA_VERSION..=crate::SCHEMA_VERSION).contains(&version) {
        return Err(VerifyError::Schema {
            path: path.to_owned(),
            found: version,
        });
    }
    Ok(conn)
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

    // Checkpoints (S2, S3): signatures, the stored ones' columns, and the
    // heads each commits to. The rows first: a checkpoint signed meanwhile
    // is not read, and its heads are not looked for.
    let (stored, kept) = read::in_snapshot(&conn, || -> Result<_, VerifyError> {
        Ok((
            checkpoints::rows(&conn)?,
            checkpoints::all_kept_heads(&conn)?,
        ))
    })?;
    let verifier = match (
        &options.verifier,
        stored.is_empty() && options.checkpoints.is_empty(),
    ) {
        (_, true) => None,
        (Some(verifier), false) => Some(verifier),
        (None, false) => {
            return Err(chaperone_log::verify::VerifyError::NoPublicKey.into());
        }
    };
    let mut trusted: Vec<SignedHeads> = Vec::new();
    let bad_heads = |label: &str, detail: String, report: &mut Report| {
        report.failures.push(Failure {
            account: None,
            seq: None,
            problem: Problem::BadHeads {
                checkpoint: label.to_owned(),
                detail,
            },
        });
    };
    if let Some(verifier) = verifier {
        for row in stored {
            let label = format!("checkpoint #{}", row.id);
            if let Some(cp) = open_checkpoint(&label, &row.note, verifier, &mut report) {
                if !row.matches(&cp) {
                    report.failures.push(Failure {
                        account: None,
                        seq: None,
                        problem: Problem::IndexMismatch {
                            checkpoint: Some(label.clone()),
                        },
                    });
                }
                match stored_heads(&cp, kept.get(&row.id).cloned()) {
                    Ok(heads) => trusted.push(SignedHeads {
                        label,
                        time_ms: cp.time_ms,
                        heads,
                    }),
                    Err(detail) => bad_heads(&label, detail, &mut report),
                }
            }
        }
        for external in &options.checkpoints {
            let label = external.label.clone();
            if let Some(cp) = open_checkpoint(&label, &external.note, verifier, &mut report) {
                match external_heads(&cp, &kept) {
                    Ok(heads) => trusted.push(SignedHeads {
                        label,
                        time_ms: cp.time_ms,
                        heads,
                    }),
                    Err(detail) => bad_heads(&label, detail, &mut report),
                }
            }
        }
    }
    // S4: in order, each must extend the one before it.
    order_checkpoints(&mut trusted);
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
            // A head whose account is not text names no chain.
            let heads = stmt.query_map([], |row| {
                Ok(row.get_ref(0)?.as_str().ok().map(str::to_owned))
            })?;
            for account in heads {
                all.extend(account?);
            }
            for signed in &trusted {
                all.extend(signed.heads.iter().map(|(a, _)| a.to_owned()));
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
        for SignedHeads { label, heads, .. } in &trusted {
            let Some(head) = heads.head(account) else {
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

/// Whether `heads` are the tree `cp` signed: its size and root.
fn reproduces(heads: &TreeHeads, cp: &Checkpoint) -> bool {
    heads.len() as u64 == cp.tree_size && heads.root() == cp.root
}

/// The heads a stored checkpoint commits to (step S3): the ones its note
/// lists (version 1), or the ones the store keeps for it, which must be its
/// tree (version 2); what is wrong otherwise.
fn stored_heads(
    cp: &Checkpoint,
    kept: Option<Result<TreeHeads, String>>,
) -> Result<TreeHeads, String> {
    if let Some(listed) = &cp.listed {
        return Ok(listed.clone());
    }
    // No row: the empty tree.
    let heads = kept.unwrap_or_else(|| TreeHeads::new(Vec::new()).map_err(|e| e.to_string()))?;
    if reproduces(&heads, cp) {
        Ok(heads)
    } else {
        Err(format!(
            "the {} heads the store keeps for it do not reproduce its root",
            heads.len()
        ))
    }
}

/// The heads a checkpoint from outside the store commits to: the ones its
/// note lists (version 1), or the heads kept for any checkpoint id that are
/// its tree (version 2), whether or not that checkpoint's row is still
/// there; the empty set for a tree of no head.
fn external_heads(
    cp: &Checkpoint,
    kept: &BTreeMap<i64, Result<TreeHeads, String>>,
) -> Result<TreeHeads, String> {
    if let Some(listed) = &cp.listed {
        return Ok(listed.clone());
    }
    let empty = TreeHeads::new(Vec::new()).map_err(|e| e.to_string())?;
    kept.values()
        .filter_map(|set| set.as_ref().ok())
        .chain(std::iter::once(&empty))
        .find(|heads| reproduces(heads, cp))
        .cloned()
        .ok_or_else(|| "the store keeps no heads that reproduce its root".to_owned())
}

fn stored_hash(conn: &Connection, account: &str, seq: Seq) -> rusqlite::Result<Option<ChainHash>> {
    let hash: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM audit_records WHERE account = ?1 AND seq = ?2")?
        .query_row(params![account, seq.to_i64()], |row| {
            Ok(blob(row.get_ref(0)?))
        })
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
    read::in_snapshot(conn, || reference_check_in_tx(conn, account, start))
}

fn reference_check_in_tx(
    conn: &Connection,
    account: &str,
    start: ChainStart,
) -> Result<ChainOutcome, VerifyError> {
    let raw_row = |row: &rusqlite::Row<'_>| {
        Ok(RawRow {
            // A `seq` that is not an integer is read as position 0.
            seq: row.get_ref(0)?.as_i64().unwrap_or(0),
            columns: Some((
                row.get_ref(1)?.as_i64().ok(),
                row.get_ref(2)?.as_str().ok().map(str::to_owned),
            )),
            hash: blob(row.get_ref(3)?),
            bytes: blob(row.get_ref(4)?),
            decoded: None,
        })
    };
    // From the start, every row of the chain, whatever its `seq` holds;
    // from a later record, the rows from it on.
    let mut outcome = if start.next == Seq::FIRST {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, time_ms, kind, hash, bytes FROM audit_records
             WHERE account = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![account], raw_row)?;
        check_chain(account, start, rows, |_, _| {})?
    } else {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, time_ms, kind, hash, bytes FROM audit_records
             WHERE account = ?1 AND seq >= ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![account, start.next.to_i64()], raw_row)?;
        check_chain(account, start, rows, |_, _| {})?
    };
    if outcome.failure.is_none() {
        let head = conn
            .prepare_cached("SELECT seq, hash FROM audit_heads WHERE account = ?1")?
            .query_row([account], |row| {
                Ok(head_row(row.get_ref(0)?, row.get_ref(1)?))
            })
            .optional()?;
        outcome.failure = head_problem(head, &outcome);
    }
    Ok(outcome)
}

fn blob(value: ValueRef<'_>) -> Vec<u8> {
    match value {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        _ => Vec::new(),
    }
}

/// An `audit_heads` row: its `seq`, read as 0 if it is not an integer of
/// at least 1, and its hash.
fn head_row(seq: ValueRef<'_>, hash: ValueRef<'_>) -> (u64, Vec<u8>) {
    let seq = seq
        .as_i64()
        .ok()
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    (seq, blob(hash))
}

/// Compares the store's recorded head with a chain that verified, good
/// through `n` (step S6).
fn head_problem(head: Option<(u64, Vec<u8>)>, outcome: &ChainOutcome) -> Option<(Seq, Problem)> {
    let n = outcome.valid_through;
    let record = |s: u64| Seq::new(s).unwrap_or(Seq::FIRST);
    let Some((h, hash)) = head else {
        return (n > 0).then(|| {
            (
                Seq::FIRST,
                Problem::HeadMismatch {
                    detail: "the store records no head for this chain".into(),
                },
            )
        });
    };
    if h > n {
        return Some((
            record(n + 1),
            Problem::Truncated {
                expected: record(h),
                evidence: "the store's head".into(),
            },
        ));
    }
    if h < n {
        return Some((
            record(h + 1),
            Problem::HeadMismatch {
                detail: format!("the store's head is record {h}, before the end of the chain"),
            },
        ));
    }
    if ChainHash::from_slice(&hash) != Some(outcome.last_hash) {
        return Some((
            record(n.max(1)),
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
    let (low, high, heads) = read::in_snapshot(conn, || -> Result<_, VerifyError> {
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
            if let Ok(account) = row.get_ref(0)?.as_str() {
                heads.insert(
                    account.to_owned(),
                    head_row(row.get_ref(1)?, row.get_ref(2)?),
                );
            }
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
    read::in_snapshot(conn, || scan_range_in_tx(conn, start, end, progress))
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
        // The record's own checks (its bytes are a record of its account and
        // position, whose time and kind are in its columns); the link to its
        // predecessor waits for the join when it is the first of its run here.
        let checked = (|| {
            let seq = u64::try_from(row.get_ref(1).ok()?.as_i64().ok()?).ok()?;
            let time_ms = row.get_ref(2).ok()?.as_i64().ok()?;
            let kind = row.get_ref(3).ok()?.as_str().ok()?;
            let hash = ChainHash::from_slice(row.get_ref(4).ok()?.as_blob().ok()?)?;
            let bytes = row.get_ref(5).ok()?.as_blob().ok()?;
            let fields = record::check_record(bytes, account, seq).ok()?;
            (fields.time_ms == time_ms && fields.kind == kind).then_some((seq, hash, bytes))
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
