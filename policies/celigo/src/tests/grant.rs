//! `grant`: CEL-PLAN, CEL-WHO, CEL-LEVEL, CEL-EXPIRY, CEL-NONADMIN-SCOPE,
//! CEL-ENV and CEL-MULTIENV, and their tie-break order.

use chaperone_sdk::testing::{
    AccountBuilder, assert_allowed, assert_denied, assert_effects, by_agent, by_user, op, user,
};
use chaperone_sdk::time::{DAY, HOUR};
use chaperone_sdk::{Decision, Plan};

use super::{ADMIN, FIVE_DAYS, NOW, SAM, acme, acme_open, created, eval};

/// `actor` grants `scope` on `prod` for `expires_in` in `account`.
fn grant_in(
    account: AccountBuilder,
    actor: &str,
    scope: &str,
    expires_in: Option<&str>,
) -> Decision {
    eval(
        op::grant("prod", scope, expires_in),
        by_user(actor),
        account,
    )
}

// CEL-PLAN

#[test]
fn cel_plan_free_and_trial_accounts_cannot_grant() {
    for plan in [Plan::Free, Plan::Trial] {
        for actor in ["olivia", "ada"] {
            let decision = grant_in(acme().plan(plan), actor, ADMIN, Some(FIVE_DAYS));
            assert_denied(&decision, "CEL-PLAN");
        }
    }
}

#[test]
fn cel_plan_named_before_every_other_rule() {
    // An agent, a bad scope and no expiry: the plan is named first.
    let decision = eval(
        op::grant("nowhere", "{}", None),
        by_agent(SAM),
        acme().trial(),
    );
    assert_denied(&decision, "CEL-PLAN");
}

#[test]
fn cel_plan_paid_account_grants() {
    let decision = grant_in(acme(), "olivia", ADMIN, Some(FIVE_DAYS));
    assert_allowed(&decision);
    assert_eq!(
        decision.rules,
        [
            "CEL-PLAN",
            "CEL-WHO",
            "CEL-LEVEL",
            "CEL-EXPIRY",
            "CEL-ENV",
            "CEL-MULTIENV"
        ]
    );
    assert_effects(&decision, &[created(ADMIN, NOW + 5 * DAY)]);
}

// CEL-WHO

#[test]
fn cel_who_owner_and_admin_grant() {
    for actor in ["olivia", "ada"] {
        assert_allowed(&grant_in(acme(), actor, ADMIN, Some(FIVE_DAYS)));
    }
}

#[test]
fn cel_who_non_admins_need_the_setting() {
    let scope = r#"{"integrations":{"shop":"monitor"}}"#;
    let account = acme().user(user("cara", "custom").access("shop", "monitor"));
    for actor in ["mia", "moe", "cara"] {
        let scope = if actor == "moe" {
            r#"{"integrations":{"crm":"monitor"}}"#
        } else {
            scope
        };
        for setting in [None, Some("false"), Some("\"true\""), Some("1")] {
            let account = match setting {
                Some(value) => account.clone().setting("allow_non_admin_grants", value),
                None => account.clone(),
            };
            let decision = grant_in(account, actor, scope, Some(FIVE_DAYS));
            assert_denied(&decision, "CEL-WHO");
        }
        let open = account.clone().setting("allow_non_admin_grants", "true");
        assert_allowed(&grant_in(open, actor, scope, Some(FIVE_DAYS)));
    }
}

#[test]
fn cel_who_agents_never_grant() {
    let decision = eval(
        op::grant("prod", ADMIN, Some(FIVE_DAYS)),
        by_agent(SAM),
        acme_open(),
    );
    assert_denied(&decision, "CEL-WHO");
}

#[test]
fn cel_who_unknown_actor_has_no_role() {
    assert_denied(
        &grant_in(acme_open(), "ghost", ADMIN, Some(FIVE_DAYS)),
        "CEL-WHO",
    );
}

#[test]
fn cel_who_other_roles_never_grant() {
    let account = acme_open()
        .user(user("vic", "viewer").access("shop", "manage"))
        .user(user("oscar", "Owner"));
    for actor in ["vic", "oscar"] {
        let decision = grant_in(account.clone(), actor, ADMIN, Some(FIVE_DAYS));
        assert_denied(&decision, "CEL-WHO");
    }
}

#[test]
fn cel_who_named_before_level_and_expiry() {
    assert_denied(&grant_in(acme(), "mia", "{}", None), "CEL-WHO");
}

// CEL-LEVEL

#[test]
fn cel_level_refuses_anything_but_admin_or_existing_integrations() {
    let account = acme().integration("prod", "erp");
    for scope in [
        r#"{"level":"manage"}"#,
        r#"{"level":"monitor"}"#,
        r#"{"level":"Admin"}"#,
        r#"{"level":true}"#,
        r#"{"integrations":{"magento":"monitor"}}"#,
        r#"{"integrations":{"shop":"monitor","magento":"manage"}}"#,
        r#"{"integrations":{}}"#,
        r#"{"integrations":{"shop":"admin"}}"#,
        r#"{"integrations":{"shop":"Manage"}}"#,
        r#"{"integrations":{"shop":5}}"#,
        r#"{"integrations":["shop"]}"#,
        r#"{"integrations":null}"#,
        r#"{"level":"admin","integrations":{"shop":"monitor"}}"#,
        r#"{"level":"admin","note":"x"}"#,
        r#"{"scope":"admin"}"#,
        r#"{}"#,
        r#""admin""#,
        r#"["admin"]"#,
        r#"null"#,
        r#"{"level":"admin""#,
    ] {
        let decision = grant_in(account.clone(), "ada", scope, Some(FIVE_DAYS));
        assert_denied(&decision, "CEL-LEVEL");
    }
}

#[test]
fn cel_level_integrations_must_exist_in_that_environment() {
    let account = AccountBuilder::celigo("acme")
        .paid()
        .production("prod")
        .sandbox("sbx")
        .integration("prod", "shop")
        .integration("sbx", "shop-test")
        .user(user("ada", "admin"));
    let scope = r#"{"integrations":{"shop-test":"monitor"}}"#;
    let decision = eval(
        op::grant("prod", scope, Some(FIVE_DAYS)),
        by_user("ada"),
        account.clone(),
    );
    assert_denied(&decision, "CEL-LEVEL");
    let decision = eval(
        op::grant("sbx", scope, Some(FIVE_DAYS)),
        by_user("ada"),
        account,
    );
    assert_allowed(&decision);
}

#[test]
fn cel_level_integrations_on_an_unknown_environment_do_not_exist() {
    let scope = r#"{"integrations":{"shop":"monitor"}}"#;
    let decision = eval(
        op::grant("staging", scope, Some(FIVE_DAYS)),
        by_user("ada"),
        acme(),
    );
    assert_denied(&decision, "CEL-LEVEL");
}

#[test]
fn cel_level_scope_is_stored_normalized() {
    for (given, stored) in [
        (r#" { "level" : "admin" } "#, ADMIN),
        (
            r#"{"integrations":{"shop":"monitor","crm":"manage"}}"#,
            r#"{"integrations":{"crm":"manage","shop":"monitor"}}"#,
        ),
    ] {
        let decision = grant_in(acme(), "ada", given, Some(FIVE_DAYS));
        assert_allowed(&decision);
        assert_effects(&decision, &[created(stored, NOW + 5 * DAY)]);
    }
}

#[test]
fn cel_level_named_before_expiry() {
    assert_denied(
        &grant_in(acme(), "ada", r#"{"level":"manage"}"#, None),
        "CEL-LEVEL",
    );
}

// CEL-EXPIRY

#[test]
fn cel_expiry_is_required() {
    let decision = grant_in(acme(), "ada", ADMIN, None);
    assert_denied(&decision, "CEL-EXPIRY");
    assert_eq!(
        decision.message,
        "an expiry is required, in whole `days` or `hours`"
    );
}

#[test]
fn cel_expiry_180_days_allowed() {
    let decision = grant_in(acme(), "ada", ADMIN, Some(r#"{"days":180}"#));
    assert_allowed(&decision);
    assert_effects(&decision, &[created(ADMIN, NOW + 180 * DAY)]);
}

#[test]
fn cel_expiry_181_days_refused() {
    let decision = grant_in(acme(), "ada", ADMIN, Some(r#"{"days":181}"#));
    assert_denied(&decision, "CEL-EXPIRY");
    assert_eq!(
        decision.message,
        "expiry of `181` days exceeds the 180-day maximum"
    );
}

#[test]
fn cel_expiry_4320_hours_allowed() {
    let decision = grant_in(acme(), "ada", ADMIN, Some(r#"{"hours":4320}"#));
    assert_allowed(&decision);
    assert_effects(&decision, &[created(ADMIN, NOW + 4320 * HOUR)]);
}

#[test]
fn cel_expiry_4321_hours_refused() {
    let decision = grant_in(acme(), "ada", ADMIN, Some(r#"{"hours":4321}"#));
    assert_denied(&decision, "CEL-EXPIRY");
    assert_eq!(
        decision.message,
        "expiry of `4321` hours exceeds the 4320-hour maximum"
    );
}

#[test]
fn cel_expiry_sets_expires_at_from_now() {
    for (expires_in, expires_at) in [
        (r#"{"hours":2}"#, NOW + 2 * HOUR),
        (r#"{"hours":1}"#, NOW + HOUR),
        (r#"{"days":1}"#, NOW + DAY),
        (r#" {"days": 5} "#, NOW + 5 * DAY),
    ] {
        let decision = grant_in(acme(), "ada", ADMIN, Some(expires_in));
        assert_effects(&decision, &[created(ADMIN, expires_at)]);
    }
}

#[test]
fn cel_expiry_refuses_both_neither_zero_negative_and_fractions() {
    for expires_in in [
        r#"{"days":5,"hours":2}"#,
        r#"{}"#,
        r#"{"minutes":30}"#,
        r#"{"days":5,"minutes":30}"#,
        r#"{"Days":5}"#,
        r#"{"days":0}"#,
        r#"{"hours":0}"#,
        r#"{"days":-1}"#,
        r#"{"hours":-5}"#,
        r#"{"days":-0}"#,
        r#"{"days":5.0}"#,
        r#"{"days":5e0}"#,
        r#"{"hours":1.5}"#,
        r#"{"days":"5"}"#,
        r#"{"days":null}"#,
        r#"{"days":[5]}"#,
        r#"{"days":1e30}"#,
        r#"{"days":9223372036854775807}"#,
        r#"{"days":18446744073709551616}"#,
        r#"5"#,
        r#"null"#,
        r#"[{"days":5}]"#,
        r#"{"days":5"#,
    ] {
        let decision = grant_in(acme(), "ada", ADMIN, Some(expires_in));
        assert_denied(&decision, "CEL-EXPIRY");
    }
}

#[test]
fn cel_expiry_named_before_nonadmin_scope() {
    assert_denied(
        &grant_in(acme_open(), "mia", ADMIN, Some("{}")),
        "CEL-EXPIRY",
    );
}

// CEL-NONADMIN-SCOPE

#[test]
fn cel_nonadmin_scope_never_admin() {
    for actor in ["cody", "mia", "moe"] {
        let decision = grant_in(acme_open(), actor, ADMIN, Some(FIVE_DAYS));
        assert_denied(&decision, "CEL-NONADMIN-SCOPE");
    }
}

#[test]
fn cel_nonadmin_scope_own_integrations_at_no_higher_level() {
    // cody: monitor on shop, manage on crm, nothing on erp.
    let account = acme_open().integration("prod", "erp");
    for (scope, allowed) in [
        (r#"{"integrations":{"shop":"manage"}}"#, false),
        (r#"{"integrations":{"erp":"monitor"}}"#, false),
        (
            r#"{"integrations":{"crm":"manage","erp":"monitor"}}"#,
            false,
        ),
        (r#"{"integrations":{"shop":"monitor"}}"#, true),
        (r#"{"integrations":{"crm":"monitor"}}"#, true),
        (r#"{"integrations":{"crm":"manage"}}"#, true),
        (
            r#"{"integrations":{"shop":"monitor","crm":"manage"}}"#,
            true,
        ),
    ] {
        let decision = grant_in(account.clone(), "cody", scope, Some(FIVE_DAYS));
        if allowed {
            assert_allowed(&decision);
            assert!(decision.rules.iter().any(|r| r == "CEL-NONADMIN-SCOPE"));
        } else {
            assert_denied(&decision, "CEL-NONADMIN-SCOPE");
        }
    }
}

#[test]
fn cel_nonadmin_scope_role_adds_nothing() {
    // A `manage` user with only monitor access cannot grant manage, and one
    // with an unknown access level has no access.
    let account = acme_open()
        .user(user("mia", "manage").access("shop", "monitor"))
        .user(user("mo", "manage").access("shop", "admin"));
    for actor in ["mia", "mo"] {
        let scope = r#"{"integrations":{"shop":"manage"}}"#;
        let decision = grant_in(account.clone(), actor, scope, Some(FIVE_DAYS));
        assert_denied(&decision, "CEL-NONADMIN-SCOPE");
    }
    let scope = r#"{"integrations":{"shop":"monitor"}}"#;
    assert_denied(
        &grant_in(account, "mo", scope, Some(FIVE_DAYS)),
        "CEL-NONADMIN-SCOPE",
    );
}

#[test]
fn cel_nonadmin_scope_named_before_env() {
    let decision = eval(
        op::grant("staging", ADMIN, Some(FIVE_DAYS)),
        by_user("mia"),
        acme_open(),
    );
    assert_denied(&decision, "CEL-NONADMIN-SCOPE");
}

// CEL-ENV

#[test]
fn cel_env_grant_names_an_environment_of_the_account() {
    for environment in ["staging", "Prod", ""] {
        let decision = eval(
            op::grant(environment, ADMIN, Some(FIVE_DAYS)),
            by_user("ada"),
            acme(),
        );
        assert_denied(&decision, "CEL-ENV");
    }
}

// CEL-MULTIENV

#[test]
fn cel_multienv_production_only_unless_one_production_and_one_sandbox() {
    use chaperone_sdk::EnvironmentKind::{Production as P, Sandbox as S};
    let cases: &[(&[(&str, _)], &str, bool)] = &[
        (&[("prod", P)], "prod", true),
        (&[("sbx", S)], "sbx", true),
        (&[("prod", P), ("sbx", S)], "prod", true),
        (&[("prod", P), ("sbx", S)], "sbx", true),
        (&[("prod", P), ("staging", S), ("dev", S)], "prod", true),
        (&[("prod", P), ("staging", S), ("dev", S)], "staging", false),
        (&[("prod", P), ("staging", S), ("dev", S)], "dev", false),
        (&[("eu", P), ("us", P)], "us", true),
        (&[("eu", P), ("us", P), ("sbx", S)], "eu", true),
        (&[("eu", P), ("us", P), ("sbx", S)], "sbx", false),
        (&[("sbx1", S), ("sbx2", S)], "sbx1", false),
    ];
    for &(environments, granted, allowed) in cases {
        let mut account = AccountBuilder::celigo("acme")
            .paid()
            .user(user("ada", "admin"));
        for &(id, kind) in environments {
            account = account.env(id, kind);
        }
        let decision = eval(
            op::grant(granted, ADMIN, Some(FIVE_DAYS)),
            by_user("ada"),
            account,
        );
        if allowed {
            assert_allowed(&decision);
        } else {
            assert_denied(&decision, "CEL-MULTIENV");
        }
    }
}
