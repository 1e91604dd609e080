//! Random tamperings of a populated store: every one is detected, the fast
//! path and the reference verifier agree, and a changed record is named.

use std::sync::OnceLock;

use proptest::prelude::*;
use rusqlite::{Connection, params};

use super::{Fixture, append_many, raw, verify};

const ACCOUNTS: [&str; 3] = ["acme", "globex", "initech"];
const LENGTHS: [i64; 3] = [9, 6, 4];

/// One store, built once; each case tampers with a copy.
fn template() -> &'static Fixture {
    static TEMPLATE: OnceLock<Fixture> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let fixture = Fixture::new();
        let store = fixture.store();
        for (account, length) in ACCOUNTS.iter().zip(LENGTHS) {
            append_many(&store, account, u64::try_from(length).unwrap());
        }
        store.checkpoint(1_700_000_900_000).unwrap();
        drop(store);
        fixture
    })
}

#[derive(Debug, Clone)]
enum Tamper {
    /// XOR one byte of a record's bytes.
    FlipByte {
        account: usize,
        record: i64,
        at: usize,
        mask: u8,
    },
    /// XOR one byte of a record's stored hash.
    FlipHash {
        account: usize,
        record: i64,
        at: usize,
        mask: u8,
    },
    /// Delete one record.
    Delete { account: usize, record: i64 },
    /// Exchange the contents of two records of one chain.
    Swap { account: usize, a: i64, b: i64 },
    /// Move a record to the end of another account's chain.
    Move { from: usize, record: i64, to: usize },
    /// Copy a record to the end of its own chain.
    Duplicate { account: usize, record: i64 },
    /// Cut the last `count` records, moving the head back with them.
    Truncate { account: usize, count: i64 },
    /// Change a record's time column.
    Time {
        account: usize,
        record: i64,
        delta: i64,
    },
    /// Change one byte of the stored checkpoint note.
    Note { at: usize, mask: u8 },
    /// Change one byte of an account's head kept for the checkpoint (its
    /// hash), or its sequence number.
    KeptHead {
        account: usize,
        at: usize,
        mask: u8,
        seq_delta: i64,
    },
}

fn record_in(account: usize) -> std::ops::RangeInclusive<i64> {
    1..=LENGTHS[account]
}

fn tamper() -> impl Strategy<Value = Tamper> {
    let account = 0..ACCOUNTS.len();
    prop_oneof![
        3 => (account.clone(), any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1..=255_u8)
            .prop_map(|(account, record, at, mask)| Tamper::FlipByte {
                account,
                record: pick(account, record),
                at: at.index(usize::MAX),
                mask,
            }),
        1 => (account.clone(), any::<prop::sample::Index>(), 0..32_usize, 1..=255_u8)
            .prop_map(|(account, record, at, mask)| Tamper::FlipHash {
                account,
                record: pick(account, record),
                at,
                mask,
            }),
        1 => (account.clone(), any::<prop::sample::Index>())
            .prop_map(|(account, record)| Tamper::Delete { account, record: pick(account, record) }),
        1 => (account.clone(), any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_filter_map("two different records", |(account, a, b)| {
                let (a, b) = (pick(account, a), pick(account, b));
                (a != b).then_some(Tamper::Swap { account, a, b })
            }),
        1 => (account.clone(), any::<prop::sample::Index>(), account.clone())
            .prop_filter_map("another account", |(from, record, to)| {
                (from != to).then(|| Tamper::Move { from, record: pick(from, record), to })
            }),
        1 => (account.clone(), any::<prop::sample::Index>())
            .prop_map(|(account, record)| Tamper::Duplicate { account, record: pick(account, record) }),
        1 => (account.clone(), 1..=3_i64).prop_map(|(account, count)| Tamper::Truncate { account, count }),
        1 => (account.clone(), any::<prop::sample::Index>(), prop_oneof![-1000..=-1_i64, 1..=1000_i64])
            .prop_map(|(account, record, delta)| Tamper::Time { account, record: pick(account, record), delta }),
        1 => (any::<prop::sample::Index>(), 1..=255_u8)
            .prop_map(|(at, mask)| Tamper::Note { at: at.index(usize::MAX), mask }),
        1 => (account.clone(), 0..32_usize, 0..=255_u8, -3..=3_i64)
            .prop_filter_map("a change", |(account, at, mask, seq_delta)| {
                (mask != 0 || seq_delta != 0).then_some(Tamper::KeptHead { account, at, mask, seq_delta })
            }),
    ]
}

fn pick(account: usize, index: prop::sample::Index) -> i64 {
    let range = record_in(account);
    range.start() + i64::try_from(index.index(usize::try_from(LENGTHS[account]).unwrap())).unwrap()
}

fn blob(conn: &Connection, column: &str, account: &str, seq: i64) -> Vec<u8> {
    conn.query_row(
        &format!("SELECT {column} FROM audit_records WHERE account = ?1 AND seq = ?2"),
        params![account, seq],
        |row| row.get(0),
    )
    .unwrap()
}

/// Applies a tampering; returns the (account, seq) that must be named, when
/// it is that precise.
fn apply(conn: &Connection, tamper: &Tamper) -> Option<(&'static str, u64)> {
    match *tamper {
        Tamper::FlipByte {
            account,
            record,
            at,
            mask,
        } => {
            let name = ACCOUNTS[account];
            let mut bytes = blob(conn, "bytes", name, record);
            let at = at % bytes.len();
            bytes[at] ^= mask;
            conn.execute(
                "UPDATE audit_records SET bytes = ?3 WHERE account = ?1 AND seq = ?2",
                params![name, record, bytes],
            )
            .unwrap();
            Some((name, u64::try_from(record).unwrap()))
        }
        Tamper::FlipHash {
            account,
            record,
            at,
            mask,
        } => {
            let name = ACCOUNTS[account];
            let mut hash = blob(conn, "hash", name, record);
            hash[at] ^= mask;
            conn.execute(
                "UPDATE audit_records SET hash = ?3 WHERE account = ?1 AND seq = ?2",
                params![name, record, hash],
            )
            .unwrap();
            Some((name, u64::try_from(record).unwrap()))
        }
        Tamper::Delete { account, record } => {
            let name = ACCOUNTS[account];
            conn.execute(
                "DELETE FROM audit_records WHERE account = ?1 AND seq = ?2",
                params![name, record],
            )
            .unwrap();
            Some((name, u64::try_from(record).unwrap()))
        }
        Tamper::Swap { account, a, b } => {
            let name = ACCOUNTS[account];
            for (from, to) in [(a, -1), (b, a), (-1, b)] {
                conn.execute(
                    "UPDATE audit_records SET seq = ?3 WHERE account = ?1 AND seq = ?2",
                    params![name, from, to],
                )
                .unwrap();
            }
            Some((name, u64::try_from(a.min(b)).unwrap()))
        }
        Tamper::Move { from, record, to } => {
            conn.execute(
                "UPDATE audit_records SET account = ?3, seq = ?4 WHERE account = ?1 AND seq = ?2",
                params![ACCOUNTS[from], record, ACCOUNTS[to], LENGTHS[to] + 1],
            )
            .unwrap();
            Some((ACCOUNTS[to], u64::try_from(LENGTHS[to] + 1).unwrap()))
        }
        Tamper::Duplicate { account, record } => {
            let name = ACCOUNTS[account];
            conn.execute(
                "INSERT INTO audit_records (account, seq, time_ms, kind, hash, bytes)
                 SELECT account, ?3, time_ms, kind, hash, bytes FROM audit_records
                 WHERE account = ?1 AND seq = ?2",
                params![name, record, LENGTHS[account] + 1],
            )
            .unwrap();
            Some((name, u64::try_from(LENGTHS[account] + 1).unwrap()))
        }
        Tamper::Truncate { account, count } => {
            let name = ACCOUNTS[account];
            let keep = LENGTHS[account] - count;
            conn.execute(
                "DELETE FROM audit_records WHERE account = ?1 AND seq > ?2",
                params![name, keep],
            )
            .unwrap();
            if keep == 0 {
                conn.execute("DELETE FROM audit_heads WHERE account = ?1", [name])
                    .unwrap();
            } else {
                conn.execute(
                    "UPDATE audit_heads SET seq = ?2, hash = (SELECT hash FROM audit_records WHERE account = ?1 AND seq = ?2) WHERE account = ?1",
                    params![name, keep],
                )
                .unwrap();
            }
            Some((name, u64::try_from(keep + 1).unwrap()))
        }
        Tamper::Time {
            account,
            record,
            delta,
        } => {
            let name = ACCOUNTS[account];
            conn.execute(
                "UPDATE audit_records SET time_ms = time_ms + ?3 WHERE account = ?1 AND seq = ?2",
                params![name, record, delta],
            )
            .unwrap();
            Some((name, u64::try_from(record).unwrap()))
        }
        Tamper::Note { at, mask } => {
            let note: String = conn
                .query_row("SELECT note FROM audit_checkpoints", [], |row| row.get(0))
                .unwrap();
            let mut bytes = note.into_bytes();
            let at = at % bytes.len();
            bytes[at] ^= mask;
            // Stored as a blob if it is no longer UTF-8 text.
            conn.execute("UPDATE audit_checkpoints SET note = ?1", [bytes])
                .unwrap();
            None
        }
        Tamper::KeptHead {
            account,
            at,
            mask,
            seq_delta,
        } => {
            let name = ACCOUNTS[account];
            let mut hash: Vec<u8> = conn
                .query_row(
                    "SELECT hash FROM audit_checkpoint_heads WHERE account = ?1",
                    [name],
                    |row| row.get(0),
                )
                .unwrap();
            hash[at] ^= mask;
            conn.execute(
                "UPDATE audit_checkpoint_heads SET hash = ?2, seq = seq + ?3 WHERE account = ?1",
                params![name, hash, seq_delta],
            )
            .unwrap();
            None
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_random_tampering_is_detected(tamper in tamper()) {
        let copy = template().copy();
        let conn = raw(&copy.path);
        let target = apply(&conn, &tamper);
        drop(conn);
        let report = verify(&copy.path);
        prop_assert!(!report.is_ok(), "undetected: {tamper:?}");
        if let Some((account, seq)) = target {
            let failure = report.failure_for(account);
            prop_assert!(failure.is_some(), "{tamper:?} not pinned to `{account}`: {report:#?}");
            prop_assert_eq!(failure.and_then(|f| f.seq).map(|s| s.get()), Some(seq), "{:?}: {:#?}", tamper, report);
        }
    }
}
