//! The host's domain model: what a policy is asked (a [`Request`]: the
//! operation, who asks, a snapshot of the one account, the time) and what
//! it answers (a [`Decision`] with its [`Effect`]s), plus the changes a
//! vendor mirrors into an account ([`StateStep`]).
//!
//! These types have the shape of the WIT interface (`sdk/wit/policy.wit`),
//! field for field and case for case, but they are the host's own: the
//! runtime converts at its edge, and the store, the service and the audit
//! records never see generated bindings. Their serde form is the one
//! recorded as a decision's `input` (externally tagged enums, Rust field
//! names), so that every recorded decision can be replayed; do not change it.
//!
//! Inputs the policy judges itself (a grant's `scope` and `expires_in`,
//! `rights`, a setting's `value`, custom `params`) are [`Json`]: JSON text
//! exactly as the caller wrote it. The host never judges their shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An instant, in milliseconds since 1970-01-01T00:00:00Z (UTC).
pub type Timestamp = i64;

/// A JSON document, as UTF-8 text.
pub type Json = String;

/// The customer's subscription plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Plan {
    /// Free.
    Free,
    /// Trial.
    Trial,
    /// Paid.
    Paid,
}

impl Plan {
    /// Every plan, in declaration order.
    pub const ALL: [Plan; 3] = [Plan::Free, Plan::Trial, Plan::Paid];

    /// Its name in requests and state tables.
    pub fn name(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Trial => "trial",
            Plan::Paid => "paid",
        }
    }

    /// The plan with this name.
    pub fn from_name(name: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What an environment is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EnvironmentKind {
    /// Production.
    Production,
    /// Sandbox.
    Sandbox,
}

impl EnvironmentKind {
    /// Every kind, in declaration order.
    pub const ALL: [EnvironmentKind; 2] = [EnvironmentKind::Production, EnvironmentKind::Sandbox];

    /// Its name in requests and state tables.
    pub fn name(self) -> &'static str {
        match self {
            EnvironmentKind::Production => "production",
            EnvironmentKind::Sandbox => "sandbox",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<EnvironmentKind> {
        EnvironmentKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One environment of an account, with the integrations it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// Unique within the account.
    pub id: String,
    /// What it is for.
    pub kind: EnvironmentKind,
    /// Integration ids in this environment, sorted.
    pub integrations: Vec<String>,
}

/// One account setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// The key.
    pub key: String,
    /// The value, as JSON text.
    pub value: Json,
}

/// A user's access to one integration (e.g. `monitor` or `manage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// The integration id.
    pub integration: String,
    /// The access level.
    pub level: String,
}

/// A customer's own person in the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user id.
    pub id: String,
    /// Email address.
    pub email: String,
    /// Vendor-defined role name.
    pub role: String,
    /// Per-integration access levels, sorted by integration.
    pub access: Vec<AccessEntry>,
    /// Named rights, as the account gave them.
    pub rights: Vec<String>,
}

/// An active grant of support access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Assigned by the host; unique across the whole store.
    pub id: String,
    /// The one environment the grant covers.
    pub environment: String,
    /// The user id that created the grant.
    pub granted_by: String,
    /// The agent the grant is for, by email; `None`: any agent of the vendor.
    pub grantee: Option<String>,
    /// Vendor-defined scope document.
    pub scope: Json,
    /// When the grant stops counting; `None`: never.
    pub expires_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Vendor-defined data kept with the grant; `null` when there is none.
    pub metadata: Json,
}

/// How a service account came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Origin {
    /// Created under the account's blanket consent.
    Consent,
    /// Created by accepting an invitation.
    Invite,
}

impl Origin {
    /// Its name in state tables.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Consent => "consent",
            Origin::Invite => "invite",
        }
    }

    /// The origin with this name.
    pub fn from_name(name: &str) -> Option<Origin> {
        [Origin::Consent, Origin::Invite]
            .into_iter()
            .find(|o| o.name() == name)
    }
}

/// An active service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// Assigned by the host; unique across the whole store.
    pub id: String,
    /// The agent that logs in as this account.
    pub agent_email: String,
    /// Its rights.
    pub rights: Vec<String>,
    /// How it came to be.
    pub origin: Origin,
    /// Its description.
    pub description: String,
    /// Who created it.
    pub created_by: Actor,
    /// When.
    pub created_at: Timestamp,
}

/// An unused invitation for one agent address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Assigned by the host; unique across the whole store.
    pub id: String,
    /// The invited address, as written.
    pub email: String,
    /// Who invited.
    pub invited_by: Actor,
    /// When.
    pub created_at: Timestamp,
}

/// A vendor-defined record kept in the account; the host never interprets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value, as JSON text.
    pub value: Json,
}

/// Everything about one account that a policy may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account id.
    pub id: String,
    /// The vendor id of the account's policy module.
    pub policy: String,
    /// Its plan.
    pub plan: Plan,
    /// Sorted by id.
    pub environments: Vec<Environment>,
    /// Sorted by key.
    pub settings: Vec<Setting>,
    /// Its seat limit.
    pub seat_limit: Option<u32>,
    /// Sorted by id.
    pub users: Vec<User>,
    /// Active grants only, oldest first.
    pub grants: Vec<Grant>,
    /// Active service accounts only, oldest first.
    pub service_accounts: Vec<ServiceAccount>,
    /// Unused invitations only, oldest first.
    pub invitations: Vec<Invitation>,
    /// Vendor entries, sorted by key.
    pub entries: Vec<Entry>,
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// A customer user, by id (it may name no user of the account).
    User(String),
    /// A vendor support agent, by email address as given.
    Agent(String),
}

/// What an agent wants to do inside the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// E.g. `flow.read`, `users.update`.
    pub name: String,
    /// The environment it concerns.
    pub environment: Option<String>,
    /// The integration it concerns.
    pub integration: Option<String>,
}

/// Create a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    /// The environment.
    pub environment: String,
    /// The scope, as the caller wrote it.
    pub scope: Json,
    /// The expiry, as the caller wrote it; `None` when none was given.
    pub expires_in: Option<Json>,
}

/// Change an active grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyRequest {
    /// The grant id.
    pub grant: String,
    /// The new scope, as the caller wrote it.
    pub scope: Option<Json>,
    /// The new expiry, as the caller wrote it.
    pub expires_in: Option<Json>,
}

/// Change a service account's rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRightsRequest {
    /// The service account id.
    pub service_account: String,
    /// As the caller gave them.
    pub rights: Json,
}

/// A vendor-defined operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomRequest {
    /// Its name.
    pub name: String,
    /// Its parameters, as JSON text.
    pub params: Json,
}

/// The operation being asked for, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// Change a setting.
    SetSetting(Setting),
    /// Create a grant.
    Grant(GrantRequest),
    /// Change a grant.
    Modify(ModifyRequest),
    /// Revoke the grant with this id.
    Revoke(String),
    /// Invite this email address.
    Invite(String),
    /// The asking agent creates (or accepts) its own service account.
    CreateServiceAccount,
    /// Change a service account's rights.
    SetRights(SetRightsRequest),
    /// Remove the service account with this id.
    RemoveServiceAccount(String),
    /// An agent acts.
    Act(Action),
    /// A vendor-defined operation.
    Custom(CustomRequest),
}

/// One request to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The operation.
    pub operation: Operation,
    /// Who asks.
    pub actor: Actor,
    /// The account the request concerns, and nothing of any other.
    pub account: Account,
    /// The request's time, chosen by the host.
    pub now: Timestamp,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

impl Verdict {
    /// `allow` or `deny`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// A new grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewGrant {
    /// The environment.
    pub environment: String,
    /// The agent it is for; `None`: any agent of the vendor.
    pub grantee: Option<String>,
    /// The scope.
    pub scope: Json,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// Vendor data kept with it.
    pub metadata: Json,
}

/// The new state of an existing, active grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantUpdate {
    /// The grant id.
    pub id: String,
    /// The scope.
    pub scope: Json,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// Vendor data kept with it.
    pub metadata: Json,
}

/// A new service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewServiceAccount {
    /// The agent that logs in as it.
    pub agent_email: String,
    /// Its rights.
    pub rights: Vec<String>,
    /// How it comes to be.
    pub origin: Origin,
    /// Its description.
    pub description: String,
}

/// New rights for an existing, active service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsUpdate {
    /// The service account id.
    pub id: String,
    /// Its new rights.
    pub rights: Vec<String>,
}

/// A change the host applies, with the decision's audit record, when the
/// decision allows. Every effect touches the request's account only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Create a grant.
    CreateGrant(NewGrant),
    /// Change a grant.
    UpdateGrant(GrantUpdate),
    /// Revoke the grant with this id.
    RevokeGrant(String),
    /// Create a service account.
    CreateServiceAccount(NewServiceAccount),
    /// Change a service account's rights.
    SetServiceAccountRights(RightsUpdate),
    /// Remove the service account with this id.
    RemoveServiceAccount(String),
    /// Change a setting.
    SetSetting(Setting),
    /// Invite this email address.
    CreateInvitation(String),
    /// Use up the invitation with this id.
    UseInvitation(String),
    /// Put a vendor entry.
    PutEntry(Entry),
    /// Delete the vendor entry with this key.
    DeleteEntry(String),
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// The id of the rule that decided.
    pub rule: String,
    /// A human-readable explanation.
    pub message: String,
    /// On an allow, the rules that applied.
    pub rules: Vec<String>,
    /// What to change; empty on a deny.
    pub effects: Vec<Effect>,
}

/// The operations a module may handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationKind {
    /// `set_setting`.
    SetSetting,
    /// `grant`.
    Grant,
    /// `modify`.
    Modify,
    /// `revoke`.
    Revoke,
    /// `invite`.
    Invite,
    /// `create_service_account`.
    CreateServiceAccount,
    /// `set_rights`.
    SetRights,
    /// `remove_service_account`.
    RemoveServiceAccount,
    /// `act`.
    Act,
    /// A custom operation.
    Custom,
}

impl OperationKind {
    /// Every kind, in declaration order.
    pub const ALL: [OperationKind; 10] = [
        OperationKind::SetSetting,
        OperationKind::Grant,
        OperationKind::Modify,
        OperationKind::Revoke,
        OperationKind::Invite,
        OperationKind::CreateServiceAccount,
        OperationKind::SetRights,
        OperationKind::RemoveServiceAccount,
        OperationKind::Act,
        OperationKind::Custom,
    ];

    /// The one table of operation names: its `op` in requests and scenarios,
    /// and (but for `custom`) its audit record's kind.
    pub fn name(self) -> &'static str {
        match self {
            OperationKind::SetSetting => "set_setting",
            OperationKind::Grant => "grant",
            OperationKind::Modify => "modify",
            OperationKind::Revoke => "revoke",
            OperationKind::Invite => "invite",
            OperationKind::CreateServiceAccount => "create_service_account",
            OperationKind::SetRights => "set_rights",
            OperationKind::RemoveServiceAccount => "remove_service_account",
            OperationKind::Act => "act",
            OperationKind::Custom => "custom",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<OperationKind> {
        OperationKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The prefix of a custom operation's record kind: `custom.<name>`.
pub const CUSTOM_KIND_PREFIX: &str = "custom.";

impl Operation {
    /// Its kind, as `describe()` lists it.
    pub fn kind(&self) -> OperationKind {
        match self {
            Operation::SetSetting(_) => OperationKind::SetSetting,
            Operation::Grant(_) => OperationKind::Grant,
            Operation::Modify(_) => OperationKind::Modify,
            Operation::Revoke(_) => OperationKind::Revoke,
            Operation::Invite(_) => OperationKind::Invite,
            Operation::CreateServiceAccount => OperationKind::CreateServiceAccount,
            Operation::SetRights(_) => OperationKind::SetRights,
            Operation::RemoveServiceAccount(_) => OperationKind::RemoveServiceAccount,
            Operation::Act(_) => OperationKind::Act,
            Operation::Custom(_) => OperationKind::Custom,
        }
    }

    /// Its name (see [`OperationKind::name`]).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The kind of its audit record: its name, or `custom.<name>`.
    pub fn record_kind(&self) -> String {
        match self {
            Operation::Custom(custom) => format!("{CUSTOM_KIND_PREFIX}{}", custom.name),
            other => other.name().to_owned(),
        }
    }
}

/// What a module says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// The vendor id accounts name in their `policy` field.
    pub vendor: String,
    /// The module's own version.
    pub version: String,
    /// The operations it decides.
    pub operations: Vec<OperationKind>,
    /// The names of the custom operations it decides.
    pub custom_operations: Vec<String>,
}

/// A customer account as a state step gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSpec {
    /// The account id.
    pub id: String,
    /// The vendor id of its policy module.
    pub policy: String,
    /// Its plan.
    pub plan: Plan,
    /// Its environments, in the order given.
    pub environments: Vec<(String, EnvironmentKind)>,
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

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in OperationKind::ALL {
            assert_eq!(OperationKind::from_name(kind.name()), Some(kind));
        }
        for plan in Plan::ALL {
            assert_eq!(Plan::from_name(plan.name()), Some(plan));
        }
        for kind in EnvironmentKind::ALL {
            assert_eq!(EnvironmentKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(OperationKind::from_name("custom.x"), None);
    }

    #[test]
    fn custom_record_kind_is_dotted() {
        let op = Operation::Custom(CustomRequest {
            name: "approve".into(),
            params: "{}".into(),
        });
        assert_eq!(op.record_kind(), "custom.approve");
        assert_eq!(
            Operation::CreateServiceAccount.record_kind(),
            "create_service_account"
        );
    }

    /// The recorded `input` of a decision is this serde form; replay reads
    /// it back, so it must not change.
    #[test]
    fn the_recorded_form_is_stable() {
        let op = Operation::Grant(GrantRequest {
            environment: "prod".into(),
            scope: "\"admin\"".into(),
            expires_in: None,
        });
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"Grant":{"environment":"prod","scope":"\"admin\"","expires_in":null}}"#
        );
        assert_eq!(
            serde_json::to_string(&Operation::CreateServiceAccount).unwrap(),
            r#""CreateServiceAccount""#
        );
        assert_eq!(
            serde_json::to_string(&Actor::User("u".into())).unwrap(),
            r#"{"User":"u"}"#
        );
        assert_eq!(serde_json::to_string(&Plan::Paid).unwrap(), r#""Paid""#);
    }
}
