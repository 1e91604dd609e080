//! Appending records to their account's chain, in the writer's transaction.

use rusqlite::{Connection, params};

use chaperone_log::record::{self, RecordDraft};
use chaperone_log::{Appended, AuditError, ChainHead, Seq, chain};

use crate::StoreError;
use crate::read;

/// The chain heads the writer has read or written, so that an append does
/// not read its head back from `audit_heads`. It mirrors the table exactly
/// as long as only appends change the table on the writer's connection: the
/// writer clears it when another connection has committed (`PRAGMA
/// data_version` changed), when a job is rolled back, and when a batch fails.
#[derive(Debug, Default)]
pub(crate) struct HeadCache {
    heads: std::collections::HashMap<String, ChainHead>,
    data_version: Option<i64>,
    /// The live webhook subscriptions, read at the first append that may
    /// need them; cleared with the heads.
    subscriptions: Option<Vec<crate::outbox::Live>>,
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
        self.subscriptions = None;
    }

    /// Forgets the live subscriptions (they changed); the heads stay.
    pub(crate) fn forget_subscriptions(&mut self) {
        self.subscriptions = None;
    }

    /// The live subscriptions (read once, then kept until cleared).
    pub(crate) fn subscriptions(
        &mut self,
        conn: &Connection,
    ) -> Result<&[crate::outbox::Live], StoreError> {
        if self.subscriptions.is_none() {
            self.subscriptions = Some(crate::outbox::live(conn)?);
        }
        Ok(self.subscriptions.as_deref().unwrap_or_default())
    }

    pub(crate) fn head(
        &mut self,
        conn: &Connection,
        account: &str,
    ) -> Result<Option<ChainHead>, StoreError> {
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
) -> Result<Appended, StoreError> {
    append_prepared(conn, heads, &record::Prepared::new(draft)?)
}

/// Appends one prepared record to its account's chain, in the caller's
/// transaction: finds the head, puts the header in front, hashes, inserts.
pub(crate) fn append_prepared(
    conn: &Connection,
    heads: &mut HeadCache,
    prepared: &record::Prepared,
) -> Result<Appended, StoreError> {
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
        return Err(StoreError::Audit(AuditError::Corrupt {
            account: account.to_owned(),
            detail: "its stored head is not the head the record chains from".into(),
        }));
    }
    heads.set(account, ChainHead { seq, hash });
    // The record's deliveries, in its transaction; while no subscription
    // lives (the cache says so without a read), nothing more to do.
    if !account.starts_with('@') {
        let subscriptions = heads.subscriptions(conn)?;
        if !subscriptions.is_empty() {
            crate::outbox::enqueue(conn, subscriptions, prepared, seq.get())?;
        }
    }
    tracing::debug!(seq = seq.get(), "appended");
    Ok(Appended { seq, hash })
}
