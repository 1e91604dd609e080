//! `act`: XEN-NO-ACCOUNT, then XEN-RIGHTS; XEN-NO-EXPIRY and
//! XEN-REVOKE-CONSENT.

use chaperone_sdk::Decision;
use chaperone_sdk::testing::{
    assert_allowed, assert_denied, at, by_agent, by_user, op, service_account,
};

use super::{JONAS, MIRA, consenting, eval, eval_at, instance, with_jonas};

fn act_as(agent: &str, account: chaperone_sdk::testing::AccountBuilder, name: &str) -> Decision {
    eval(op::act(name, None, None), by_agent(agent), account)
}

#[test]
fn xen_no_account_without_an_active_service_account() {
    assert_denied(&act_as(MIRA, instance(), "orders.read"), "XEN-NO-ACCOUNT");
    // jonas's account does not let mira in.
    assert_denied(
        &act_as(MIRA, with_jonas(consenting(), &["*"]), "orders.read"),
        "XEN-NO-ACCOUNT",
    );
    // A customer user is no agent.
    let decision = eval(
        op::act("orders.read", None, None),
        by_user("anja"),
        with_jonas(instance(), &["*"]),
    );
    assert_denied(&decision, "XEN-NO-ACCOUNT");
}

#[test]
fn xen_no_account_named_before_rights() {
    assert_denied(
        &act_as(MIRA, with_jonas(instance(), &[]), "users.update"),
        "XEN-NO-ACCOUNT",
    );
}

#[test]
fn xen_no_account_agents_identified_case_insensitively() {
    let account = with_jonas(instance(), &["*"]);
    assert_allowed(&act_as("JONAS.WEBER@Xentral.com", account, "orders.read"));
}

#[test]
fn xen_rights_cover_actions() {
    for (rights, name, allowed) in [
        (&["*"][..], "orders.read", true),
        (&["*"], "users.update", true),
        (&["*"], "anything", true),
        (&["orders.read"], "orders.read", true),
        (&["orders.read"], "orders.write", false),
        (&["orders.read"], "Orders.read", false),
        (&["orders.*"], "orders.read", true),
        (&["orders.*"], "orders.write", true),
        (&["orders.*"], "orders.items.read", false),
        (&["orders.*"], "orders", false),
        (&["orders.*"], "ordersx.read", false),
        (&["orders.items.*"], "orders.items.read", true),
        (&["orders.items.*"], "orders.read", false),
        (&["orders"], "orders", true),
        (&["orders"], "orders.read", false),
        (&["*.read"], "orders.read", false),
        (&["orders*"], "orders.read", false),
        (&[".*"], "orders.read", false),
        (&[], "orders.read", false),
        (&["invoices.read", "orders.*"], "orders.write", true),
    ] {
        let decision = act_as(JONAS, with_jonas(instance(), rights), name);
        if allowed {
            assert_allowed(&decision);
        } else {
            assert_denied(&decision, "XEN-RIGHTS");
        }
    }
}

#[test]
fn xen_no_expiry_service_accounts_work_years_later() {
    let account = with_jonas(instance(), &["*"]);
    for now in [at(400, 0), at(800, 0), i64::MAX] {
        let decision = eval_at(
            op::act("invoices.write", None, None),
            by_agent(JONAS),
            account.clone(),
            now,
        );
        assert_allowed(&decision);
    }
}

#[test]
fn xen_revoke_consent_existing_accounts_keep_working() {
    // Consent revoked after jonas created his account: he still acts, mira
    // cannot create one.
    let account = with_jonas(
        instance().setting("employee_access_consent", "false"),
        &["*"],
    );
    assert_allowed(&act_as(JONAS, account.clone(), "orders.write"));
    let decision = eval(op::create_service_account(), by_agent(MIRA), account);
    assert_denied(&decision, "XEN-CONSENT");
}

#[test]
fn xen_remove_removed_account_lets_its_agent_do_nothing() {
    // After removal the host no longer passes the account in; another
    // agent's account does not stand in for it.
    let account = instance().service_account(service_account("sa-mira", MIRA).rights(["*"]));
    assert_denied(&act_as(JONAS, account, "orders.read"), "XEN-NO-ACCOUNT");
}
