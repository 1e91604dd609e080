//! The storage interface the service uses: everything the host needs from a
//! store, said without naming a database. The SQLite [`Store`](crate::Store)
//! implements it; another engine implements the same trait and the service
//! does not change.
//!
//! The write operations keep the log's first invariant: each appends its
//! audit record(s) and applies the effects they explain in ONE transaction,
//! and answers only once that transaction is durable. Nothing takes effect
//! without its record; a failed append changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use chaperone_log::keys::Verifier;
use chaperone_log::verify::Report;
use chaperone_log::{
    Appended, AuditError, ChainHead, Checkpoint, Prepared, RecordDraft, StoredRecord,
};
use chaperone_model::{Account, Actor, Effect, StateStep};
use serde_json::{Value, json};

use crate::StoreError;
use crate::export::ExportSummary;
use crate::verify::VerifyOptions;

/// An object a request names by id, whose owner the host checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedObject {
    /// A grant.
    Grant(String),
    /// A service account.
    ServiceAccount(String),
}

/// An account's **state version**: it changes exactly when something a
/// snapshot of the account is made of changes (an applied effect, a state
/// step, a recorded `expire`), and not when a record changes nothing. A
/// decision is recorded only if the version it was decided at is still
/// the account's, so that it is made on the state its record follows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateVersion(i64);

impl StateVersion {
    /// The version a store keeps as this number.
    pub fn new(version: i64) -> StateVersion {
        StateVersion(version)
    }

    /// The number the store keeps.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// One consistent read of an account, for deciding a request.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRead {
    /// What the policy sees of the account at the request's time.
    pub snapshot: Account,
    /// The account's state version when it was read: the write that
    /// records the decision takes effect only if it is still the version.
    /// Records that change no state may be appended meanwhile; the
    /// decision's record goes after them.
    pub version: StateVersion,
    /// Whether the account has grants that had expired at the request's
    /// time and have no `expire` record yet: an `act` records them first,
    /// which changes the state.
    pub expiry_due: bool,
    /// The account that owns the object the request names, if the request
    /// names one and it exists anywhere in the store.
    pub named_owner: Option<String>,
}

/// A module to keep by digest beside the record it decided, so that the
/// record stays replayable.
#[derive(Debug, Clone)]
pub struct KeptModule {
    /// Its BLAKE3 digest, lowercase hex.
    pub digest: String,
    /// The vendor id its `describe()` gave.
    pub vendor: String,
    /// The version its `describe()` gave.
    pub version: String,
    /// Its bytes.
    pub bytes: Arc<[u8]>,
}

/// A decision to record: its audit record and, on an allow, its effects,
/// in one transaction. Its record is encoded when it is made (on the
/// caller's thread), so that the writer only puts the ids of created objects
/// in and the chain position in front.
#[derive(Debug, Clone)]
pub struct DecisionCommit {
    /// The record, its effects listed as decided ([`recorded_effect`]
    /// without ids).
    record: Prepared,
    /// The state version the decision was made on
    /// ([`AccountRead::version`]); the record is appended after whatever
    /// the chain's head is when it is written.
    pub expected_version: StateVersion,
    /// Record the account's due expiries first (for `act`: an agent's
    /// action sees expiry recorded before it).
    pub sweep_expiries: bool,
    /// Who asked (the creator of what the effects create).
    pub actor: Actor,
    /// The effects to apply; empty for a deny.
    effects: Vec<Effect>,
    /// The module that decided, kept if the store does not have it yet.
    pub module: Option<KeptModule>,
}

impl DecisionCommit {
    /// A decision's commit: `record`, its `effects` set to `effects` as
    /// recorded, checked and encoded now. The other fields start as: state
    /// version 0 (an account never changed), no expiry sweep, no module. On an error (say
    /// the record would be too large) `record` is still the caller's.
    pub fn new(
        record: &mut RecordDraft,
        actor: Actor,
        effects: Vec<Effect>,
    ) -> Result<DecisionCommit, AuditError> {
        record.effects = Value::Array(effects.iter().map(|e| recorded_effect(e, None)).collect());
        Ok(DecisionCommit {
            record: Prepared::new(record)?,
            expected_version: StateVersion::default(),
            sweep_expiries: false,
            actor,
            effects,
            module: None,
        })
    }

    /// The record, encoded; its effects without the ids of created objects.
    pub fn record(&self) -> &Prepared {
        &self.record
    }

    /// The effects to apply.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// The parts a store takes apart to write it.
    pub(crate) fn into_parts(self) -> (Prepared, Vec<Effect>, Actor, Option<KeptModule>) {
        (self.record, self.effects, self.actor, self.module)
    }
}

/// An effect as its decision's record lists it: `{"effect": <as decided>}`,
/// with `"id": <created id>` beside it for an effect that created an object.
pub fn recorded_effect(effect: &Effect, created: Option<&str>) -> Value {
    let mut record = json!({ "effect": effect });
    if let (Some(id), Some(object)) = (created, record.as_object_mut()) {
        object.insert("id".into(), json!(id));
    }
    record
}

/// What a recorded decision came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Where its record went.
    pub appended: Appended,
    /// The id of the first object its effects created.
    pub created: Option<String>,
}

/// Why a decision was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum WriteFailure {
    /// The account's state changed since it was read: decide again.
    #[error("the account changed since its snapshot was read")]
    Stale,
    /// The store failed; nothing was recorded and nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a state step was not applied (nothing was recorded).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The account does not exist.
    #[error("no account `{0}`")]
    UnknownAccount(String),
    /// The user does not exist.
    #[error("account `{account}` has no user `{id}`")]
    UnknownUser {
        /// The account.
        account: String,
        /// The user id.
        id: String,
    },
    /// The environment does not exist.
    #[error("account `{account}` has no environment `{environment}`")]
    UnknownEnvironment {
        /// The account.
        account: String,
        /// The environment id.
        environment: String,
    },
    /// An account step tried to change the account's policy.
    #[error("account `{account}` uses policy `{existing}`; a step cannot change it to `{given}`")]
    PolicyChange {
        /// The account.
        account: String,
        /// Its policy.
        existing: String,
        /// The policy the step named.
        given: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store of audit chains and the account state they explain.
pub trait Storage: Send + Sync + fmt::Debug {
    /// The module registry and the API's credentials.
    fn registry(&self) -> &dyn crate::registry::Registry;

    /// Webhook subscriptions and the outbox of deliveries.
    fn outbox(&self) -> &dyn crate::outbox::Outbox;

    /// The log's signing key, if this store has it (checkpoints and
    /// webhook events are signed with it).
    fn signer(&self) -> Option<Arc<chaperone_log::keys::Signer>>;

    /// Reads `account` as a policy sees it at `at`, with its state version,
    /// whether expiries are due at `at`, and the owner of the object the
    /// request names, in one consistent read.
    /// `None`: no such account.
    fn read_account(
        &self,
        account: &str,
        at: i64,
        named: Option<&NamedObject>,
    ) -> Result<Option<AccountRead>, StoreError>;

    /// Applies a state step and appends its `sync` record (`request`: the
    /// step as the caller gave it), in one transaction.
    fn sync(&self, at: i64, step: &StateStep, request: Value) -> Result<Appended, SyncError>;

    /// Records a decision and applies its effects, in one transaction, if
    /// the account's state version is still
    /// [`DecisionCommit::expected_version`] (else [`WriteFailure::Stale`]).
    /// The record is appended after whatever the chain's head then is.
    fn commit_decision(&self, commit: DecisionCommit) -> Result<Committed, WriteFailure>;

    /// Appends one `expire` record per grant of any account that expired at
    /// or before `at` and has none yet. Returns how many.
    fn sweep_expiries(&self, at: i64) -> Result<usize, StoreError>;

    /// The bytes of the kept module with this digest (lowercase hex).
    fn module_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Signs a checkpoint of every chain head at `now_ms` and stores it
    /// with the heads its tree commits to (its note names no account).
    fn checkpoint(&self, now_ms: i64) -> Result<Checkpoint, StoreError>;

    /// The newest stored checkpoint, checked against the log's key.
    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;

    /// The log's public key.
    fn verifier(&self) -> Result<Verifier, StoreError>;

    /// The head of `account`'s chain.
    fn head(&self, account: &str) -> Result<Option<ChainHead>, StoreError>;

    /// Every account with records, sorted.
    fn accounts(&self) -> Result<Vec<String>, StoreError>;

    /// Calls `f` with each record of `account`, decoded, in order, from one
    /// consistent read.
    fn scan_records(
        &self,
        account: &str,
        f: &mut dyn FnMut(StoredRecord) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Every record of `account`, decoded, in order (all in memory: for
    /// tests and short chains; [`Storage::scan_records`] streams).
    fn records(&self, account: &str) -> Result<Vec<StoredRecord>, StoreError> {
        let mut records = Vec::new();
        self.scan_records(account, &mut |record| {
            records.push(record);
            Ok(())
        })?;
        Ok(records)
    }

    /// The number of records of each kind, for one account or all.
    fn count_by_kind(&self, account: Option<&str>) -> Result<BTreeMap<String, u64>, StoreError>;

    /// Verifies every chain (or one) and every checkpoint.
    fn verify(&self, options: &VerifyOptions) -> Result<Report, StoreError>;

    /// Writes `account`'s chain, the latest checkpoint and the account's own
    /// head with its inclusion proof as an export (`docs/audit-format.md`,
    /// "Export"): nothing in it names another account.
    fn export(&self, account: &str, out: &mut dyn Write) -> Result<ExportSummary, StoreError>;
}
