//! CEL-SETTING.

use chaperone_sdk::testing::{
    assert_allowed, assert_denied, assert_effects, at, by_agent, by_user, grant, op,
};
use chaperone_sdk::{Effect, Setting};

use super::{SAM, acme, acme_open, eval, eval_at};

fn set(value: &str) -> Effect {
    Effect::SetSetting(Setting {
        key: "allow_non_admin_grants".into(),
        value: value.into(),
    })
}

#[test]
fn cel_setting_owner_and_admin_turn_it_on_and_off() {
    for actor in ["olivia", "ada"] {
        for (value, stored) in [("true", "true"), ("false", "false"), (" true ", "true")] {
            let decision = eval(
                op::set_setting("allow_non_admin_grants", value),
                by_user(actor),
                acme(),
            );
            assert_allowed(&decision);
            assert_eq!(decision.rule, "CEL-SETTING");
            assert_effects(&decision, &[set(stored)]);
        }
    }
}

#[test]
fn cel_setting_only_owner_or_admin_may_change_it() {
    for actor in [
        by_user("mia"),
        by_user("cody"),
        by_user("moe"),
        by_user("ghost"),
        by_agent(SAM),
    ] {
        let decision = eval(
            op::set_setting("allow_non_admin_grants", "false"),
            actor,
            acme_open(),
        );
        assert_denied(&decision, "CEL-SETTING");
    }
}

#[test]
fn cel_setting_only_a_json_boolean() {
    for value in ["\"true\"", "1", "0", "null", "[true]", "{}", "tru"] {
        let decision = eval(
            op::set_setting("allow_non_admin_grants", value),
            by_user("ada"),
            acme(),
        );
        assert_denied(&decision, "CEL-SETTING");
    }
}

#[test]
fn cel_setting_no_other_key() {
    for key in ["employee_access_consent", "Allow_Non_Admin_Grants", ""] {
        let decision = eval(op::set_setting(key, "true"), by_user("ada"), acme());
        assert_denied(&decision, "CEL-SETTING");
    }
}

#[test]
fn cel_setting_off_leaves_existing_grants() {
    // Cody granted while the setting was on; turning it off keeps the grant.
    let account = acme().setting("allow_non_admin_grants", "false").grant(
        grant("g1", "prod", "cody")
            .scope(r#"{"integrations":{"crm":"manage"}}"#)
            .expires_at(at(3, 9)),
    );
    let decision = eval_at(
        op::act("flow.run", Some("prod"), Some("crm")),
        by_agent(SAM),
        account,
        at(1, 9),
    );
    assert_allowed(&decision);
}
