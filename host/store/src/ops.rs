//! The SQLite store's implementation of [`Storage`]: the SQL behind each
//! operation of the service, on a read connection or as one write job.

use std::collections::BTreeMap;
use std::io::Write;

use chaperone_log::keys::Verifier;
use chaperone_log::verify::Report;
use chaperone_log::{Appended, ChainHead, Checkpoint, RecordDraft, StoredRecord};
use chaperone_model::StateStep;
use serde_json::{Value, json};

use crate::export::ExportSummary;
use crate::state;
use crate::storage::{
    AccountRead, Committed, DecisionCommit, NamedObject, StateVersion, Storage, SyncError,
    WriteFailure, recorded_effect,
};
use crate::verify::VerifyOptions;
use crate::{Store, StoreError, WriteError, WriteTx};

impl Storage for Store {
    fn registry(&self) -> &dyn crate::registry::Registry {
        self
    }

    fn outbox(&self) -> &dyn crate::outbox::Outbox {
        self
    }

    fn signer(&self) -> Option<std::sync::Arc<chaperone_log::keys::Signer>> {
        Store::signer(self)
    }

    fn read_account(
        &self,
        account: &str,
        at: i64,
        named: Option<&NamedObject>,
    ) -> Result<Option<AccountRead>, StoreError> {
        self.with_reader(|conn| {
            crate::read::in_snapshot(conn, || {
                let Some(row) = state::account(conn, account)? else {
                    return Ok(None);
                };
                let expiry_due = state::expiry_due(conn, account, at)?;
                let named_owner = match named {
                    Some(NamedObject::Grant(id)) => state::grant_account(conn, id)?,
                    Some(NamedObject::ServiceAccount(id)) => {
                        state::service_account_account(conn, id)?
                    }
                    None => None,
                };
                let snapshot = state::snapshot(conn, &row, at)?;
                Ok(Some(AccountRead {
                    snapshot,
                    version: StateVersion::new(row.version),
                    expiry_due,
                    named_owner,
                }))
            })
        })
    }

    fn sync(&self, at: i64, step: &StateStep, request: Value) -> Result<Appended, SyncError> {
        let step = step.clone();
        let result = self.write(move |tx: &mut WriteTx<'_>| -> Result<Appended, SyncError> {
            let account = step.account().to_owned();
            let conn = tx.conn();
            let existing = state::account(conn, &account).map_err(StoreError::from)?;
            let change = match &step {
                StateStep::Account(spec) => {
                    if let Some(existing) = existing.as_ref().filter(|e| e.policy != spec.policy) {
                        return Err(SyncError::PolicyChange {
                            account,
                            existing: existing.policy.clone(),
                            given: spec.policy.clone(),
                        });
                    }
                    state::upsert_account(conn, spec).map_err(StoreError::from)?
                }
                _ if existing.is_none() => return Err(SyncError::UnknownAccount(account)),
                StateStep::User { user, .. } => {
                    state::upsert_user(conn, &account, user).map_err(StoreError::from)?
                }
                StateStep::RemoveUser { id, .. } => state::remove_user(conn, &account, id)
                    .map_err(StoreError::from)?
                    .ok_or_else(|| SyncError::UnknownUser {
                        account: account.clone(),
                        id: id.clone(),
                    })?,
                StateStep::Integration {
                    environment, id, ..
                } => state::add_integration(conn, &account, environment, id)
                    .map_err(StoreError::from)?
                    .ok_or_else(|| SyncError::UnknownEnvironment {
                        account: account.clone(),
                        environment: environment.clone(),
                    })?,
            };
            Ok(tx.append(&RecordDraft {
                account,
                time_ms: at,
                kind: "sync".into(),
                actor: None,
                request,
                decision: None,
                effects: json!([change]),
                policy: None,
                input: None,
            })?)
        });
        result.map_err(|e| match e {
            WriteError::Job(e) => e,
            WriteError::Store(e) => SyncError::Store(e),
            other => SyncError::Store(StoreError::Aborted(other.to_string())),
        })
    }

    fn commit_decision(&self, commit: DecisionCommit) -> Result<Committed, WriteFailure> {
        let result = self.write(move |tx: &mut WriteTx<'_>| record_decision(tx, commit));
        result.map_err(|e| match e {
            WriteError::Job(e) => e,
            WriteError::Store(e) => WriteFailure::Store(e),
            other => WriteFailure::Store(StoreError::Aborted(other.to_string())),
        })
    }

    fn sweep_expiries(&self, at: i64) -> Result<usize, StoreError> {
        let result = self.write(move |tx: &mut WriteTx<'_>| -> Result<usize, StoreError> {
            let due = state::due_expiries(tx.conn(), None, at)?;
            record_expiries(tx, at, &due)?;
            Ok(due.len())
        });
        result.map_err(|e| match e {
            WriteError::Job(e) | WriteError::Store(e) => e,
            other => StoreError::Aborted(other.to_string()),
        })
    }

    fn module_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| state::module_bytes(conn, digest))
    }

    fn checkpoint(&self, now_ms: i64) -> Result<Checkpoint, StoreError> {
        Store::checkpoint(self, now_ms)
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Store::latest_checkpoint(self)
    }

    fn verifier(&self) -> Result<Verifier, StoreError> {
        Store::verifier(self)
    }

    fn head(&self, account: &str) -> Result<Option<ChainHead>, StoreError> {
        Store::head(self, account)
    }

    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        Store::accounts(self)
    }

    fn scan_records(
        &self,
        account: &str,
        f: &mut dyn FnMut(StoredRecord) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_record(account, f)
    }

    fn count_by_kind(&self, account: Option<&str>) -> Result<BTreeMap<String, u64>, StoreError> {
        Store::count_by_kind(self, account)
    }

    fn verify(&self, options: &VerifyOptions) -> Result<Report, StoreError> {
        Store::verify(self, options)
    }

    fn export(&self, account: &str, out: &mut dyn Write) -> Result<ExportSummary, StoreError> {
        Store::export(self, account, out)
    }
}

/// The write half of a decision, on the writer thread: check that the
/// account's state version is still the one the decision was made on,
/// record due expiries on `act`, keep the module, apply the effects, put
/// the ids of what they created into the record (encoded before, on the
/// caller's thread), append it after whatever the chain's head is now
/// (records appended since the snapshot changed no state the decision saw).
fn record_decision(
    tx: &mut WriteTx<'_>,
    commit: DecisionCommit,
) -> Result<Committed, WriteFailure> {
    let expected_version = commit.expected_version;
    let sweep_expiries = commit.sweep_expiries;
    let (mut record, effects, actor, module) = commit.into_parts();
    let account = record.account().to_owned();
    let at = record.time_ms();
    let version = state::version(tx.conn(), &account).map_err(StoreError::from)?;
    if version != Some(expected_version.get()) {
        return Err(WriteFailure::Stale);
    }
    if sweep_expiries {
        let due = state::due_expiries(tx.conn(), Some(&account), at).map_err(StoreError::from)?;
        record_expiries(tx, at, &due)?;
    }
    let mut ids = Vec::with_capacity(effects.len());
    for effect in &effects {
        ids.push(state::apply(tx.conn(), &account, &actor, at, effect).map_err(StoreError::from)?);
    }
    if ids.iter().any(Option::is_some) {
        let applied = effects
            .iter()
            .zip(&ids)
            .map(|(effect, id)| recorded_effect(effect, id.as_deref()))
            .collect();
        record
            .set_effects(&Value::Array(applied))
            .map_err(StoreError::from)?;
    }
    if let Some(module) = &module
        && !state::has_module(tx.conn(), &module.digest).map_err(StoreError::from)?
    {
        state::keep_module(
            tx.conn(),
            &module.digest,
            &module.vendor,
            &module.version,
            &module.bytes,
            at,
        )
        .map_err(StoreError::from)?;
    }
    let appended = tx.append_prepared(&record)?;
    let created = ids.into_iter().flatten().next();
    Ok(Committed { appended, created })
}

fn record_expiries(
    tx: &mut WriteTx<'_>,
    at: i64,
    due: &[state::DueExpiry],
) -> Result<(), StoreError> {
    for expiry in due {
        state::mark_expire_recorded(tx.conn(), &expiry.grant)?;
        tx.append(&RecordDraft {
            account: expiry.account.clone(),
            time_ms: at,
            kind: "expire".into(),
            actor: None,
            request: json!({"grant": expiry.grant}),
            decision: None,
            effects: json!([{"expire_grant": {"id": expiry.grant, "expires_at": expiry.expires_at}}]),
            policy: None,
            input: None,
        })?;
    }
    Ok(())
}
