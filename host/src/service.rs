//! The host's operations: state steps (`account`, `user`, `remove_user`,
//! `integration`), policy-evaluated operations, and the expiry sweep.
//!
//! Each policy-evaluated operation: validate the shape ([`request`]) → read a
//! snapshot of the one account → evaluate it in the account's module (a
//! fresh sandboxed instance) → ONE transaction: its audit record + the
//! decision's effects → answer. A policy failure is a deny with rule
//! `HOST-POLICY-ERROR`, audited like any other decision.

use std::path::Path;
use std::sync::Arc;

use chaperone_log::record::{MAX_ACCOUNT_LEN, MAX_RECORD_BYTES, valid_account};
use chaperone_log::{
    ActorRef, AuditError, DecisionRecord, PolicyRef, RecordDraft, Verdict as RecordVerdict,
};
use chaperone_model::{Actor, Effect, Operation, Verdict};
use chaperone_runtime::{CompileCache, EvalError, Limits, PolicyModule, Runtime};
use chaperone_store::{
    AccountRead, DecisionCommit, KeptModule, NamedObject, Storage, Store, StoreError, SyncError,
    WriteFailure,
};
use serde_json::Value;

pub use chaperone_model::{AccountSpec, StateStep, UserSpec};

mod gate;
pub mod registry;
pub mod request;
pub mod webhooks;

pub use request::{ParsedRequest, ShapeError, parse_request, refuse_unknown_fields};

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
    /// Where a new runtime keeps compiled modules across restarts and
    /// processes. [`Host::open`] defaults it to a `modules` directory
    /// beside the store (`store.db` → `store.modules/`); `None` on
    /// [`Host::with_store`]: compile in memory only.
    pub compile_cache: Option<std::path::PathBuf>,
}

/// Where a store's compiled modules are kept: `modules` beside it
/// (`store.db` → `store.modules/`).
pub fn compile_cache_dir(store: &Path) -> std::path::PathBuf {
    store.with_extension("modules")
}

/// The host: a store, a runtime, and the module of each vendor id.
#[derive(Clone)]
pub struct Host {
    store: Arc<dyn Storage>,
    runtime: Runtime,
    registry: Arc<registry::RegistryView>,
    /// The queues of busy accounts ([`Host::execute`]).
    gates: Arc<gate::Gates>,
    /// Poked after each write that may have made webhook deliveries, so
    /// that the sender ([`crate::webhook`]) starts at once.
    recorded: Arc<tokio::sync::Notify>,
}

/// A policy-evaluated operation on one account.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRequest {
    /// The account.
    pub account: String,
    /// Who asks.
    pub actor: Actor,
    /// What, with its parameters (object ids, not names).
    pub operation: Operation,
    /// The request as the caller gave it; recorded verbatim.
    pub given: serde_json::Value,
}

/// What a policy-evaluated operation came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Allow or deny.
    pub verdict: Verdict,
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
        self.verdict == Verdict::Allow
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
        source: chaperone_runtime::LoadError,
    },
    /// The sandbox could not be set up.
    #[error(transparent)]
    Runtime(#[from] chaperone_runtime::RuntimeError),
    /// The request has the wrong shape.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The store failed; nothing was recorded and nothing changed.
    #[error("the store failed, nothing changed: {0}")]
    Store(#[source] StoreError),
    /// The account's state changed under the operation at every one of its
    /// attempts; nothing was recorded. Concurrent operations of this host
    /// on one account are put in order and never end here (see
    /// [`Host::execute`]); what can is a store that other processes keep
    /// changing.
    #[error(
        "account `{0}` changed under the operation at each of its {n} attempts; nothing was recorded, try again",
        n = MAX_ATTEMPTS
    )]
    Contended(String),
}

/// How often an operation is decided before [`ServiceError::Contended`]: a
/// safety net only. A decision that waited for its turn on its account is
/// invalidated only by a state change this host's queue does not order
/// (one decided before the account was busy, at most one per concurrent
/// caller; a `sync` step; an expiry sweep; another process).
const MAX_ATTEMPTS: usize = 1_000;

/// After how many attempts that found the account's state changed an
/// operation joins the account's queue ([`gate`]). Not at the first: one
/// change invalidates every decision in flight on the account, and most of
/// them (those that change nothing, the bulk of a busy account's) are then
/// written at their first retry. Queueing them all behind it at once cost a
/// hot account with 1% grants a quarter of its decisions/s (`benches/host.rs`,
/// 64 threads: 2.1k against 2.9k, medians of three runs).
const JOIN_AFTER: usize = 2;

/// A decision about to be recorded: the policy's, or the host's own.
struct Decided {
    verdict: Verdict,
    rule: String,
    message: String,
    rules: Vec<String>,
    effects: Vec<Effect>,
    /// The module that decided and the exact input it was given; `None`
    /// when the host decided without running the policy.
    policy: Option<(Arc<PolicyModule>, Value)>,
}

impl Decided {
    fn host(rule: &str, message: String) -> Self {
        Decided {
            verdict: Verdict::Deny,
            rule: rule.into(),
            message,
            rules: Vec::new(),
            effects: Vec::new(),
            policy: None,
        }
    }
}

impl From<SyncError> for ServiceError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::UnknownAccount(account) => ServiceError::UnknownAccount(account),
            SyncError::UnknownUser { account, id } => ServiceError::UnknownUser { account, id },
            SyncError::UnknownEnvironment {
                account,
                environment,
            } => ServiceError::UnknownEnvironment {
                account,
                environment,
            },
            SyncError::PolicyChange {
                account,
                existing,
                given,
            } => ServiceError::PolicyChange {
                account,
                existing,
                given,
            },
            SyncError::Store(e) => ServiceError::Store(e),
        }
    }
}

impl Host {
    /// Opens (or creates) the SQLite store at `path` and registers the
    /// built-in modules, then `options.policies`.
    pub fn open(path: impl AsRef<Path>, mut options: HostOptions) -> Result<Host, ServiceError> {
        let path = path.as_ref();
        let store = Store::open(path).map_err(ServiceError::Store)?;
        if options.compile_cache.is_none() {
            options.compile_cache = Some(compile_cache_dir(path));
        }
        Host::with_store(Arc::new(store), options)
    }

    /// A host over an open store (any implementation of [`Storage`]).
    pub fn with_store(store: Arc<dyn Storage>, options: HostOptions) -> Result<Host, ServiceError> {
        let runtime = match options.runtime {
            Some(runtime) => runtime,
            None => {
                let cache = options.compile_cache.as_ref().and_then(|dir| {
                    CompileCache::open(dir)
                        .inspect_err(|error| {
                            tracing::warn!(dir = %dir.display(), %error, "no compile cache: modules are compiled at every start");
                        })
                        .ok()
                });
                Runtime::with_cache(options.limits, cache)?
            }
        };
        let host = Host {
            registry: Arc::new(registry::RegistryView::new(store.clone(), runtime.clone())),
            store,
            runtime,
            gates: Arc::default(),
            recorded: Arc::default(),
        };
        for (vendor, bytes) in &options.policies {
            host.use_policy(vendor, bytes)?;
        }
        Ok(host)
    }

    /// The store.
    pub fn store(&self) -> &dyn Storage {
        self.store.as_ref()
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Registers (or replaces) the module for a vendor id in this process
    /// only, ahead of the store's registry (for conformance runs and
    /// tests; a server's modules are installed: [`Host::install_module`]).
    /// Accounts name their vendor id; the module's own `describe()` vendor
    /// id is recorded beside its digest.
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
        self.registry.set_override(vendor, module.clone());
        Ok(module)
    }

    /// The module that decides the accounts of this vendor id now (see
    /// [`registry`]: this process's own, the registry's active one, or the
    /// built-in one).
    pub fn policy(&self, vendor: &str) -> Result<Arc<PolicyModule>, ServiceError> {
        self.registry.module(vendor)
    }

    /// Applies a state step at `at` (ms), recording it as `sync` in the
    /// step's account chain. Returns the record's sequence number.
    pub fn sync(&self, at: i64, step: StateStep, given: Value) -> Result<u64, ServiceError> {
        let problem = if chaperone_store::registry::reserved_account(step.account()) {
            Some("must not start with `@`: such ids name the host's own chains".to_string())
        } else if !valid_account(step.account()) {
            Some(format!(
                "must be 1 to {MAX_ACCOUNT_LEN} printable ASCII characters other than space, `\"` and `\\`"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            let field = if matches!(step, StateStep::Account(_)) {
                "id"
            } else {
                "account"
            };
            return Err(ServiceError::Shape(ShapeError {
                field: field.into(),
                problem,
            }));
        }
        if let StateStep::Account(spec) = &step {
            self.policy(&spec.policy)?;
        }
        Ok(self.store.sync(at, &step, given)?.seq.get())
    }

    /// Evaluates and applies one policy-evaluated operation at `at` (ms):
    /// snapshot → policy → one transaction with its audit record and its
    /// effects. A denial is an `Ok` outcome; an `Err` means nothing was
    /// recorded and nothing changed.
    ///
    /// Concurrent operations on one account are never refused for being
    /// concurrent. Each is decided on a snapshot with the account's state
    /// version, outside the writer, and recorded only if the version is
    /// still the same, after whatever records were appended meanwhile
    /// (those changed nothing the decision saw): so every decision is made
    /// on the state its record follows, in chain order. One that finds the
    /// state changed is decided again at once, and if it finds it changed
    /// again, in its turn on the account ([`gate`]), first come first
    /// served: while anyone waits for a turn, decisions that would change
    /// the state wait for theirs too, and a decision that changes the state
    /// keeps its turn until it is written, so the next turn reads what it
    /// wrote.
    pub fn execute(&self, at: i64, request: OperationRequest) -> Result<Outcome, ServiceError> {
        let outcome = self.decide_and_record(at, request)?;
        self.recorded.notify_one();
        Ok(outcome)
    }

    /// What a write that may have made webhook deliveries pokes: a sender
    /// waits on it (besides its own timer).
    pub fn recorded(&self) -> Arc<tokio::sync::Notify> {
        self.recorded.clone()
    }

    /// [`Host::execute`], but for telling the sender.
    fn decide_and_record(
        &self,
        at: i64,
        request: OperationRequest,
    ) -> Result<Outcome, ServiceError> {
        let account = request.account.as_str();
        // How often we found the state changed before joining the account's
        // queue; our place in it; our turn; whether to keep the turn until
        // written.
        let mut stale = 0;
        let mut joined: Option<gate::Joined> = None;
        let mut turn: Option<gate::Turn> = None;
        let mut hold = false;
        for _ in 0..MAX_ATTEMPTS {
            if turn.is_none() {
                turn = joined.as_ref().map(gate::Joined::turn);
            }
            let (read, decided) = self.decide(at, &request)?;
            let (commit, outcome) = prepare(at, &read, &request, decided)?;
            let changes_state =
                !commit.effects().is_empty() || (commit.sweep_expiries && read.expiry_due);
            if changes_state && joined.is_none() && self.gates.busy(account) {
                // Others wait for their turn to decide on this account:
                // decide again in ours, after them.
                joined = Some(self.gates.join(account));
                continue;
            }
            if !changes_state && !hold {
                // A decision that changes nothing invalidates no other: the
                // next turn need not wait until it is written.
                turn = None;
            }
            match self.store.commit_decision(commit) {
                Ok(committed) => {
                    return Ok(Outcome {
                        created: committed.created,
                        seq: committed.appended.seq.get(),
                        ..outcome
                    });
                }
                Err(WriteFailure::Stale) if joined.is_none() => {
                    stale += 1;
                    if stale >= JOIN_AFTER {
                        joined = Some(self.gates.join(account));
                    }
                }
                // Changed even in (or just after) our turn, by a change the
                // queue does not order: from now on keep the turn until
                // written, so that no other turn's change can come between.
                Err(WriteFailure::Stale) => hold = true,
                Err(WriteFailure::Store(e)) => return Err(ServiceError::Store(e)),
            }
        }
        tracing::warn!(
            account,
            attempts = MAX_ATTEMPTS,
            "the account changed under every attempt; refusing"
        );
        Err(ServiceError::Contended(request.account.clone()))
    }

    /// Reads the snapshot and decides, outside the writer.
    fn decide(
        &self,
        at: i64,
        request: &OperationRequest,
    ) -> Result<(AccountRead, Decided), ServiceError> {
        let named = named_object(&request.operation);
        let AccountRead {
            snapshot,
            version,
            expiry_due,
            named_owner,
        } = self
            .store
            .read_account(&request.account, at, named.as_ref())
            .map_err(ServiceError::Store)?
            .ok_or_else(|| ServiceError::UnknownAccount(request.account.clone()))?;
        let module = self.policy(&snapshot.policy)?;
        let handled = match &request.operation {
            Operation::Custom(custom) => module.handles_custom(&custom.name),
            operation => module.handles(operation.kind()),
        };
        let (snapshot, decided) = if !handled {
            let message = format!(
                "the `{}` module does not handle `{}`",
                snapshot.policy,
                request.operation.record_kind()
            );
            (snapshot, Decided::host(HOST_UNSUPPORTED, message))
        } else if named_owner
            .as_ref()
            .is_some_and(|owner| *owner != snapshot.id)
        {
            let message = format!(
                "{} belongs to another account, not to `{}`",
                named.as_ref().map(describe_named).unwrap_or_default(),
                snapshot.id
            );
            (snapshot, Decided::host(HOST_ISOLATION, message))
        } else {
            let input = chaperone_model::Request {
                operation: request.operation.clone(),
                actor: request.actor.clone(),
                account: snapshot,
                now: at,
            };
            let recorded_input = serde_json::to_value(&input).map_err(|e| {
                ServiceError::Store(StoreError::Aborted(format!(
                    "the policy's input is not JSON: {e}"
                )))
            })?;
            let decided = match self.runtime.evaluate(&module, &input) {
                Ok(evaluation) => Decided {
                    verdict: evaluation.decision.verdict,
                    rule: evaluation.decision.rule,
                    message: evaluation.decision.message,
                    rules: evaluation.decision.rules,
                    effects: evaluation.decision.effects,
                    policy: Some((module, recorded_input)),
                },
                Err(error) => {
                    if matches!(error, EvalError::Deadline(_)) {
                        // Fuel is priced to stop every module well before
                        // the deadline: this one found a way around it.
                        tracing::error!(account = %input.account.id, digest = %module.digest(), %error, "the wall-clock backstop stopped a module: its fuel is mispriced; denying");
                    } else {
                        tracing::warn!(account = %input.account.id, digest = %module.digest(), %error, "policy failed; denying");
                    }
                    Decided {
                        policy: Some((module, recorded_input)),
                        ..Decided::host(HOST_POLICY_ERROR, error.to_string())
                    }
                }
            };
            (input.account, decided)
        };
        let read = AccountRead {
            snapshot,
            version,
            expiry_due,
            named_owner,
        };
        Ok((read, decided))
    }

    /// Sweeps every account at `at`: one `expire` record per grant that has
    /// expired and has none yet. Returns how many were recorded.
    pub fn tick(&self, at: i64) -> Result<usize, ServiceError> {
        let expired = self.store.sweep_expiries(at).map_err(ServiceError::Store)?;
        if expired > 0 {
            self.recorded.notify_one();
        }
        Ok(expired)
    }
}

/// The commit of a decision, its record encoded here, out of the writer's
/// way, and the outcome it will have once recorded (its `seq` and created
/// id filled in then). The actor's email comes from the snapshot the
/// decision was made on.
fn prepare(
    at: i64,
    read: &AccountRead,
    request: &OperationRequest,
    decided: Decided,
) -> Result<(DecisionCommit, Outcome), ServiceError> {
    let account = &read.snapshot;
    let allowed = decided.verdict == Verdict::Allow;
    let mut expires_at = None;
    let mut rights = None;
    let mut description = None;
    if allowed {
        for effect in &decided.effects {
            match effect {
                Effect::CreateGrant(g) => expires_at = g.expires_at,
                Effect::UpdateGrant(u) => expires_at = u.expires_at,
                Effect::CreateServiceAccount(s) => {
                    rights = Some(s.rights.clone());
                    description = Some(s.description.clone());
                }
                _ => {}
            }
        }
    }
    let (policy, module, input) = match decided.policy {
        Some((module, input)) => {
            let description = module.description();
            let digest = module.digest().to_hex();
            (
                Some(PolicyRef {
                    digest: digest.clone(),
                    vendor: description.vendor.clone(),
                    version: description.version.clone(),
                }),
                Some(KeptModule {
                    digest,
                    vendor: description.vendor.clone(),
                    version: description.version.clone(),
                    bytes: module.shared_bytes(),
                }),
                Some(input),
            )
        }
        None => (None, None, None),
    };
    let actor = actor_ref(&request.actor, account);
    let mut record = RecordDraft {
        account: account.id.clone(),
        time_ms: at,
        kind: request.operation.record_kind(),
        actor: Some(actor),
        request: request.given.clone(),
        decision: Some(decision_record(
            decided.verdict,
            &decided.rule,
            &decided.message,
            &decided.rules,
        )),
        effects: Value::Null,
        policy,
        input,
    };
    let effects = if allowed { decided.effects } else { Vec::new() };
    let mut commit = match DecisionCommit::new(&mut record, request.actor.clone(), effects) {
        Ok(commit) => commit,
        Err(AuditError::TooLarge { size, .. }) => {
            return refuse_oversized(read, request, record, module, size);
        }
        Err(e) => return Err(ServiceError::Store(StoreError::from(e))),
    };
    commit.expected_version = read.version;
    commit.sweep_expiries = matches!(request.operation, Operation::Act(_));
    commit.module = module;
    let outcome = Outcome {
        verdict: decided.verdict,
        rule: decided.rule,
        message: decided.message,
        rules: decided.rules,
        created: None,
        expires_at,
        rights,
        description,
        seq: 0,
    };
    Ok((commit, outcome))
}

/// Whether the audit record of `decision`, made for `request` as the host
/// makes it, would fit: `None` if it would, else the host's refusal (see
/// [`oversized_record_message`]). `policy check` asks this of each probe;
/// the request as a caller gave it is taken to be the operation itself.
pub fn record_fits(
    request: &chaperone_model::Request,
    decision: &chaperone_model::Decision,
) -> Option<String> {
    let account = &request.account;
    let actor = actor_ref(&request.actor, account);
    let mut record = RecordDraft {
        account: account.id.clone(),
        time_ms: request.now,
        kind: request.operation.record_kind(),
        actor: Some(actor),
        request: serde_json::to_value(&request.operation).unwrap_or(Value::Null),
        decision: Some(decision_record(
            decision.verdict,
            &decision.rule,
            &decision.message,
            &decision.rules,
        )),
        effects: Value::Null,
        policy: Some(PolicyRef {
            digest: "0".repeat(64),
            vendor: account.policy.clone(),
            version: "0".into(),
        }),
        input: serde_json::to_value(request).ok(),
    };
    record_refusal(&mut record, request.actor.clone(), decision)
}

/// A decision as its record lists it.
pub(crate) fn decision_record(
    verdict: Verdict,
    rule: &str,
    message: &str,
    rules: &[String],
) -> DecisionRecord {
    DecisionRecord {
        verdict: match verdict {
            Verdict::Allow => RecordVerdict::Allow,
            Verdict::Deny => RecordVerdict::Deny,
        },
        rule: rule.to_owned(),
        message: message.to_owned(),
        rules: rules.to_vec(),
    }
}

/// Why the host could not record `decision` (its effects, if it allows)
/// in `record`, as [`prepare`] makes the record: `None` when it can, else
/// [`oversized_record_message`] for a record too large (the refusal replay
/// expects), or the error. For `policy check` and replay.
pub(crate) fn record_refusal(
    record: &mut RecordDraft,
    actor: Actor,
    decision: &chaperone_model::Decision,
) -> Option<String> {
    let effects = match decision.verdict {
        Verdict::Allow => decision.effects.clone(),
        Verdict::Deny => Vec::new(),
    };
    match DecisionCommit::new(record, actor, effects) {
        Ok(_) => None,
        Err(AuditError::TooLarge { size, .. }) => Some(oversized_record_message(size)),
        Err(e) => Some(format!("its audit record cannot be made: {e}")),
    }
}

/// The message of a decision refused because its audit record would not
/// fit: it names the size, not the payload.
pub fn oversized_record_message(size: usize) -> String {
    format!(
        "the decision's audit record would be {size} bytes; a record is at most {MAX_RECORD_BYTES}"
    )
}

/// A decision whose record would not fit is not applied: it is recorded as
/// a `HOST-POLICY-ERROR` deny naming the reason, without its effects (and,
/// if even that would not fit, without the policy's input).
fn refuse_oversized(
    read: &AccountRead,
    request: &OperationRequest,
    mut record: RecordDraft,
    module: Option<KeptModule>,
    size: usize,
) -> Result<(DecisionCommit, Outcome), ServiceError> {
    let message = oversized_record_message(size);
    tracing::warn!(account = %record.account, size, "a decision's record would not fit; denying");
    record.decision = Some(DecisionRecord {
        verdict: RecordVerdict::Deny,
        rule: HOST_POLICY_ERROR.into(),
        message: message.clone(),
        rules: Vec::new(),
    });
    let mut commit = match DecisionCommit::new(&mut record, request.actor.clone(), Vec::new()) {
        Ok(commit) => commit,
        Err(AuditError::TooLarge { .. }) => {
            record.input = None;
            DecisionCommit::new(&mut record, request.actor.clone(), Vec::new())
                .map_err(|e| ServiceError::Store(StoreError::from(e)))?
        }
        Err(e) => return Err(ServiceError::Store(StoreError::from(e))),
    };
    commit.expected_version = read.version;
    commit.sweep_expiries = matches!(request.operation, Operation::Act(_));
    commit.module = module;
    let outcome = Outcome {
        verdict: Verdict::Deny,
        rule: HOST_POLICY_ERROR.into(),
        message,
        rules: Vec::new(),
        created: None,
        expires_at: None,
        rights: None,
        description: None,
        seq: 0,
    };
    Ok((commit, outcome))
}

/// Who asked, as a record names them: a user with the email the snapshot
/// gives them, or an agent.
fn actor_ref(actor: &Actor, account: &chaperone_model::Account) -> ActorRef {
    match actor {
        Actor::User(id) => ActorRef::User {
            id: id.clone(),
            email: account
                .users
                .iter()
                .find(|u| &u.id == id)
                .map(|u| u.email.clone()),
        },
        Actor::Agent(email) => ActorRef::Agent {
            email: email.clone(),
        },
    }
}

fn describe_named(named: &NamedObject) -> String {
    match named {
        NamedObject::Grant(id) => format!("grant `{id}`"),
        NamedObject::ServiceAccount(id) => format!("service account `{id}`"),
    }
}

fn named_object(operation: &Operation) -> Option<NamedObject> {
    match operation {
        Operation::Modify(m) => Some(NamedObject::Grant(m.grant.clone())),
        Operation::Revoke(id) => Some(NamedObject::Grant(id.clone())),
        Operation::SetRights(r) => Some(NamedObject::ServiceAccount(r.service_account.clone())),
        Operation::RemoveServiceAccount(id) => Some(NamedObject::ServiceAccount(id.clone())),
        _ => None,
    }
}
