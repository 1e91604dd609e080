//! `modify` and `revoke`: CEL-CHANGE, and a modification checked as a new
//! grant.

use chaperone_sdk::testing::{
    AccountBuilder, assert_allowed, assert_denied, assert_effects, at, by_agent, by_user, grant,
    op, user,
};
use chaperone_sdk::time::DAY;
use chaperone_sdk::{Effect, GrantUpdate, Timestamp};

use super::{ADMIN, NOW, SAM, acme_open, eval};

const CODY_SCOPE: &str = r#"{"integrations":{"crm":"manage"}}"#;

/// `acme_open` with `g-ada` (admin, by ada) and `g-cody` (manage crm, by
/// cody), both created at day 0, 08:00 and expiring at day 3, 08:00.
fn with_grants() -> AccountBuilder {
    acme_open()
        .grant(
            grant("g-ada", "prod", "ada")
                .scope(ADMIN)
                .created_at(at(0, 8))
                .expires_at(at(3, 8)),
        )
        .grant(
            grant("g-cody", "prod", "cody")
                .scope(CODY_SCOPE)
                .created_at(at(0, 8))
                .expires_at(at(3, 8))
                .metadata(r#"{"ticket":"T-1"}"#),
        )
}

fn updated(id: &str, scope: &str, expires_at: Timestamp, metadata: &str) -> Effect {
    Effect::UpdateGrant(GrantUpdate {
        id: id.into(),
        scope: scope.into(),
        expires_at: Some(expires_at),
        metadata: metadata.into(),
    })
}

#[test]
fn cel_change_owner_and_admin_change_any_grant() {
    for actor in ["olivia", "ada"] {
        let decision = eval(
            op::modify("g-cody", Some(CODY_SCOPE), Some(r#"{"days":10}"#)),
            by_user(actor),
            with_grants(),
        );
        assert_allowed(&decision);
        assert_eq!(decision.rule, "CEL-CHANGE");
        assert_effects(
            &decision,
            &[updated(
                "g-cody",
                CODY_SCOPE,
                NOW + 10 * DAY,
                r#"{"ticket":"T-1"}"#,
            )],
        );
        for id in ["g-ada", "g-cody"] {
            let decision = eval(op::revoke(id), by_user(actor), with_grants());
            assert_allowed(&decision);
            assert_effects(&decision, &[Effect::RevokeGrant(id.into())]);
        }
    }
}

#[test]
fn cel_change_non_admin_changes_only_their_own_grants() {
    let decision = eval(op::revoke("g-ada"), by_user("cody"), with_grants());
    assert_denied(&decision, "CEL-CHANGE");
    let decision = eval(
        op::modify("g-ada", None, Some(r#"{"days":1}"#)),
        by_user("cody"),
        with_grants(),
    );
    assert_denied(&decision, "CEL-CHANGE");
    // mia may grant too, but g-cody is not hers.
    let decision = eval(op::revoke("g-cody"), by_user("mia"), with_grants());
    assert_denied(&decision, "CEL-CHANGE");

    let decision = eval(op::revoke("g-cody"), by_user("cody"), with_grants());
    assert_allowed(&decision);
    assert_effects(&decision, &[Effect::RevokeGrant("g-cody".into())]);
    let decision = eval(
        op::modify("g-cody", None, Some(r#"{"days":1}"#)),
        by_user("cody"),
        with_grants(),
    );
    assert_allowed(&decision);
    assert_effects(
        &decision,
        &[updated(
            "g-cody",
            CODY_SCOPE,
            NOW + DAY,
            r#"{"ticket":"T-1"}"#,
        )],
    );
}

#[test]
fn cel_change_only_active_grants() {
    // A revoked or expired grant never reaches the policy.
    for actor in ["olivia", "ada", "cody"] {
        assert_denied(
            &eval(op::revoke("g-gone"), by_user(actor), with_grants()),
            "CEL-CHANGE",
        );
        let decision = eval(
            op::modify("g-gone", Some(ADMIN), Some(r#"{"days":1}"#)),
            by_user(actor),
            with_grants(),
        );
        assert_denied(&decision, "CEL-CHANGE");
    }
}

#[test]
fn cel_change_agents_and_unknown_users_cannot_revoke() {
    assert_denied(
        &eval(op::revoke("g-ada"), by_agent(SAM), with_grants()),
        "CEL-CHANGE",
    );
    // The creator, once removed, is no user of the account.
    let account = with_grants().without_user("cody");
    assert_denied(
        &eval(op::revoke("g-cody"), by_user("cody"), account),
        "CEL-CHANGE",
    );
}

#[test]
fn cel_change_identity_is_by_user_id() {
    // cody removed and added again under the same id (now as `manage`) is
    // again the creator of g-cody.
    let account = with_grants()
        .without_user("cody")
        .user(user("cody", "manage").access("crm", "manage"));
    assert_allowed(&eval(op::revoke("g-cody"), by_user("cody"), account));
}

#[test]
fn cel_change_revoke_needs_neither_plan_nor_setting() {
    // CEL-PLAN and CEL-WHO apply to grant and modify, not to revoke.
    let account = with_grants()
        .trial()
        .setting("allow_non_admin_grants", "false");
    assert_allowed(&eval(op::revoke("g-cody"), by_user("cody"), account));
}

#[test]
fn cel_change_modify_order_plan_who_then_change() {
    // trial: CEL-PLAN, even for an inactive grant.
    let decision = eval(
        op::modify("g-gone", None, Some("{}")),
        by_user("ada"),
        with_grants().trial(),
    );
    assert_denied(&decision, "CEL-PLAN");
    // setting off: the non-admin is refused by CEL-WHO before CEL-CHANGE.
    let decision = eval(
        op::modify("g-ada", None, None),
        by_user("cody"),
        with_grants().setting("allow_non_admin_grants", "false"),
    );
    assert_denied(&decision, "CEL-WHO");
    // CEL-CHANGE before the grant checks.
    let decision = eval(
        op::modify(
            "g-ada",
            Some(r#"{"level":"manage"}"#),
            Some(r#"{"days":999}"#),
        ),
        by_user("cody"),
        with_grants(),
    );
    assert_denied(&decision, "CEL-CHANGE");
    let decision = eval(
        op::modify("g-gone", Some("[]"), Some("{}")),
        by_user("ada"),
        with_grants(),
    );
    assert_denied(&decision, "CEL-CHANGE");
}

#[test]
fn cel_change_modification_is_checked_as_a_new_grant() {
    for (actor, grant_id, scope, expires_in, rule) in [
        ("cody", "g-cody", Some(ADMIN), None, "CEL-NONADMIN-SCOPE"),
        (
            "cody",
            "g-cody",
            Some(r#"{"integrations":{"shop":"manage"}}"#),
            None,
            "CEL-NONADMIN-SCOPE",
        ),
        (
            "cody",
            "g-cody",
            None,
            Some(r#"{"days":181}"#),
            "CEL-EXPIRY",
        ),
        (
            "cody",
            "g-cody",
            None,
            Some(r#"{"days":5.0}"#),
            "CEL-EXPIRY",
        ),
        (
            "ada",
            "g-ada",
            None,
            Some(r#"{"hours":4321}"#),
            "CEL-EXPIRY",
        ),
        (
            "ada",
            "g-ada",
            Some(r#"{"level":"manage"}"#),
            None,
            "CEL-LEVEL",
        ),
        (
            "ada",
            "g-cody",
            Some(r#"{"integrations":{"erp":"monitor"}}"#),
            None,
            "CEL-LEVEL",
        ),
    ] {
        let decision = eval(
            op::modify(grant_id, scope, expires_in),
            by_user(actor),
            with_grants(),
        );
        assert_denied(&decision, rule);
    }
}

#[test]
fn cel_change_modify_checks_the_modifying_actor() {
    // An admin may widen a custom user's grant to admin; the grant keeps its
    // creator (the host keeps `granted_by`).
    let decision = eval(
        op::modify("g-cody", Some(ADMIN), None),
        by_user("ada"),
        with_grants(),
    );
    assert_allowed(&decision);
    assert_effects(
        &decision,
        &[updated("g-cody", ADMIN, at(3, 8), r#"{"ticket":"T-1"}"#)],
    );
}

#[test]
fn cel_change_modify_without_expiry_keeps_it() {
    let scope = r#"{"integrations":{"crm":"monitor"}}"#;
    let decision = eval(
        op::modify("g-cody", Some(scope), None),
        by_user("cody"),
        with_grants(),
    );
    assert_allowed(&decision);
    assert_effects(
        &decision,
        &[updated("g-cody", scope, at(3, 8), r#"{"ticket":"T-1"}"#)],
    );
}

#[test]
fn cel_change_modify_without_scope_keeps_and_rechecks_it() {
    let decision = eval(
        op::modify("g-ada", None, Some(r#"{"hours":4320}"#)),
        by_user("ada"),
        with_grants(),
    );
    assert_allowed(&decision);
    assert_effects(
        &decision,
        &[updated("g-ada", ADMIN, NOW + 180 * DAY, "null")],
    );
    // cody lost manage on crm since granting: his own grant no longer passes.
    let account = with_grants().user(user("cody", "custom").access("crm", "monitor"));
    let decision = eval(
        op::modify("g-cody", None, Some(r#"{"days":1}"#)),
        by_user("cody"),
        account,
    );
    assert_denied(&decision, "CEL-NONADMIN-SCOPE");
}

#[test]
fn cel_change_modify_of_a_grant_without_expiry_needs_one() {
    let account = acme_open().grant(grant("g-open", "prod", "ada").scope(ADMIN));
    let decision = eval(
        op::modify("g-open", Some(ADMIN), None),
        by_user("ada"),
        account.clone(),
    );
    assert_denied(&decision, "CEL-EXPIRY");
    let decision = eval(
        op::modify("g-open", None, Some(r#"{"days":2}"#)),
        by_user("ada"),
        account,
    );
    assert_allowed(&decision);
}
