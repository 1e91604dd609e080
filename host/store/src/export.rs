//! Exporting one account's chain as JSON Lines (`docs/audit-format.md`,
//! "Export"); `chaperone_log::export` verifies such a file offline.

use std::io::Write;

use rusqlite::Connection;

use chaperone_log::checkpoint::{Checkpoint, NoteVersion};
use chaperone_log::export as log_export;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Record lines written.
    pub records: u64,
    /// Whether a checkpoint line was written.
    pub checkpoint: bool,
    /// Whether an inclusion proof line was written.
    pub proof: bool,
    /// Why there is no checkpoint line, when there is none.
    pub without: Option<WithoutCheckpoint>,
}

/// Why an export has no checkpoint line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutCheckpoint {
    /// The store has signed no checkpoint.
    NoneSigned,
    /// The latest checkpoint is a version 1 note, which lists every
    /// account: the store has signed none since it was upgraded.
    VersionOne,
    /// The latest checkpoint has no head of the account: its chain began
    /// after it.
    NotInIt,
}

/// Errors writing an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error("reading the store failed")]
    Query(#[source] crate::DatabaseError),
    /// Writing the export failed.
    #[error("writing the export failed")]
    Write(#[from] std::io::Error),
}

impl From<rusqlite::Error> for ExportError {
    fn from(e: rusqlite::Error) -> Self {
        ExportError::Query(Box::new(e))
    }
}

/// Writes `account`'s chain, the latest checkpoint and the account's head
/// with its inclusion proof in the checkpoint's tree (from the heads the
/// store keeps for it), from one consistent read of the store. A version 1
/// checkpoint, whose note lists every account, is never exported. Records
/// are written as stored, whatever their state. `progress` is called with
/// the number of records written so far, every 4096 records.
pub fn export(
    conn: &Connection,
    account: &str,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> Result<ExportSummary, ExportError> {
    crate::read::in_snapshot(conn, || export_in_tx(conn, account, out, progress))
}

fn export_in_tx(
    conn: &Connection,
    account: &str,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> Result<ExportSummary, ExportError> {
    let count = crate::read::count(conn, Some(account))?;
    writeln!(out, "{}", log_export::header_line(account, count))?;

    let mut summary = ExportSummary {
        records: 0,
        checkpoint: false,
        proof: false,
        without: None,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT seq, hash, bytes FROM audit_records WHERE account = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([account])?;
    let mut line = Vec::with_capacity(4096);
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        line.clear();
        log_export::push_record_line(&mut line, seq, blob(row.get_ref(1)?), blob(row.get_ref(2)?));
        out.write_all(&line)?;
        summary.records += 1;
        if summary.records.is_multiple_of(4096) {
            progress(summary.records);
        }
    }
    progress(summary.records);

    match crate::checkpoints::latest(conn)? {
        None => summary.without = Some(WithoutCheckpoint::NoneSigned),
        Some(stored) => {
            let note = Checkpoint::parse_unverified(&stored.note).ok();
            let kept = crate::checkpoints::kept_heads(conn, stored.id)?;
            match (note, kept) {
                (Some(cp), _) if cp.version == NoteVersion::V1 => {
                    summary.without = Some(WithoutCheckpoint::VersionOne);
                }
                (Some(cp), Ok(heads))
                    if heads.len() as u64 == cp.tree_size && heads.root() == cp.root =>
                {
                    match heads.proof(account) {
                        Some(proof) => {
                            writeln!(out, "{}", log_export::checkpoint_line(&stored.note))?;
                            writeln!(out, "{}", log_export::proof_line(&proof))?;
                            summary.checkpoint = true;
                            summary.proof = true;
                        }
                        None => summary.without = Some(WithoutCheckpoint::NotInIt),
                    }
                }
                // A note that does not parse, or heads that are not its
                // tree's: only in a tampered store. The note alone goes out,
                // and fails verification as the store does.
                _ => {
                    writeln!(out, "{}", log_export::checkpoint_line(&stored.note))?;
                    summary.checkpoint = true;
                }
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

fn blob(value: rusqlite::types::ValueRef<'_>) -> &[u8] {
    match value {
        rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b,
        _ => &[],
    }
}
