//! `set_setting`: XEN-WHO, XEN-SETTING, XEN-REVOKE-CONSENT.

use chaperone_sdk::testing::{
    assert_allowed, assert_denied, assert_effects, by_agent, by_user, op, user,
};
use chaperone_sdk::{Effect, Setting};

use super::{JONAS, consenting, eval, instance, with_jonas};

fn consent(value: &str) -> Effect {
    Effect::SetSetting(Setting {
        key: "employee_access_consent".into(),
        value: value.into(),
    })
}

#[test]
fn xen_who_admin_or_users_manage_gives_consent() {
    for actor in ["anja", "ulla"] {
        let decision = eval(
            op::set_setting("employee_access_consent", "true"),
            by_user(actor),
            instance(),
        );
        assert_allowed(&decision);
        assert_effects(&decision, &[consent("true")]);
    }
}

#[test]
fn xen_who_others_cannot_give_or_revoke_consent() {
    let account = instance()
        .user(user("una", "user").right("users.*"))
        .user(user("uwe", "user").right("Users.manage"))
        .user(user("udo", "user").right("users.manage.all"))
        .user(user("ada", "Admin"))
        .user(user("olaf", "owner"));
    for actor in [
        by_user("paul"),
        by_user("una"),
        by_user("uwe"),
        by_user("udo"),
        by_user("ada"),
        by_user("olaf"),
        by_user("ghost"),
        by_agent(JONAS),
    ] {
        for value in ["true", "false"] {
            let decision = eval(
                op::set_setting("employee_access_consent", value),
                actor.clone(),
                account.clone(),
            );
            assert_denied(&decision, "XEN-WHO");
        }
    }
}

#[test]
fn xen_who_named_before_setting() {
    let decision = eval(
        op::set_setting("theme", "\"dark\""),
        by_user("paul"),
        instance(),
    );
    assert_denied(&decision, "XEN-WHO");
}

#[test]
fn xen_setting_consent_is_the_only_setting_and_a_boolean() {
    for (key, value) in [
        ("allow_non_admin_grants", "true"),
        ("Employee_Access_Consent", "true"),
        ("", "true"),
        ("employee_access_consent", "\"true\""),
        ("employee_access_consent", "1"),
        ("employee_access_consent", "null"),
        ("employee_access_consent", "{}"),
    ] {
        let decision = eval(op::set_setting(key, value), by_user("anja"), instance());
        assert_denied(&decision, "XEN-SETTING");
    }
}

#[test]
fn xen_revoke_consent_removes_no_service_account() {
    let decision = eval(
        op::set_setting("employee_access_consent", "false"),
        by_user("anja"),
        with_jonas(consenting(), &["*"]),
    );
    assert_allowed(&decision);
    assert!(decision.rules.iter().any(|r| r == "XEN-REVOKE-CONSENT"));
    // The only effect is the setting: nothing is removed.
    assert_effects(&decision, &[consent("false")]);
}
