//! The scenario files in `examples/ticketed/scenarios/`, replayed against
//! the policy alone.
//!
//! `chaperone conformance run` drives the whole host through them; this
//! replay keeps their `decision` and `rule` expectations honest without a
//! host: it builds the account from the state steps, drops grants that
//! have expired (as the host does before a policy runs), evaluates every
//! `custom` and `act` step, and applies allowed effects as the host would.
//! `tick` and `audit` steps concern the host only and are skipped.

use chaperone_sdk::json::{self, Value};
use chaperone_sdk::testing::{AccountBuilder, JAN_1_2026, request};
use chaperone_sdk::time::{DAY, HOUR, MINUTE, SECOND};
use chaperone_sdk::{
    Account, Action, Actor, CustomRequest, EnvironmentKind, Operation, Plan, Policy, Timestamp,
    User,
};

use super::apply;
use crate::Module;

#[test]
fn scenario_approval_replays() {
    assert_eq!(
        replay(include_str!("../../scenarios/approval.json")),
        Ok(11)
    );
}

#[test]
fn scenario_requests_replays() {
    assert_eq!(
        replay(include_str!("../../scenarios/requests.json")),
        Ok(21)
    );
}

#[test]
fn instants_parse_as_the_runner_writes_them() {
    assert_eq!(instant("2026-01-01T00:00:00Z"), Ok(JAN_1_2026));
    assert_eq!(
        instant("2026-03-01T09:30:15Z"),
        Ok(JAN_1_2026 + 59 * DAY + 9 * HOUR + 30 * MINUTE + 15 * SECOND)
    );
    assert!(instant("2026-01-01 00:00:00").is_err());
}

/// Replays one scenario; returns how many steps the policy decided.
fn replay(text: &str) -> Result<usize, String> {
    let scenario = json::parse(text).ok_or("the scenario is not JSON")?;
    let mut now = match scenario.get("start").and_then(Value::as_str) {
        Some(start) => instant(start)?,
        None => JAN_1_2026,
    };
    let steps = scenario
        .get("steps")
        .and_then(Value::as_array)
        .ok_or("the scenario has no steps")?;
    let mut account: Option<Account> = None;
    let mut decided = 0;
    for (index, step) in steps.iter().enumerate() {
        let at_step = |problem: String| format!("step {index}: {problem}");
        if let Some(at) = step.get("at").and_then(Value::as_str) {
            now = instant(at).map_err(at_step)?;
        }
        let op = text_field(step, "op").map_err(at_step)?;
        match op {
            "account" => account = Some(account_of(step).map_err(at_step)?),
            "user" => {
                let account = account
                    .as_mut()
                    .ok_or_else(|| at_step("no account yet".into()))?;
                account.users.push(user_of(step).map_err(at_step)?);
                account.users.sort_by(|a, b| a.id.cmp(&b.id));
            }
            "custom" | "act" => {
                let account = account
                    .as_mut()
                    .ok_or_else(|| at_step("no account yet".into()))?;
                account
                    .grants
                    .retain(|g| g.expires_at.is_none_or(|expiry| expiry > now));
                let actor = actor_of(step).map_err(at_step)?;
                let operation = operation_of(op, step).map_err(at_step)?;
                let decision =
                    Module::evaluate(&request(operation, actor.clone(), account.clone(), now));
                let verdict = if decision.is_allow() { "allow" } else { "deny" };
                let expect = step.get("expect");
                let wanted =
                    |field: &str| expect.and_then(|e| e.get(field)).and_then(Value::as_str);
                if wanted("decision").is_some_and(|d| d != verdict)
                    || wanted("rule").is_some_and(|r| r != decision.rule)
                {
                    return Err(at_step(format!(
                        "expected {:?} {:?}, got {verdict} {} ({})",
                        wanted("decision"),
                        wanted("rule"),
                        decision.rule,
                        decision.message
                    )));
                }
                if decision.is_allow() {
                    let by = match &actor {
                        Actor::User(id) | Actor::Agent(id) => id.clone(),
                    };
                    apply(account, &decision, &by, now);
                }
                decided += 1;
            }
            "tick" | "audit" => {}
            other => return Err(at_step(format!("the replay does not know `{other}`"))),
        }
    }
    Ok(decided)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, in milliseconds since the Unix epoch.
fn instant(text: &str) -> Result<Timestamp, String> {
    let bad = || format!("`{text}` is not `YYYY-MM-DDTHH:MM:SSZ`");
    let shape_ok = text.len() == 20
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(bad());
    }
    let number = |from: usize, to: usize| -> Result<i64, String> {
        text.get(from..to)
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(bad)
    };
    let days = days_from_civil(number(0, 4)?, number(5, 7)?, number(8, 10)?);
    Ok(days * DAY + number(11, 13)? * HOUR + number(14, 16)? * MINUTE + number(17, 19)? * SECOND)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn text_field<'a>(value: &'a Value, field: &str) -> Result<&'a str, String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}` is missing or not a string"))
}

fn account_of(step: &Value) -> Result<Account, String> {
    let plan = match text_field(step, "plan")? {
        "free" => Plan::Free,
        "trial" => Plan::Trial,
        "paid" => Plan::Paid,
        other => return Err(format!("plan `{other}`")),
    };
    let mut account =
        AccountBuilder::new(text_field(step, "id")?, text_field(step, "policy")?).plan(plan);
    let environments = step
        .get("environments")
        .and_then(Value::as_array)
        .ok_or("`environments` is missing")?;
    for environment in environments {
        let kind = match text_field(environment, "kind")? {
            "production" => EnvironmentKind::Production,
            "sandbox" => EnvironmentKind::Sandbox,
            other => return Err(format!("environment kind `{other}`")),
        };
        account = account.env(text_field(environment, "id")?, kind);
    }
    Ok(account.build())
}

fn user_of(step: &Value) -> Result<User, String> {
    Ok(User {
        id: text_field(step, "id")?.into(),
        email: text_field(step, "email")?.into(),
        role: text_field(step, "role")?.into(),
        access: Vec::new(),
        rights: Vec::new(),
    })
}

fn actor_of(step: &Value) -> Result<Actor, String> {
    match (step.get("actor"), step.get("agent")) {
        (Some(Value::String(id)), None) => Ok(Actor::User(id.clone())),
        (None, Some(Value::String(email))) => Ok(Actor::Agent(email.clone())),
        _ => Err("give exactly one of `actor` and `agent`, a string".into()),
    }
}

fn operation_of(op: &str, step: &Value) -> Result<Operation, String> {
    if op == "custom" {
        return Ok(Operation::Custom(CustomRequest {
            name: text_field(step, "name")?.into(),
            params: step
                .get("params")
                .map_or_else(|| "null".into(), json::to_text),
        }));
    }
    let action = step.get("action").ok_or("`action` is missing")?;
    let optional = |field: &str| action.get(field).and_then(Value::as_str).map(str::to_owned);
    Ok(Operation::Act(Action {
        name: text_field(action, "name")?.into(),
        environment: optional("environment"),
        integration: optional("integration"),
    }))
}
