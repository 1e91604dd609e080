//! `create_service_account`, `set_rights`, `remove_service_account`:
//! XEN-DOMAIN, XEN-ONE-ACCOUNT, XEN-CONSENT, XEN-INVITE, XEN-DEFAULT-RIGHTS,
//! XEN-SEATS, XEN-MARK, XEN-RIGHTS, XEN-REMOVE, XEN-NO-ACCOUNT.

use chaperone_sdk::testing::{
    AccountBuilder, assert_allowed, assert_denied, assert_effects, by_agent, by_user, invitation,
    op, service_account, user,
};
use chaperone_sdk::{Effect, NewServiceAccount, Origin, RightsUpdate};

use super::{JONAS, MIRA, consenting, eval, instance, with_jonas};

fn created(agent: &str, origin: Origin) -> Effect {
    Effect::CreateServiceAccount(NewServiceAccount {
        agent_email: agent.into(),
        rights: vec!["*".into()],
        origin,
        description: "Xentral Service account".into(),
    })
}

fn create(account: AccountBuilder, agent: &str) -> chaperone_sdk::Decision {
    eval(op::create_service_account(), by_agent(agent), account)
}

// Creating

#[test]
fn xen_consent_lets_any_staff_agent_create_its_account() {
    let decision = create(consenting(), MIRA);
    assert_allowed(&decision);
    assert_eq!(decision.rule, "XEN-CONSENT");
    assert_effects(&decision, &[created(MIRA, Origin::Consent)]);
}

#[test]
fn xen_consent_required_without_invitation() {
    for account in [
        instance(),
        instance().setting("employee_access_consent", "false"),
        instance().setting("employee_access_consent", "\"true\""),
        // An invitation for someone else does not help.
        instance().invitation(invitation("inv-1", "ann@xentral.com", by_user("anja"))),
    ] {
        assert_denied(&create(account, MIRA), "XEN-CONSENT");
    }
}

#[test]
fn xen_invite_invited_agent_accepts_without_consent() {
    let account = instance().invitation(invitation(
        "inv-1",
        "Mira.Koch@XENTRAL.com",
        by_user("anja"),
    ));
    let decision = create(account, MIRA);
    assert_allowed(&decision);
    assert_eq!(decision.rule, "XEN-INVITE");
    assert_effects(
        &decision,
        &[
            created(MIRA, Origin::Invite),
            Effect::UseInvitation("inv-1".into()),
        ],
    );
}

#[test]
fn xen_invite_used_up_even_under_consent() {
    let account = consenting().invitation(invitation("inv-1", MIRA, by_agent(JONAS)));
    let decision = create(account, MIRA);
    assert_effects(
        &decision,
        &[
            created(MIRA, Origin::Invite),
            Effect::UseInvitation("inv-1".into()),
        ],
    );
}

#[test]
fn xen_default_rights_and_xen_mark_on_every_new_account() {
    let invited = instance().invitation(invitation("inv-1", MIRA, by_user("anja")));
    for (account, effects) in [
        (consenting(), vec![created(MIRA, Origin::Consent)]),
        (
            invited,
            vec![
                created(MIRA, Origin::Invite),
                Effect::UseInvitation("inv-1".into()),
            ],
        ),
    ] {
        let decision = create(account, MIRA);
        for id in ["XEN-DEFAULT-RIGHTS", "XEN-MARK"] {
            assert!(decision.rules.iter().any(|r| r == id), "{decision:?}");
        }
        // `created` holds rights `["*"]` and the `Xentral Service account` mark.
        assert_effects(&decision, &effects);
    }
}

#[test]
fn xen_seats_service_accounts_ignore_the_seat_limit() {
    let account = consenting().seat_limit(2).user(user("moritz", "user"));
    let decision = create(account, MIRA);
    assert_allowed(&decision);
    assert!(decision.rules.iter().any(|r| r == "XEN-SEATS"));
    let account = instance()
        .seat_limit(0)
        .invitation(invitation("inv-1", MIRA, by_user("anja")));
    assert_allowed(&create(account, MIRA));
}

#[test]
fn xen_domain_every_service_account_needs_a_staff_address() {
    for agent in [
        "mira@xentral.co",
        "mira@sub.xentral.com",
        "mira@xentral.com.evil.io",
        "@xentral.com",
    ] {
        // Named before XEN-CONSENT, and even with an invitation or consent.
        assert_denied(&create(instance(), agent), "XEN-DOMAIN");
        let account = consenting().invitation(invitation("inv-1", agent, by_user("anja")));
        assert_denied(&create(account, agent), "XEN-DOMAIN");
    }
    // A customer user is not vendor staff.
    let decision = eval(op::create_service_account(), by_user("anja"), consenting());
    assert_denied(&decision, "XEN-DOMAIN");
}

#[test]
fn xen_one_account_one_active_service_account_per_agent() {
    for agent in [JONAS, "Jonas.Weber@XENTRAL.COM"] {
        assert_denied(
            &create(with_jonas(consenting(), &["*"]), agent),
            "XEN-ONE-ACCOUNT",
        );
        // Named before XEN-CONSENT.
        assert_denied(
            &create(with_jonas(instance(), &["*"]), agent),
            "XEN-ONE-ACCOUNT",
        );
    }
    // Another agent is not affected.
    assert_allowed(&create(with_jonas(consenting(), &["*"]), MIRA));
}

// Rights

#[test]
fn xen_rights_admin_limits_and_widens_rights() {
    for (actor, rights, stored) in [
        ("anja", r#"["orders.read"]"#, vec!["orders.read"]),
        (
            "ulla",
            r#"["orders.*", "invoices.read"]"#,
            vec!["orders.*", "invoices.read"],
        ),
        ("anja", r#"["*"]"#, vec!["*"]),
        ("anja", "[]", vec![]),
    ] {
        let decision = eval(
            op::set_rights("sa-jonas", rights),
            by_user(actor),
            with_jonas(instance(), &["*"]),
        );
        assert_allowed(&decision);
        assert_effects(
            &decision,
            &[Effect::SetServiceAccountRights(RightsUpdate {
                id: "sa-jonas".into(),
                rights: stored.into_iter().map(Into::into).collect(),
            })],
        );
    }
}

#[test]
fn xen_rights_only_a_list_of_strings() {
    for rights in [
        r#""orders.read""#,
        r#"{"orders":"read"}"#,
        "[1]",
        r#"["orders.read", null]"#,
        "[[]]",
        "null",
        "[",
    ] {
        let decision = eval(
            op::set_rights("sa-jonas", rights),
            by_user("anja"),
            with_jonas(instance(), &["*"]),
        );
        assert_denied(&decision, "XEN-RIGHTS");
    }
}

#[test]
fn xen_rights_order_who_rights_then_no_account() {
    let account = with_jonas(instance(), &["*"]);
    assert_denied(
        &eval(
            op::set_rights("sa-gone", "5"),
            by_user("paul"),
            account.clone(),
        ),
        "XEN-WHO",
    );
    assert_denied(
        &eval(
            op::set_rights("sa-gone", "5"),
            by_agent(JONAS),
            account.clone(),
        ),
        "XEN-WHO",
    );
    assert_denied(
        &eval(
            op::set_rights("sa-gone", "5"),
            by_user("anja"),
            account.clone(),
        ),
        "XEN-RIGHTS",
    );
    assert_denied(
        &eval(op::set_rights("sa-gone", "[]"), by_user("anja"), account),
        "XEN-NO-ACCOUNT",
    );
}

// Removing

#[test]
fn xen_remove_admin_removes_any_service_account() {
    let account = with_jonas(instance(), &["*"]).service_account(
        service_account("sa-mira", MIRA)
            .rights(["*"])
            .origin(chaperone_sdk::Origin::Invite)
            .created_by(by_user("anja")),
    );
    for actor in ["anja", "ulla"] {
        for id in ["sa-jonas", "sa-mira"] {
            let decision = eval(
                op::remove_service_account(id),
                by_user(actor),
                account.clone(),
            );
            assert_allowed(&decision);
            assert_eq!(decision.rule, "XEN-REMOVE");
            assert_effects(&decision, &[Effect::RemoveServiceAccount(id.into())]);
        }
    }
}

#[test]
fn xen_remove_needs_a_customer_admin() {
    let account = with_jonas(consenting(), &["*"]);
    for actor in [by_user("paul"), by_user("ghost"), by_agent(JONAS)] {
        let decision = eval(
            op::remove_service_account("sa-jonas"),
            actor,
            account.clone(),
        );
        assert_denied(&decision, "XEN-WHO");
    }
}

#[test]
fn xen_no_account_removing_an_inactive_service_account() {
    let decision = eval(
        op::remove_service_account("sa-gone"),
        by_user("anja"),
        with_jonas(instance(), &["*"]),
    );
    assert_denied(&decision, "XEN-NO-ACCOUNT");
    // XEN-WHO first.
    let decision = eval(
        op::remove_service_account("sa-gone"),
        by_user("paul"),
        instance(),
    );
    assert_denied(&decision, "XEN-WHO");
}
