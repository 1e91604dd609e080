//! Versioned schema migrations, recorded in `PRAGMA user_version`.
//!
//! Migrations are applied in order, each in its own immediate transaction
//! that re-reads the version first, so two processes opening a new store at
//! once do not apply one twice. A migration, once released, never changes:
//! a change is a new migration at the end of [`MIGRATIONS`].

use rusqlite::Connection;

use super::StoreError;

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The `user_version` the store has after it.
    pub version: i64,
    /// What it creates.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// The audit log's tables (`docs/audit-format.md`, "Storage").
pub const AUDIT_V1: &str = "
CREATE TABLE audit_records (
    id      INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    seq     INTEGER NOT NULL CHECK (seq >= 1),
    time_ms INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    hash    BLOB NOT NULL CHECK (length(hash) = 32),
    bytes   BLOB NOT NULL,
    UNIQUE (account, seq)
);

CREATE TABLE audit_heads (
    account TEXT NOT NULL PRIMARY KEY,
    seq     INTEGER NOT NULL,
    hash    BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_checkpoints (
    id        INTEGER PRIMARY KEY,
    time_ms   INTEGER NOT NULL,
    tree_size INTEGER NOT NULL,
    root      BLOB NOT NULL,
    note      TEXT NOT NULL
);

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
";

/// The heads each checkpoint's Merkle tree commits to (`docs/audit-format.md`,
/// "Storage"): a version 2 checkpoint note names no account, so the store
/// keeps its heads, one row per account, append-only like the log.
pub const AUDIT_CHECKPOINT_HEADS: &str = "
CREATE TABLE audit_checkpoint_heads (
    checkpoint INTEGER NOT NULL REFERENCES audit_checkpoints (id),
    account    TEXT NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    hash       BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (checkpoint, account)
) WITHOUT ROWID;

CREATE TRIGGER audit_checkpoint_heads_no_update BEFORE UPDATE ON audit_checkpoint_heads
BEGIN SELECT RAISE(ABORT, 'checkpoint heads are append-only'); END;
CREATE TRIGGER audit_checkpoint_heads_no_delete BEFORE DELETE ON audit_checkpoint_heads
BEGIN SELECT RAISE(ABORT, 'checkpoint heads are append-only'); END;
";

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit log",
        sql: AUDIT_V1,
    },
    Migration {
        version: 2,
        name: "account state",
        sql: crate::state::SCHEMA_V1,
    },
    Migration {
        version: 3,
        name: "index of live grants",
        sql: crate::state::SCHEMA_V3,
    },
    Migration {
        version: 4,
        name: "checkpoint heads",
        sql: AUDIT_CHECKPOINT_HEADS,
    },
    Migration {
        version: 5,
        name: "module registry and credentials",
        sql: crate::registry::SCHEMA,
    },
    Migration {
        version: 6,
        name: "account state versions",
        sql: crate::state::SCHEMA_V4,
    },
    Migration {
        version: 7,
        name: "webhook subscriptions and outbox",
        sql: crate::outbox::SCHEMA,
    },
];

/// Brings the store up to the newest schema.
pub fn run(conn: &mut Connection, path: &std::path::Path) -> Result<(), StoreError> {
    let current = version(conn)?;
    if current > crate::SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            known: crate::SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |source: rusqlite::Error| StoreError::Migration {
            version: migration.version,
            name: migration.name,
            source: Box::new(source),
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(failed)?;
        let now: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(failed)?;
        if now < migration.version {
            tx.execute_batch(migration.sql).map_err(failed)?;
            tx.pragma_update(None, "user_version", migration.version)
                .map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "migrated store"
        );
    }
    Ok(())
}

/// The store's schema version.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_match_the_constant() {
        let mut expected = 1;
        for migration in MIGRATIONS {
            assert_eq!(migration.version, expected, "{}", migration.name);
            expected += 1;
        }
        assert_eq!(expected - 1, crate::SCHEMA_VERSION);
    }
}
