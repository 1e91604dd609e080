//! Reading the log: chain heads, accounts, decoded records, counts.
//!
//! These read what is stored; they do not verify it (see [`crate::verify`]).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension as _, params};

use chaperone_log::record::{self, StoredRecord};
use chaperone_log::{AuditError, ChainHash, ChainHead, Seq};

use crate::StoreError;

/// The head of `account`'s chain, as the store keeps it.
pub fn head(conn: &Connection, account: &str) -> Result<Option<ChainHead>, StoreError> {
    let row = conn
        .prepare_cached("SELECT seq, hash FROM audit_heads WHERE account = ?1")?
        .query_row([account], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    Ok(row
        .map(|(seq, hash)| to_head(account, seq, &hash))
        .transpose()?)
}

fn to_head(account: &str, seq: i64, hash: &[u8]) -> Result<ChainHead, AuditError> {
    match (Seq::from_i64(seq), ChainHash::from_slice(hash)) {
        (Some(seq), Some(hash)) => Ok(ChainHead { seq, hash }),
        _ => Err(AuditError::Corrupt {
            account: account.to_owned(),
            detail: "its stored head is malformed".into(),
        }),
    }
}

/// The vendor id (policy) of an account; `None` if there is no such account.
pub fn account_policy(conn: &Connection, account: &str) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension as _;
    Ok(conn
        .prepare_cached("SELECT policy FROM accounts WHERE id = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?)
}

/// Every account's head, sorted by account id.
pub fn heads(conn: &Connection) -> Result<Vec<(String, ChainHead)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT account, seq, hash FROM audit_heads ORDER BY account")?;
    let mut rows = stmt.query([])?;
    let mut heads = Vec::new();
    while let Some(row) = rows.next()? {
        let account: String = row.get(0)?;
        let head = to_head(&account, row.get(1)?, &row.get::<_, Vec<u8>>(2)?)?;
        heads.push((account, head));
    }
    Ok(heads)
}

/// Every account that has records, sorted, found by skipping through the
/// primary key (one lookup per account, not one per record).
///
/// An `account` that is text but not UTF-8 (only a tampered row has one)
/// names no account this reads, and is skipped; the walk goes on past it, so
/// that it cannot hide the accounts after it. The walk ends at the first
/// `account` that is not text (blobs sort after all text).
pub fn accounts(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT account FROM audit_records WHERE account > CAST(?1 AS TEXT)
         ORDER BY account LIMIT 1",
    )?;
    let mut accounts = Vec::new();
    let mut last: Vec<u8> = Vec::new();
    loop {
        let next = stmt
            .query_row([&last], |row| match row.get_ref(0)? {
                rusqlite::types::ValueRef::Text(text) => Ok(Some(text.to_vec())),
                _ => Ok(None),
            })
            .optional()?;
        let Some(Some(next)) = next else {
            break;
        };
        if let Ok(account) = std::str::from_utf8(&next) {
            accounts.push(account.to_owned());
        }
        last = next;
    }
    Ok(accounts)
}

/// Calls `f` with each record of `account`, decoded, in sequence order.
/// Stops at the first error (including `f`'s).
pub fn for_each_record<E: From<StoreError>>(
    conn: &Connection,
    account: &str,
    mut f: impl FnMut(StoredRecord) -> Result<(), E>,
) -> Result<(), E> {
    let sql = |e: rusqlite::Error| E::from(StoreError::from(e));
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, hash, bytes FROM audit_records WHERE account = ?1 ORDER BY seq",
        )
        .map_err(sql)?;
    let mut rows = stmt.query([account]).map_err(sql)?;
    while let Some(row) = rows.next().map_err(sql)? {
        let raw_seq: i64 = row.get(0).map_err(sql)?;
        let hash: Vec<u8> = row.get(1).map_err(sql)?;
        let bytes: Vec<u8> = row.get(2).map_err(sql)?;
        let corrupt = |detail: String| {
            E::from(StoreError::Audit(AuditError::Corrupt {
                account: account.to_owned(),
                detail,
            }))
        };
        let seq =
            Seq::from_i64(raw_seq).ok_or_else(|| corrupt(format!("bad sequence {raw_seq}")))?;
        let hash = ChainHash::from_slice(&hash)
            .ok_or_else(|| corrupt(format!("record {seq} has a malformed hash")))?;
        let record = record::decode(&bytes)
            .map_err(|e| corrupt(format!("record {seq} does not decode: {e}")))?;
        f(StoredRecord {
            record,
            seq,
            hash,
            bytes,
        })?;
    }
    Ok(())
}

/// Every record of `account`, decoded, in sequence order.
pub fn records(conn: &Connection, account: &str) -> Result<Vec<StoredRecord>, StoreError> {
    let mut out = Vec::new();
    for_each_record(conn, account, |r| -> Result<(), StoreError> {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// The number of records of each kind, for one account or (`None`) the
/// whole store.
pub fn count_by_kind(
    conn: &Connection,
    account: Option<&str>,
) -> rusqlite::Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    let mut add = |row: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
        let n: i64 = row.get(1)?;
        counts.insert(row.get::<_, String>(0)?, u64::try_from(n).unwrap_or(0));
        Ok(())
    };
    match account {
        Some(account) => {
            let mut stmt = conn.prepare_cached(
                "SELECT kind, COUNT(*) FROM audit_records WHERE account = ?1 GROUP BY kind",
            )?;
            let mut rows = stmt.query(params![account])?;
            while let Some(row) = rows.next()? {
                add(row)?;
            }
        }
        None => {
            let mut stmt =
                conn.prepare_cached("SELECT kind, COUNT(*) FROM audit_records GROUP BY kind")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                add(row)?;
            }
        }
    }
    Ok(counts)
}

/// The number of records, for one account or (`None`) the whole store.
pub fn count(conn: &Connection, account: Option<&str>) -> rusqlite::Result<u64> {
    let n: i64 = match account {
        Some(account) => conn
            .prepare_cached("SELECT COUNT(*) FROM audit_records WHERE account = ?1")?
            .query_row([account], |row| row.get(0))?,
        None => conn
            .prepare_cached("SELECT COUNT(*) FROM audit_records")?
            .query_row([], |row| row.get(0))?,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Runs `body` in one read transaction, so that everything it reads comes
/// from one snapshot of the store (appends committed meanwhile are not
/// seen). The body's error wins over the commit's.
pub fn in_snapshot<T, E: From<rusqlite::Error>>(
    conn: &Connection,
    body: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch("BEGIN")?;
    let result = body();
    let end = conn.execute_batch("COMMIT");
    let value = result?;
    end?;
    Ok(value)
}
