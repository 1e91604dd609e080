//! The host's operations: state steps (`account`, `user`, `remove_user`,
//! `integration`), policy-evaluated operations, and the expiry sweep.
//!
//! Each policy-evaluated operation: validate the shape ([`request`]) → read a
//! snapshot of the one account → evaluate it in the account's module (a
//! fresh sandboxed instance) → ONE transaction: its audit record + the
//! decision's effects → answer. A policy failure is a deny with rule
//! `HOST-POLICY-ERROR`, audited like any other decision.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::audit::{ActorRef, DecisionRecord, PolicyRef, RecordDraft, Verdict as RecordVerdict};
use crate::runtime::wit;
use crate::runtime::{Limits, PolicyModule, Runtime};
use crate::state;
use crate::store::{Store, WriteError, WriteTx};

pub mod request;

pub use request::{ParsedRequest, ShapeError, parse_request};

/// Rule id of a decision the host makes because the policy failed.
pub const HOST_POLICY_ERROR: &str = "HOST-POLICY-ERROR";
/// Rule id of a refusal because a step names another account's object.
pub const HOST_ISOLATION: &str = "HOST-ISOLATION";
/// Rule id of a refusal because the module does not handle the operation.
pub const HOST_UNSUPPORTED: &str = "HOST-UNSUPPORTED";

/// How to set up a [`Host`].
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Sandbox limits.
    pub limits: Limits,
    /// Modules to use instead of (or beside) the built-in ones, by vendor id.
    pub policies: Vec<(String, Vec<u8>)>,
    /// A runtime to share (its compiled modules are reused); `None` makes a
    /// new one with `limits`.
    pub runtime: Option<Runtime>,
}

/// The host: a store, a runtime, and the module of each vendor id.
#[derive(Clone)]
pub struct Host {
    store: Store,
    runtime: Runtime,
    policies: Arc<RwLock<HashMap<String, Arc<PolicyModule>>>>,
}

/// A customer account as a state step gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSpec {
    /// The account id.
    pub id: String,
    /// The vendor id of its policy module.
    pub policy: String,
    /// Its plan.
    pub plan: wit::Plan,
    /// Its environments, in the order given.
    pub environments: Vec<(String, wit::EnvironmentKind)>,
    /// Initial settings (taken only when the account is created).
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Its seat limit.
    pub seat_limit: Option<u32>,
}

/// A customer user as a state step gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSpec {
    /// The user id, unique in the account.
    pub id: String,
    /// Email address.
    pub email: String,
    /// Role name.
    pub role: String,
    /// Integration id → access level.
    pub access: BTreeMap<String, String>,
    /// Rights.
    pub rights: Vec<String>,
}

/// A change to the customer's own data, mirrored from the vendor's product.
/// Not policy-evaluated; audited as kind `sync`.
#[derive(Debug, Clone, PartialEq)]
pub enum StateStep {
    /// Create or update an account.
    Account(AccountSpec),
    /// Create or replace a user.
    User {
        /// The account.
        account: String,
        /// The user.
        user: UserSpec,
    },
    /// Remove a user.
    RemoveUser {
        /// The account.
        account: String,
        /// The user id.
        id: String,
    },
    /// Add an integration to an environment.
    Integration {
        /// The account.
        account: String,
        /// The environment id.
        environment: String,
        /// The integration id.
        id: String,
    },
}

impl StateStep {
    /// The account the step concerns.
    pub fn account(&self) -> &str {
        match self {
            StateStep::Account(spec) => &spec.id,
            StateStep::User { account, .. }
            | StateStep::RemoveUser { account, .. }
            | StateStep::Integration { account, .. } => account,
        }
    }
}

/// A policy-evaluated operation on one account.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRequest {
    /// The account.
    pub account: String,
    /// Who asks.
    pub actor: wit::Actor,
    /// What, with its parameters (object ids, not names).
    pub operation: wit::Operation,
    /// The request as the caller gave it; recorded verbatim.
    pub given: serde_json::Value,
}

/// What a policy-evaluated operation came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Allow or deny.
    pub verdict: wit::Verdict,
    /// The rule that decided.
    pub rule: String,
    /// The explanation.
    pub message: String,
    /// On an allow, the rules that applied.
    pub rules: Vec<String>,
    /// The id of the grant, invitation or service account it created.
    pub created: Option<String>,
    /// The resulting expiry of the grant it created or modified.
    pub expires_at: Option<i64>,
    /// The rights of the service account it created.
    pub rights: Option<Vec<String>>,
    /// The description of the service account it created.
    pub description: Option<String>,
    /// The sequence number of its audit record in the account's chain.
    pub seq: u64,
}

impl Outcome {
    /// Whether it was allowed.
    pub fn allowed(&self) -> bool {
        self.verdict == wit::Verdict::Allow
    }
}

/// Why an operation could not be carried out at all (as opposed to being
/// denied, which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
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
    /// No module is registered for the vendor id.
    #[error("no policy module for vendor `{0}`")]
    NoPolicy(String),
    /// A module could not be loaded.
    #[error("cannot load the policy module for `{vendor}`: {source}")]
    Load {
        /// The vendor id.
        vendor: String,
        /// Why.
        source: crate::runtime::LoadError,
    },
    /// The sandbox could not be set up.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The request has the wrong shape.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The store failed; nothing was recorded and nothing changed.
    #[error("the store failed, nothing changed: {0}")]
    Store(String),
    /// The account kept changing under the operation.
    #[error("account `{0}` changed concurrently too often; try again")]
    Contended(String),
}

/// How often an operation is retried when its account changed between the
/// snapshot and the write (optimistic concurrency on the chain head).
const MAX_ATTEMPTS: usize = 16;

/// A decision about to be recorded: the policy's, or the host's own.
struct Decided {
    verdict: wit::Verdict,
    rule: String,
    message: String,
    rules: Vec<String>,
    effects: Vec<wit::Effect>,
    /// The module that decided and the exact input it was given; `None`
    /// when the host decided without running the policy.
    policy: Option<(Arc<PolicyModule>, Value)>,
}

impl Decided {
    fn host(rule: &str, message: String) -> Self {
        Decided {
            verdict: wit::Verdict::Deny,
            rule: rule.into(),
            message,
            rules: Vec::new(),
            effects: Vec::new(),
            policy: None,
        }
    }
}

/// A write job's own failure.
#[derive(Debug, thiserror::Error)]
enum JobError {
    /// The chain head moved since the snapshot: evaluate again.
    #[error("the account changed since its snapshot was read")]
    Stale,
    #[error(transparent)]
    Service(ServiceError),
}

impl From<rusqlite::Error> for JobError {
    fn from(e: rusqlite::Error) -> Self {
        JobError::Service(ServiceError::Store(e.to_string()))
    }
}

impl From<crate::audit::AuditError> for JobError {
    fn from(e: crate::audit::AuditError) -> Self {
        JobError::Service(ServiceError::Store(e.to_string()))
    }
}

fn store_error(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Store(e.to_string())
}

fn write_error(e: WriteError<JobError>) -> Result<(), ServiceError> {
    match e {
        WriteError::Job(JobError::Service(e)) => Err(e),
        WriteError::Job(JobError::Stale) => Ok(()),
        other => Err(store_error(other)),
    }
}

impl Host {
    /// Opens (or creates) the store at `path` and registers the built-in
    /// modules, then `options.policies`.
    pub fn open(path: impl AsRef<Path>, options: HostOptions) -> Result<Host, ServiceError> {
        let store = Store::open(path).map_err(store_error)?;
        Host::with_store(store, options)
    }

    /// A host over an open store.
    pub fn with_store(store: Store, options: HostOptions) -> Result<Host, ServiceError> {
        let runtime = match options.runtime {
            Some(runtime) => runtime,
            None => Runtime::new(options.limits)?,
        };
        let host = Host {
            store,
            runtime,
            policies: Arc::new(RwLock::new(HashMap::new())),
        };
        for builtin in crate::builtin::ALL {
            host.use_policy(builtin.vendor, builtin.bytes)?;
        }
        for (vendor, bytes) in &options.policies {
            host.use_policy(vendor, bytes)?;
        }
        Ok(host)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Registers (or replaces) the module for a vendor id. Accounts name
    /// their vendor id; the module's own `describe()` vendor id is recorded
    /// beside its digest.
    pub fn use_policy(
        &self,
        vendor: &str,
        bytes: &[u8],
    ) -> Result<Arc<PolicyModule>, ServiceError> {
        let module = self
            .runtime
            .load(bytes)
            .map_err(|source| ServiceError::Load {
                vendor: vendor.to_string(),
                source,
            })?;
        self.policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(vendor.to_string(), module.clone());
        Ok(module)
    }

    /// The module accounts of this vendor id use.
    pub fn policy(&self, vendor: &str) -> Result<Arc<PolicyModule>, ServiceError> {
        self.policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(vendor)
            .cloned()
            .ok_or_else(|| ServiceError::NoPolicy(vendor.to_string()))
    }

    /// Applies a state step at `at` (ms), recording it as `sync` in the
    /// step's account chain. Returns the record's sequence number.
    pub fn sync(&self, at: i64, step: StateStep, given: Value) -> Result<u64, ServiceError> {
        let account = step.account().to_string();
        if !crate::audit::record::valid_account(&account) {
            return Err(ServiceError::Shape(ShapeError {
                field: if matches!(step, StateStep::Account(_)) {
                    "id"
                } else {
                    "account"
                }
                .into(),
                problem:
                    "must be 1 to 128 printable ASCII characters other than space, `\"` and `\\`"
                        .into(),
            }));
        }
        if let StateStep::Account(spec) = &step {
            self.policy(&spec.policy)?;
        }
        let result = self
            .store
            .write(move |tx: &mut WriteTx<'_>| -> Result<u64, JobError> {
                let conn = tx.conn();
                let existing = state::account(conn, &account)?;
                let change = match &step {
                    StateStep::Account(spec) => {
                        if let Some(existing) =
                            existing.as_ref().filter(|e| e.policy != spec.policy)
                        {
                            return Err(JobError::Service(ServiceError::PolicyChange {
                                account: account.clone(),
                                existing: existing.policy.clone(),
                                given: spec.policy.clone(),
                            }));
                        }
                        state::upsert_account(conn, spec)?
                    }
                    _ if existing.is_none() => {
                        return Err(JobError::Service(ServiceError::UnknownAccount(
                            account.clone(),
                        )));
                    }
                    StateStep::User { user, .. } => state::upsert_user(conn, &account, user)?,
                    StateStep::RemoveUser { id, .. } => state::remove_user(conn, &account, id)?
                        .ok_or_else(|| {
                            JobError::Service(ServiceError::UnknownUser {
                                account: account.clone(),
                                id: id.clone(),
                            })
                        })?,
                    StateStep::Integration {
                        environment, id, ..
                    } => state::add_integration(conn, &account, environment, id)?.ok_or_else(
                        || {
                            JobError::Service(ServiceError::UnknownEnvironment {
                                account: account.clone(),
                                environment: environment.clone(),
                            })
                        },
                    )?,
                };
                let appended = tx.append(&RecordDraft {
                    account: account.clone(),
                    time_ms: at,
                    kind: "sync".into(),
                    actor: None,
                    request: given,
                    decision: None,
                    effects: json!([change]),
                    policy: None,
                    input: None,
                })?;
                Ok(appended.seq.get())
            });
        result.map_err(|e| match e {
            WriteError::Job(JobError::Service(e)) => e,
            other => store_error(other),
        })
    }

    /// Evaluates and applies one policy-evaluated operation at `at` (ms):
    /// snapshot → policy → one transaction with its audit record and its
    /// effects. A denial is an `Ok` outcome; an `Err` means nothing was
    /// recorded and nothing changed.
    pub fn execute(&self, at: i64, request: OperationRequest) -> Result<Outcome, ServiceError> {
        let request = Arc::new(request);
        for _ in 0..MAX_ATTEMPTS {
            let (row, head, decided) = self.decide(at, &request)?;
            let job_request = request.clone();
            let result = self.store.write(move |tx: &mut WriteTx<'_>| {
                record_decision(tx, at, &row, head, &job_request, decided)
            });
            match result {
                Ok(outcome) => return Ok(outcome),
                Err(e) => write_error(e)?,
            }
        }
        Err(ServiceError::Contended(request.account.clone()))
    }

    /// Reads the snapshot and decides, outside the writer.
    fn decide(
        &self,
        at: i64,
        request: &OperationRequest,
    ) -> Result<(state::AccountRow, Option<u64>, Decided), ServiceError> {
        let account = request.account.clone();
        let named = named_object(&request.operation);
        let (row, head, owner, snapshot) = self
            .store
            .read(move |conn| {
                let Some(row) = state::account(conn, &account)? else {
                    return Ok(None);
                };
                let head = crate::audit::read::head(conn, &account)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
                    .map(|h| h.seq.get());
                let owner = match &named {
                    Some(Named::Grant(id)) => state::grant_account(conn, id)?,
                    Some(Named::ServiceAccount(id)) => state::service_account_account(conn, id)?,
                    None => None,
                };
                let snapshot = state::snapshot(conn, &row, at)?;
                Ok(Some((row, head, owner, snapshot)))
            })
            .map_err(store_error)?
            .ok_or_else(|| ServiceError::UnknownAccount(request.account.clone()))?;
        let module = self.policy(&row.policy)?;
        let handled = match &request.operation {
            wit::Operation::Custom(custom) => module.handles_custom(&custom.name),
            operation => module.handles(operation_kind(operation)),
        };
        let decided = if !handled {
            Decided::host(
                HOST_UNSUPPORTED,
                format!(
                    "the `{}` module does not handle `{}`",
                    row.policy,
                    record_kind(&request.operation)
                ),
            )
        } else if owner.is_some_and(|owner| owner != row.id) {
            Decided::host(
                HOST_ISOLATION,
                format!(
                    "{} belongs to another account, not to `{}`",
                    named_object(&request.operation)
                        .map(|n| n.describe())
                        .unwrap_or_default(),
                    row.id
                ),
            )
        } else {
            let input = wit::Request {
                operation: request.operation.clone(),
                actor: request.actor.clone(),
                account: snapshot,
                now: at,
            };
            let recorded_input = serde_json::to_value(&input).map_err(store_error)?;
            match self.runtime.evaluate(&module, &input) {
                Ok(evaluation) => Decided {
                    verdict: evaluation.decision.verdict,
                    rule: evaluation.decision.rule,
                    message: evaluation.decision.message,
                    rules: evaluation.decision.rules,
                    effects: evaluation.decision.effects,
                    policy: Some((module, recorded_input)),
                },
                Err(error) => {
                    tracing::warn!(account = %row.id, digest = %module.digest(), %error, "policy failed; denying");
                    Decided {
                        policy: Some((module, recorded_input)),
                        ..Decided::host(HOST_POLICY_ERROR, error.to_string())
                    }
                }
            }
        };
        Ok((row, head, decided))
    }

    /// Sweeps every account at `at`: one `expire` record per grant that has
    /// expired and has none yet. Returns how many were recorded.
    pub fn tick(&self, at: i64) -> Result<usize, ServiceError> {
        let result = self
            .store
            .write(move |tx: &mut WriteTx<'_>| -> Result<usize, JobError> {
                let due = state::due_expiries(tx.conn(), None, at)?;
                record_expiries(tx, at, &due)?;
                Ok(due.len())
            });
        result.map_err(|e| match e {
            WriteError::Job(JobError::Service(e)) => e,
            other => store_error(other),
        })
    }
}

/// The write half of an operation, on the writer thread: re-check the
/// chain head, sweep expiries on `act`, keep the module, apply the effects,
/// append the record — all in one transaction.
fn record_decision(
    tx: &mut WriteTx<'_>,
    at: i64,
    row: &state::AccountRow,
    head: Option<u64>,
    request: &OperationRequest,
    decided: Decided,
) -> Result<Outcome, JobError> {
    let current = tx.head(&row.id)?.map(|h| h.seq.get());
    if current != head {
        return Err(JobError::Stale);
    }
    if matches!(request.operation, wit::Operation::Act(_)) {
        let due = state::due_expiries(tx.conn(), Some(&row.id), at)?;
        record_expiries(tx, at, &due)?;
    }
    let mut effects = Vec::new();
    let mut created = None;
    let mut expires_at = None;
    let mut rights = None;
    let mut description = None;
    if decided.verdict == wit::Verdict::Allow {
        for effect in &decided.effects {
            let applied = state::apply(tx.conn(), &row.id, &request.actor, at, effect)?;
            match effect {
                wit::Effect::CreateGrant(g) => expires_at = g.expires_at,
                wit::Effect::UpdateGrant(u) => expires_at = u.expires_at,
                wit::Effect::CreateServiceAccount(s) => {
                    rights = Some(s.rights.clone());
                    description = Some(s.description.clone());
                }
                _ => {}
            }
            if created.is_none() {
                created = applied.created.clone();
            }
            effects.push(applied.record);
        }
    }
    let policy = match &decided.policy {
        Some((module, _)) => {
            let digest = module.digest().to_hex();
            let description = module.description();
            if !state::has_module(tx.conn(), &digest)? {
                state::keep_module(
                    tx.conn(),
                    &digest,
                    &description.vendor,
                    &description.version,
                    module.bytes(),
                    at,
                )?;
            }
            Some(PolicyRef {
                digest,
                vendor: description.vendor.clone(),
                version: description.version.clone(),
            })
        }
        None => None,
    };
    let actor = match &request.actor {
        wit::Actor::User(id) => ActorRef::User {
            id: id.clone(),
            email: state::user_email(tx.conn(), &row.id, id)?,
        },
        wit::Actor::Agent(email) => ActorRef::Agent {
            email: email.clone(),
        },
    };
    let appended = tx.append(&RecordDraft {
        account: row.id.clone(),
        time_ms: at,
        kind: record_kind(&request.operation),
        actor: Some(actor),
        request: request.given.clone(),
        decision: Some(DecisionRecord {
            verdict: match decided.verdict {
                wit::Verdict::Allow => RecordVerdict::Allow,
                wit::Verdict::Deny => RecordVerdict::Deny,
            },
            rule: decided.rule.clone(),
            message: decided.message.clone(),
            rules: decided.rules.clone(),
        }),
        effects: Value::Array(effects),
        policy,
        input: decided.policy.map(|(_, input)| input),
    })?;
    Ok(Outcome {
        verdict: decided.verdict,
        rule: decided.rule,
        message: decided.message,
        rules: decided.rules,
        created,
        expires_at,
        rights,
        description,
        seq: appended.seq.get(),
    })
}

fn record_expiries(
    tx: &mut WriteTx<'_>,
    at: i64,
    due: &[state::DueExpiry],
) -> Result<(), JobError> {
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

/// An object a request names by id.
enum Named {
    Grant(String),
    ServiceAccount(String),
}

impl Named {
    fn describe(&self) -> String {
        match self {
            Named::Grant(id) => format!("grant `{id}`"),
            Named::ServiceAccount(id) => format!("service account `{id}`"),
        }
    }
}

fn named_object(operation: &wit::Operation) -> Option<Named> {
    match operation {
        wit::Operation::Modify(m) => Some(Named::Grant(m.grant.clone())),
        wit::Operation::Revoke(id) => Some(Named::Grant(id.clone())),
        wit::Operation::SetRights(r) => Some(Named::ServiceAccount(r.service_account.clone())),
        wit::Operation::RemoveServiceAccount(id) => Some(Named::ServiceAccount(id.clone())),
        _ => None,
    }
}

/// The kind of an operation's audit record: its name, or `custom.<name>`.
pub fn record_kind(operation: &wit::Operation) -> String {
    match operation {
        wit::Operation::Custom(custom) => format!("custom.{}", custom.name),
        other => operation_name(other).to_string(),
    }
}

/// The kind `describe()` must list for an operation.
pub fn operation_kind(operation: &wit::Operation) -> wit::OperationKind {
    match operation {
        wit::Operation::SetSetting(_) => wit::OperationKind::SetSetting,
        wit::Operation::Grant(_) => wit::OperationKind::Grant,
        wit::Operation::Modify(_) => wit::OperationKind::Modify,
        wit::Operation::Revoke(_) => wit::OperationKind::Revoke,
        wit::Operation::Invite(_) => wit::OperationKind::Invite,
        wit::Operation::CreateServiceAccount => wit::OperationKind::CreateServiceAccount,
        wit::Operation::SetRights(_) => wit::OperationKind::SetRights,
        wit::Operation::RemoveServiceAccount(_) => wit::OperationKind::RemoveServiceAccount,
        wit::Operation::Act(_) => wit::OperationKind::Act,
        wit::Operation::Custom(_) => wit::OperationKind::Custom,
    }
}

/// The operation's name: its `op` and its audit record's kind.
pub fn operation_name(operation: &wit::Operation) -> &'static str {
    match operation {
        wit::Operation::SetSetting(_) => "set_setting",
        wit::Operation::Grant(_) => "grant",
        wit::Operation::Modify(_) => "modify",
        wit::Operation::Revoke(_) => "revoke",
        wit::Operation::Invite(_) => "invite",
        wit::Operation::CreateServiceAccount => "create_service_account",
        wit::Operation::SetRights(_) => "set_rights",
        wit::Operation::RemoveServiceAccount(_) => "remove_service_account",
        wit::Operation::Act(_) => "act",
        wit::Operation::Custom(_) => "custom",
    }
}
