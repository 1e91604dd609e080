//! The celigo-style support access policy.
//!
//! A customer's owners and admins (and, while the account setting
//! `allow_non_admin_grants` is on, its other users) grant the vendor's support
//! agents access to one environment, for a bounded time, either account-wide
//! (`{"level":"admin"}`) or on named integrations (`monitor` or `manage`).
//! Agents then act under those grants, never changing users.
//!
//! Each rule of `RULES.md` is one function named after its id (`cel_plan`,
//! `cel_who`, ...) returning a [`Check`]; an operation runs them in the order
//! the rules table gives, so the first failing rule names the denial.
//!
//! - `setting`: `set_setting` (CEL-SETTING).
//! - `grant`: `grant`, `modify` and `revoke` (CEL-PLAN, CEL-WHO, CEL-LEVEL,
//!   CEL-EXPIRY, CEL-NONADMIN-SCOPE, CEL-ENV, CEL-MULTIENV, CEL-CHANGE).
//! - `act`: an agent's action (CEL-PERMS, CEL-NO-GRANT, CEL-ENV,
//!   CEL-CURRENT-ACCESS, CEL-ACTION).
//! - `scope` and `expiry`: reading scopes and expiries.

use chaperone_sdk::{Decision, Description, Operation, OperationKind, Policy, Request};

mod act;
mod expiry;
mod grant;
mod scope;
mod setting;
#[cfg(test)]
mod tests;

/// The rule ids this module names (see `RULES.md`).
mod rule {
    /// Support access cannot be enabled on `free` or `trial` accounts.
    pub(crate) const PLAN: &str = "CEL-PLAN";
    /// Who may grant.
    pub(crate) const WHO: &str = "CEL-WHO";
    /// Who may change `allow_non_admin_grants`, and what it takes.
    pub(crate) const SETTING: &str = "CEL-SETTING";
    /// The shape of a scope.
    pub(crate) const LEVEL: &str = "CEL-LEVEL";
    /// A required, bounded expiry.
    pub(crate) const EXPIRY: &str = "CEL-EXPIRY";
    /// A non-admin grants only what they have.
    pub(crate) const NONADMIN_SCOPE: &str = "CEL-NONADMIN-SCOPE";
    /// A non-admin's grant follows their current access.
    pub(crate) const CURRENT_ACCESS: &str = "CEL-CURRENT-ACCESS";
    /// A grant covers exactly one environment.
    pub(crate) const ENV: &str = "CEL-ENV";
    /// Which environments of a multi-environment account can be granted.
    pub(crate) const MULTIENV: &str = "CEL-MULTIENV";
    /// Agents never change users or their permissions.
    pub(crate) const PERMS: &str = "CEL-PERMS";
    /// What a level lets an agent do.
    pub(crate) const ACTION: &str = "CEL-ACTION";
    /// Who may modify or revoke a grant.
    pub(crate) const CHANGE: &str = "CEL-CHANGE";
    /// No grant, no action.
    pub(crate) const NO_GRANT: &str = "CEL-NO-GRANT";
    /// An operation this module does not decide (the host refuses it first).
    pub(crate) const UNSUPPORTED: &str = "HOST-UNSUPPORTED";
}

/// The outcome of one rule: `Err` holds the denial naming it.
pub(crate) type Check<T = ()> = Result<T, Decision>;

/// The celigo policy.
pub struct Module;

impl Policy for Module {
    fn describe() -> Description {
        Description {
            vendor: "celigo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec![
                OperationKind::SetSetting,
                OperationKind::Grant,
                OperationKind::Modify,
                OperationKind::Revoke,
                OperationKind::Act,
            ],
            custom_operations: vec![],
        }
    }

    fn evaluate(request: &Request) -> Decision {
        let Request {
            operation,
            actor,
            account,
            now,
        } = request;
        let now = *now;
        let decided = match operation {
            Operation::SetSetting(setting) => setting::set_setting(account, actor, setting),
            Operation::Grant(grant) => grant::grant(account, actor, grant, now),
            Operation::Modify(modify) => grant::modify(account, actor, modify, now),
            Operation::Revoke(id) => grant::revoke(account, actor, id),
            Operation::Act(action) => act::act(account, actor, action),
            Operation::Invite(_)
            | Operation::CreateServiceAccount
            | Operation::SetRights(_)
            | Operation::RemoveServiceAccount(_)
            | Operation::Custom(_) => Err(Decision::deny(
                rule::UNSUPPORTED,
                "the celigo policy does not decide this operation",
            )),
        };
        decided.unwrap_or_else(|denied| denied)
    }
}

chaperone_sdk::export_policy!(Module);
