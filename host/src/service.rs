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

use crate::runtime::wit;
use crate::runtime::{Limits, PolicyModule, Runtime};
use crate::store::Store;

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

impl Host {
    /// Opens (or creates) the store at `path` and registers the built-in
    /// modules, then `options.policies`.
    pub fn open(path: impl AsRef<Path>, options: HostOptions) -> Result<Host, ServiceError> {
        let _ = (path.as_ref(), options);
        Err(ServiceError::Store("not written yet".into()))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Registers (or replaces) the module for a vendor id.
    pub fn use_policy(&self, vendor: &str, bytes: &[u8]) -> Result<Arc<PolicyModule>, ServiceError> {
        let _ = (vendor, bytes, &self.policies);
        Err(ServiceError::Store("not written yet".into()))
    }

    /// Applies a state step at `at` (ms), recording it as `sync`.
    pub fn sync(&self, at: i64, step: StateStep, given: serde_json::Value) -> Result<u64, ServiceError> {
        let _ = (at, step, given);
        Err(ServiceError::Store("not written yet".into()))
    }

    /// Evaluates and applies one policy-evaluated operation at `at` (ms).
    pub fn execute(&self, at: i64, request: OperationRequest) -> Result<Outcome, ServiceError> {
        let _ = (at, request);
        Err(ServiceError::Store("not written yet".into()))
    }

    /// Sweeps every account at `at`: one `expire` record per grant that has
    /// expired and has none yet. Returns how many were recorded.
    pub fn tick(&self, at: i64) -> Result<usize, ServiceError> {
        let _ = at;
        Err(ServiceError::Store("not written yet".into()))
    }
}
