//! Changing the account's settings (CEL-SETTING).

use chaperone_sdk::json::{self, Value};
use chaperone_sdk::{Account, Actor, Decision, Effect, Setting};

use crate::grant::{ALLOW_NON_ADMIN_GRANTS, is_admin};
use crate::{Check, rule};

/// `set_setting`: only an owner or admin may set `allow_non_admin_grants`,
/// the only setting, to a JSON boolean.
pub(crate) fn set_setting(account: &Account, actor: &Actor, setting: &Setting) -> Check<Decision> {
    cel_setting(account, actor, setting)?;
    let on = matches!(json::parse(&setting.value), Some(Value::Bool(true)));
    let message = format!(
        "`{ALLOW_NON_ADMIN_GRANTS}` turned {}",
        if on { "on" } else { "off" }
    );
    Ok(Decision::allow(rule::SETTING, message)
        .with_rules([rule::SETTING])
        .with_effect(Effect::SetSetting(Setting {
            key: setting.key.clone(),
            value: on.to_string(),
        })))
}

/// CEL-SETTING: the actor is an owner or admin, the key is
/// `allow_non_admin_grants` and the value a JSON boolean.
fn cel_setting(account: &Account, actor: &Actor, setting: &Setting) -> Check {
    let user = match actor {
        Actor::User(id) => account.user(id),
        Actor::Agent(_) => None,
    };
    match user {
        Some(user) if is_admin(user) => {}
        Some(user) => {
            return Err(Decision::deny(
                rule::SETTING,
                format!(
                    "only an owner or admin may change `{ALLOW_NON_ADMIN_GRANTS}`, and `{}` is `{}`",
                    user.id, user.role
                ),
            ));
        }
        None => {
            return Err(Decision::deny(
                rule::SETTING,
                format!("only an owner or admin may change `{ALLOW_NON_ADMIN_GRANTS}`"),
            ));
        }
    }
    if setting.key != ALLOW_NON_ADMIN_GRANTS {
        return Err(Decision::deny(
            rule::SETTING,
            format!(
                "`{}` is not a setting; the only one is `{ALLOW_NON_ADMIN_GRANTS}`",
                setting.key
            ),
        ));
    }
    if !matches!(json::parse(&setting.value), Some(Value::Bool(_))) {
        return Err(Decision::deny(
            rule::SETTING,
            format!(
                "`{ALLOW_NON_ADMIN_GRANTS}` is `true` or `false`, not `{}`",
                setting.value
            ),
        ));
    }
    Ok(())
}
