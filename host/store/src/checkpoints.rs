//! Stored checkpoints: signing one over every head and keeping the heads
//! its tree commits to (its note names none), and reading them back.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension as _, params};

use chaperone_log::keys::Signer;
use chaperone_log::{AuditError, ChainHash, ChainHead, Checkpoint, Seq, TreeHeads};
use rusqlite::types::ValueRef;

use crate::StoreError;

/// Signs a checkpoint of every head in the store at `time_ms` and stores it
/// with its heads (`audit_checkpoint_heads`). Run it inside a write
/// transaction so the heads are one consistent state.
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
    let tree = TreeHeads::new(heads).map_err(|e| AuditError::Corrupt {
        account: e.0.clone(),
        detail: "the store records two heads for it".into(),
    })?;
    let checkpoint = Checkpoint::sign(signer, time_ms, &tree);
    conn.prepare_cached(
        "INSERT INTO audit_checkpoints (time_ms, tree_size, root, note) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        time_ms,
        i64::try_from(checkpoint.tree_size).unwrap_or(i64::MAX),
        checkpoint.root.as_bytes().as_slice(),
        checkpoint.note,
    ])?;
    // The heads just read, in this transaction: copied as they are.
    let kept = conn
        .prepare_cached(
            "INSERT INTO audit_checkpoint_heads (checkpoint, account, seq, hash)
             SELECT ?1, account, seq, hash FROM audit_heads",
        )?
        .execute([conn.last_insert_rowid()])?;
    if kept != tree.len() {
        return Err(StoreError::Audit(AuditError::Corrupt {
            account: String::new(),
            detail: format!("{kept} heads kept for a checkpoint of {}", tree.len()),
        }));
    }
    Ok(checkpoint)
}

/// Whether the store has the table of checkpoint heads (schema version 4
/// on; a store not migrated yet keeps none).
fn has_kept_heads(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_checkpoint_heads'",
    )?
    .query_row([], |_| Ok(()))
    .optional()
    .map(|found| found.is_some())
}

/// A kept head row as the format reads it: a valid account id, a sequence
/// number from 1 to 2^63 - 1 and a 32-byte hash; what is wrong otherwise.
/// What is wrong names no account: a report of one account's chain (the
/// HTTP API's) shows it too.
fn kept_row(
    account: ValueRef<'_>,
    seq: ValueRef<'_>,
    hash: ValueRef<'_>,
) -> Result<(String, ChainHead), String> {
    let account = account
        .as_str()
        .ok()
        .filter(|a| chaperone_log::record::valid_account(a))
        .ok_or("a kept head names no valid account id")?;
    let seq = seq
        .as_i64()
        .ok()
        .and_then(Seq::from_i64)
        .ok_or("a kept head has no valid sequence number")?;
    let hash = match hash {
        ValueRef::Blob(b) => ChainHash::from_slice(b),
        _ => None,
    }
    .ok_or("a kept head has no 32-byte hash")?;
    Ok((account.to_owned(), ChainHead { seq, hash }))
}

/// The heads the store keeps for checkpoint `id`, as a tree (no row: the
/// empty tree), or what is wrong with them: a row that is not a head, or an
/// account twice.
pub fn kept_heads(conn: &Connection, id: i64) -> rusqlite::Result<Result<TreeHeads, String>> {
    if !has_kept_heads(conn)? {
        return Ok(into_tree(Ok(Vec::new())));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT account, seq, hash FROM audit_checkpoint_heads WHERE checkpoint = ?1",
    )?;
    let mut rows = stmt.query([id])?;
    let mut heads = Ok(Vec::new());
    while let Some(row) = rows.next()? {
        let head = kept_row(row.get_ref(0)?, row.get_ref(1)?, row.get_ref(2)?);
        add(&mut heads, head);
    }
    Ok(into_tree(heads))
}

fn add(
    set: &mut Result<Vec<(String, ChainHead)>, String>,
    head: Result<(String, ChainHead), String>,
) {
    match (set.as_mut(), head) {
        (Ok(heads), Ok(head)) => heads.push(head),
        (Ok(_), Err(why)) => *set = Err(why),
        (Err(_), _) => {}
    }
}

/// Every checkpoint's kept heads, by the `checkpoint` column (rows whose
/// `checkpoint` is not an integer belong to none), each as a tree or what
/// is wrong with it. A checkpoint without rows is not in the map.
pub fn all_kept_heads(
    conn: &Connection,
) -> rusqlite::Result<BTreeMap<i64, Result<TreeHeads, String>>> {
    if !has_kept_heads(conn)? {
        return Ok(BTreeMap::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT checkpoint, account, seq, hash FROM audit_checkpoint_heads ORDER BY checkpoint",
    )?;
    let mut rows = stmt.query([])?;
    let mut sets: BTreeMap<i64, Result<Vec<(String, ChainHead)>, String>> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let Ok(id) = row.get_ref(0)?.as_i64() else {
            continue;
        };
        let head = kept_row(row.get_ref(1)?, row.get_ref(2)?, row.get_ref(3)?);
        add(sets.entry(id).or_insert_with(|| Ok(Vec::new())), head);
    }
    Ok(sets
        .into_iter()
        .map(|(id, set)| (id, into_tree(set)))
        .collect())
}

fn into_tree(heads: Result<Vec<(String, ChainHead)>, String>) -> Result<TreeHeads, String> {
    TreeHeads::new(heads?).map_err(|_| "an account has two kept heads".to_owned())
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
    /// its tree size and its root.
    pub fn matches(&self, checkpoint: &Checkpoint) -> bool {
        self.time_ms == Some(checkpoint.time_ms)
            && self
                .tree_size
                .is_some_and(|n| u64::try_from(n).ok() == Some(checkpoint.tree_size))
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
