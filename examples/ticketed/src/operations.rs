//! The operations this module decides, each a sequence of rule checks in
//! the order `RULES.md` gives for it; the first that fails names the
//! denial.

use chaperone_sdk::json::{self, Map, Value};
use chaperone_sdk::{Account, Action, Actor, Decision, Effect, Entry, NewGrant, Timestamp};

use crate::pending::{self, Pending};
use crate::rules::{
    shown, ticket_of, tkt_approve, tkt_approve_key, tkt_approver, tkt_domain, tkt_env,
    tkt_env_covered, tkt_env_exists, tkt_hours, tkt_hours_expiry, tkt_level, tkt_no_grant,
    tkt_params, tkt_params_string, tkt_pending, tkt_perms, tkt_revoke, tkt_scope, tkt_stale,
    tkt_ticket,
};
use crate::{Check, rule};

/// The parameters of `request-access`.
const REQUEST_FIELDS: [&str; 4] = ["ticket", "environment", "scope", "hours"];
/// The parameters of `approve` and `deny-request`.
const DECIDE_FIELDS: [&str; 2] = ["agent", "ticket"];

/// `request-access`: an agent asks for access for one ticket; the request
/// is kept, pending, as an entry.
pub(crate) fn request_access(
    account: &Account,
    actor: &Actor,
    params: &str,
    now: Timestamp,
) -> Check<Decision> {
    let agent = tkt_domain(actor)?;
    let params = tkt_params(params, &REQUEST_FIELDS)?;
    let ticket = tkt_ticket(params.get("ticket"))?;
    let environment = tkt_env(account, params.get("environment"))?;
    let level = tkt_scope(params.get("scope"))?;
    let hours = tkt_hours(params.get("hours"))?;
    tkt_pending(account, &agent, &ticket, now)?;
    let request = Pending {
        agent,
        ticket,
        environment,
        level,
        hours,
        requested_at: now,
    };
    Ok(Decision::allow(
        rule::PENDING,
        format!(
            "`{}` asks for `{}` access to `{}` for {} hours on ticket `{}`; a customer owner or admin decides",
            request.agent,
            request.level.name(),
            shown(&request.environment),
            request.hours,
            request.ticket
        ),
    )
    .with_rules([
        rule::DOMAIN,
        rule::PARAMS,
        rule::TICKET,
        rule::ENV,
        rule::SCOPE,
        rule::HOURS,
        rule::PENDING,
    ])
    .with_effect(Effect::PutEntry(Entry {
        key: request.key(),
        value: request.to_json(),
    })))
}

/// `approve`: a customer admin turns a pending request into a grant for
/// that agent alone, starting now.
pub(crate) fn approve(
    account: &Account,
    actor: &Actor,
    params: &str,
    now: Timestamp,
) -> Check<Decision> {
    let approver = tkt_approver(account, actor)?;
    let params = tkt_params(params, &DECIDE_FIELDS)?;
    let agent = tkt_params_string(&params, "agent")?;
    let ticket = tkt_params_string(&params, "ticket")?;
    let request = tkt_approve(account, agent, ticket)?;
    tkt_stale(&request, now)?;
    tkt_env_exists(account, &request.environment)?;
    let expires_at = tkt_hours_expiry(request.hours, now)?;
    let mut metadata = Map::new();
    metadata.insert("approved_by".into(), Value::String(approver.id.clone()));
    metadata.insert("ticket".into(), Value::String(request.ticket.clone()));
    Ok(Decision::allow(
        rule::APPROVE,
        format!(
            "`{}` approved `{}` access to `{}` for `{}` for {} hours on ticket `{}`",
            approver.id,
            request.level.name(),
            request.environment,
            request.agent,
            request.hours,
            request.ticket
        ),
    )
    .with_rules([
        rule::APPROVER,
        rule::PARAMS,
        rule::APPROVE,
        rule::STALE,
        rule::ENV,
        rule::HOURS,
    ])
    .with_effect(Effect::CreateGrant(NewGrant {
        environment: request.environment.clone(),
        grantee: Some(request.agent.clone()),
        scope: json::to_text(&request.level.scope()),
        expires_at: Some(expires_at),
        metadata: json::to_text(&Value::Object(metadata)),
    }))
    .with_effect(Effect::DeleteEntry(pending::key(
        &request.agent,
        &request.ticket,
    ))))
}

/// `deny-request`: a customer admin turns a pending request down; it is
/// removed.
pub(crate) fn deny_request(account: &Account, actor: &Actor, params: &str) -> Check<Decision> {
    let approver = tkt_approver(account, actor)?;
    let params = tkt_params(params, &DECIDE_FIELDS)?;
    let agent = tkt_params_string(&params, "agent")?;
    let ticket = tkt_params_string(&params, "ticket")?;
    let key = tkt_approve_key(account, agent, ticket)?;
    Ok(Decision::allow(
        rule::APPROVE,
        format!(
            "`{}` turned down the request of `{}` for ticket `{}`",
            approver.id,
            shown(agent),
            shown(ticket)
        ),
    )
    .with_rules([rule::APPROVER, rule::PARAMS, rule::APPROVE])
    .with_effect(Effect::DeleteEntry(key)))
}

/// `revoke`: a customer admin ends an active grant.
pub(crate) fn revoke(account: &Account, actor: &Actor, id: &str) -> Check<Decision> {
    let approver = tkt_approver(account, actor)?;
    let grant = tkt_revoke(account, id)?;
    let ticket = ticket_of(grant)
        .map(|t| format!(" (ticket `{}`)", shown(&t)))
        .unwrap_or_default();
    Ok(Decision::allow(
        rule::REVOKE,
        format!("`{}` revoked grant `{}`{ticket}", approver.id, grant.id),
    )
    .with_rules([rule::APPROVER, rule::REVOKE])
    .with_effect(Effect::RevokeGrant(grant.id.clone())))
}

/// `act`: an agent acts under one of its own grants.
pub(crate) fn act(account: &Account, actor: &Actor, action: &Action) -> Check<Decision> {
    tkt_perms(action)?;
    let (agent, own) = tkt_no_grant(account, actor)?;
    let covering = tkt_env_covered(&own, action)?;
    let grant = tkt_level(&covering, action)?;
    let ticket = ticket_of(grant)
        .map(|t| format!(" for ticket `{}`", shown(&t)))
        .unwrap_or_default();
    Ok(Decision::allow(
        rule::LEVEL,
        format!(
            "`{}` may run `{}` in `{}` under grant `{}`{ticket}",
            shown(agent),
            shown(&action.name),
            grant.environment,
            grant.id
        ),
    )
    .with_rules([rule::PERMS, rule::NO_GRANT, rule::ENV, rule::LEVEL]))
}
