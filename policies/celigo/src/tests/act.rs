//! `act`: CEL-PERMS, CEL-NO-GRANT, CEL-ENV, CEL-CURRENT-ACCESS and
//! CEL-ACTION, in that fixed order.

use chaperone_sdk::testing::{
    AccountBuilder, assert_allowed, assert_denied, at, by_agent, by_user, grant, op, user,
};
use chaperone_sdk::{Decision, Verdict};

use super::{ADMIN, SAM, acme, eval_at};

/// When the agent acts: a day after the grants were made.
const LATER: i64 = at(1, 9);

fn act_in(
    account: AccountBuilder,
    name: &str,
    environment: Option<&str>,
    integration: Option<&str>,
) -> Decision {
    eval_at(
        op::act(name, environment, integration),
        by_agent(SAM),
        account,
        LATER,
    )
}

/// `acme` with a production and a sandbox environment and an admin grant on
/// production by ada.
fn admin_on_prod() -> AccountBuilder {
    acme()
        .sandbox("sbx")
        .integration("sbx", "shop-test")
        .grant(grant("g1", "prod", "ada").scope(ADMIN).expires_at(at(5, 9)))
}

/// `acme` with cody's grant of `scope`.
fn cody_grant(scope: &str) -> AccountBuilder {
    acme().grant(
        grant("g-cody", "prod", "cody")
            .scope(scope)
            .expires_at(at(5, 9)),
    )
}

/// Checks each `(action, integration, expected)` on `prod`; `None` means allowed.
fn check(account: &AccountBuilder, cases: &[(&str, Option<&str>, Option<&str>)]) {
    for &(name, integration, expected) in cases {
        let decision = act_in(account.clone(), name, Some("prod"), integration);
        match expected {
            None => assert!(
                decision.verdict == Verdict::Allow && decision.effects.is_empty(),
                "{name} on {integration:?}: {decision:?}"
            ),
            Some(rule) => assert_denied(&decision, rule),
        }
    }
}

// CEL-PERMS

#[test]
fn cel_perms_no_user_changes_whatever_the_level() {
    check(
        &admin_on_prod(),
        &[
            ("users.update", None, Some("CEL-PERMS")),
            ("users.delete", Some("shop"), Some("CEL-PERMS")),
            ("users.permissions.read", None, Some("CEL-PERMS")),
            ("users.permissions.update", None, Some("CEL-PERMS")),
            ("users.", None, Some("CEL-PERMS")),
            ("users.read", None, None),
            ("usersx.update", None, None),
            ("users", None, None),
            ("Users.update", None, None),
            ("integration.write", Some("shop"), None),
        ],
    );
}

#[test]
fn cel_perms_is_checked_first() {
    // No grant at all, no environment: still CEL-PERMS.
    assert_denied(&act_in(acme(), "users.update", None, None), "CEL-PERMS");
    assert_denied(
        &act_in(acme(), "users.permissions.read", Some("nowhere"), None),
        "CEL-PERMS",
    );
}

// CEL-NO-GRANT

#[test]
fn cel_no_grant_without_an_active_grant() {
    assert_denied(
        &act_in(acme(), "flow.read", Some("prod"), Some("shop")),
        "CEL-NO-GRANT",
    );
    // Named before CEL-ENV.
    assert_denied(&act_in(acme(), "flow.read", None, None), "CEL-NO-GRANT");
    assert_denied(
        &act_in(acme(), "flow.read", Some("nowhere"), None),
        "CEL-NO-GRANT",
    );
}

#[test]
fn cel_no_grant_a_grant_for_another_agent_does_not_count() {
    let account = acme().grant(
        grant("g1", "prod", "ada")
            .scope(ADMIN)
            .expires_at(at(5, 9))
            .grantee("lena.park@celigo.com"),
    );
    assert_denied(
        &act_in(account, "flow.read", Some("prod"), Some("shop")),
        "CEL-NO-GRANT",
    );
    let account = acme().grant(
        grant("g1", "prod", "ada")
            .scope(ADMIN)
            .expires_at(at(5, 9))
            .grantee("Sam.Reyes@CELIGO.com"),
    );
    assert_allowed(&act_in(account, "flow.read", Some("prod"), Some("shop")));
}

#[test]
fn cel_no_grant_customer_users_hold_no_grant() {
    let decision = eval_at(
        op::act("flow.read", Some("prod"), Some("shop")),
        by_user("ada"),
        admin_on_prod(),
        LATER,
    );
    assert_denied(&decision, "CEL-NO-GRANT");
}

// CEL-ENV

#[test]
fn cel_env_production_grant_gives_nothing_in_sandbox() {
    let account = admin_on_prod();
    assert_allowed(&act_in(
        account.clone(),
        "integration.write",
        Some("prod"),
        Some("shop"),
    ));
    let decision = act_in(
        account.clone(),
        "integration.read",
        Some("sbx"),
        Some("shop-test"),
    );
    assert_denied(&decision, "CEL-ENV");
    assert_denied(&act_in(account, "flow.read", Some("sbx"), None), "CEL-ENV");
}

#[test]
fn cel_env_sandbox_grant_gives_nothing_in_production() {
    let account = acme()
        .sandbox("sbx")
        .integration("sbx", "shop-test")
        .grant(grant("g1", "sbx", "ada").scope(ADMIN).expires_at(at(5, 9)));
    assert_allowed(&act_in(
        account.clone(),
        "flow.run",
        Some("sbx"),
        Some("shop-test"),
    ));
    assert_denied(
        &act_in(account, "flow.read", Some("prod"), Some("shop")),
        "CEL-ENV",
    );
}

#[test]
fn cel_env_action_without_or_with_unknown_environment() {
    let account = admin_on_prod();
    assert_denied(
        &act_in(account.clone(), "flow.read", None, Some("shop")),
        "CEL-ENV",
    );
    assert_denied(
        &act_in(account, "flow.read", Some("staging"), None),
        "CEL-ENV",
    );
}

#[test]
fn cel_env_grant_on_a_dropped_environment_covers_nothing() {
    // The account no longer has `old`; its grant stays active until expiry.
    let account = acme().grant(grant("g1", "old", "ada").scope(ADMIN).expires_at(at(5, 9)));
    assert_denied(
        &act_in(account.clone(), "flow.read", Some("old"), None),
        "CEL-ENV",
    );
    assert_denied(&act_in(account, "flow.read", Some("prod"), None), "CEL-ENV");
}

// CEL-ACTION

#[test]
fn cel_action_monitor_reads_manage_runs_on_that_integration_only() {
    let account = acme().grant(
        grant("g1", "prod", "ada")
            .scope(r#"{"integrations":{"shop":"monitor","crm":"manage"}}"#)
            .expires_at(at(5, 9)),
    );
    check(
        &account.integration("prod", "erp"),
        &[
            ("flow.read", Some("shop"), None),
            ("read", Some("shop"), Some("CEL-ACTION")),
            ("flow.readme", Some("shop"), Some("CEL-ACTION")),
            ("flow.run", Some("shop"), Some("CEL-ACTION")),
            ("flow.run", Some("crm"), None),
            ("flow.read", Some("crm"), None),
            ("flow.read", Some("erp"), Some("CEL-ACTION")),
            ("flow.read", None, Some("CEL-ACTION")),
            ("flow.read", Some("elsewhere"), Some("CEL-ACTION")),
        ],
    );
}

#[test]
fn cel_action_admin_allows_anything_in_its_environment() {
    check(
        &admin_on_prod(),
        &[
            ("flow.run", Some("shop"), None),
            ("settings.write", None, None),
            ("flow.read", Some("crm"), None),
            // An integration of another environment, or of none.
            ("flow.read", Some("shop-test"), Some("CEL-ACTION")),
            ("flow.read", Some("magento"), Some("CEL-ACTION")),
        ],
    );
}

#[test]
fn cel_action_any_grant_that_allows_it_allows_it() {
    let account = acme()
        .grant(
            grant("g1", "prod", "ada")
                .scope(r#"{"integrations":{"shop":"monitor"}}"#)
                .expires_at(at(5, 9)),
        )
        .grant(
            grant("g2", "prod", "olivia")
                .scope(r#"{"integrations":{"shop":"manage"}}"#)
                .expires_at(at(5, 9)),
        );
    let decision = act_in(account, "flow.run", Some("prod"), Some("shop"));
    assert_allowed(&decision);
    assert_eq!(decision.rule, "CEL-ACTION");
    assert_eq!(decision.message, "grant `g2` allows `flow.run`");
}

#[test]
fn cel_action_unreadable_stored_scope_covers_nothing() {
    let account = cody_grant("not json");
    assert_denied(
        &act_in(account, "flow.read", Some("prod"), Some("crm")),
        "CEL-ACTION",
    );
}

// CEL-CURRENT-ACCESS

#[test]
fn cel_current_access_follows_the_granting_users_downgrade() {
    let scope = r#"{"integrations":{"crm":"manage"}}"#;
    assert_allowed(&act_in(
        cody_grant(scope),
        "flow.run",
        Some("prod"),
        Some("crm"),
    ));
    let account = cody_grant(scope).user(user("cody", "custom").access("crm", "monitor"));
    check(
        &account,
        &[
            ("flow.run", Some("crm"), Some("CEL-CURRENT-ACCESS")),
            ("flow.read", Some("crm"), None),
            // Outside the grant's scope altogether: CEL-ACTION.
            ("flow.read", Some("shop"), Some("CEL-ACTION")),
        ],
    );
}

#[test]
fn cel_current_access_lost_access_or_removed_user() {
    let scope = r#"{"integrations":{"crm":"manage"}}"#;
    let lost = cody_grant(scope).user(user("cody", "custom").access("shop", "manage"));
    let removed = cody_grant(scope).without_user("cody");
    let unknown_level = cody_grant(scope).user(user("cody", "custom").access("crm", "owner"));
    for account in [lost, removed, unknown_level] {
        let decision = act_in(account, "flow.read", Some("prod"), Some("crm"));
        assert_denied(&decision, "CEL-CURRENT-ACCESS");
    }
}

#[test]
fn cel_current_access_an_admin_granter_keeps_the_full_scope() {
    // Promoted to admin: the grant's scope is no longer intersected.
    let scope = r#"{"integrations":{"crm":"manage"}}"#;
    let account = cody_grant(scope).user(user("cody", "admin"));
    assert_allowed(&act_in(account, "flow.run", Some("prod"), Some("crm")));
}

#[test]
fn cel_current_access_applies_to_an_admin_demoted_since() {
    // ada granted admin, then became a `manage` user with manage on shop.
    let account = admin_on_prod().user(user("ada", "manage").access("shop", "manage"));
    check(
        &account,
        &[
            ("flow.run", Some("shop"), None),
            ("flow.read", Some("crm"), Some("CEL-CURRENT-ACCESS")),
            ("settings.read", None, Some("CEL-CURRENT-ACCESS")),
            ("flow.read", Some("magento"), Some("CEL-ACTION")),
        ],
    );
}

#[test]
fn cel_current_access_named_before_action_and_after_env() {
    // g1 does not cover the action (CEL-ACTION); g2 does but cody lost it.
    let account = acme()
        .grant(
            grant("g1", "prod", "ada")
                .scope(r#"{"integrations":{"shop":"monitor"}}"#)
                .expires_at(at(5, 9)),
        )
        .grant(
            grant("g2", "prod", "cody")
                .scope(r#"{"integrations":{"crm":"manage"}}"#)
                .expires_at(at(5, 9)),
        )
        .user(user("cody", "custom").access("crm", "monitor"));
    check(
        &account,
        &[
            ("flow.run", Some("crm"), Some("CEL-CURRENT-ACCESS")),
            ("flow.run", Some("shop"), Some("CEL-ACTION")),
            ("flow.read", Some("shop"), None),
        ],
    );
    assert_denied(
        &act_in(account, "flow.run", Some("sbx"), Some("crm")),
        "CEL-ENV",
    );
}
