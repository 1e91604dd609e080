//! The account state the policies see — accounts, environments,
//! integrations, users, settings, grants, invitations, service accounts,
//! vendor entries — in SQLite tables beside the audit log, and the modules
//! that decided, kept by digest so every record stays replayable.
//!
//! Every function here runs on a connection the caller provides: reads on a
//! read connection, changes inside a store write job, in the same
//! transaction as the audit record that explains them.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use chaperone_model as model;
use chaperone_model::{AccountSpec, UserSpec};

/// The SQL that creates the state tables; run by the store's migrations.
pub const SCHEMA_V1: &str = r#"
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    policy      TEXT NOT NULL,
    plan        TEXT NOT NULL,
    seat_limit  INTEGER
) STRICT;
CREATE TABLE environments (
    account     TEXT NOT NULL REFERENCES accounts(id),
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    PRIMARY KEY (account, id)
) STRICT;
CREATE TABLE integrations (
    account     TEXT NOT NULL,
    environment TEXT NOT NULL,
    id          TEXT NOT NULL,
    PRIMARY KEY (account, environment, id),
    FOREIGN KEY (account, environment) REFERENCES environments(account, id) ON DELETE CASCADE
) STRICT;
CREATE TABLE settings (
    account     TEXT NOT NULL REFERENCES accounts(id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (account, key)
) STRICT;
CREATE TABLE users (
    account     TEXT NOT NULL REFERENCES accounts(id),
    id          TEXT NOT NULL,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    access      TEXT NOT NULL,
    rights      TEXT NOT NULL,
    PRIMARY KEY (account, id)
) STRICT;
CREATE TABLE grants (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    account     TEXT NOT NULL REFERENCES accounts(id),
    environment TEXT NOT NULL,
    granted_by  TEXT NOT NULL,
    grantee     TEXT,
    scope       TEXT NOT NULL,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    metadata    TEXT NOT NULL,
    revoked_at  INTEGER,
    expire_recorded INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX grants_by_account ON grants(account, revoked_at);
CREATE TABLE service_accounts (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    account     TEXT NOT NULL REFERENCES accounts(id),
    agent_email TEXT NOT NULL,
    rights      TEXT NOT NULL,
    origin      TEXT NOT NULL,
    description TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    removed_at  INTEGER
) STRICT;
CREATE INDEX service_accounts_by_account ON service_accounts(account, removed_at);
CREATE TABLE invitations (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    account     TEXT NOT NULL REFERENCES accounts(id),
    email       TEXT NOT NULL,
    invited_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT;
CREATE INDEX invitations_by_account ON invitations(account, used_at);
CREATE TABLE entries (
    account     TEXT NOT NULL REFERENCES accounts(id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (account, key)
) STRICT;
CREATE TABLE modules (
    digest      TEXT PRIMARY KEY,
    vendor      TEXT NOT NULL,
    version     TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    first_used  INTEGER NOT NULL
) STRICT;
"#;

/// Replaces the grants index: the old one, on `(account, revoked_at)`,
/// held every grant ever made that was not revoked, so each request's
/// snapshot and expiry check scanned an account's whole history of expired
/// grants. This one holds only grants still live or awaiting their `expire`
/// record, ordered by expiry.
pub const SCHEMA_V3: &str = r#"
DROP INDEX grants_by_account;
CREATE INDEX grants_live ON grants(account, expires_at)
    WHERE revoked_at IS NULL AND expire_recorded = 0;
"#;

/// Gives each account a **state version**: a number that every change of
/// anything its snapshot is made of bumps, and nothing else bumps. A
/// decision is recorded only if its account's version is still the one its
/// snapshot was read at, so that it is made on the state its record
/// follows; a record that changes nothing (say an `act` without effects)
/// leaves the version as it is, and does not invalidate the decisions in
/// flight on the same account.
///
/// Triggers bump it, so that no way of changing the state can forget to:
/// a row of the account inserted, updated or deleted in any table a
/// snapshot reads (environments, integrations, settings, users, grants,
/// service accounts, invitations, vendor entries; a grant's `expire`
/// recorded is an update), or the account's own row changed. The bump
/// sets only `version`, which no trigger watches. What a snapshot holds
/// also depends on the time it is read at (grants expire), but that time
/// is the request's own, the same at every attempt to decide it.
pub const SCHEMA_V4: &str = r#"
ALTER TABLE accounts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER accounts_version AFTER UPDATE OF id, policy, plan, seat_limit ON accounts
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.id; END;
CREATE TRIGGER environments_insert_version AFTER INSERT ON environments
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.account; END;
CREATE TRIGGER environments_update_version AFTER UPDATE ON environments
BEGIN UPDATE accounts SET version = version + 1 WHERE id IN (OLD.account, NEW.account); END;
CREATE TRIGGER environments_delete_version AFTER DELETE ON environments
BEGIN UPDATE accounts SET version = version + 1 WHERE id = OLD.account; END;
CREATE TRIGGER integrations_insert_version AFTER INSERT ON integrations
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.account; END;
CREATE TRIGGER integrations_update_version AFTER UPDATE ON integrations
BEGIN UPDATE accounts SET version = version + 1 WHERE id IN (OLD.account, NEW.account); END;
CREATE TRIGGER integrations_delete_version AFTER DELETE ON integrations
BEGIN UPDATE accounts SET version = version + 1 WHERE id = OLD.account; END;
CREATE TRIGGER settings_insert_version AFTER INSERT ON settings
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.account; END;
CREATE TRIGGER settings_update_version AFTER UPDATE ON settings
BEGIN UPDATE accounts SET version = version + 1 WHERE id IN (OLD.account, NEW.account); END;
CREATE TRIGGER settings_delete_version AFTER DELETE ON settings
BEGIN UPDATE accounts SET version = version + 1 WHERE id = OLD.account; END;
CREATE TRIGGER users_insert_version AFTER INSERT ON users
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.account; END;
CREATE TRIGGER users_update_version AFTER UPDATE ON users
BEGIN UPDATE accounts SET version = version + 1 WHERE id IN (OLD.account, NEW.account); END;
CREATE TRIGGER users_delete_version AFTER DELETE ON users
BEGIN UPDATE accounts SET version = version + 1 WHERE id = OLD.account; END;
CREATE TRIGGER grants_insert_version AFTER INSERT ON grants
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.account; END;
CREATE TRIGGER grants_update_version AFTER UPDATE ON grants
BEGIN UPDATE accounts SET version = version + 1 WHERE id IN (OLD.account, NEW.account); END;
CREATE TRIGGER grants_delete_version AFTER DELETE ON grants
BEGIN UPDATE accounts SET version = version + 1 WHERE id = OLD.account; END;
CREATE TRIGGER service_accounts_insert_version AFTER INSERT ON service_accounts
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.account; END;
CREATE TRIGGER service_accounts_update_version AFTER UPDATE ON service_accounts
BEGIN UPDATE accounts SET version = version + 1 WHERE id IN (OLD.account, NEW.account); END;
CREATE TRIGGER service_accounts_delete_version AFTER DELETE ON service_accounts
BEGIN UPDATE accounts SET version = version + 1 WHERE id = OLD.account; END;
CREATE TRIGGER invitations_insert_version AFTER INSERT ON invitations
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.account; END;
CREATE TRIGGER invitations_update_version AFTER UPDATE ON invitations
BEGIN UPDATE accounts SET version = version + 1 WHERE id IN (OLD.account, NEW.account); END;
CREATE TRIGGER invitations_delete_version AFTER DELETE ON invitations
BEGIN UPDATE accounts SET version = version + 1 WHERE id = OLD.account; END;
CREATE TRIGGER entries_insert_version AFTER INSERT ON entries
BEGIN UPDATE accounts SET version = version + 1 WHERE id = NEW.account; END;
CREATE TRIGGER entries_update_version AFTER UPDATE ON entries
BEGIN UPDATE accounts SET version = version + 1 WHERE id IN (OLD.account, NEW.account); END;
CREATE TRIGGER entries_delete_version AFTER DELETE ON entries
BEGIN UPDATE accounts SET version = version + 1 WHERE id = OLD.account; END;
"#;

/// The grants a snapshot holds: not revoked, not expired (`?1` the
/// account, `?2` now). Its conditions imply `grants_live`'s, so it reads
/// that index and never an account's history.
pub const LIVE_GRANTS_SQL: &str =
    "SELECT id, environment, granted_by, grantee, scope, expires_at, created_at, metadata
     FROM grants WHERE account = ?1 AND revoked_at IS NULL AND expire_recorded = 0
       AND (expires_at IS NULL OR expires_at > ?2)
     ORDER BY seq";

/// One account's grants whose `expire` record is due (`?1` now, `?2` the
/// account); also read through `grants_live`.
pub const DUE_EXPIRIES_SQL: &str = "SELECT account, id, expires_at FROM grants
     WHERE revoked_at IS NULL AND expire_recorded = 0
       AND expires_at IS NOT NULL AND expires_at <= ?1 AND account = ?2
     ORDER BY expires_at, seq";

/// Whether one account has a grant whose `expire` record is due (`?1`
/// now, `?2` the account), as [`DUE_EXPIRIES_SQL`] finds them.
pub const ANY_DUE_EXPIRY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM grants
     WHERE revoked_at IS NULL AND expire_recorded = 0
       AND expires_at IS NOT NULL AND expires_at <= ?1 AND account = ?2)";

/// [`DUE_EXPIRIES_SQL`] for every account (`?1` now), for the sweep.
pub const ALL_DUE_EXPIRIES_SQL: &str = "SELECT account, id, expires_at FROM grants
     WHERE revoked_at IS NULL AND expire_recorded = 0
       AND expires_at IS NOT NULL AND expires_at <= ?1
     ORDER BY account, expires_at, seq";

/// An account's own row.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    /// Its state version ([`SCHEMA_V4`]).
    pub version: i64,
    /// The account id.
    pub id: String,
    /// The vendor id of its policy.
    pub policy: String,
    /// Its plan.
    pub plan: model::Plan,
    /// Its seat limit.
    pub seat_limit: Option<u32>,
}

/// The account's row, if it exists.
pub fn account(conn: &Connection, id: &str) -> rusqlite::Result<Option<AccountRow>> {
    conn.prepare_cached("SELECT policy, plan, seat_limit, version FROM accounts WHERE id = ?1")?
        .query_row(params![id], |row| {
            Ok(AccountRow {
                version: row.get(3)?,
                id: id.to_string(),
                policy: row.get(0)?,
                plan: plan_from(&row.get::<_, String>(1)?),
                seat_limit: row
                    .get::<_, Option<i64>>(2)?
                    .and_then(|n| u32::try_from(n).ok()),
            })
        })
        .optional()
}

/// The snapshot a policy sees of one account at `now`: active grants,
/// active service accounts and unused invitations only.
pub fn snapshot(conn: &Connection, row: &AccountRow, now: i64) -> rusqlite::Result<model::Account> {
    let id = row.id.as_str();
    let mut environments: Vec<model::Environment> = conn
        .prepare_cached("SELECT id, kind FROM environments WHERE account = ?1 ORDER BY id")?
        .query_map(params![id], |r| {
            Ok(model::Environment {
                id: r.get(0)?,
                kind: kind_from(&r.get::<_, String>(1)?),
                integrations: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut integrations = conn.prepare_cached(
        "SELECT environment, id FROM integrations WHERE account = ?1 ORDER BY environment, id",
    )?;
    let rows = integrations.query_map(params![id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (environment, integration) = row?;
        if let Some(env) = environments.iter_mut().find(|e| e.id == environment) {
            env.integrations.push(integration);
        }
    }
    let settings = conn
        .prepare_cached("SELECT key, value FROM settings WHERE account = ?1 ORDER BY key")?
        .query_map(params![id], |r| {
            Ok(model::Setting {
                key: r.get(0)?,
                value: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let users = conn
        .prepare_cached(
            "SELECT id, email, role, access, rights FROM users WHERE account = ?1 ORDER BY id",
        )?
        .query_map(params![id], |r| {
            Ok(model::User {
                id: r.get(0)?,
                email: r.get(1)?,
                role: r.get(2)?,
                access: access_from(&r.get::<_, String>(3)?),
                rights: strings_from(&r.get::<_, String>(4)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    let grants = conn
        .prepare_cached(LIVE_GRANTS_SQL)?
        .query_map(params![id, now], |r| {
            Ok(model::Grant {
                id: r.get(0)?,
                environment: r.get(1)?,
                granted_by: r.get(2)?,
                grantee: r.get(3)?,
                scope: r.get(4)?,
                expires_at: r.get(5)?,
                created_at: r.get(6)?,
                metadata: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let service_accounts = conn
        .prepare_cached(
            "SELECT id, agent_email, rights, origin, description, created_by, created_at
             FROM service_accounts WHERE account = ?1 AND removed_at IS NULL ORDER BY seq",
        )?
        .query_map(params![id], |r| {
            Ok(model::ServiceAccount {
                id: r.get(0)?,
                agent_email: r.get(1)?,
                rights: strings_from(&r.get::<_, String>(2)?),
                origin: if r.get::<_, String>(3)? == "invite" {
                    model::Origin::Invite
                } else {
                    model::Origin::Consent
                },
                description: r.get(4)?,
                created_by: actor_from(&r.get::<_, String>(5)?),
                created_at: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let invitations = conn
        .prepare_cached(
            "SELECT id, email, invited_by, created_at FROM invitations
             WHERE account = ?1 AND used_at IS NULL ORDER BY seq",
        )?
        .query_map(params![id], |r| {
            Ok(model::Invitation {
                id: r.get(0)?,
                email: r.get(1)?,
                invited_by: actor_from(&r.get::<_, String>(2)?),
                created_at: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let entries = conn
        .prepare_cached("SELECT key, value FROM entries WHERE account = ?1 ORDER BY key")?
        .query_map(params![id], |r| {
            Ok(model::Entry {
                key: r.get(0)?,
                value: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(model::Account {
        id: row.id.clone(),
        policy: row.policy.clone(),
        plan: row.plan,
        environments,
        settings,
        seat_limit: row.seat_limit,
        users,
        grants,
        service_accounts,
        invitations,
        entries,
    })
}

/// Which account owns the grant with this id, if any.
pub fn grant_account(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT account FROM grants WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()
}

/// Which account owns the service account with this id, if any.
pub fn service_account_account(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT account FROM service_accounts WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()
}

/// Creates or updates an account; returns what changed, for the `sync`
/// record. Settings are taken only when the account is created. An
/// environment the spec drops loses its integrations (grants on it stay).
pub fn upsert_account(conn: &Connection, spec: &AccountSpec) -> rusqlite::Result<Value> {
    let existed = account(conn, &spec.id)?.is_some();
    conn.prepare_cached(
        "INSERT INTO accounts (id, policy, plan, seat_limit) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET plan = excluded.plan, seat_limit = excluded.seat_limit",
    )?
    .execute(params![
        spec.id,
        spec.policy,
        spec.plan.name(),
        spec.seat_limit
    ])?;
    let kept: Vec<&str> = spec
        .environments
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    let existing: Vec<String> = conn
        .prepare_cached("SELECT id FROM environments WHERE account = ?1")?
        .query_map(params![spec.id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut dropped = Vec::new();
    for env in existing.iter().filter(|e| !kept.contains(&e.as_str())) {
        conn.prepare_cached("DELETE FROM integrations WHERE account = ?1 AND environment = ?2")?
            .execute(params![spec.id, env])?;
        conn.prepare_cached("DELETE FROM environments WHERE account = ?1 AND id = ?2")?
            .execute(params![spec.id, env])?;
        dropped.push(env.clone());
    }
    for (env, kind) in &spec.environments {
        conn.prepare_cached(
            "INSERT INTO environments (account, id, kind) VALUES (?1, ?2, ?3)
             ON CONFLICT (account, id) DO UPDATE SET kind = excluded.kind",
        )?
        .execute(params![spec.id, env, kind.name()])?;
    }
    if !existed {
        for (key, value) in &spec.settings {
            set_setting(conn, &spec.id, key, &value.to_string())?;
        }
    }
    Ok(json!({
        "upsert_account": {
            "id": spec.id,
            "created": !existed,
            "policy": spec.policy,
            "plan": spec.plan.name(),
            "environments": spec.environments.iter()
                .map(|(id, kind)| json!({"id": id, "kind": kind.name()}))
                .collect::<Vec<_>>(),
            "dropped_environments": dropped,
            "seat_limit": spec.seat_limit,
            "settings": if existed { Value::Null } else { json!(spec.settings) },
        }
    }))
}

/// Creates or replaces a user.
pub fn upsert_user(conn: &Connection, account: &str, user: &UserSpec) -> rusqlite::Result<Value> {
    let access = json!(user.access).to_string();
    let rights = json!(user.rights).to_string();
    conn.prepare_cached(
        "INSERT INTO users (account, id, email, role, access, rights) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (account, id) DO UPDATE SET email = excluded.email, role = excluded.role,
             access = excluded.access, rights = excluded.rights",
    )?
    .execute(params![account, user.id, user.email, user.role, access, rights])?;
    Ok(json!({"upsert_user": {
        "id": user.id, "email": user.email, "role": user.role,
        "access": user.access, "rights": user.rights,
    }}))
}

/// Removes a user; `None` when there was none.
pub fn remove_user(conn: &Connection, account: &str, id: &str) -> rusqlite::Result<Option<Value>> {
    let removed = conn
        .prepare_cached("DELETE FROM users WHERE account = ?1 AND id = ?2")?
        .execute(params![account, id])?;
    Ok((removed > 0).then(|| json!({"remove_user": {"id": id}})))
}

/// Adds an integration to an environment; `None` when the environment does
/// not exist.
pub fn add_integration(
    conn: &Connection,
    account: &str,
    environment: &str,
    id: &str,
) -> rusqlite::Result<Option<Value>> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM environments WHERE account = ?1 AND id = ?2")?
        .query_row(params![account, environment], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        return Ok(None);
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO integrations (account, environment, id) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![account, environment, id])?;
    Ok(Some(
        json!({"add_integration": {"environment": environment, "id": id}}),
    ))
}

/// The user's email, for the audit record's actor.
pub fn user_email(conn: &Connection, account: &str, id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT email FROM users WHERE account = ?1 AND id = ?2")?
        .query_row(params![account, id], |r| r.get(0))
        .optional()
}

/// Applies one effect of an allowed decision and returns the id of the
/// object it created, if any. The runtime has already checked that every
/// object it names is in the account's snapshot.
pub fn apply(
    conn: &Connection,
    account: &str,
    actor: &model::Actor,
    now: i64,
    effect: &model::Effect,
) -> rusqlite::Result<Option<String>> {
    let actor_json = actor_to(actor);
    let created = match effect {
        model::Effect::CreateGrant(g) => {
            let granted_by = match actor {
                model::Actor::User(id) | model::Actor::Agent(id) => id.clone(),
            };
            Some(conn.prepare_cached(
                "INSERT INTO grants (id, account, environment, granted_by, grantee, scope, expires_at, created_at, metadata)
                 VALUES ('grant-' || (SELECT COALESCE(MAX(seq), 0) + 1 FROM grants), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 RETURNING id",
            )?
            .query_row(
                params![account, g.environment, granted_by, g.grantee, g.scope, g.expires_at, now, g.metadata],
                |r| r.get::<_, String>(0),
            )?)
        }
        model::Effect::UpdateGrant(u) => {
            conn.prepare_cached(
                "UPDATE grants SET scope = ?3, expires_at = ?4, metadata = ?5 WHERE account = ?1 AND id = ?2",
            )?
            .execute(params![account, u.id, u.scope, u.expires_at, u.metadata])?;
            None
        }
        model::Effect::RevokeGrant(id) => {
            conn.prepare_cached(
                "UPDATE grants SET revoked_at = ?3 WHERE account = ?1 AND id = ?2",
            )?
            .execute(params![account, id, now])?;
            None
        }
        model::Effect::CreateServiceAccount(s) => {
            let origin = s.origin.name();
            Some(conn.prepare_cached(
                "INSERT INTO service_accounts (id, account, agent_email, rights, origin, description, created_by, created_at)
                 VALUES ('sa-' || (SELECT COALESCE(MAX(seq), 0) + 1 FROM service_accounts), ?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 RETURNING id",
            )?
            .query_row(
                params![account, s.agent_email, json!(s.rights).to_string(), origin, s.description, actor_json, now],
                |r| r.get::<_, String>(0),
            )?)
        }
        model::Effect::SetServiceAccountRights(u) => {
            conn.prepare_cached(
                "UPDATE service_accounts SET rights = ?3 WHERE account = ?1 AND id = ?2",
            )?
            .execute(params![account, u.id, json!(u.rights).to_string()])?;
            None
        }
        model::Effect::RemoveServiceAccount(id) => {
            conn.prepare_cached(
                "UPDATE service_accounts SET removed_at = ?3 WHERE account = ?1 AND id = ?2",
            )?
            .execute(params![account, id, now])?;
            None
        }
        model::Effect::SetSetting(s) => {
            set_setting(conn, account, &s.key, &s.value)?;
            None
        }
        model::Effect::CreateInvitation(email) => Some(
            conn.prepare_cached(
                "INSERT INTO invitations (id, account, email, invited_by, created_at)
             VALUES ('inv-' || (SELECT COALESCE(MAX(seq), 0) + 1 FROM invitations), ?1, ?2, ?3, ?4)
             RETURNING id",
            )?
            .query_row(params![account, email, actor_json, now], |r| {
                r.get::<_, String>(0)
            })?,
        ),
        model::Effect::UseInvitation(id) => {
            conn.prepare_cached(
                "UPDATE invitations SET used_at = ?3 WHERE account = ?1 AND id = ?2",
            )?
            .execute(params![account, id, now])?;
            None
        }
        model::Effect::PutEntry(e) => {
            conn.prepare_cached(
                "INSERT INTO entries (account, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![account, e.key, e.value])?;
            None
        }
        model::Effect::DeleteEntry(key) => {
            conn.prepare_cached("DELETE FROM entries WHERE account = ?1 AND key = ?2")?
                .execute(params![account, key])?;
            None
        }
    };
    Ok(created)
}

/// A grant whose expiry has passed and has no `expire` record yet.
#[derive(Debug, Clone, PartialEq)]
pub struct DueExpiry {
    /// The account.
    pub account: String,
    /// The grant id.
    pub grant: String,
    /// When it expired.
    pub expires_at: i64,
}

/// Grants (of one account, or all) that expired at or before `now`, were
/// not revoked, and have no `expire` record yet; oldest expiry first.
pub fn due_expiries(
    conn: &Connection,
    account: Option<&str>,
    now: i64,
) -> rusqlite::Result<Vec<DueExpiry>> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(DueExpiry {
            account: r.get(0)?,
            grant: r.get(1)?,
            expires_at: r.get(2)?,
        })
    };
    match account {
        Some(account) => conn
            .prepare_cached(DUE_EXPIRIES_SQL)?
            .query_map(params![now, account], map)?
            .collect(),
        None => conn
            .prepare_cached(ALL_DUE_EXPIRIES_SQL)?
            .query_map(params![now], map)?
            .collect(),
    }
}

/// Whether `account` has a grant whose `expire` record is due at `now`.
pub fn expiry_due(conn: &Connection, account: &str, now: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(ANY_DUE_EXPIRY_SQL)?
        .query_row(params![now, account], |r| r.get(0))
}

/// The account's state version ([`SCHEMA_V4`]), if the account exists.
pub fn version(conn: &Connection, account: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT version FROM accounts WHERE id = ?1")?
        .query_row(params![account], |r| r.get(0))
        .optional()
}

/// Marks a grant's expiry as recorded.
pub fn mark_expire_recorded(conn: &Connection, grant: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE grants SET expire_recorded = 1 WHERE id = ?1")?
        .execute(params![grant])?;
    Ok(())
}

/// Keeps a module's bytes by digest (once), so its records stay replayable.
pub fn keep_module(
    conn: &Connection,
    digest: &str,
    vendor: &str,
    version: &str,
    bytes: &[u8],
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO modules (digest, vendor, version, bytes, first_used) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![digest, vendor, version, bytes, now])?;
    Ok(())
}

/// Whether a module with this digest is kept.
pub fn has_module(conn: &Connection, digest: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM modules WHERE digest = ?1")?
        .query_row(params![digest], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The bytes of the module with this digest.
pub fn module_bytes(conn: &Connection, digest: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT bytes FROM modules WHERE digest = ?1")?
        .query_row(params![digest], |r| r.get(0))
        .optional()
}

fn set_setting(conn: &Connection, account: &str, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO settings (account, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (account, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![account, key, value])?;
    Ok(())
}

fn plan_from(text: &str) -> model::Plan {
    model::Plan::from_name(text).unwrap_or(model::Plan::Free)
}

fn kind_from(text: &str) -> model::EnvironmentKind {
    model::EnvironmentKind::from_name(text).unwrap_or(model::EnvironmentKind::Sandbox)
}

fn access_from(text: &str) -> Vec<model::AccessEntry> {
    serde_json::from_str::<std::collections::BTreeMap<String, String>>(text)
        .unwrap_or_default()
        .into_iter()
        .map(|(integration, level)| model::AccessEntry { integration, level })
        .collect()
}

fn strings_from(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// An actor as stored: `{"user": id}` or `{"agent": email}`.
fn actor_to(actor: &model::Actor) -> String {
    match actor {
        model::Actor::User(id) => json!({ "user": id }),
        model::Actor::Agent(email) => json!({ "agent": email }),
    }
    .to_string()
}

fn actor_from(text: &str) -> model::Actor {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match (
        value.get("user").and_then(Value::as_str),
        value.get("agent").and_then(Value::as_str),
    ) {
        (Some(id), _) => model::Actor::User(id.to_string()),
        (None, Some(email)) => model::Actor::Agent(email.to_string()),
        (None, None) => model::Actor::User(String::new()),
    }
}
