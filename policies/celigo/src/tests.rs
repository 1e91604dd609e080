//! Native tests of every CEL-* rule, one or more per rule id, named after it.

use chaperone_sdk::testing::{AccountBuilder, at, request, user};
use chaperone_sdk::{
    Account, Actor, Decision, Effect, NewGrant, Operation, OperationKind, Policy, Timestamp,
};

use crate::Module;

mod act;
mod grant;
mod modify;
mod setting;

/// When the tests' requests happen: 2026-01-01T09:00:00Z.
const NOW: Timestamp = at(0, 9);

/// The admin scope.
const ADMIN: &str = r#"{"level":"admin"}"#;

/// The recommended expiry.
const FIVE_DAYS: &str = r#"{"days":5}"#;

/// The agent every act test uses.
const SAM: &str = "sam.reyes@celigo.com";

/// A paid account with one production environment `prod` holding `crm` and
/// `shop`, and users: owner `olivia`, admin `ada`, custom `cody` (monitor
/// `shop`, manage `crm`), manage `mia` (manage `shop`), monitor `moe`
/// (monitor `crm`).
fn acme() -> AccountBuilder {
    AccountBuilder::celigo("acme")
        .paid()
        .production("prod")
        .integration("prod", "shop")
        .integration("prod", "crm")
        .user(user("olivia", "owner"))
        .user(user("ada", "admin"))
        .user(
            user("cody", "custom")
                .access("shop", "monitor")
                .access("crm", "manage"),
        )
        .user(user("mia", "manage").access("shop", "manage"))
        .user(user("moe", "monitor").access("crm", "monitor"))
}

/// `acme` with `allow_non_admin_grants` on.
fn acme_open() -> AccountBuilder {
    acme().setting("allow_non_admin_grants", "true")
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

/// The effect of an allowed grant on `prod` for any agent.
fn created(scope: &str, expires_at: Timestamp) -> Effect {
    Effect::CreateGrant(NewGrant {
        environment: "prod".into(),
        grantee: None,
        scope: scope.into(),
        expires_at: Some(expires_at),
        metadata: "null".into(),
    })
}

#[test]
fn describe_names_celigo_and_its_operations() {
    let description = Module::describe();
    assert_eq!(description.vendor, "celigo");
    assert_eq!(description.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        description.operations,
        [
            OperationKind::SetSetting,
            OperationKind::Grant,
            OperationKind::Modify,
            OperationKind::Revoke,
            OperationKind::Act,
        ]
    );
    assert!(description.custom_operations.is_empty());
}

#[test]
fn operations_of_other_vendors_are_unsupported() {
    use chaperone_sdk::testing::{assert_denied, by_agent, by_user, op};
    for (operation, actor) in [
        (op::invite("ann@xentral.com"), by_user("ada")),
        (op::create_service_account(), by_agent(SAM)),
        (op::set_rights("sa1", r#"["*"]"#), by_user("ada")),
        (op::remove_service_account("sa1"), by_user("ada")),
        (op::custom("request-access", "{}"), by_user("ada")),
    ] {
        assert_denied(&eval(operation, actor, acme()), "HOST-UNSUPPORTED");
    }
}
