//! Granting, modifying and revoking support access.
//!
//! `grant` runs CEL-PLAN, CEL-WHO, CEL-LEVEL, CEL-EXPIRY,
//! CEL-NONADMIN-SCOPE, CEL-ENV and CEL-MULTIENV, in that (table) order.
//! `modify` runs CEL-PLAN, CEL-WHO, then CEL-CHANGE, then checks the
//! resulting grant as a new one. `revoke` runs CEL-CHANGE only.

use chaperone_sdk::{
    Account, Actor, Decision, Effect, Environment, EnvironmentKind, Grant, GrantRequest,
    GrantUpdate, ModifyRequest, NewGrant, Plan, Timestamp, User,
};

use crate::expiry::{cel_expiry, cel_expiry_kept};
use crate::scope::{Level, Scope, cel_level};
use crate::{Check, rule};

/// The setting that lets non-admin users grant.
pub(crate) const ALLOW_NON_ADMIN_GRANTS: &str = "allow_non_admin_grants";

/// Whether a user is an `owner` or `admin`, who may grant anything.
pub(crate) fn is_admin(user: &User) -> bool {
    matches!(user.role.as_str(), "owner" | "admin")
}

/// Whether a role may grant while `allow_non_admin_grants` is on.
fn is_non_admin_role(role: &str) -> bool {
    matches!(role, "manage" | "monitor" | "custom")
}

/// A user CEL-WHO lets grant.
#[derive(Clone, Copy)]
enum Granter<'a> {
    /// An `owner` or `admin`.
    Admin(&'a User),
    /// A `manage`, `monitor` or `custom` user, while the setting is on.
    NonAdmin(&'a User),
}

/// `grant`: create a grant.
pub(crate) fn grant(
    account: &Account,
    actor: &Actor,
    request: &GrantRequest,
    now: Timestamp,
) -> Check<Decision> {
    cel_plan(account)?;
    let granter = cel_who(account, actor)?;
    let expiry = Expiry::Given(request.expires_in.as_deref());
    let checked = check_as_new(
        account,
        granter,
        &request.environment,
        &request.scope,
        expiry,
        now,
    )?;
    let by = granter_id(granter);
    let message = format!(
        "user `{by}` granted support access to environment `{}`",
        request.environment
    );
    Ok(Decision::allow(rule::WHO, message)
        .with_rules(applied(granter, false))
        .with_effect(Effect::CreateGrant(NewGrant {
            environment: request.environment.clone(),
            grantee: None,
            scope: checked.scope.to_json(),
            expires_at: Some(checked.expires_at),
            metadata: "null".into(),
        })))
}

/// `modify`: change an active grant; the result is checked as a new grant
/// by the modifying user.
pub(crate) fn modify(
    account: &Account,
    actor: &Actor,
    request: &ModifyRequest,
    now: Timestamp,
) -> Check<Decision> {
    cel_plan(account)?;
    let granter = cel_who(account, actor)?;
    let grant = cel_change(account, actor, &request.grant)?;
    let scope = request.scope.as_deref().unwrap_or(&grant.scope);
    let expiry = match request.expires_in.as_deref() {
        Some(expires_in) => Expiry::Given(Some(expires_in)),
        None => Expiry::Kept(grant.expires_at),
    };
    let checked = check_as_new(account, granter, &grant.environment, scope, expiry, now)?;
    let message = format!(
        "user `{}` changed grant `{}`",
        granter_id(granter),
        grant.id
    );
    Ok(Decision::allow(rule::CHANGE, message)
        .with_rules(applied(granter, true))
        .with_effect(Effect::UpdateGrant(GrantUpdate {
            id: grant.id.clone(),
            scope: checked.scope.to_json(),
            expires_at: Some(checked.expires_at),
            metadata: grant.metadata.clone(),
        })))
}

/// `revoke`: end an active grant.
pub(crate) fn revoke(account: &Account, actor: &Actor, id: &str) -> Check<Decision> {
    let grant = cel_change(account, actor, id)?;
    let by = match actor {
        Actor::User(by) | Actor::Agent(by) => by,
    };
    Ok(Decision::allow(
        rule::CHANGE,
        format!("user `{by}` revoked grant `{}`", grant.id),
    )
    .with_rules([rule::CHANGE])
    .with_effect(Effect::RevokeGrant(grant.id.clone())))
}

/// Where a new grant's expiry comes from.
enum Expiry<'a> {
    /// The `expires_in` the request gave, if any.
    Given(Option<&'a str>),
    /// A modification without `expires_in` keeps the grant's expiry.
    Kept(Option<Timestamp>),
}

/// What a grant that passed every check gets.
struct Checked {
    scope: Scope,
    expires_at: Timestamp,
}

/// The checks of a new grant after CEL-PLAN and CEL-WHO (and, for
/// `modify`, CEL-CHANGE), in table order.
fn check_as_new(
    account: &Account,
    granter: Granter<'_>,
    environment: &str,
    scope: &str,
    expiry: Expiry<'_>,
    now: Timestamp,
) -> Check<Checked> {
    let env = account.environment(environment);
    let scope = cel_level(scope, environment, env)?;
    let expires_at = match expiry {
        Expiry::Given(expires_in) => cel_expiry(expires_in, now)?,
        Expiry::Kept(expires_at) => cel_expiry_kept(expires_at, now)?,
    };
    cel_nonadmin_scope(granter, &scope)?;
    let env = cel_env(env, environment)?;
    cel_multienv(account, env)?;
    Ok(Checked { scope, expires_at })
}

/// The rules an allowed `grant` (or `modify`) passed, in the order checked.
fn applied(granter: Granter<'_>, modify: bool) -> Vec<&'static str> {
    let mut rules = vec![rule::PLAN, rule::WHO];
    if modify {
        rules.push(rule::CHANGE);
    }
    rules.extend([rule::LEVEL, rule::EXPIRY]);
    if matches!(granter, Granter::NonAdmin(_)) {
        rules.push(rule::NONADMIN_SCOPE);
    }
    rules.extend([rule::ENV, rule::MULTIENV]);
    rules
}

fn granter_id(granter: Granter<'_>) -> &str {
    match granter {
        Granter::Admin(user) | Granter::NonAdmin(user) => &user.id,
    }
}

/// CEL-PLAN: support access cannot be enabled on `free` or `trial`
/// accounts.
fn cel_plan(account: &Account) -> Check {
    let plan = match account.plan {
        Plan::Paid => return Ok(()),
        Plan::Free => "free",
        Plan::Trial => "trial",
    };
    Err(Decision::deny(
        rule::PLAN,
        format!("support access cannot be enabled on a `{plan}` account"),
    ))
}

/// CEL-WHO: owners and admins grant; `manage`, `monitor` and `custom`
/// users only while `allow_non_admin_grants` is `true`; nobody else, and
/// never an agent.
fn cel_who<'a>(account: &'a Account, actor: &Actor) -> Check<Granter<'a>> {
    let id = match actor {
        Actor::User(id) => id,
        Actor::Agent(email) => {
            return Err(Decision::deny(
                rule::WHO,
                format!("agent `{email}` cannot grant support access"),
            ));
        }
    };
    let Some(user) = account.user(id) else {
        return Err(Decision::deny(
            rule::WHO,
            format!("`{id}` is not a user of this account"),
        ));
    };
    if is_admin(user) {
        return Ok(Granter::Admin(user));
    }
    if !is_non_admin_role(&user.role) {
        return Err(Decision::deny(
            rule::WHO,
            format!("role `{}` cannot grant support access", user.role),
        ));
    }
    if !account.setting_is_true(ALLOW_NON_ADMIN_GRANTS) {
        return Err(Decision::deny(
            rule::WHO,
            format!(
                "a `{}` user may grant support access only while `{ALLOW_NON_ADMIN_GRANTS}` is on",
                user.role
            ),
        ));
    }
    Ok(Granter::NonAdmin(user))
}

/// CEL-CHANGE: only an active grant can be changed; owners and admins
/// change any, other users only the ones they created (by user id).
fn cel_change<'a>(account: &'a Account, actor: &Actor, id: &str) -> Check<&'a Grant> {
    let Some(grant) = account.grant(id) else {
        return Err(Decision::deny(
            rule::CHANGE,
            format!("grant `{id}` is not active"),
        ));
    };
    let user = match actor {
        Actor::User(id) => account.user(id).ok_or_else(|| {
            Decision::deny(
                rule::CHANGE,
                format!("`{id}` is not a user of this account"),
            )
        })?,
        Actor::Agent(email) => {
            return Err(Decision::deny(
                rule::CHANGE,
                format!("agent `{email}` cannot change support grants"),
            ));
        }
    };
    if is_admin(user) || grant.granted_by == user.id {
        Ok(grant)
    } else {
        Err(Decision::deny(
            rule::CHANGE,
            format!(
                "user `{}` may change only the grants they created, not `{id}`",
                user.id
            ),
        ))
    }
}

/// CEL-NONADMIN-SCOPE: a non-admin cannot grant `admin`, and grants only
/// integrations in their own access, at no higher level.
fn cel_nonadmin_scope(granter: Granter<'_>, scope: &Scope) -> Check {
    let Granter::NonAdmin(user) = granter else {
        return Ok(());
    };
    let levels = match scope {
        Scope::Admin => {
            return Err(Decision::deny(
                rule::NONADMIN_SCOPE,
                format!("a `{}` user cannot grant `admin` access", user.role),
            ));
        }
        Scope::Integrations(levels) => levels,
    };
    for &(ref integration, wanted) in levels {
        let own = user.access_to(integration).and_then(Level::integration);
        match own {
            Some(own) if wanted <= own => {}
            Some(own) => {
                return Err(Decision::deny(
                    rule::NONADMIN_SCOPE,
                    format!(
                        "user `{}` has `{}` on `{integration}`, less than the `{}` asked for",
                        user.id,
                        own.name(),
                        wanted.name()
                    ),
                ));
            }
            None => {
                return Err(Decision::deny(
                    rule::NONADMIN_SCOPE,
                    format!(
                        "user `{}` has no access to integration `{integration}`",
                        user.id
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// CEL-ENV: a grant names one environment of the account.
fn cel_env<'a>(env: Option<&'a Environment>, environment: &str) -> Check<&'a Environment> {
    env.ok_or_else(|| {
        Decision::deny(
            rule::ENV,
            format!("environment `{environment}` does not exist in this account"),
        )
    })
}

/// CEL-MULTIENV: with several environments only a production one can be
/// granted, unless they are exactly one production and one sandbox.
fn cel_multienv(account: &Account, env: &Environment) -> Check {
    let envs = &account.environments;
    if envs.len() <= 1 || env.kind == EnvironmentKind::Production {
        return Ok(());
    }
    let production = envs
        .iter()
        .filter(|e| e.kind == EnvironmentKind::Production)
        .count();
    if envs.len() == 2 && production == 1 {
        return Ok(());
    }
    Err(Decision::deny(
        rule::MULTIENV,
        format!(
            "in this account only production environments can be granted, and `{}` is a sandbox",
            env.id
        ),
    ))
}
