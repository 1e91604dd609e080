//! What an agent may do under the account's grants.
//!
//! The order is fixed: (1) CEL-PERMS; (2) no active grant for the agent:
//! CEL-NO-GRANT; (3) none for the action's environment: CEL-ENV; (4) a grant
//! whose scope covers the action but whose granting user's current access
//! does not: CEL-CURRENT-ACCESS; (5) otherwise CEL-ACTION. Any grant that
//! allows the action allows it.

use chaperone_sdk::{Account, Action, Actor, Decision, Environment, Grant, User};

use crate::grant::is_admin;
use crate::scope::{Level, Scope};
use crate::{Check, rule};

/// `act`: decide one agent action.
pub(crate) fn act(account: &Account, actor: &Actor, action: &Action) -> Check<Decision> {
    cel_perms(&action.name)?;
    cel_no_grant(account, actor)?;
    let env = cel_env(account, actor, action)?;
    let grants = account
        .grants
        .iter()
        .filter(|g| is_for(g, actor) && g.environment == env.id);
    let mut lost = None;
    for grant in grants {
        match cover(account, grant, env, action) {
            Cover::Allowed { current_access } => {
                let mut rules = vec![rule::PERMS, rule::NO_GRANT, rule::ENV];
                if current_access {
                    rules.push(rule::CURRENT_ACCESS);
                }
                rules.push(rule::ACTION);
                // `concat`, not `format!`: in a fresh instance the
                // formatting machinery's first indirect calls are slow.
                let message = ["grant `", &grant.id, "` allows `", &action.name, "`"].concat();
                return Ok(Decision::allow(rule::ACTION, message).with_rules(rules));
            }
            Cover::AccessLost => {
                lost.get_or_insert(grant);
            }
            Cover::OutOfScope => {}
        }
    }
    Err(match lost {
        Some(grant) => cel_current_access_denial(account, grant, action),
        None => cel_action_denial(env, action),
    })
}

/// Whether an action changes users or their permissions: a name starting
/// with `users.` other than `users.read`.
fn is_user_change(name: &str) -> bool {
    name.starts_with("users.") && name != "users.read"
}

/// CEL-PERMS: an agent never changes users or their permissions, whatever
/// it was granted.
fn cel_perms(name: &str) -> Check {
    if is_user_change(name) {
        return Err(Decision::deny(
            rule::PERMS,
            format!("`{name}` changes users or their permissions, which support agents never do"),
        ));
    }
    Ok(())
}

/// CEL-NO-GRANT: some active grant is for this agent.
fn cel_no_grant(account: &Account, actor: &Actor) -> Check {
    if account.grants.iter().any(|g| is_for(g, actor)) {
        return Ok(());
    }
    Err(Decision::deny(
        rule::NO_GRANT,
        "no active support grant covers this agent in this account",
    ))
}

/// Whether a grant is for the asking agent; a grant with a grantee is for
/// that address only (compared case-insensitively).
fn is_for(grant: &Grant, actor: &Actor) -> bool {
    match actor {
        Actor::Agent(email) => grant
            .grantee
            .as_deref()
            .is_none_or(|grantee| grantee.eq_ignore_ascii_case(email)),
        Actor::User(_) => false,
    }
}

/// CEL-ENV: the action names an environment of the account, and some of the
/// agent's grants cover it.
fn cel_env<'a>(account: &'a Account, actor: &Actor, action: &Action) -> Check<&'a Environment> {
    let Some(environment) = action.environment.as_deref() else {
        return Err(Decision::deny(rule::ENV, "the action names no environment"));
    };
    let Some(env) = account.environment(environment) else {
        return Err(Decision::deny(
            rule::ENV,
            format!("environment `{environment}` does not exist in this account"),
        ));
    };
    if !account
        .grants
        .iter()
        .any(|g| is_for(g, actor) && g.environment == env.id)
    {
        return Err(Decision::deny(
            rule::ENV,
            format!("no active support grant covers environment `{environment}`"),
        ));
    }
    Ok(env)
}

/// How one grant stands to an action.
enum Cover {
    /// The grant allows it; `current_access` when only because the granting
    /// non-admin user still has the access.
    Allowed { current_access: bool },
    /// The scope covers it but the granting user's current access does not.
    AccessLost,
    /// The scope does not cover it.
    OutOfScope,
}

/// CEL-ACTION and CEL-CURRENT-ACCESS for one grant on the action's
/// environment `env`.
fn cover(account: &Account, grant: &Grant, env: &Environment, action: &Action) -> Cover {
    let Ok(scope) = Scope::read(&grant.scope) else {
        return Cover::OutOfScope;
    };
    let integration = action.integration.as_deref();
    if integration.is_some_and(|id| !env.integrations.iter().any(|i| i == id)) {
        return Cover::OutOfScope;
    }
    if !scope
        .level_on(integration)
        .is_some_and(|level| level.allows(&action.name))
    {
        return Cover::OutOfScope;
    }
    let granter = account.user(&grant.granted_by);
    if granter.is_some_and(is_admin) {
        return Cover::Allowed {
            current_access: false,
        };
    }
    if current_level(granter, integration).is_some_and(|level| level.allows(&action.name)) {
        Cover::Allowed {
            current_access: true,
        }
    } else {
        Cover::AccessLost
    }
}

/// A non-admin granting user's access, now, to the action's integration
/// (none for an environment-wide action or a removed user).
fn current_level(granter: Option<&User>, integration: Option<&str>) -> Option<Level> {
    granter?
        .access_to(integration?)
        .and_then(Level::integration)
}

/// The CEL-CURRENT-ACCESS denial for a grant whose user lost the access.
fn cel_current_access_denial(account: &Account, grant: &Grant, action: &Action) -> Decision {
    let by = &grant.granted_by;
    let message = match (account.user(by), action.integration.as_deref()) {
        (None, _) => format!("user `{by}`, who granted `{}`, no longer exists", grant.id),
        (Some(_), None) => format!(
            "user `{by}`, who granted `{}`, has no environment-wide access for `{}`",
            grant.id, action.name
        ),
        (Some(user), Some(integration)) => match user.access_to(integration) {
            Some(level) => format!(
                "user `{by}`, who granted `{}`, now has only `{level}` on `{integration}`, which does not allow `{}`",
                grant.id, action.name
            ),
            None => format!(
                "user `{by}`, who granted `{}`, no longer has access to `{integration}`",
                grant.id
            ),
        },
    };
    Decision::deny(rule::CURRENT_ACCESS, message)
}

/// The CEL-ACTION denial: no grant's scope covers the action.
fn cel_action_denial(env: &Environment, action: &Action) -> Decision {
    let message = match action.integration.as_deref() {
        Some(integration) => format!(
            "no active grant on `{}` allows `{}` on integration `{integration}`",
            env.id, action.name
        ),
        None => format!("no active grant on `{}` allows `{}`", env.id, action.name),
    };
    Decision::deny(rule::ACTION, message)
}
