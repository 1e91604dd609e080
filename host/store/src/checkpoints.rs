//! Stored checkpoints: signing one over every head, and reading them back.

use rusqlite::{Connection, OptionalExtension as _, params};

use chaperone_log::keys::Signer;
use chaperone_log::{AuditError, Checkpoint};
use rusqlite::types::ValueRef;

use crate::StoreError;

/// Signs a checkpoint of every head in the store at `time_ms` and stores it.
/// Run it inside a write transaction so the heads are one consistent state.
///
/// Checkpoint times never go back: verifiers order checkpoints by time to
/// tell a fork, so a time before the latest stored checkpoint's is refused.
pub fn create(conn: &Connection, signer: &Signer, time_ms: i64) -> Result<Checkpoint, StoreError> {
    if let Some(previous) = latest(conn)?
        && time_ms < previous.time_ms
    {
        return Err(StoreError::Audit(AuditError::CheckpointTime {
            time_ms,
            latest: previous.time_ms,
        }));
    }
    let heads = crate::read::heads(conn)?;
    let checkpoint = Checkpoint::sign(signer, time_ms, heads);
    conn.prepare_cached(
        "INSERT INTO audit_checkpoints (time_ms, tree_size, root, note) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        time_ms,
        i64::try_from(checkpoint.heads.len()).unwrap_or(i64::MAX),
        checkpoint.root.as_bytes().as_slice(),
        checkpoint.note,
    ])?;
    Ok(checkpoint)
}

/// A checkpoint as stored: its row id, time and note (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The row id (increasing).
    pub id: i64,
    /// Its time, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The signed note.
    pub note: String,
}

/// Every stored checkpoint, oldest first.
pub fn stored(conn: &Connection) -> rusqlite::Result<Vec<StoredCheckpoint>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, time_ms, note FROM audit_checkpoints ORDER BY time_ms, id")?;
    let rows = stmt.query_map([], stored_row)?;
    rows.collect()
}

/// The newest stored checkpoint.
pub fn latest(conn: &Connection) -> rusqlite::Result<Option<StoredCheckpoint>> {
    conn.prepare_cached(
        "SELECT id, time_ms, note FROM audit_checkpoints ORDER BY time_ms DESC, id DESC LIMIT 1",
    )?
    .query_row([], stored_row)
    .optional()
}

/// A checkpoint row; a note that is not text (it was tampered with) is read
/// lossily, so that it fails verification instead of stopping it.
fn stored_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    let note = match row.get_ref(2)? {
        rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        _ => String::new(),
    };
    Ok(StoredCheckpoint {
        id: row.get(0)?,
        time_ms: row.get(1)?,
        note,
    })
}

/// A stored checkpoint row as a verifier reads it: every column as it is,
/// whatever its type (a tampered row may hold anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// The row id.
    pub id: i64,
    /// The `time_ms` column, if it is an integer.
    pub time_ms: Option<i64>,
    /// The `tree_size` column, if it is an integer.
    pub tree_size: Option<i64>,
    /// The `root` column's bytes (a blob's or a text's; `None` for another
    /// type).
    pub root: Option<Vec<u8>>,
    /// The note, read lossily if it is not UTF-8 text.
    pub note: String,
}

impl CheckpointRow {
    /// Whether the columns repeat what the (opened) note says: its time,
    /// its number of heads and its root.
    pub fn matches(&self, checkpoint: &Checkpoint) -> bool {
        self.time_ms == Some(checkpoint.time_ms)
            && self
                .tree_size
                .is_some_and(|n| u64::try_from(n).ok() == Some(checkpoint.heads.len() as u64))
            && self.root.as_deref() == Some(checkpoint.root.as_bytes().as_slice())
    }
}

/// Every stored checkpoint row, in increasing order of the `time_ms` column
/// then `id` (step S2 of verification).
pub fn rows(conn: &Connection) -> rusqlite::Result<Vec<CheckpointRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, time_ms, tree_size, root, note FROM audit_checkpoints ORDER BY time_ms, id",
    )?;
    let rows = stmt.query_map([], |row| {
        let bytes = |value: ValueRef<'_>| match value {
            ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
            _ => None,
        };
        Ok(CheckpointRow {
            id: row.get(0)?,
            time_ms: row.get_ref(1)?.as_i64().ok(),
            tree_size: row.get_ref(2)?.as_i64().ok(),
            root: bytes(row.get_ref(3)?),
            note: bytes(row.get_ref(4)?)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
        })
    })?;
    rows.collect()
}
