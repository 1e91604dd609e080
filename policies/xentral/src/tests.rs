//! Native tests of every XEN-* rule, one or more per rule id, named after it.

use chaperone_sdk::testing::{AccountBuilder, at, request, service_account, user};
use chaperone_sdk::{Account, Actor, Decision, Operation, OperationKind, Policy, Timestamp};

use crate::Module;

mod act;
mod invite;
mod service_account;
mod setting;

/// When the tests' requests happen: 2026-01-01T09:00:00Z.
const NOW: Timestamp = at(0, 9);

/// An agent with a service account in [`instance`].
const JONAS: &str = "jonas.weber@xentral.com";
/// An agent with no service account anywhere.
const MIRA: &str = "mira.koch@xentral.com";

/// A paid instance without consent; users: admin `anja`, user manager
/// `ulla` (`users.manage`), plain user `paul` (`orders.read`).
fn instance() -> AccountBuilder {
    AccountBuilder::xentral("alpenblick")
        .paid()
        .production("live")
        .user(user("anja", "admin"))
        .user(user("ulla", "user").right("users.manage"))
        .user(user("paul", "user").right("orders.read"))
}

/// [`instance`] with consent on.
fn consenting() -> AccountBuilder {
    instance().setting("employee_access_consent", "true")
}

/// `account` with `sa-jonas`, jonas's service account with `rights`.
fn with_jonas(account: AccountBuilder, rights: &[&str]) -> AccountBuilder {
    account.service_account(
        service_account("sa-jonas", JONAS)
            .rights(rights.iter().copied())
            .description("Xentral Service account"),
    )
}

/// Evaluates `operation` by `actor` in `account` at [`NOW`].
fn eval(operation: Operation, actor: Actor, account: impl Into<Account>) -> Decision {
    eval_at(operation, actor, account, NOW)
}

/// Evaluates `operation` by `actor` in `account` at `now`.
fn eval_at(
    operation: Operation,
    actor: Actor,
    account: impl Into<Account>,
    now: Timestamp,
) -> Decision {
    Module::evaluate(&request(operation, actor, account, now))
}

#[test]
fn describe_names_xentral_and_its_operations() {
    let description = Module::describe();
    assert_eq!(description.vendor, "xentral");
    assert_eq!(description.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        description.operations,
        [
            OperationKind::SetSetting,
            OperationKind::Invite,
            OperationKind::CreateServiceAccount,
            OperationKind::SetRights,
            OperationKind::RemoveServiceAccount,
            OperationKind::Act,
        ]
    );
    assert!(description.custom_operations.is_empty());
}

#[test]
fn operations_of_other_vendors_are_unsupported() {
    use chaperone_sdk::testing::{assert_denied, by_user, op};
    for operation in [
        op::grant("live", r#"{"level":"admin"}"#, Some(r#"{"days":5}"#)),
        op::modify("g1", None, Some(r#"{"days":5}"#)),
        op::revoke("g1"),
        op::custom("request-access", "{}"),
    ] {
        assert_denied(
            &eval(operation, by_user("anja"), consenting()),
            "HOST-UNSUPPORTED",
        );
    }
}
