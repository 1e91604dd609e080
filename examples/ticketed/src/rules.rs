//! One function per rule of `RULES.md`, in the order of its table, each
//! named after the rule's id and returning a [`Check`] whose denial names it.

use chaperone_sdk::json::{Map, Value};
use chaperone_sdk::time::{DAY, HOUR};
use chaperone_sdk::{Account, Action, Actor, Decision, Grant, Timestamp, User, json};

use crate::pending::{self, Level, Pending};
use crate::{Check, rule};

/// The vendor's email domain: its support staff, and only they, have
/// addresses there.
pub(crate) const STAFF_DOMAIN: &str = "ticketed.example";
/// The longest address accepted (RFC 5321's limit on a path).
pub(crate) const MAX_ADDRESS_LEN: usize = 254;
/// The roles that may approve, deny and revoke.
pub(crate) const APPROVER_ROLES: [&str; 2] = ["owner", "admin"];
/// What every ticket reference starts with.
pub(crate) const TICKET_PREFIX: &str = "HD-";
/// The most digits a ticket number has.
pub(crate) const MAX_TICKET_DIGITS: usize = 9;
/// The longest grant, in hours.
pub(crate) const MAX_HOURS: i64 = 72;
/// The most pending requests one agent may have in one account.
pub(crate) const MAX_PENDING: usize = 3;
/// How long a request waits for approval before it goes stale.
pub(crate) const STALE_AFTER: i64 = 7 * DAY;

/// The longest piece of user input a message quotes, in characters.
const SHOWN_CHARS: usize = 80;

/// User input as a message quotes it: cut to [`SHOWN_CHARS`] characters, so
/// that a message stays short whatever the caller sent.
pub(crate) fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// A JSON value as a message quotes it.
fn shown_value(value: &Value) -> String {
    shown(&json::to_text(value))
}

/// TKT-DOMAIN: the actor is vendor staff. Returns the agent's address,
/// lowercased.
pub(crate) fn tkt_domain(actor: &Actor) -> Check<String> {
    match actor {
        Actor::Agent(address) if is_staff_address(address) => Ok(address.to_ascii_lowercase()),
        Actor::Agent(address) => Err(Decision::deny(
            rule::DOMAIN,
            format!(
                "`{}` is not a `{STAFF_DOMAIN}` support address",
                shown(address)
            ),
        )),
        Actor::User(id) => Err(Decision::deny(
            rule::DOMAIN,
            format!(
                "user `{}` is a customer user; only `{STAFF_DOMAIN}` support agents request access",
                shown(id)
            ),
        )),
    }
}

/// Whether `address` is a vendor staff address: exactly one `@`, something
/// before it, [`STAFF_DOMAIN`] after it (ASCII case-insensitively), at most
/// [`MAX_ADDRESS_LEN`] bytes.
pub(crate) fn is_staff_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.len() <= MAX_ADDRESS_LEN
        && !local.is_empty()
        && !domain.contains('@')
        && domain.eq_ignore_ascii_case(STAFF_DOMAIN)
}

/// TKT-APPROVER: the actor is a user of the account with an approver role.
pub(crate) fn tkt_approver<'a>(account: &'a Account, actor: &Actor) -> Check<&'a User> {
    let id = match actor {
        Actor::User(id) => id,
        Actor::Agent(address) => {
            return Err(Decision::deny(
                rule::APPROVER,
                format!(
                    "agent `{}` cannot approve, deny or revoke support access; a customer owner or admin does",
                    shown(address)
                ),
            ));
        }
    };
    match account.user(id) {
        Some(user) if APPROVER_ROLES.contains(&user.role.as_str()) => Ok(user),
        Some(user) => Err(Decision::deny(
            rule::APPROVER,
            format!(
                "user `{}` has role `{}`; only an owner or admin approves, denies or revokes support access",
                shown(id),
                shown(&user.role)
            ),
        )),
        None => Err(Decision::deny(
            rule::APPROVER,
            format!("`{}` is not a user of this account", shown(id)),
        )),
    }
}

/// TKT-PARAMS: `params` is a JSON object with no field outside `fields`.
pub(crate) fn tkt_params(params: &str, fields: &[&str]) -> Check<Map<String, Value>> {
    let Some(Value::Object(map)) = json::parse(params) else {
        return Err(Decision::deny(
            rule::PARAMS,
            format!("parameters `{}` are not a JSON object", shown(params)),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(Decision::deny(
            rule::PARAMS,
            format!(
                "unknown parameter `{}`; expected {}",
                shown(unknown),
                fields
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(map)
}

/// TKT-PARAMS: the required string parameter `field`.
pub(crate) fn tkt_params_string<'a>(map: &'a Map<String, Value>, field: &str) -> Check<&'a str> {
    match map.get(field) {
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(Decision::deny(
            rule::PARAMS,
            format!(
                "parameter `{field}` must be a string, got `{}`",
                shown_value(other)
            ),
        )),
        None => Err(Decision::deny(
            rule::PARAMS,
            format!("parameter `{field}` is required"),
        )),
    }
}

/// TKT-TICKET: a ticket reference is given and well-formed (`HD-1234`).
pub(crate) fn tkt_ticket(ticket: Option<&Value>) -> Check<String> {
    match ticket {
        Some(Value::String(text)) if is_ticket(text) => Ok(text.clone()),
        Some(other) => Err(Decision::deny(
            rule::TICKET,
            format!(
                "ticket `{}` is not a helpdesk reference like `HD-1234`",
                shown_value(other)
            ),
        )),
        None => Err(Decision::deny(
            rule::TICKET,
            "a helpdesk ticket reference (`ticket`, like `HD-1234`) is required",
        )),
    }
}

/// Whether `text` is [`TICKET_PREFIX`] and 1 to [`MAX_TICKET_DIGITS`] ASCII
/// digits, the first not `0`.
pub(crate) fn is_ticket(text: &str) -> bool {
    let Some(number) = text.strip_prefix(TICKET_PREFIX) else {
        return false;
    };
    (1..=MAX_TICKET_DIGITS).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
        && !number.starts_with('0')
}

/// TKT-ENV for a request: `environment` names an environment of the
/// account.
pub(crate) fn tkt_env(account: &Account, environment: Option<&Value>) -> Check<String> {
    match environment {
        Some(Value::String(id)) => tkt_env_exists(account, id).map(|()| id.clone()),
        Some(other) => Err(Decision::deny(
            rule::ENV,
            format!(
                "environment `{}` must be an environment id",
                shown_value(other)
            ),
        )),
        None => Err(Decision::deny(rule::ENV, "an `environment` is required")),
    }
}

/// TKT-ENV: the account (still) has the environment `id`.
pub(crate) fn tkt_env_exists(account: &Account, id: &str) -> Check {
    if account.environment(id).is_some() {
        Ok(())
    } else {
        Err(Decision::deny(
            rule::ENV,
            format!("this account has no environment `{}`", shown(id)),
        ))
    }
}

/// TKT-ENV for an action: of `grants`, those covering the action's
/// environment.
pub(crate) fn tkt_env_covered<'a>(grants: &[&'a Grant], action: &Action) -> Check<Vec<&'a Grant>> {
    let Some(environment) = &action.environment else {
        return Err(Decision::deny(
            rule::ENV,
            format!(
                "action `{}` names no environment; a grant covers one environment",
                shown(&action.name)
            ),
        ));
    };
    let covering: Vec<&Grant> = grants
        .iter()
        .copied()
        .filter(|g| g.environment == *environment)
        .collect();
    if covering.is_empty() {
        Err(Decision::deny(
            rule::ENV,
            format!(
                "no active grant of this agent covers environment `{}`",
                shown(environment)
            ),
        ))
    } else {
        Ok(covering)
    }
}

/// TKT-SCOPE: the scope is `{"level":"read"}` or `{"level":"write"}`.
pub(crate) fn tkt_scope(scope: Option<&Value>) -> Check<Level> {
    let Some(scope) = scope else {
        return Err(Decision::deny(
            rule::SCOPE,
            "a `scope` is required: `{\"level\":\"read\"}` or `{\"level\":\"write\"}`",
        ));
    };
    Level::from_scope(scope).ok_or_else(|| {
        Decision::deny(
            rule::SCOPE,
            format!(
                "scope `{}` is neither `{{\"level\":\"read\"}}` nor `{{\"level\":\"write\"}}`",
                shown_value(scope)
            ),
        )
    })
}

/// TKT-HOURS for a request: `hours` is a JSON integer from 1 to
/// [`MAX_HOURS`].
pub(crate) fn tkt_hours(hours: Option<&Value>) -> Check<i64> {
    let Some(value) = hours else {
        return Err(Decision::deny(
            rule::HOURS,
            format!("`hours` is required, a whole number from 1 to {MAX_HOURS}"),
        ));
    };
    let Some(count) = json::as_integer(value) else {
        return Err(Decision::deny(
            rule::HOURS,
            format!(
                "hours `{}` is not a whole number from 1 to {MAX_HOURS}",
                shown_value(value)
            ),
        ));
    };
    tkt_hours_in_range(count).map(|()| count)
}

/// TKT-HOURS: `count` is from 1 to [`MAX_HOURS`].
fn tkt_hours_in_range(count: i64) -> Check {
    if count <= 0 {
        Err(Decision::deny(
            rule::HOURS,
            format!("hours `{count}` must be greater than zero"),
        ))
    } else if count > MAX_HOURS {
        Err(Decision::deny(
            rule::HOURS,
            format!("hours `{count}` exceed the {MAX_HOURS}-hour maximum"),
        ))
    } else {
        Ok(())
    }
}

/// TKT-HOURS at approval: the stored request's hours are (still) within
/// range. Returns the grant's expiry, `now + hours`.
pub(crate) fn tkt_hours_expiry(hours: i64, now: Timestamp) -> Check<Timestamp> {
    tkt_hours_in_range(hours)?;
    hours
        .checked_mul(HOUR)
        .and_then(|duration| now.checked_add(duration))
        .ok_or_else(|| Decision::deny(rule::HOURS, "the expiry is out of range"))
}

/// TKT-PENDING: `agent` has no live pending request for `ticket`, and fewer
/// than [`MAX_PENDING`] live pending requests in all. Stale requests do not
/// count; one the module cannot read counts as live.
pub(crate) fn tkt_pending(account: &Account, agent: &str, ticket: &str, now: Timestamp) -> Check {
    let key = pending::key(agent, ticket);
    let prefix = pending::agent_prefix(agent);
    let live = |value: &str| Pending::from_json(value).is_none_or(|p| !is_stale(&p, now));
    if account
        .entries
        .iter()
        .any(|e| e.key == key && live(&e.value))
    {
        return Err(Decision::deny(
            rule::PENDING,
            format!(
                "`{}` already has a pending request for ticket `{ticket}`",
                shown(agent)
            ),
        ));
    }
    let count = account
        .entries
        .iter()
        .filter(|e| e.key.starts_with(&prefix) && live(&e.value))
        .count();
    if count >= MAX_PENDING {
        return Err(Decision::deny(
            rule::PENDING,
            format!(
                "`{}` already has {count} pending requests; the limit is {MAX_PENDING}",
                shown(agent)
            ),
        ));
    }
    Ok(())
}

/// TKT-APPROVE: the pending request of `agent` for `ticket`.
pub(crate) fn tkt_approve(account: &Account, agent: &str, ticket: &str) -> Check<Pending> {
    let key = pending::key(agent, ticket);
    let Some(entry) = account.entries.iter().find(|e| e.key == key) else {
        return Err(Decision::deny(
            rule::APPROVE,
            format!(
                "`{}` has no pending request for ticket `{}`",
                shown(agent),
                shown(ticket)
            ),
        ));
    };
    let agent = agent.to_ascii_lowercase();
    Pending::from_json(&entry.value)
        .filter(|p| p.agent == agent && p.ticket == ticket)
        .ok_or_else(|| {
            Decision::deny(
                rule::APPROVE,
                format!(
                    "entry `{}` is not a request this policy can read; deny it and ask again",
                    shown(&key)
                ),
            )
        })
}

/// TKT-APPROVE, for `deny-request`: the key of a pending request of `agent`
/// for `ticket`, readable or not.
pub(crate) fn tkt_approve_key(account: &Account, agent: &str, ticket: &str) -> Check<String> {
    let key = pending::key(agent, ticket);
    if account.entries.iter().any(|e| e.key == key) {
        Ok(key)
    } else {
        Err(Decision::deny(
            rule::APPROVE,
            format!(
                "`{}` has no pending request for ticket `{}`",
                shown(agent),
                shown(ticket)
            ),
        ))
    }
}

/// TKT-STALE: the request is younger than [`STALE_AFTER`].
pub(crate) fn tkt_stale(pending: &Pending, now: Timestamp) -> Check {
    if is_stale(pending, now) {
        Err(Decision::deny(
            rule::STALE,
            format!(
                "the request for ticket `{}` is more than {} days old; the agent asks again",
                pending.ticket,
                STALE_AFTER / DAY
            ),
        ))
    } else {
        Ok(())
    }
}

/// Whether a request has waited [`STALE_AFTER`] or longer.
pub(crate) fn is_stale(pending: &Pending, now: Timestamp) -> bool {
    pending.requested_at.saturating_add(STALE_AFTER) <= now
}

/// TKT-REVOKE: `id` is an active grant of the account.
pub(crate) fn tkt_revoke<'a>(account: &'a Account, id: &str) -> Check<&'a Grant> {
    account.grant(id).ok_or_else(|| {
        Decision::deny(
            rule::REVOKE,
            format!("`{}` is not an active grant of this account", shown(id)),
        )
    })
}

/// TKT-PERMS: the action changes no user and no permission.
pub(crate) fn tkt_perms(action: &Action) -> Check {
    if is_user_change(&action.name) {
        Err(Decision::deny(
            rule::PERMS,
            format!(
                "`{}` changes users or their permissions; support agents never do",
                shown(&action.name)
            ),
        ))
    } else {
        Ok(())
    }
}

/// Whether an action name changes users or permissions: `users.` anything
/// but `users.read`.
pub(crate) fn is_user_change(name: &str) -> bool {
    name.starts_with("users.") && name != "users.read"
}

/// TKT-NO-GRANT: the actor is an agent holding at least one active grant of
/// its own. Returns the agent's address and those grants.
pub(crate) fn tkt_no_grant<'a>(
    account: &'a Account,
    actor: &'a Actor,
) -> Check<(&'a str, Vec<&'a Grant>)> {
    let Actor::Agent(agent) = actor else {
        return Err(Decision::deny(
            rule::NO_GRANT,
            "only a support agent acts under a grant",
        ));
    };
    let own: Vec<&Grant> = account
        .grants
        .iter()
        .filter(|g| {
            g.grantee
                .as_deref()
                .is_some_and(|grantee| grantee.eq_ignore_ascii_case(agent))
        })
        .collect();
    if own.is_empty() {
        Err(Decision::deny(
            rule::NO_GRANT,
            format!("`{}` holds no active grant in this account", shown(agent)),
        ))
    } else {
        Ok((agent, own))
    }
}

/// TKT-LEVEL: of `grants`, the first whose scope allows the action. A grant
/// whose scope this module cannot read allows nothing.
pub(crate) fn tkt_level<'a>(grants: &[&'a Grant], action: &Action) -> Check<&'a Grant> {
    let reads = action.name.ends_with(".read");
    grants
        .iter()
        .copied()
        .find(
            |g| match json::parse(&g.scope).as_ref().and_then(Level::from_scope) {
                Some(Level::Write) => true,
                Some(Level::Read) => reads,
                None => false,
            },
        )
        .ok_or_else(|| {
            let why = if reads {
                "no grant of this agent there has a scope this policy can read"
            } else {
                "it is not a `.read` action and no `write` grant covers it"
            };
            Decision::deny(
                rule::LEVEL,
                format!("`{}` is not allowed: {why}", shown(&action.name)),
            )
        })
}

/// The ticket a grant was approved for, from its metadata.
pub(crate) fn ticket_of(grant: &Grant) -> Option<String> {
    match json::parse(&grant.metadata)? {
        Value::Object(map) => map.get("ticket")?.as_str().map(str::to_owned),
        _ => None,
    }
}
