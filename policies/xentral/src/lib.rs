//! The xentral-style support access policy.
//!
//! Vendor staff (addresses at exactly `xentral.com`) get into a customer's
//! instance through a service account: either any of them creates one while
//! the customer's blanket consent (`employee_access_consent`) is on, or the
//! one agent a customer admin invited accepts the invitation. A service
//! account has admin rights (`*`) until an admin limits them, never expires,
//! and stays until an admin removes it.
//!
//! Each rule of `RULES.md` is one function named after its id (`xen_who`,
//! `xen_domain`, ...) returning a [`Check`]; an operation runs them in the
//! order the rules table gives, so the first failing rule names the denial.
//!
//! - `who`: XEN-WHO, who counts as a customer admin.
//! - `address`: XEN-DOMAIN, who counts as vendor staff, and agent identity.
//! - `rights`: XEN-RIGHTS, reading rights and matching them to actions.
//! - `setting`, `invite`, `service_account`, `act`: one file per operation
//!   family.

use chaperone_sdk::{Decision, Description, Operation, OperationKind, Policy, Request};

mod act;
mod address;
mod invite;
mod rights;
mod service_account;
mod setting;
#[cfg(test)]
mod tests;
mod who;

/// The rule ids this module names (see `RULES.md`).
mod rule {
    /// Who counts as a customer admin.
    pub(crate) const WHO: &str = "XEN-WHO";
    /// `employee_access_consent` is the only setting.
    pub(crate) const SETTING: &str = "XEN-SETTING";
    /// Vendor staff are addresses at exactly `xentral.com`.
    pub(crate) const DOMAIN: &str = "XEN-DOMAIN";
    /// One active service account per agent, one unused invitation per
    /// address.
    pub(crate) const ONE_ACCOUNT: &str = "XEN-ONE-ACCOUNT";
    /// What blanket consent lets agents do.
    pub(crate) const CONSENT: &str = "XEN-CONSENT";
    /// An admin invites one agent, who then accepts.
    pub(crate) const INVITE: &str = "XEN-INVITE";
    /// A new service account has rights `*`.
    pub(crate) const DEFAULT_RIGHTS: &str = "XEN-DEFAULT-RIGHTS";
    /// Rights: who sets them, and what they cover.
    pub(crate) const RIGHTS: &str = "XEN-RIGHTS";
    /// Service accounts take no seat.
    pub(crate) const SEATS: &str = "XEN-SEATS";
    /// Service accounts do not expire.
    pub(crate) const NO_EXPIRY: &str = "XEN-NO-EXPIRY";
    /// Revoking consent keeps existing service accounts.
    pub(crate) const REVOKE_CONSENT: &str = "XEN-REVOKE-CONSENT";
    /// An admin removes any service account.
    pub(crate) const REMOVE: &str = "XEN-REMOVE";
    /// Every service account is marked `Xentral Service account`.
    pub(crate) const MARK: &str = "XEN-MARK";
    /// No active service account, no action.
    pub(crate) const NO_ACCOUNT: &str = "XEN-NO-ACCOUNT";
    /// An operation this module does not decide (the host refuses it first).
    pub(crate) const UNSUPPORTED: &str = "HOST-UNSUPPORTED";
}

/// The outcome of one rule: `Err` holds the denial naming it.
pub(crate) type Check<T = ()> = Result<T, Decision>;

/// The setting that is the customer's blanket consent.
pub(crate) const CONSENT_SETTING: &str = "employee_access_consent";

/// The xentral policy.
pub struct Module;

impl Policy for Module {
    fn describe() -> Description {
        Description {
            vendor: "xentral".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec![
                OperationKind::SetSetting,
                OperationKind::Invite,
                OperationKind::CreateServiceAccount,
                OperationKind::SetRights,
                OperationKind::RemoveServiceAccount,
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
            now: _,
        } = request;
        let decided = match operation {
            Operation::SetSetting(setting) => setting::set_setting(account, actor, setting),
            Operation::Invite(email) => invite::invite(account, actor, email),
            Operation::CreateServiceAccount => service_account::create(account, actor),
            Operation::SetRights(request) => service_account::set_rights(account, actor, request),
            Operation::RemoveServiceAccount(id) => service_account::remove(account, actor, id),
            Operation::Act(action) => act::act(account, actor, action),
            Operation::Grant(_)
            | Operation::Modify(_)
            | Operation::Revoke(_)
            | Operation::Custom(_) => Err(Decision::deny(
                rule::UNSUPPORTED,
                "the xentral policy does not decide this operation",
            )),
        };
        decided.unwrap_or_else(|denied| denied)
    }
}

chaperone_sdk::export_policy!(Module);
