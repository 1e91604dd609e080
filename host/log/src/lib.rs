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

/// Defines a 32-byte BLAKE3 hash type: built from bytes, a 32-byte slice or
/// 64 hex digits (either case), shown as lowercase hex, compared in
/// constant time, and debug-printed with its type's name. The chain and
/// the Merkle tree each have one, so that neither is taken for the other.
macro_rules! blake3_hash_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Eq)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The hash with these bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> $name {
                $name(bytes)
            }

            /// From exactly 32 bytes (a stored BLOB); `None` otherwise.
            pub fn from_slice(bytes: &[u8]) -> Option<$name> {
                <[u8; 32]>::try_from(bytes).ok().map($name)
            }

            /// From 64 hex digits (either case).
            pub fn from_hex(text: &str) -> Option<$name> {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(text, &mut bytes).ok()?;
                Some($name(bytes))
            }

            /// The 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lowercase hex, 64 digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &$name) -> bool {
                // blake3::Hash compares in constant time.
                blake3::Hash::from_bytes(self.0) == blake3::Hash::from_bytes(other.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

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
pub use record::{
    ActorRef, DecisionRecord, PolicyRef, Prepared, Record, RecordDraft, StoredRecord, Verdict,
};
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

/// The chain heads the writer has read or written, so that an append does
/// not read its head back from `audit_heads`. It mirrors the table exactly
/// as long as only appends change the table on the writer's connection: the
/// writer clears it when another connection has committed (`PRAGMA
/// data_version` changed), when a job is rolled back, and when a batch fails.
#[derive(Debug, Default)]
pub(crate) struct HeadCache {
    heads: std::collections::HashMap<String, ChainHead>,
    data_version: Option<i64>,
}

impl HeadCache {
    /// The most heads kept; past it the cache starts over.
    const MAX: usize = 1 << 16;

    /// Clears the cache if another connection committed since the last call.
    /// Call at the start of each write transaction.
    pub(crate) fn check(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if self.data_version != Some(version) {
            self.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// Forgets every head.
    pub(crate) fn clear(&mut self) {
        self.heads.clear();
    }

    fn head(&mut self, conn: &Connection, account: &str) -> Result<Option<ChainHead>, AuditError> {
        if let Some(head) = self.heads.get(account) {
            return Ok(Some(*head));
        }
        read::head(conn, account)
    }

    fn set(&mut self, account: &str, head: ChainHead) {
        if let Some(slot) = self.heads.get_mut(account) {
            *slot = head;
            return;
        }
        if self.heads.len() >= HeadCache::MAX {
            self.heads.clear();
        }
        self.heads.insert(account.to_owned(), head);
    }
}

/// Appends one record to its account's chain, in the caller's transaction.
pub(crate) fn append(
    conn: &Connection,
    heads: &mut HeadCache,
    draft: &RecordDraft,
) -> Result<Appended, AuditError> {
    append_prepared(conn, heads, &record::Prepared::new(draft)?)
}

/// Appends one prepared record to its account's chain, in the caller's
/// transaction: finds the head, puts the header in front, hashes, inserts.
pub(crate) fn append_prepared(
    conn: &Connection,
    heads: &mut HeadCache,
    prepared: &record::Prepared,
) -> Result<Appended, AuditError> {
    let account = prepared.account();
    let span = tracing::info_span!("audit.append", account = %account, kind = %prepared.kind());
    let _entered = span.enter();
    let head = heads.head(conn, account)?;
    let (seq, prev) = match head {
        None => (Seq::FIRST, chain::genesis(account)),
        Some(head) => (
            head.seq
                .next()
                .ok_or_else(|| AuditError::ChainFull(account.to_owned()))?,
            head.hash,
        ),
    };
    let bytes = prepared.bytes(seq)?;
    let hash = chain::link(&prev, &bytes);
    conn.prepare_cached(
        "INSERT INTO audit_records (account, seq, time_ms, kind, hash, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        account,
        seq.to_i64(),
        prepared.time_ms(),
        prepared.kind(),
        hash.as_bytes().as_slice(),
        bytes,
    ])?;
    // The head row moves from the head the record chains from: one lookup,
    // and a head that is not where the append found it fails the append.
    let moved = match head {
        None => conn
            .prepare_cached("INSERT INTO audit_heads (account, seq, hash) VALUES (?1, ?2, ?3)")?
            .execute(params![account, seq.to_i64(), hash.as_bytes().as_slice()])?,
        Some(head) => conn
            .prepare_cached(
                "UPDATE audit_heads SET seq = ?2, hash = ?3 WHERE account = ?1 AND seq = ?4",
            )?
            .execute(params![
                account,
                seq.to_i64(),
                hash.as_bytes().as_slice(),
                head.seq.to_i64()
            ])?,
    };
    if moved != 1 {
        return Err(AuditError::Corrupt {
            account: account.to_owned(),
            detail: "its stored head is not the head the record chains from".into(),
        });
    }
    heads.set(account, ChainHead { seq, hash });
    tracing::debug!(seq = seq.get(), "appended");
    Ok(Appended { seq, hash })
}
