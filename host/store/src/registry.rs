//! The module registry and the API's credentials: which module decides each
//! vendor's accounts, and who may call the API.
//!
//! Both are host events, not account events, so they are recorded in a
//! chain of their own, [`REGISTRY_CHAIN`] (`@registry`), which checkpoints
//! cover like every other chain: installing a module, activating one,
//! rolling back, creating and revoking a credential each append one record
//! there, in the same transaction as the change.
//!
//! - A module is installed for a vendor id by digest; its bytes are kept in
//!   the `modules` table (with every module that ever decided), so every
//!   digest ever installed stays replayable. The vendor's first module is
//!   active at once; a later one when activated. Installs and activations
//!   are append-only tables; the active module of a vendor is its latest
//!   activation.
//! - A credential is an id, a kind (admin, vendor of one vendor id, customer
//!   of one account), a label, and the BLAKE3 hash of its secret; the
//!   secret itself is never stored. Revoking sets `revoked_at` once.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use chaperone_log::{Appended, PolicyRef, RecordDraft};

use crate::storage::KeptModule;
use crate::{Store, StoreError, WriteError, WriteTx, state};

/// The chain that records registry and credential events. Account ids that
/// start with `@` are reserved for the host's own chains.
pub const REGISTRY_CHAIN: &str = "@registry";

/// Whether `id` is reserved for the host's own chains (it starts with `@`).
pub fn reserved_account(id: &str) -> bool {
    id.starts_with('@')
}

/// The registry's and the credentials' tables.
pub const SCHEMA: &str = r#"
CREATE TABLE policy_installs (
    vendor       TEXT NOT NULL,
    digest       TEXT NOT NULL REFERENCES modules (digest),
    installed_at INTEGER NOT NULL,
    PRIMARY KEY (vendor, digest)
) STRICT, WITHOUT ROWID;
CREATE TABLE policy_activations (
    id      INTEGER PRIMARY KEY,
    vendor  TEXT NOT NULL,
    digest  TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    how     TEXT NOT NULL CHECK (how IN ('install', 'activate', 'rollback')),
    FOREIGN KEY (vendor, digest) REFERENCES policy_installs (vendor, digest)
) STRICT;
CREATE INDEX policy_activations_by_vendor ON policy_activations (vendor, id);
CREATE TRIGGER policy_installs_no_update BEFORE UPDATE ON policy_installs
BEGIN SELECT RAISE(ABORT, 'module installs are append-only'); END;
CREATE TRIGGER policy_installs_no_delete BEFORE DELETE ON policy_installs
BEGIN SELECT RAISE(ABORT, 'module installs are append-only'); END;
CREATE TRIGGER policy_activations_no_update BEFORE UPDATE ON policy_activations
BEGIN SELECT RAISE(ABORT, 'module activations are append-only'); END;
CREATE TRIGGER policy_activations_no_delete BEFORE DELETE ON policy_activations
BEGIN SELECT RAISE(ABORT, 'module activations are append-only'); END;
CREATE TRIGGER modules_no_update BEFORE UPDATE ON modules
BEGIN SELECT RAISE(ABORT, 'kept modules are append-only'); END;
CREATE TRIGGER modules_no_delete BEFORE DELETE ON modules
BEGIN SELECT RAISE(ABORT, 'kept modules are append-only'); END;

CREATE TABLE credentials (
    id         TEXT NOT NULL PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('admin', 'vendor', 'customer')),
    subject    TEXT,
    label      TEXT NOT NULL,
    hash       BLOB NOT NULL CHECK (length(hash) = 32),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    CHECK ((kind = 'admin') = (subject IS NULL))
) STRICT, WITHOUT ROWID;
CREATE TRIGGER credentials_no_delete BEFORE DELETE ON credentials
BEGIN SELECT RAISE(ABORT, 'credentials are kept; revoke them instead'); END;
CREATE TRIGGER credentials_revoke_only BEFORE UPDATE ON credentials
WHEN OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.kind IS NOT OLD.kind OR NEW.subject IS NOT OLD.subject
  OR NEW.label IS NOT OLD.label OR NEW.hash IS NOT OLD.hash OR NEW.created_at IS NOT OLD.created_at
BEGIN SELECT RAISE(ABORT, 'a credential only changes by being revoked, once'); END;
"#;

/// Who a credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", content = "subject", rename_all = "lowercase")]
pub enum Scope {
    /// The operator: modules, credentials, checkpoints.
    Admin,
    /// A vendor's backend: every operation on the accounts whose policy is
    /// this vendor id.
    Vendor(String),
    /// A customer: one account's state and log, and revoking support access.
    Customer(String),
}

impl Scope {
    fn kind(&self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Vendor(_) => "vendor",
            Scope::Customer(_) => "customer",
        }
    }

    fn subject(&self) -> Option<&str> {
        match self {
            Scope::Admin => None,
            Scope::Vendor(s) | Scope::Customer(s) => Some(s),
        }
    }

    fn from_row(kind: &str, subject: Option<String>) -> Option<Scope> {
        match (kind, subject) {
            ("admin", None) => Some(Scope::Admin),
            ("vendor", Some(s)) => Some(Scope::Vendor(s)),
            ("customer", Some(s)) => Some(Scope::Customer(s)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Vendor(v) => write!(f, "vendor `{v}`"),
            Scope::Customer(a) => write!(f, "customer of account `{a}`"),
        }
    }
}

/// A credential as stored (without its secret, which is never stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Credential {
    /// Its public id (the part of the token before the secret).
    pub id: String,
    /// Whom it speaks for.
    pub scope: Scope,
    /// A label for people.
    pub label: String,
    /// When it was created (ms).
    pub created_at: i64,
    /// When it was revoked (ms), if it was.
    pub revoked_at: Option<i64>,
    /// BLAKE3 of its secret.
    #[serde(skip)]
    pub hash: [u8; 32],
}

/// A module installed for a vendor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstalledModule {
    /// The vendor id it is installed for.
    pub vendor: String,
    /// Its BLAKE3 digest.
    pub digest: String,
    /// The version its `describe()` gives.
    pub version: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was installed (ms).
    pub installed_at: i64,
    /// Whether it decides the vendor's accounts now.
    pub active: bool,
}

/// An activation: which digest became a vendor's active module, when, how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Activation {
    /// The vendor id.
    pub vendor: String,
    /// The digest activated.
    pub digest: String,
    /// The digest active before, if any.
    pub previous: Option<String>,
    /// When (ms).
    pub time_ms: i64,
    /// `install`, `activate` or `rollback`.
    pub how: String,
    /// The seq of its record in [`REGISTRY_CHAIN`].
    pub seq: u64,
}

/// What installing did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Installed {
    /// The module, as installed now.
    pub module: InstalledModule,
    /// The seq of the install's record in [`REGISTRY_CHAIN`].
    pub seq: u64,
}

/// Why a registry or credential change was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The digest is already installed for this vendor.
    #[error("module {digest} is already installed for vendor `{vendor}`")]
    AlreadyInstalled {
        /// The vendor id.
        vendor: String,
        /// The digest.
        digest: String,
    },
    /// The digest is not installed for this vendor.
    #[error("no module {digest} is installed for vendor `{vendor}` (see `chaperone policy list`)")]
    NotInstalled {
        /// The vendor id.
        vendor: String,
        /// The digest.
        digest: String,
    },
    /// The digest is the vendor's active module already.
    #[error("module {digest} is already active for vendor `{vendor}`")]
    AlreadyActive {
        /// The vendor id.
        vendor: String,
        /// The digest.
        digest: String,
    },
    /// Nothing was active before the vendor's active module.
    #[error("vendor `{0}` has no earlier module to roll back to")]
    NothingToRollBack(String),
    /// No module is installed for the vendor.
    #[error("no module is installed for vendor `{0}`")]
    NoModules(String),
    /// No credential has this id.
    #[error("no credential `{0}`")]
    UnknownCredential(String),
    /// The credential was revoked already.
    #[error("credential `{0}` is revoked already")]
    AlreadyRevoked(String),
    /// A credential with this id exists.
    #[error("a credential `{0}` exists already")]
    DuplicateCredential(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for RegistryError {
    fn from(e: rusqlite::Error) -> Self {
        RegistryError::Store(e.into())
    }
}

impl From<WriteError<RegistryError>> for RegistryError {
    fn from(e: WriteError<RegistryError>) -> Self {
        match e {
            WriteError::Job(e) => e,
            WriteError::Store(e) => RegistryError::Store(e),
            other => RegistryError::Store(StoreError::Aborted(other.to_string())),
        }
    }
}

fn switch(
    tx: &mut WriteTx<'_>,
    at: i64,
    vendor: &str,
    digest: &str,
    previous: Option<String>,
    how: &str,
    by: &str,
) -> Result<Activation, RegistryError> {
    insert_activation(tx.conn(), vendor, digest, at, how)?;
    let kept = kept_module(tx.conn(), digest)?;
    let appended = append(
        tx,
        at,
        &format!("policy-{how}"),
        json!({"vendor": vendor, "digest": digest, "by": by}),
        vec![json!({"activate_module": {
            "vendor": vendor, "digest": digest, "previous": previous,
        }})],
        kept.as_ref(),
    )?;
    module_activated(tx, vendor, appended.seq.get(), at)?;
    Ok(Activation {
        vendor: vendor.to_owned(),
        digest: digest.to_owned(),
        previous,
        time_ms: at,
        how: how.to_owned(),
        seq: appended.seq.get(),
    })
}

/// The deliveries of a module activation recorded at `seq` of the
/// registry chain.
fn module_activated(
    tx: &mut WriteTx<'_>,
    vendor: &str,
    seq: u64,
    at: i64,
) -> Result<(), StoreError> {
    let subscriptions = tx.heads.subscriptions(tx.conn)?;
    crate::outbox::enqueue_module_activated(tx.conn, subscriptions, vendor, REGISTRY_CHAIN, seq, at)
}

fn insert_activation(
    conn: &Connection,
    vendor: &str,
    digest: &str,
    at: i64,
    how: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO policy_activations (vendor, digest, time_ms, how) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![vendor, digest, at, how])?;
    Ok(())
}

fn append(
    tx: &mut WriteTx<'_>,
    at: i64,
    kind: &str,
    request: Value,
    effects: Vec<Value>,
    module: Option<&KeptModule>,
) -> Result<Appended, StoreError> {
    tx.append(&RecordDraft {
        account: REGISTRY_CHAIN.to_owned(),
        time_ms: at,
        kind: kind.to_owned(),
        actor: None,
        request,
        decision: None,
        effects: Value::Array(effects),
        policy: module.map(|m| PolicyRef {
            digest: m.digest.clone(),
            vendor: m.vendor.clone(),
            version: m.version.clone(),
        }),
        input: None,
    })
}

fn installed(conn: &Connection, vendor: &str, digest: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT installed_at FROM policy_installs WHERE vendor = ?1 AND digest = ?2",
    )?
    .query_row(params![vendor, digest], |r| r.get(0))
    .optional()
}

fn active(conn: &Connection, vendor: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT digest FROM policy_activations WHERE vendor = ?1 ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![vendor], |r| r.get(0))
    .optional()
}

fn kept_module(conn: &Connection, digest: &str) -> rusqlite::Result<Option<KeptModule>> {
    conn.prepare_cached("SELECT vendor, version, bytes FROM modules WHERE digest = ?1")?
        .query_row(params![digest], |r| {
            let bytes: Vec<u8> = r.get(2)?;
            Ok(KeptModule {
                digest: digest.to_owned(),
                vendor: r.get(0)?,
                version: r.get(1)?,
                bytes: bytes.into(),
            })
        })
        .optional()
}

fn actives(conn: &Connection) -> rusqlite::Result<BTreeMap<String, String>> {
    conn.prepare_cached(
        "SELECT a.vendor, a.digest FROM policy_activations a
         WHERE a.id = (SELECT max(b.id) FROM policy_activations b WHERE b.vendor = a.vendor)",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

fn credential_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Credential>> {
    let kind: String = r.get(1)?;
    let subject: Option<String> = r.get(2)?;
    let hash: Vec<u8> = r.get(4)?;
    let (Some(scope), Ok(hash)) = (Scope::from_row(&kind, subject), <[u8; 32]>::try_from(hash))
    else {
        return Ok(None);
    };
    Ok(Some(Credential {
        id: r.get(0)?,
        scope,
        label: r.get(3)?,
        created_at: r.get(5)?,
        revoked_at: r.get(6)?,
        hash,
    }))
}

/// The registry and the credentials, as the service uses them: part of
/// every [`Storage`](crate::Storage).
pub trait Registry {
    /// Installs `module` for `vendor` at `at`, recording it in
    /// [`REGISTRY_CHAIN`]; it becomes active if `activate` or if the vendor had
    /// no module. `by` names who asked (a credential id, or `cli`).
    fn install_module(
        &self,
        at: i64,
        vendor: &str,
        module: KeptModule,
        activate: bool,
        by: &str,
    ) -> Result<Installed, RegistryError>;
    /// Makes `digest` (installed for `vendor`) the vendor's active module.
    fn activate_module(
        &self,
        at: i64,
        vendor: &str,
        digest: &str,
        by: &str,
    ) -> Result<Activation, RegistryError>;
    /// Makes the module that was active before the vendor's current one active
    /// again.
    fn rollback_module(&self, at: i64, vendor: &str, by: &str)
    -> Result<Activation, RegistryError>;
    /// Every module installed (for one vendor, or all), oldest first.
    fn installed_modules(&self, vendor: Option<&str>) -> Result<Vec<InstalledModule>, StoreError>;
    /// The active module of each vendor that has one.
    fn active_modules(&self) -> Result<BTreeMap<String, String>, StoreError>;
    /// How many registry and credential events were recorded: it changes
    /// whenever the registry or the credentials do (the head of
    /// [`REGISTRY_CHAIN`]).
    fn registry_version(&self) -> Result<u64, StoreError>;
    /// Stores a new credential, recording its creation (never its secret or
    /// hash) in [`REGISTRY_CHAIN`]. Returns the record's seq.
    fn create_credential(&self, credential: Credential, by: &str) -> Result<u64, RegistryError>;
    /// Revokes credential `id` at `at`, recording it in [`REGISTRY_CHAIN`].
    fn revoke_credential(&self, at: i64, id: &str, by: &str) -> Result<u64, RegistryError>;
    /// Every credential, oldest first.
    fn credentials(&self) -> Result<Vec<Credential>, StoreError>;
    /// The credential with this id.
    fn credential(&self, id: &str) -> Result<Option<Credential>, StoreError>;
    /// The vendor id (policy) of an account, `None` if there is no such account.
    fn account_vendor(&self, account: &str) -> Result<Option<String>, StoreError>;
    /// Records, in an existing account's chain, that a credential was refused
    /// something on it (`request` says what and why). `Ok(None)`: no such
    /// account, nothing recorded.
    fn record_refusal(
        &self,
        at: i64,
        account: &str,
        request: Value,
    ) -> Result<Option<u64>, StoreError>;
}

impl Registry for Store {
    fn install_module(
        &self,
        at: i64,
        vendor: &str,
        module: KeptModule,
        activate: bool,
        by: &str,
    ) -> Result<Installed, RegistryError> {
        let vendor = vendor.to_owned();
        let by = by.to_owned();
        Ok(self.write(move |tx| {
            let conn = tx.conn();
            if installed(conn, &vendor, &module.digest)?.is_some() {
                return Err(RegistryError::AlreadyInstalled {
                    vendor,
                    digest: module.digest.clone(),
                });
            }
            if !state::has_module(conn, &module.digest)? {
                state::keep_module(
                    conn,
                    &module.digest,
                    &module.vendor,
                    &module.version,
                    &module.bytes,
                    at,
                )?;
            }
            conn.prepare_cached(
                "INSERT INTO policy_installs (vendor, digest, installed_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![vendor, module.digest, at])?;
            let previous = active(conn, &vendor)?;
            let activate = activate || previous.is_none();
            if activate {
                insert_activation(conn, &vendor, &module.digest, at, "install")?;
            }
            let mut effects = vec![json!({"install_module": {
                "vendor": vendor, "digest": module.digest, "size": module.bytes.len(),
            }})];
            if activate {
                effects.push(json!({"activate_module": {
                    "vendor": vendor, "digest": module.digest, "previous": previous,
                }}));
            }
            let appended = append(
                tx,
                at,
                "policy-install",
                json!({"vendor": vendor, "digest": module.digest, "activate": activate, "by": by}),
                effects,
                Some(&module),
            )?;
            if activate {
                module_activated(tx, &vendor, appended.seq.get(), at)?;
            }
            Ok(Installed {
                module: InstalledModule {
                    vendor,
                    digest: module.digest.clone(),
                    version: module.version.clone(),
                    size: module.bytes.len() as u64,
                    installed_at: at,
                    active: activate,
                },
                seq: appended.seq.get(),
            })
        })?)
    }

    fn activate_module(
        &self,
        at: i64,
        vendor: &str,
        digest: &str,
        by: &str,
    ) -> Result<Activation, RegistryError> {
        let (vendor, digest, by) = (vendor.to_owned(), digest.to_owned(), by.to_owned());
        Ok(self.write(move |tx| {
            if installed(tx.conn(), &vendor, &digest)?.is_none() {
                return Err(RegistryError::NotInstalled { vendor, digest });
            }
            let previous = active(tx.conn(), &vendor)?;
            if previous.as_deref() == Some(digest.as_str()) {
                return Err(RegistryError::AlreadyActive { vendor, digest });
            }
            switch(tx, at, &vendor, &digest, previous, "activate", &by)
        })?)
    }

    fn rollback_module(
        &self,
        at: i64,
        vendor: &str,
        by: &str,
    ) -> Result<Activation, RegistryError> {
        let (vendor, by) = (vendor.to_owned(), by.to_owned());
        Ok(self.write(move |tx| {
            let history: Vec<String> = tx
                .conn()
                .prepare_cached(
                    "SELECT digest FROM policy_activations WHERE vendor = ?1 ORDER BY id DESC",
                )?
                .query_map(params![vendor], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let Some(current) = history.first().cloned() else {
                return Err(RegistryError::NoModules(vendor));
            };
            let Some(earlier) = history.iter().find(|d| **d != current).cloned() else {
                return Err(RegistryError::NothingToRollBack(vendor));
            };
            switch(tx, at, &vendor, &earlier, Some(current), "rollback", &by)
        })?)
    }

    fn installed_modules(&self, vendor: Option<&str>) -> Result<Vec<InstalledModule>, StoreError> {
        self.read(|conn| {
            let actives = actives(conn)?;
            let mut statement = conn.prepare_cached(
                "SELECT i.vendor, i.digest, m.version, length(m.bytes), i.installed_at
                 FROM policy_installs i JOIN modules m ON m.digest = i.digest
                 WHERE ?1 IS NULL OR i.vendor = ?1
                 ORDER BY i.installed_at, i.vendor, i.digest",
            )?;
            let rows = statement.query_map(params![vendor], |r| {
                let vendor: String = r.get(0)?;
                let digest: String = r.get(1)?;
                let active = actives.get(&vendor) == Some(&digest);
                Ok(InstalledModule {
                    vendor,
                    digest,
                    version: r.get(2)?,
                    size: r.get::<_, i64>(3)?.try_into().unwrap_or(0),
                    installed_at: r.get(4)?,
                    active,
                })
            })?;
            rows.collect()
        })
    }

    fn active_modules(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.read(actives)
    }

    fn registry_version(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT seq FROM audit_heads WHERE account = ?1")?
                .query_row(params![REGISTRY_CHAIN], |r| r.get::<_, i64>(0))
                .optional()
                .map(|seq| seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
        })
    }

    fn create_credential(&self, credential: Credential, by: &str) -> Result<u64, RegistryError> {
        let by = by.to_owned();
        Ok(self.write(move |tx| {
            let exists = tx
                .conn()
                .prepare_cached("SELECT 1 FROM credentials WHERE id = ?1")?
                .query_row(params![credential.id], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Err(RegistryError::DuplicateCredential(credential.id));
            }
            tx.conn()
                .prepare_cached(
                    "INSERT INTO credentials (id, kind, subject, label, hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    credential.id,
                    credential.scope.kind(),
                    credential.scope.subject(),
                    credential.label,
                    credential.hash.as_slice(),
                    credential.created_at,
                ])?;
            let appended = append(
                tx,
                credential.created_at,
                "credential-create",
                json!({
                    "id": credential.id, "kind": credential.scope.kind(),
                    "subject": credential.scope.subject(), "label": credential.label, "by": by,
                }),
                vec![json!({"create_credential": {"id": credential.id}})],
                None,
            )?;
            Ok(appended.seq.get())
        })?)
    }

    fn revoke_credential(&self, at: i64, id: &str, by: &str) -> Result<u64, RegistryError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        Ok(self.write(move |tx| {
            let revoked: Option<Option<i64>> = tx
                .conn()
                .prepare_cached("SELECT revoked_at FROM credentials WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            match revoked {
                None => return Err(RegistryError::UnknownCredential(id)),
                Some(Some(_)) => return Err(RegistryError::AlreadyRevoked(id)),
                Some(None) => {}
            }
            tx.conn()
                .prepare_cached("UPDATE credentials SET revoked_at = ?2 WHERE id = ?1")?
                .execute(params![id, at])?;
            let appended = append(
                tx,
                at,
                "credential-revoke",
                json!({"id": id, "by": by}),
                vec![json!({"revoke_credential": {"id": id}})],
                None,
            )?;
            Ok(appended.seq.get())
        })?)
    }

    fn credentials(&self) -> Result<Vec<Credential>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, kind, subject, label, hash, created_at, revoked_at
                 FROM credentials ORDER BY created_at, id",
            )?
            .query_map([], credential_row)?
            .filter_map(|row| row.transpose())
            .collect()
        })
    }

    fn credential(&self, id: &str) -> Result<Option<Credential>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, kind, subject, label, hash, created_at, revoked_at
                     FROM credentials WHERE id = ?1",
                )?
                .query_row(params![id], credential_row)
                .optional()?
                .flatten())
        })
    }

    fn account_vendor(&self, account: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT policy FROM accounts WHERE id = ?1")?
                .query_row(params![account], |r| r.get(0))
                .optional()
        })
    }

    fn record_refusal(
        &self,
        at: i64,
        account: &str,
        request: Value,
    ) -> Result<Option<u64>, StoreError> {
        let account = account.to_owned();
        let written = self.write(move |tx| {
            let exists = tx
                .conn()
                .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                .query_row(params![account], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(None);
            }
            let appended = tx.append(&RecordDraft {
                account,
                time_ms: at,
                kind: "refused".into(),
                actor: None,
                request,
                decision: None,
                effects: json!([]),
                policy: None,
                input: None,
            })?;
            Ok::<_, StoreError>(Some(appended.seq.get()))
        });
        match written {
            Ok(seq) => Ok(seq),
            Err(WriteError::Job(e) | WriteError::Store(e)) => Err(e),
            Err(other) => Err(StoreError::Aborted(other.to_string())),
        }
    }
}
