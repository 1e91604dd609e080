//! The tamper-evident audit log: its format, and its verification from bytes.
//!
//! Every support-related event is written, before it takes effect, as one
//! record in its account's hash chain. A record's exact canonical bytes are
//! stored, and the chain hash after record `n` is
//! `BLAKE3(RECORD_TAG || hash_{n-1} || bytes_n)`, starting from a fixed
//! per-account genesis value. A signed checkpoint commits to every chain's
//! head with a Merkle root over the heads, so a cut tail or a rewritten chain
//! shows; its note names the root and the number of chains but no account,
//! and an account's export proves that account's head alone against it.
//! The byte-level format is written down in `docs/audit-format.md`.
//!
//! Code map:
//! - [`record`]: drafts, canonical record bytes, decoded records, and what
//!   a verifier accepts as a record (with the strict JSON scanner of `json`);
//! - [`chain`]: sequence numbers, chain hashes, genesis and link;
//! - [`merkle`]: the RFC 6962-shaped BLAKE3 tree, inclusion proofs;
//! - [`heads`]: a checkpoint's heads (the tree's leaves), an account's head
//!   with its inclusion proof;
//! - [`checkpoint`]: signed notes (C2SP signed-note) of the tree's size and
//!   root;
//! - [`keys`]: the log's Ed25519 key pair and its file encodings;
//! - [`verify`]: chain and checkpoint verification, with the first bad record;
//! - [`export`]: the export format (JSON Lines) and its offline verification;
//! - [`offline`]: an export file checked as the command line does it.
//!
//! This crate holds no database: the store (`chaperone-store`) appends
//! records and keeps them; everything here works on bytes, so an auditor's
//! verifier builds with none of the host's runtime or storage.
//!
//! Architecture invariants:
//! - verifiers hash the stored bytes; nothing re-serializes a stored record;
//! - this crate never updates or deletes a record;
//! - audit records go to the database, never to logs.

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
pub mod heads;
mod json;
pub mod keys;
pub mod merkle;
pub mod offline;
pub mod record;
pub mod verify;

pub use chain::{ChainHash, ChainHead, Seq};
pub use checkpoint::Checkpoint;
pub use heads::{HeadProof, TreeHeads};
pub use record::{
    ActorRef, DecisionRecord, PolicyRef, Prepared, Record, RecordDraft, StoredRecord, Verdict,
};
pub use verify::{Failure, Problem, Report};

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
}

/// Where an appended record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Appended {
    /// Its sequence number in the account's chain.
    pub seq: Seq,
    /// The chain hash after it.
    pub hash: ChainHash,
}
