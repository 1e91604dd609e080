//! Running a checked scenario on a host: each step at its time, names
//! replaced by the ids they are bound to, results compared with `expect`.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::scenario::{ObjectKind, Reference, Scenario, Step, StepAction, clip};
use super::{Failure, Problem};
use crate::instant;
use crate::service::{Host, Outcome, ParsedRequest, ServiceError, StateStep, parse_request};
use chaperone_store::verify::VerifyOptions;

/// What an `as` bound.
#[derive(Debug)]
struct Binding {
    kind: ObjectKind,
    id: String,
    step: usize,
}

/// What the runner knows while a scenario runs.
struct Run<'a> {
    scenario: &'a Scenario,
    host: &'a Host,
    names: HashMap<String, Binding>,
    accounts: HashSet<String>,
}

/// Runs every step in order; on the first failing step, returns how many
/// steps passed and why it failed.
pub(super) fn run(scenario: &Scenario, host: &Host) -> Result<(), (usize, Failure)> {
    let mut run = Run {
        scenario,
        host,
        names: HashMap::new(),
        accounts: HashSet::new(),
    };
    for (passed, step) in scenario.steps.iter().enumerate() {
        let result = match &step.action {
            StepAction::State => run.state(step),
            StepAction::Operation { reference } => run.operation(step, reference.as_ref()),
            StepAction::Tick => run.tick(step),
            StepAction::Audit { account } => run.audit(step, account.as_deref()),
        };
        result.map_err(|failure| (passed, failure))?;
    }
    Ok(())
}

/// Parses a step's request as the host would; a request the host cannot
/// read is the scenario's fault, named by the field that is wrong.
fn parse(step: &Step, request: &Value) -> Result<ParsedRequest, Failure> {
    parse_request(request)
        .map_err(|shape| Failure::scenario(Some(step), Some(&shape.field), shape.problem))
}

impl Run<'_> {
    fn state(&mut self, step: &Step) -> Result<(), Failure> {
        let state = match parse(step, &step.request)? {
            ParsedRequest::State(state) => state,
            ParsedRequest::Operation(_) => {
                return Err(Failure::host(
                    Some(step),
                    "the host took a state step for an operation",
                ));
            }
        };
        let created = match &state {
            StateStep::Account(spec) => Some(spec.id.clone()),
            _ => None,
        };
        self.host
            .sync(step.at, state, step.request.clone())
            .map_err(|e| service_failure(step, &e))?;
        self.accounts.extend(created);
        no_expectations(step)
    }

    fn operation(&mut self, step: &Step, reference: Option<&Reference>) -> Result<(), Failure> {
        let mut request = step.request.clone();
        if let Some(reference) = reference {
            let id = self.resolve(step, reference)?;
            if let Value::Object(fields) = &mut request {
                fields.insert(reference.field.to_string(), Value::String(id));
            }
        }
        let operation = match parse(step, &request)? {
            ParsedRequest::Operation(operation) => operation,
            ParsedRequest::State(_) => {
                return Err(Failure::host(
                    Some(step),
                    "the host took an operation for a state step",
                ));
            }
        };
        let outcome = self
            .host
            .execute(step.at, operation)
            .map_err(|e| service_failure(step, &e))?;
        check_outcome(step, &outcome)?;
        if let Some(name) = &step.binds
            && outcome.allowed()
        {
            self.bind(step, name, &outcome)?;
        }
        Ok(())
    }

    fn tick(&mut self, step: &Step) -> Result<(), Failure> {
        self.host
            .tick(step.at)
            .map_err(|e| service_failure(step, &e))?;
        no_expectations(step)
    }

    fn audit(&mut self, step: &Step, account: Option<&str>) -> Result<(), Failure> {
        if let Some(account) = account
            && !self.accounts.contains(account)
        {
            return Err(Failure::scenario(
                Some(step),
                Some("account"),
                format!(
                    "`{}` is not an account an earlier step created",
                    clip(account)
                ),
            ));
        }
        let store = self.host.store();
        let mut expected = step.expect.given.clone();
        let mut got = Map::new();
        let mut ok = true;

        // Every audit step checks the chain (or chains), with or without
        // `"verify": "ok"`.
        let options = VerifyOptions {
            account: account.map(str::to_string),
            ..VerifyOptions::default()
        };
        let report = store
            .verify(&options)
            .map_err(|e| Failure::host(Some(step), format!("cannot verify the audit log: {e}")))?;
        expected.entry("verify").or_insert_with(|| "ok".into());
        if report.is_ok() {
            got.insert("verify".into(), "ok".into());
        } else {
            ok = false;
            got.insert("verify".into(), report.summary().into());
        }

        if let Some(records) = &step.expect.records {
            let counts = store.count_by_kind(account).map_err(|e| {
                Failure::host(Some(step), format!("cannot count the audit records: {e}"))
            })?;
            let mut actual = Map::new();
            for (kind, want) in records {
                let have = counts.get(kind).copied().unwrap_or(0);
                ok &= have == *want;
                actual.insert(kind.clone(), have.into());
            }
            got.insert("records".into(), Value::Object(actual));
        }

        if ok {
            Ok(())
        } else {
            Err(mismatch(step, Value::Object(expected), Value::Object(got)))
        }
    }

    /// The id a name is bound to.
    fn resolve(&self, step: &Step, reference: &Reference) -> Result<String, Failure> {
        let field = Some(reference.field);
        match self.names.get(&reference.name) {
            Some(binding) if binding.kind == reference.kind => Ok(binding.id.clone()),
            Some(binding) => Err(Failure::scenario(
                Some(step),
                field,
                format!(
                    "`{}` is bound to {} (step {}), not {}",
                    clip(&reference.name),
                    binding.kind,
                    binding.step,
                    reference.kind
                ),
            )),
            None => {
                let defining: Vec<String> = self
                    .scenario
                    .steps
                    .iter()
                    .take(step.index)
                    .filter(|s| s.binds.as_deref() == Some(reference.name.as_str()))
                    .map(|s| s.index.to_string())
                    .collect();
                Err(Failure::scenario(
                    Some(step),
                    field,
                    format!(
                        "`{}` is not bound: no step that defines it with `as` (step {}) was allowed",
                        clip(&reference.name),
                        defining.join(", ")
                    ),
                ))
            }
        }
    }

    fn bind(&mut self, step: &Step, name: &str, outcome: &Outcome) -> Result<(), Failure> {
        let Some(kind) = ObjectKind::created_by(&step.op) else {
            return Err(Failure::scenario(
                Some(step),
                Some("as"),
                "this step creates nothing to bind",
            ));
        };
        let Some(id) = outcome.created.clone() else {
            return Err(Failure::host(
                Some(step),
                format!(
                    "the step was allowed but the host names no object it created for `as` `{}`",
                    clip(name)
                ),
            ));
        };
        if let Some(earlier) = self.names.get(name) {
            return Err(Failure::scenario(
                Some(step),
                Some("as"),
                format!(
                    "`{}` is already bound by step {}; a name is bound once",
                    clip(name),
                    earlier.step
                ),
            ));
        }
        self.names.insert(
            name.to_string(),
            Binding {
                kind,
                id,
                step: step.index,
            },
        );
        Ok(())
    }
}

/// Compares a decision with the step's `expect`.
fn check_outcome(step: &Step, outcome: &Outcome) -> Result<(), Failure> {
    let expect = &step.expect;
    if expect.is_empty() {
        return Ok(());
    }
    let decision = if outcome.allowed() { "allow" } else { "deny" };
    let mut ok = true;
    let mut got = Map::new();
    got.insert("decision".into(), decision.into());
    got.insert("rule".into(), outcome.rule.clone().into());
    if let Some(want) = expect.decision {
        ok &= want.as_str() == decision;
    }
    if let Some(rule) = &expect.rule {
        ok &= *rule == outcome.rule;
    }
    if let Some(at) = expect.expires_at {
        ok &= outcome.expires_at == Some(at);
        got.insert(
            "expires_at".into(),
            outcome.expires_at.map(instant::format).into(),
        );
    }
    if let Some(rights) = &expect.rights {
        ok &= outcome.rights.as_ref() == Some(rights);
        got.insert("rights".into(), outcome.rights.clone().into());
    }
    if let Some(description) = &expect.description {
        ok &= outcome.description.as_ref() == Some(description);
        got.insert("description".into(), outcome.description.clone().into());
    }
    if ok {
        return Ok(());
    }
    got.insert("message".into(), outcome.message.clone().into());
    Err(mismatch(
        step,
        Value::Object(expect.given.clone()),
        Value::Object(got),
    ))
}

/// State steps and ticks carry no expectations (the scenario check refuses
/// them); this keeps the runner honest if that ever changes.
fn no_expectations(step: &Step) -> Result<(), Failure> {
    if step.expect.is_empty() {
        Ok(())
    } else {
        Err(Failure::scenario(
            Some(step),
            Some("expect"),
            format!("`{}` steps take no expectations", step.op),
        ))
    }
}

fn mismatch(step: &Step, expected: Value, got: Value) -> Failure {
    Failure {
        step: Some(step.index),
        op: Some(step.op.clone()),
        problem: Problem::Mismatch { expected, got },
    }
}

/// A request the host could not carry out: an error in the scenario when
/// the step asks for something impossible, else a failure of the host.
fn service_failure(step: &Step, error: &ServiceError) -> Failure {
    let field = match error {
        ServiceError::UnknownAccount(_) => Some("account"),
        ServiceError::UnknownUser { .. } if step.op == "remove_user" => Some("id"),
        ServiceError::UnknownUser { .. } => Some("actor"),
        ServiceError::UnknownEnvironment { .. } => Some("environment"),
        ServiceError::PolicyChange { .. } => Some("policy"),
        ServiceError::NoPolicy(_) if step.op == "account" => Some("policy"),
        ServiceError::NoPolicy(_) => Some("account"),
        ServiceError::Shape(shape) => {
            return Failure::scenario(Some(step), Some(&shape.field), shape.problem.clone());
        }
        _ => None,
    };
    match field {
        Some(field) => Failure::scenario(Some(step), Some(field), error.to_string()),
        None => Failure::host(Some(step), error.to_string()),
    }
}
