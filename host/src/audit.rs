//! The tamper-evident audit log.
//!
//! Every support-related event is written, before it takes effect, as one
//! record in its account's hash chain. A record's exact canonical bytes are
//! stored, and the chain hash after record `n` is
//! `BLAKE3(RECORD_TAG || hash_{n-1} || bytes_n)`, starting from a fixed
//! per-account genesis value. Signed checkpoints name every chain's head and
//! a Merkle root over the heads, so a cut tail or a rewritten chain shows.
//! The byte-level format is written down in `docs/audit-format.md`.
//!
//! Code map:
//! - [`record`]: drafts, canonical record bytes, decoded records;
//! - [`chain`]: sequence numbers, chain hashes, genesis and link;
//! - [`merkle`]: the RFC 6962-shaped BLAKE3 tree over heads, inclusion proofs;
//! - [`checkpoint`]: signed notes (C2SP signed-note) of every head;
//! - [`keys`]: the log's Ed25519 key pair and its file encodings;
//! - [`read`]: heads, accounts, decoded records, counts;
//! - [`verify`]: chain and checkpoint verification, with the first bad record;
//! - [`export`]: one account's chain as JSON Lines, and offline verification.
//!
//! Appending goes through [`crate::store::WriteTx::append`], inside the
//! transaction that applies the event's effects.
//!
//! Architecture invariants:
//! - verifiers hash the stored bytes; nothing re-serializes a stored record;
//! - this crate never updates or deletes a record;
//! - audit records go to the database, never to logs.

use rusqlite::{Connection, params};

pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod keys;
pub mod merkle;
pub mod read;
pub mod record;
pub mod verify;

pub use chain::{ChainHash, ChainHead, Seq};
pub use checkpoint::Checkpoint;
pub use record::{ActorRef, DecisionRecord, PolicyRef, Record, RecordDraft, StoredRecord, Verdict};
pub use verify::{Failure, Problem, Report, VerifyOptions};

/// Errors appending to or reading the log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The account id cannot name a chain.
    #[error(
        "account id `{0}` is not valid: it must be 1 to 256 printable ASCII characters without spaces, quotes or backslashes"
    )]
    InvalidAccount(String),
    /// The kind cannot be a record kind.
    #[error(
        "record kind `{0}` is not valid: it must be 1 to 64 lowercase letters, digits, `_`, `-` or `.`"
    )]
    InvalidKind(String),
    /// Another part of the draft is not valid.
    #[error("invalid audit record: {0}")]
    InvalidDraft(String),
    /// The encoded record is too large.
    #[error("the audit record for account `{account}` is too large ({size} bytes)")]
    TooLarge {
        /// The account.
        account: String,
        /// Its encoded size.
        size: usize,
    },
    /// The account's chain cannot grow any more.
    #[error("the chain of account `{0}` is full")]
    ChainFull(String),
    /// Stored data is not what the log wrote.
    #[error("the audit log of account `{account}` is corrupt: {detail}")]
    Corrupt {
        /// The account.
        account: String,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint would be older than the latest one.
    #[error("checkpoint time {time_ms} is before the latest checkpoint's ({latest})")]
    CheckpointTime {
        /// The time asked for.
        time_ms: i64,
        /// The latest checkpoint's time.
        latest: i64,
    },
    /// The database failed.
    #[error("audit log database error")]
    Sqlite(#[from] rusqlite::Error),
}

/// Where an appended record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Appended {
    /// Its sequence number in the account's chain.
    pub seq: Seq,
    /// The chain hash after it.
    pub hash: ChainHash,
}

/// Appends one record to its account's chain, in the caller's transaction.
pub(crate) fn append(conn: &Connection, draft: &RecordDraft) -> Result<Appended, AuditError> {
    let span = tracing::info_span!("audit.append", account = %draft.account, kind = %draft.kind);
    let _entered = span.enter();
    if !record::valid_account(&draft.account) {
        return Err(AuditError::InvalidAccount(draft.account.clone()));
    }
    let (seq, prev) = match read::head(conn, &draft.account)? {
        None => (Seq::FIRST, chain::genesis(&draft.account)),
        Some(head) => (
            head.seq
                .next()
                .ok_or_else(|| AuditError::ChainFull(draft.account.clone()))?,
            head.hash,
        ),
    };
    let bytes = record::encode(draft, seq)?;
    let hash = chain::link(&prev, &bytes);
    conn.prepare_cached(
        "INSERT INTO audit_records (account, seq, time_ms, kind, hash, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        draft.account,
        seq.to_i64(),
        draft.time_ms,
        draft.kind,
        hash.as_bytes().as_slice(),
        bytes,
    ])?;
    conn.prepare_cached(
        "INSERT INTO audit_heads (account, seq, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT (account) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?
    .execute(params![
        draft.account,
        seq.to_i64(),
        hash.as_bytes().as_slice()
    ])?;
    tracing::debug!(seq = seq.get(), "appended");
    Ok(Appended { seq, hash })
}
