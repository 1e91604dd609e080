//! Builders for requests in a policy's native unit tests.
//!
//! A policy is a plain Rust type implementing [`Policy`](crate::Policy), so its
//! rules can be tested natively, without building WebAssembly or a host: build
//! a [`Request`] with these helpers, call `evaluate`, and check the
//! [`Decision`].
//!
//! ```
//! use chaperone_sdk::testing::{
//!     AccountBuilder, assert_allowed, assert_denied, at, by_agent, grant, op, request, user,
//! };
//! use chaperone_sdk::{Decision, EnvironmentKind, Request};
//!
//! // A toy rule: agents may act only when the account holds a grant.
//! fn evaluate(request: &Request) -> Decision {
//!     if request.account.grants.is_empty() {
//!         Decision::deny("TOY-GRANT", "no grant")
//!     } else {
//!         Decision::allow("TOY-GRANT", "granted")
//!     }
//! }
//!
//! let account = AccountBuilder::new("acme", "toy")
//!     .paid()
//!     .env("prod", EnvironmentKind::Production)
//!     .integration("prod", "shop")
//!     .user(user("ada", "admin").access("shop", "manage"));
//! let read = op::act("flow.read", Some("prod"), Some("shop"));
//!
//! let denied = evaluate(&request(read.clone(), by_agent("sam@vendor.test"), account.clone(), at(0, 9)));
//! assert_denied(&denied, "TOY-GRANT");
//!
//! let account = account.grant(grant("g1", "prod", "ada").expires_at(at(5, 9)));
//! assert_allowed(&evaluate(&request(read, by_agent("sam@vendor.test"), account, at(1, 9))));
//! ```
//!
//! Nothing here knows any vendor's rules: defaults are the least a test has
//! to say (a `free` plan, no settings, empty rights), and every field can be
//! set explicitly. Builders sort lists as the host does (by id or key), so a
//! built [`Account`] looks like a real snapshot.

use crate::time::{DAY, HOUR};
use crate::{
    AccessEntry, Account, Action, Actor, CustomRequest, Decision, Effect, Entry, Environment,
    EnvironmentKind, Grant, GrantRequest, Invitation, ModifyRequest, Operation, Origin, Plan,
    Request, ServiceAccount, SetRightsRequest, Setting, Timestamp, User, Verdict,
};

/// 2026-01-01T00:00:00Z, in milliseconds since the Unix epoch: the origin of
/// [`at`].
pub const JAN_1_2026: Timestamp = 1_767_225_600_000;

/// The instant `day` days and `hour` hours after [`JAN_1_2026`]
/// (`at(0, 9)` is 2026-01-01T09:00:00Z).
pub const fn at(day: i64, hour: i64) -> Timestamp {
    JAN_1_2026 + day * DAY + hour * HOUR
}

/// A customer user, by id, as the request's actor.
pub fn by_user(id: &str) -> Actor {
    Actor::User(id.into())
}

/// A vendor agent, by email address, as the request's actor.
pub fn by_agent(email: &str) -> Actor {
    Actor::Agent(email.into())
}

/// A request: `operation` asked by `actor` in `account` at `now`.
pub fn request(
    operation: Operation,
    actor: Actor,
    account: impl Into<Account>,
    now: Timestamp,
) -> Request {
    Request {
        operation,
        actor,
        account: account.into(),
        now,
    }
}

pub mod op {
    //! Constructors for each [`Operation`]. JSON-valued parameters are JSON
    //! text, passed through exactly as written (so a test can send `5.0`).

    use super::{
        Action, CustomRequest, GrantRequest, ModifyRequest, Operation, SetRightsRequest, Setting,
    };

    /// Set `key` to the JSON text `value`.
    pub fn set_setting(key: &str, value: &str) -> Operation {
        Operation::SetSetting(Setting {
            key: key.into(),
            value: value.into(),
        })
    }

    /// Grant access to `environment` with the JSON `scope` and optional JSON
    /// `expires_in`.
    pub fn grant(environment: &str, scope: &str, expires_in: Option<&str>) -> Operation {
        Operation::Grant(GrantRequest {
            environment: environment.into(),
            scope: scope.into(),
            expires_in: expires_in.map(Into::into),
        })
    }

    /// Modify the grant with id `grant`.
    pub fn modify(grant: &str, scope: Option<&str>, expires_in: Option<&str>) -> Operation {
        Operation::Modify(ModifyRequest {
            grant: grant.into(),
            scope: scope.map(Into::into),
            expires_in: expires_in.map(Into::into),
        })
    }

    /// Revoke the grant with id `grant`.
    pub fn revoke(grant: &str) -> Operation {
        Operation::Revoke(grant.into())
    }

    /// Invite the agent address `email`.
    pub fn invite(email: &str) -> Operation {
        Operation::Invite(email.into())
    }

    /// The asking agent creates its own service account.
    pub fn create_service_account() -> Operation {
        Operation::CreateServiceAccount
    }

    /// Set the rights (JSON text) of the service account with id
    /// `service_account`.
    pub fn set_rights(service_account: &str, rights: &str) -> Operation {
        Operation::SetRights(SetRightsRequest {
            service_account: service_account.into(),
            rights: rights.into(),
        })
    }

    /// Remove the service account with id `service_account`.
    pub fn remove_service_account(service_account: &str) -> Operation {
        Operation::RemoveServiceAccount(service_account.into())
    }

    /// An agent's action.
    pub fn act(name: &str, environment: Option<&str>, integration: Option<&str>) -> Operation {
        Operation::Act(Action {
            name: name.into(),
            environment: environment.map(Into::into),
            integration: integration.map(Into::into),
        })
    }

    /// A vendor-defined operation with JSON `params`.
    pub fn custom(name: &str, params: &str) -> Operation {
        Operation::Custom(CustomRequest {
            name: name.into(),
            params: params.into(),
        })
    }
}

/// Builds an [`Account`] snapshot.
///
/// Starts on the `free` plan with no environments, settings, users or other
/// objects; [`build`](Self::build) (or `Into<Account>`) sorts every list as
/// the host does.
#[derive(Debug, Clone)]
pub struct AccountBuilder {
    account: Account,
}

impl AccountBuilder {
    /// An empty account `id` governed by the policy `policy`.
    pub fn new(id: &str, policy: &str) -> Self {
        AccountBuilder {
            account: Account {
                id: id.into(),
                policy: policy.into(),
                plan: Plan::Free,
                environments: Vec::new(),
                settings: Vec::new(),
                seat_limit: None,
                users: Vec::new(),
                grants: Vec::new(),
                service_accounts: Vec::new(),
                invitations: Vec::new(),
                entries: Vec::new(),
            },
        }
    }

    /// An empty account governed by the `celigo` policy.
    pub fn celigo(id: &str) -> Self {
        Self::new(id, "celigo")
    }

    /// An empty account governed by the `xentral` policy.
    pub fn xentral(id: &str) -> Self {
        Self::new(id, "xentral")
    }

    /// Sets the plan.
    #[must_use]
    pub fn plan(mut self, plan: Plan) -> Self {
        self.account.plan = plan;
        self
    }

    /// The `free` plan (the default).
    #[must_use]
    pub fn free(self) -> Self {
        self.plan(Plan::Free)
    }

    /// The `trial` plan.
    #[must_use]
    pub fn trial(self) -> Self {
        self.plan(Plan::Trial)
    }

    /// The `paid` plan.
    #[must_use]
    pub fn paid(self) -> Self {
        self.plan(Plan::Paid)
    }

    /// Adds an environment with no integrations.
    #[must_use]
    pub fn env(mut self, id: &str, kind: EnvironmentKind) -> Self {
        self.account.environments.push(Environment {
            id: id.into(),
            kind,
            integrations: Vec::new(),
        });
        self
    }

    /// Adds a `production` environment.
    #[must_use]
    pub fn production(self, id: &str) -> Self {
        self.env(id, EnvironmentKind::Production)
    }

    /// Adds a `sandbox` environment.
    #[must_use]
    pub fn sandbox(self, id: &str) -> Self {
        self.env(id, EnvironmentKind::Sandbox)
    }

    /// Adds the integration `id` to the environment `environment`, which
    /// must have been added before.
    #[must_use]
    pub fn integration(mut self, environment: &str, id: &str) -> Self {
        let env = self
            .account
            .environments
            .iter_mut()
            .find(|e| e.id == environment);
        assert!(
            env.is_some(),
            "add environment `{environment}` before its integration `{id}`"
        );
        if let Some(env) = env {
            env.integrations.push(id.into());
        }
        self
    }

    /// Sets the setting `key` to the JSON text `value`, replacing any
    /// earlier value.
    #[must_use]
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.account.settings.retain(|s| s.key != key);
        self.account.settings.push(Setting {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Sets the seat limit.
    #[must_use]
    pub fn seat_limit(mut self, seats: u32) -> Self {
        self.account.seat_limit = Some(seats);
        self
    }

    /// Adds a user (see [`user`]), replacing any user with the same id.
    #[must_use]
    pub fn user(mut self, user: impl Into<User>) -> Self {
        let user = user.into();
        self.account.users.retain(|u| u.id != user.id);
        self.account.users.push(user);
        self
    }

    /// Removes the user with this id, if any.
    #[must_use]
    pub fn without_user(mut self, id: &str) -> Self {
        self.account.users.retain(|u| u.id != id);
        self
    }

    /// Adds an active grant (see [`grant`]).
    #[must_use]
    pub fn grant(mut self, grant: impl Into<Grant>) -> Self {
        self.account.grants.push(grant.into());
        self
    }

    /// Adds an active service account (see [`service_account`]).
    #[must_use]
    pub fn service_account(mut self, service_account: impl Into<ServiceAccount>) -> Self {
        self.account.service_accounts.push(service_account.into());
        self
    }

    /// Adds an unused invitation (see [`invitation`]).
    #[must_use]
    pub fn invitation(mut self, invitation: impl Into<Invitation>) -> Self {
        self.account.invitations.push(invitation.into());
        self
    }

    /// Adds a vendor entry with the JSON text `value`.
    #[must_use]
    pub fn entry(mut self, key: &str, value: &str) -> Self {
        self.account.entries.push(Entry {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// The account, with every list sorted as the host sorts it.
    pub fn build(self) -> Account {
        let mut account = self.account;
        account.environments.sort_by(|a, b| a.id.cmp(&b.id));
        for env in &mut account.environments {
            env.integrations.sort();
        }
        account.settings.sort_by(|a, b| a.key.cmp(&b.key));
        account.users.sort_by(|a, b| a.id.cmp(&b.id));
        for user in &mut account.users {
            user.access
                .sort_by(|a, b| a.integration.cmp(&b.integration));
        }
        account.grants.sort_by(|a, b| a.id.cmp(&b.id));
        account.service_accounts.sort_by(|a, b| a.id.cmp(&b.id));
        account.invitations.sort_by(|a, b| a.id.cmp(&b.id));
        account.entries.sort_by(|a, b| a.key.cmp(&b.key));
        account
    }
}

impl From<AccountBuilder> for Account {
    fn from(builder: AccountBuilder) -> Self {
        builder.build()
    }
}

/// Builds a [`User`]; see [`user`].
#[derive(Debug, Clone)]
pub struct UserBuilder {
    user: User,
}

/// A user `id` with `role`, email `ID@customer.test`, no access and no
/// rights.
pub fn user(id: &str, role: &str) -> UserBuilder {
    UserBuilder {
        user: User {
            id: id.into(),
            email: format!("{id}@customer.test"),
            role: role.into(),
            access: Vec::new(),
            rights: Vec::new(),
        },
    }
}

impl UserBuilder {
    /// Sets the email address.
    #[must_use]
    pub fn email(mut self, email: &str) -> Self {
        self.user.email = email.into();
        self
    }

    /// Gives access at `level` to `integration`, replacing any earlier level.
    #[must_use]
    pub fn access(mut self, integration: &str, level: &str) -> Self {
        self.user.access.retain(|a| a.integration != integration);
        self.user.access.push(AccessEntry {
            integration: integration.into(),
            level: level.into(),
        });
        self
    }

    /// Adds a named right.
    #[must_use]
    pub fn right(mut self, right: &str) -> Self {
        self.user.rights.push(right.into());
        self
    }
}

impl From<UserBuilder> for User {
    fn from(builder: UserBuilder) -> Self {
        builder.user
    }
}

/// Builds a [`Grant`]; see [`grant`].
#[derive(Debug, Clone)]
pub struct GrantBuilder {
    grant: Grant,
}

/// An active grant `id` on `environment` created by the user `granted_by`
/// at [`JAN_1_2026`], for any agent, with scope and metadata `null` and no
/// expiry.
pub fn grant(id: &str, environment: &str, granted_by: &str) -> GrantBuilder {
    GrantBuilder {
        grant: Grant {
            id: id.into(),
            environment: environment.into(),
            granted_by: granted_by.into(),
            grantee: None,
            scope: "null".into(),
            expires_at: None,
            created_at: JAN_1_2026,
            metadata: "null".into(),
        },
    }
}

impl GrantBuilder {
    /// Sets the scope (JSON text).
    #[must_use]
    pub fn scope(mut self, scope: &str) -> Self {
        self.grant.scope = scope.into();
        self
    }

    /// Restricts the grant to one agent address.
    #[must_use]
    pub fn grantee(mut self, email: &str) -> Self {
        self.grant.grantee = Some(email.into());
        self
    }

    /// Sets the expiry.
    #[must_use]
    pub fn expires_at(mut self, at: Timestamp) -> Self {
        self.grant.expires_at = Some(at);
        self
    }

    /// Sets the creation time.
    #[must_use]
    pub fn created_at(mut self, at: Timestamp) -> Self {
        self.grant.created_at = at;
        self
    }

    /// Sets the metadata (JSON text).
    #[must_use]
    pub fn metadata(mut self, metadata: &str) -> Self {
        self.grant.metadata = metadata.into();
        self
    }
}

impl From<GrantBuilder> for Grant {
    fn from(builder: GrantBuilder) -> Self {
        builder.grant
    }
}

/// Builds a [`ServiceAccount`]; see [`service_account`].
#[derive(Debug, Clone)]
pub struct ServiceAccountBuilder {
    service_account: ServiceAccount,
}

/// An active service account `id` that `agent_email` logs in as, created by
/// that agent under consent at [`JAN_1_2026`], with no rights and an empty
/// description.
pub fn service_account(id: &str, agent_email: &str) -> ServiceAccountBuilder {
    ServiceAccountBuilder {
        service_account: ServiceAccount {
            id: id.into(),
            agent_email: agent_email.into(),
            rights: Vec::new(),
            origin: Origin::Consent,
            description: String::new(),
            created_by: Actor::Agent(agent_email.into()),
            created_at: JAN_1_2026,
        },
    }
}

impl ServiceAccountBuilder {
    /// Sets the rights.
    #[must_use]
    pub fn rights<I, S>(mut self, rights: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.service_account.rights = rights.into_iter().map(Into::into).collect();
        self
    }

    /// Sets how the account came to be.
    #[must_use]
    pub fn origin(mut self, origin: Origin) -> Self {
        self.service_account.origin = origin;
        self
    }

    /// Sets the description.
    #[must_use]
    pub fn description(mut self, description: &str) -> Self {
        self.service_account.description = description.into();
        self
    }

    /// Sets who created it.
    #[must_use]
    pub fn created_by(mut self, actor: Actor) -> Self {
        self.service_account.created_by = actor;
        self
    }

    /// Sets the creation time.
    #[must_use]
    pub fn created_at(mut self, at: Timestamp) -> Self {
        self.service_account.created_at = at;
        self
    }
}

impl From<ServiceAccountBuilder> for ServiceAccount {
    fn from(builder: ServiceAccountBuilder) -> Self {
        builder.service_account
    }
}

/// An unused invitation `id` for `email`, sent by `invited_by` at
/// [`JAN_1_2026`].
pub fn invitation(id: &str, email: &str, invited_by: Actor) -> Invitation {
    Invitation {
        id: id.into(),
        email: email.into(),
        invited_by,
        created_at: JAN_1_2026,
    }
}

/// Asserts that `decision` allows.
#[track_caller]
pub fn assert_allowed(decision: &Decision) {
    assert!(
        matches!(decision.verdict, Verdict::Allow),
        "expected an allow, got {decision:?}"
    );
}

/// Asserts that `decision` denies, naming `rule`, with no effects.
#[track_caller]
pub fn assert_denied(decision: &Decision, rule: &str) {
    assert!(
        matches!(decision.verdict, Verdict::Deny) && decision.rule == rule,
        "expected a deny by `{rule}`, got {decision:?}"
    );
    assert!(
        decision.effects.is_empty(),
        "a deny carries no effects, got {decision:?}"
    );
}

/// Asserts that `decision` carries exactly `expected`, in order.
///
/// The generated interface types do not implement `PartialEq`; effects are
/// compared by their `Debug` form, which shows every field.
#[track_caller]
pub fn assert_effects(decision: &Decision, expected: &[Effect]) {
    assert_eq!(
        format!("{:?}", decision.effects),
        format!("{expected:?}"),
        "effects of {decision:?}"
    );
}
