//! `invite`: XEN-WHO, XEN-DOMAIN, XEN-ONE-ACCOUNT, XEN-CONSENT, XEN-INVITE.

use chaperone_sdk::Effect;
use chaperone_sdk::testing::{
    assert_allowed, assert_denied, assert_effects, by_agent, by_user, invitation, op,
};

use super::{JONAS, MIRA, consenting, eval, instance, with_jonas};

#[test]
fn xen_invite_admin_invites_one_agent() {
    for actor in ["anja", "ulla"] {
        let decision = eval(
            op::invite("Ann.Schulz@XENTRAL.COM"),
            by_user(actor),
            instance(),
        );
        assert_allowed(&decision);
        assert_eq!(decision.rule, "XEN-INVITE");
        assert_effects(
            &decision,
            &[Effect::CreateInvitation("Ann.Schulz@XENTRAL.COM".into())],
        );
    }
}

#[test]
fn xen_who_governs_invitations_by_users() {
    for actor in ["paul", "ghost"] {
        let decision = eval(op::invite(MIRA), by_user(actor), consenting());
        assert_denied(&decision, "XEN-WHO");
    }
    // Named before XEN-DOMAIN.
    assert_denied(
        &eval(op::invite("ann@evil.io"), by_user("paul"), instance()),
        "XEN-WHO",
    );
}

#[test]
fn xen_domain_exactly_xentral_com() {
    for (address, staff) in [
        ("Ann@XENTRAL.COM", true),
        ("ann@xentral.com", true),
        ("ann+case-42@xentral.com", true),
        ("a@Xentral.Com", true),
        ("ann@xentral.com.evil.io", false),
        ("ann@evilxentral.com", false),
        ("ann@sub.xentral.com", false),
        ("ann@xentral.co", false),
        ("ann@xentral.com.", false),
        ("ann@xentral.com ", false),
        ("ann@@xentral.com", false),
        ("ann@x@xentral.com", false),
        ("@xentral.com", false),
        ("xentral.com", false),
        ("ann@", false),
        ("", false),
        ("ann@xentraI.com", false),
        ("ann@xentral\u{212a}.com", false),
    ] {
        let decision = eval(op::invite(address), by_user("anja"), instance());
        if staff {
            assert_allowed(&decision);
        } else {
            assert_denied(&decision, "XEN-DOMAIN");
        }
    }
}

#[test]
fn xen_one_account_one_unused_invitation_per_address() {
    let account = instance().invitation(invitation("inv-1", "Ann@xentral.com", by_user("anja")));
    for address in ["ann@xentral.com", "ANN@XENTRAL.COM", "Ann@xentral.com"] {
        let decision = eval(op::invite(address), by_user("anja"), account.clone());
        assert_denied(&decision, "XEN-ONE-ACCOUNT");
    }
    assert_allowed(&eval(op::invite(MIRA), by_user("anja"), account));
}

#[test]
fn xen_one_account_no_invitation_for_an_address_with_a_service_account() {
    let account = with_jonas(instance(), &["*"]);
    let decision = eval(
        op::invite("Jonas.Weber@xentral.com"),
        by_user("anja"),
        account,
    );
    assert_denied(&decision, "XEN-ONE-ACCOUNT");
}

#[test]
fn xen_consent_lets_an_agent_with_a_service_account_invite() {
    let decision = eval(
        op::invite(MIRA),
        by_agent(JONAS),
        with_jonas(consenting(), &["*"]),
    );
    assert_allowed(&decision);
    assert_effects(&decision, &[Effect::CreateInvitation(MIRA.into())]);
    // The agent is recognized whatever the case of its address.
    let decision = eval(
        op::invite(MIRA),
        by_agent("JONAS.WEBER@xentral.com"),
        with_jonas(consenting(), &["*"]),
    );
    assert_allowed(&decision);
}

#[test]
fn xen_consent_agents_cannot_invite_without_consent_or_service_account() {
    // No consent, even with a service account.
    let decision = eval(
        op::invite(MIRA),
        by_agent(JONAS),
        with_jonas(instance(), &["*"]),
    );
    assert_denied(&decision, "XEN-CONSENT");
    // Consent, but no service account here.
    let decision = eval(op::invite(MIRA), by_agent(JONAS), consenting());
    assert_denied(&decision, "XEN-CONSENT");
}

#[test]
fn xen_invite_by_agent_order_domain_one_account_then_consent() {
    let account = instance().invitation(invitation("inv-1", MIRA, by_user("anja")));
    // No consent and no service account: XEN-DOMAIN, then XEN-ONE-ACCOUNT first.
    assert_denied(
        &eval(op::invite("mira@evil.io"), by_agent(JONAS), account.clone()),
        "XEN-DOMAIN",
    );
    assert_denied(
        &eval(op::invite(MIRA), by_agent(JONAS), account),
        "XEN-ONE-ACCOUNT",
    );
}
