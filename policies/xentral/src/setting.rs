//! The account's one setting, consent (XEN-SETTING).

use chaperone_sdk::json::{self, Value};
use chaperone_sdk::{Account, Actor, Decision, Effect, Setting};

use crate::who::xen_who;
use crate::{CONSENT_SETTING, Check, rule};

/// `set_setting`: a customer admin gives or revokes consent.
pub(crate) fn set_setting(account: &Account, actor: &Actor, setting: &Setting) -> Check<Decision> {
    xen_who(account, actor)?;
    let on = xen_setting(setting)?;
    let (message, rules) = if on {
        (
            "consent given: vendor staff may create service accounts",
            [rule::WHO, rule::SETTING, rule::CONSENT],
        )
    } else {
        (
            "consent revoked: existing service accounts stay until removed",
            [rule::WHO, rule::SETTING, rule::REVOKE_CONSENT],
        )
    };
    Ok(Decision::allow(rule::SETTING, message)
        .with_rules(rules)
        .with_effect(Effect::SetSetting(Setting {
            key: setting.key.clone(),
            value: on.to_string(),
        })))
}

/// XEN-SETTING: the key is `employee_access_consent` and the value a JSON
/// boolean, which it returns.
fn xen_setting(setting: &Setting) -> Check<bool> {
    if setting.key != CONSENT_SETTING {
        return Err(Decision::deny(
            rule::SETTING,
            format!(
                "`{}` is not a setting; the only one is `{CONSENT_SETTING}`",
                setting.key
            ),
        ));
    }
    match json::parse(&setting.value) {
        Some(Value::Bool(on)) => Ok(on),
        _ => Err(Decision::deny(
            rule::SETTING,
            format!(
                "`{CONSENT_SETTING}` is `true` or `false`, not `{}`",
                setting.value
            ),
        )),
    }
}
