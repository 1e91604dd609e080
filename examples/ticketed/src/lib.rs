//! The ticketed support access policy: per-request approval tied to helpdesk
//! tickets.
//!
//! A vendor's support agent asks for access to one environment of a customer
//! account, naming the helpdesk ticket that needs it, a scope (`read` or
//! `write`) and a number of hours. The request waits, as a vendor entry of the
//! account, until one of the customer's owners or admins approves it (the
//! host then creates a grant for that agent alone, expiring that many hours
//! after the approval) or denies it. Admins revoke grants at any time; agents
//! act only under their own grants and never change users.
//!
//! The module is built only on the SDK's generic interface — custom
//! operations, vendor entries, per-agent grants with metadata — and needs
//! nothing from the host that the two built-in vendors do not also use.
//!
//! Each rule of `examples/ticketed/RULES.md` is one function in `rules`,
//! named after its id (`tkt_domain`, `tkt_approver`, ...) and returning a
//! [`Check`]; the functions in `operations` run them in the order that file
//! gives for each operation, so the first failing rule names the denial.
//! `pending` is a pending request as it is kept in a vendor entry.

use chaperone_sdk::{Decision, Description, Operation, OperationKind, Policy, Request};

mod operations;
mod pending;
mod rules;
#[cfg(test)]
mod tests;

/// The vendor id accounts name in their `policy` field.
pub(crate) const VENDOR: &str = "ticketed";

/// The custom operation an agent asks for access with.
pub(crate) const REQUEST_ACCESS: &str = "request-access";
/// The custom operation a customer admin approves a pending request with.
pub(crate) const APPROVE: &str = "approve";
/// The custom operation a customer admin turns a pending request down with.
pub(crate) const DENY_REQUEST: &str = "deny-request";

/// The rule ids this module names (see `RULES.md`).
mod rule {
    /// Only vendor staff, by address, request access.
    pub(crate) const DOMAIN: &str = "TKT-DOMAIN";
    /// Only a customer owner or admin approves, denies or revokes.
    pub(crate) const APPROVER: &str = "TKT-APPROVER";
    /// The shape of a custom operation's parameters.
    pub(crate) const PARAMS: &str = "TKT-PARAMS";
    /// Every request names a well-formed helpdesk ticket.
    pub(crate) const TICKET: &str = "TKT-TICKET";
    /// A request, and the grant it leads to, cover one environment.
    pub(crate) const ENV: &str = "TKT-ENV";
    /// A scope is `read` or `write`.
    pub(crate) const SCOPE: &str = "TKT-SCOPE";
    /// A bounded number of hours.
    pub(crate) const HOURS: &str = "TKT-HOURS";
    /// Few pending requests per agent, one per ticket.
    pub(crate) const PENDING: &str = "TKT-PENDING";
    /// Approving and denying need a pending request.
    pub(crate) const APPROVE: &str = "TKT-APPROVE";
    /// Old requests are not approved.
    pub(crate) const STALE: &str = "TKT-STALE";
    /// Only active grants are revoked.
    pub(crate) const REVOKE: &str = "TKT-REVOKE";
    /// Agents never change users or their permissions.
    pub(crate) const PERMS: &str = "TKT-PERMS";
    /// No grant of one's own, no action.
    pub(crate) const NO_GRANT: &str = "TKT-NO-GRANT";
    /// What a scope lets an agent do.
    pub(crate) const LEVEL: &str = "TKT-LEVEL";
    /// An operation this module does not decide (the host refuses it first).
    pub(crate) const UNSUPPORTED: &str = "HOST-UNSUPPORTED";
}

/// The outcome of one rule: `Err` holds the denial naming it.
pub(crate) type Check<T = ()> = Result<T, Decision>;

/// The ticketed policy.
pub struct Module;

impl Policy for Module {
    fn describe() -> Description {
        Description {
            vendor: VENDOR.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec![
                OperationKind::Custom,
                OperationKind::Revoke,
                OperationKind::Act,
            ],
            custom_operations: vec![REQUEST_ACCESS.into(), APPROVE.into(), DENY_REQUEST.into()],
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
            Operation::Custom(custom) => match custom.name.as_str() {
                REQUEST_ACCESS => operations::request_access(account, actor, &custom.params, now),
                APPROVE => operations::approve(account, actor, &custom.params, now),
                DENY_REQUEST => operations::deny_request(account, actor, &custom.params),
                other => Err(Decision::deny(
                    rule::UNSUPPORTED,
                    format!(
                        "the ticketed policy does not decide the custom operation `{}`",
                        rules::shown(other)
                    ),
                )),
            },
            Operation::Revoke(id) => operations::revoke(account, actor, id),
            Operation::Act(action) => operations::act(account, actor, action),
            Operation::SetSetting(_)
            | Operation::Grant(_)
            | Operation::Modify(_)
            | Operation::Invite(_)
            | Operation::CreateServiceAccount
            | Operation::SetRights(_)
            | Operation::RemoveServiceAccount(_) => Err(Decision::deny(
                rule::UNSUPPORTED,
                "the ticketed policy does not decide this operation",
            )),
        };
        decided.unwrap_or_else(|denied| denied)
    }
}

chaperone_sdk::export_policy!(Module);
