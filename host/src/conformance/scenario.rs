//! The scenario model: a scenario file read and checked once, before any
//! step runs, so that a broken file is reported with its step and field and
//! runs nothing.
//!
//! What can be known without running is checked here: the JSON shape of
//! every step (through the host's own [`parse_request`]), each step's time
//! (`start`, `at`: time never goes backwards), the `expect` fields each
//! operation may carry, which steps may carry `as`, and that every name a
//! step refers to is bound by an earlier step's `as`. Whether that earlier
//! step was allowed, and so actually bound the name, is known only when the
//! scenario runs.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::instant;
use crate::service::request::{STATE_OPS, decode, is_policy_op, kind, policy_ops};
use crate::service::{ParsedRequest, parse_request};

/// The time of the first step when the scenario gives no `start`.
pub const DEFAULT_START: &str = "2026-01-01T00:00:00Z";

/// The steps that are neither state steps nor policy-evaluated operations.
pub const RUNNER_OPS: &[&str] = &["tick", "audit"];

/// The step fields the runner reads itself; the host never sees them.
const RUNNER_FIELDS: &[&str] = &["at", "as", "expect"];

/// What is wrong with a scenario file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(String),
    /// The file is not JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json {
        /// Line (from 1).
        line: usize,
        /// Column (from 1).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The JSON is not a valid scenario.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}

/// An error in a scenario: a field of the file, or of one of its steps, that
/// is missing, has the wrong shape, or says something impossible (time going
/// backwards, an undefined name, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct ScenarioError {
    /// The step's index in `steps` (from 0), or `None` for a top-level field.
    pub step: Option<usize>,
    /// The field, as a dotted path inside the step (or the file).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ScenarioError {
    /// An error in field `field` of step `step`.
    pub fn new(step: Option<usize>, field: impl Into<String>, problem: impl Into<String>) -> Self {
        ScenarioError {
            step,
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A scenario, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The one-line name the runner shows.
    pub name: String,
    /// The rule ids it exercises (informational).
    pub rules: Vec<String>,
    /// The time of the first step, in ms since the epoch.
    pub start: i64,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One step, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its index in `steps` (from 0).
    pub index: usize,
    /// Its `op`.
    pub op: String,
    /// When it happens, in ms since the epoch (its `at`, or the previous
    /// step's time).
    pub at: i64,
    /// The name its `as` binds when it is allowed.
    pub binds: Option<String>,
    /// What it must return.
    pub expect: Expect,
    /// The step as the host gets it: without `at`, `as` and `expect`, names
    /// not yet replaced by ids.
    pub request: Value,
    /// What kind of step it is.
    pub action: StepAction,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// A state step (`account`, `user`, `remove_user`, `integration`).
    State,
    /// A policy-evaluated operation, possibly naming an object bound by an
    /// earlier step.
    Operation {
        /// The name it refers to, if its operation takes one.
        reference: Option<Reference>,
    },
    /// Advance time and sweep expired grants.
    Tick,
    /// Check the audit log of one account, or of the whole store.
    Audit {
        /// The account, or `None` for every chain.
        account: Option<String>,
    },
}

/// A step field that names an object bound by an earlier step's `as`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The field (`grant` or `service_account`).
    pub field: &'static str,
    /// The name.
    pub name: String,
    /// The kind of object the field needs.
    pub kind: ObjectKind,
}

/// The kinds of object `as` binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A grant (`grant`).
    Grant,
    /// An invitation (`invite`).
    Invitation,
    /// A service account (`create_service_account`).
    ServiceAccount,
}

impl ObjectKind {
    /// The kind of object an operation creates, if any.
    pub fn created_by(op: &str) -> Option<ObjectKind> {
        match op {
            "grant" => Some(ObjectKind::Grant),
            "invite" => Some(ObjectKind::Invitation),
            "create_service_account" => Some(ObjectKind::ServiceAccount),
            _ => None,
        }
    }

    /// The field naming an object of this kind that an operation takes, if any.
    fn referenced_by(op: &str) -> Option<(&'static str, ObjectKind)> {
        match op {
            "modify" | "revoke" => Some(("grant", ObjectKind::Grant)),
            "set_rights" | "remove_service_account" => {
                Some(("service_account", ObjectKind::ServiceAccount))
            }
            _ => None,
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Grant => "a grant",
            ObjectKind::Invitation => "an invitation",
            ObjectKind::ServiceAccount => "a service account",
        })
    }
}

/// An expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `allow`.
    Allow,
    /// `deny`.
    Deny,
}

impl Decision {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// What a step must return. Fields that are `None` are not checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    /// The decision.
    pub decision: Option<Decision>,
    /// The rule the decision names.
    pub rule: Option<String>,
    /// The resulting expiry (ms since the epoch).
    pub expires_at: Option<i64>,
    /// The new service account's rights.
    pub rights: Option<Vec<String>>,
    /// The new service account's description.
    pub description: Option<String>,
    /// Whether the chain (or chains) must verify.
    pub verify: bool,
    /// Record kind → exact count.
    pub records: Option<BTreeMap<String, u64>>,
    /// The `expect` object as written, for reports.
    pub given: Map<String, Value>,
}

impl Expect {
    /// Whether the step has anything to check.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }
}

/// Reads a scenario from its JSON text.
pub fn parse(text: &str) -> Result<Scenario, LoadError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let message = full
            .strip_suffix(&format!(" at line {line} column {column}"))
            .unwrap_or(&full)
            .to_string();
        LoadError::Json {
            line,
            column,
            message,
        }
    })?;
    Ok(Scenario::from_value(&value)?)
}

/// The name and rules of a file that may be broken further on, for reports:
/// whatever of them can be read.
pub fn header(text: &str) -> (Option<String>, Vec<String>) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return (None, Vec::new());
    };
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let rules = value
        .get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    (name, rules)
}

/// The `op` of step `index`, if the text is JSON and the step has one.
pub fn step_op(text: &str, index: usize) -> Option<String> {
    let value = serde_json::from_str::<Value>(text).ok()?;
    let step = value.get("steps")?.as_array()?.get(index)?;
    step.get("op")?.as_str().map(str::to_string)
}

impl Scenario {
    /// Checks a scenario given as JSON.
    pub fn from_value(value: &Value) -> Result<Scenario, ScenarioError> {
        let top = |field: &str, problem: String| ScenarioError::new(None, field, problem);
        if !value.is_object() {
            return Err(top(
                "scenario",
                format!("must be an object, got {}", kind(value)),
            ));
        }
        let File {
            name,
            rules,
            start,
            steps,
        } = decode(value).map_err(|shape| top(&shape.field, shape.problem))?;
        let start = instant::parse(start.as_deref().unwrap_or(DEFAULT_START))
            .map_err(|e| top("start", e.to_string()))?;

        let mut now = start;
        let mut bound: Vec<(String, ObjectKind, usize)> = Vec::new();
        let mut checked = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            let step = Step::from_value(index, step, now, &bound)?;
            now = step.at;
            if let (Some(name), Some(kind)) = (&step.binds, ObjectKind::created_by(&step.op)) {
                bound.push((name.clone(), kind, index));
            }
            checked.push(step);
        }
        Ok(Scenario {
            name,
            rules,
            start,
            steps: checked,
        })
    }
}

impl Step {
    fn from_value(
        index: usize,
        value: &Value,
        previous: i64,
        bound: &[(String, ObjectKind, usize)],
    ) -> Result<Step, ScenarioError> {
        let error = |field: &str, problem: String| ScenarioError::new(Some(index), field, problem);
        let object = value
            .as_object()
            .ok_or_else(|| error("step", format!("must be an object, got {}", kind(value))))?;
        let RunnerFields {
            op,
            at,
            binds,
            expect,
        } = decode(value).map_err(|shape| error(&shape.field, shape.problem))?;
        let is_state = STATE_OPS.contains(&op.as_str());
        let is_policy = is_policy_op(&op);
        if !is_state && !is_policy && !RUNNER_OPS.contains(&op.as_str()) {
            let known: Vec<&str> = STATE_OPS
                .iter()
                .copied()
                .chain(policy_ops())
                .chain(RUNNER_OPS.iter().copied())
                .collect();
            return Err(error(
                "op",
                format!(
                    "`{}` is not an operation; expected one of {}",
                    clip(&op),
                    known.join(", ")
                ),
            ));
        }

        let at = match at {
            None => previous,
            Some(text) => {
                let at = instant::parse(&text).map_err(|e| error("at", e.to_string()))?;
                if at < previous {
                    return Err(error(
                        "at",
                        format!(
                            "`{}` is before the previous step's time `{}`; time never goes backwards",
                            clip(&text),
                            instant::format(previous)
                        ),
                    ));
                }
                at
            }
        };

        if binds.is_some() && ObjectKind::created_by(&op).is_none() {
            return Err(error(
                "as",
                format!(
                    "`{op}` creates nothing to bind; only grant, invite and create_service_account do"
                ),
            ));
        }
        if binds.as_deref() == Some("") {
            return Err(error("as", "must not be empty".into()));
        }

        let expect = match expect {
            None => Expect::default(),
            Some(expect) => parse_expect(index, &op, &expect)?,
        };

        let request: Map<String, Value> = object
            .iter()
            .filter(|(key, _)| !RUNNER_FIELDS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let request = Value::Object(request);

        let action = if is_state || is_policy {
            let reference = match ObjectKind::referenced_by(&op) {
                Some((field, wanted)) => match object.get(field) {
                    Some(Value::String(name)) => {
                        check_reference(index, field, name, wanted, bound)?;
                        Some(Reference {
                            field,
                            name: name.clone(),
                            kind: wanted,
                        })
                    }
                    // Missing or of the wrong type: the shape check says so.
                    _ => None,
                },
                None => None,
            };
            match parse_request(&request) {
                Ok(ParsedRequest::State(_)) if is_state => {}
                Ok(ParsedRequest::Operation(_)) if is_policy => {}
                Ok(_) => return Err(error("op", format!("`{op}` is not handled by the host"))),
                Err(shape) => return Err(error(&shape.field, shape.problem)),
            }
            if is_state {
                StepAction::State
            } else {
                StepAction::Operation { reference }
            }
        } else if op == "tick" {
            StepAction::Tick
        } else {
            let AuditFields { account } =
                decode(value).map_err(|shape| error(&shape.field, shape.problem))?;
            StepAction::Audit { account }
        };

        Ok(Step {
            index,
            op,
            at,
            binds,
            expect,
            request,
            action,
        })
    }
}

fn check_reference(
    index: usize,
    field: &str,
    name: &str,
    wanted: ObjectKind,
    bound: &[(String, ObjectKind, usize)],
) -> Result<(), ScenarioError> {
    let mut declared = bound.iter().filter(|(n, _, _)| n == name);
    if declared.clone().any(|(_, kind, _)| *kind == wanted) {
        return Ok(());
    }
    let problem = match declared.next() {
        None => format!(
            "`{}` is not a name any earlier step defines with `as`",
            clip(name)
        ),
        Some((_, other, step)) => {
            format!("`{}` names {other} (step {step}), not {wanted}", clip(name))
        }
    };
    Err(ScenarioError::new(Some(index), field, problem))
}

/// The `expect` fields each kind of step may carry.
fn allowed_expectations(op: &str) -> &'static [&'static str] {
    match op {
        "grant" | "modify" => &["decision", "rule", "expires_at"],
        "create_service_account" => &["decision", "rule", "rights", "description"],
        "audit" => &["verify", "records"],
        _ if is_policy_op(op) => &["decision", "rule"],
        _ => &[],
    }
}

fn parse_expect(
    index: usize,
    op: &str,
    given: &Map<String, Value>,
) -> Result<Expect, ScenarioError> {
    let error = |field: &str, problem: String| {
        ScenarioError::new(Some(index), format!("expect.{field}"), problem)
    };
    let allowed = allowed_expectations(op);
    for key in given.keys() {
        if !allowed.contains(&key.as_str()) {
            let problem = if allowed.is_empty() {
                format!("`{op}` steps take no expectations")
            } else {
                format!(
                    "is not an expectation of `{op}`; expected {}",
                    allowed.join(", ")
                )
            };
            return Err(error(&clip(key), problem));
        }
    }
    let fields: ExpectFields = decode(&Value::Object(given.clone()))
        .map_err(|shape| error(&shape.field, shape.problem))?;
    let decision = match fields.decision.as_deref() {
        None => None,
        Some("allow") => Some(Decision::Allow),
        Some("deny") => Some(Decision::Deny),
        Some(other) => {
            return Err(error(
                "decision",
                format!(
                    "`{}` is not a decision; expected allow or deny",
                    clip(other)
                ),
            ));
        }
    };
    let expires_at = match fields.expires_at {
        None => None,
        Some(text) => Some(instant::parse(&text).map_err(|e| error("expires_at", e.to_string()))?),
    };
    let verify = match fields.verify.as_deref() {
        None => false,
        Some("ok") => true,
        Some(other) => {
            return Err(error(
                "verify",
                format!("`{}` is not a verdict; expected ok", clip(other)),
            ));
        }
    };
    Ok(Expect {
        decision,
        rule: fields.rule,
        expires_at,
        rights: fields.rights,
        description: fields.description,
        verify,
        records: fields.records,
        given: given.clone(),
    })
}

/// The top level of a scenario file. Members not named here are ignored.
#[derive(Deserialize)]
struct File {
    name: String,
    #[serde(default)]
    rules: Vec<String>,
    start: Option<String>,
    steps: Vec<Value>,
}

/// The fields of a step that the runner reads itself.
#[derive(Deserialize)]
struct RunnerFields {
    op: String,
    at: Option<String>,
    #[serde(rename = "as")]
    binds: Option<String>,
    expect: Option<Map<String, Value>>,
}

/// The fields of an `audit` step.
#[derive(Deserialize)]
struct AuditFields {
    account: Option<String>,
}

/// Everything an `expect` may say; which of it a step may say is checked
/// before (`allowed_expectations`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFields {
    decision: Option<String>,
    rule: Option<String>,
    expires_at: Option<String>,
    rights: Option<Vec<String>>,
    description: Option<String>,
    verify: Option<String>,
    records: Option<BTreeMap<String, u64>>,
}

/// User text, shortened for messages.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(value: Value) -> Option<ScenarioError> {
        Scenario::from_value(&value).err()
    }

    fn scenario(steps: Value) -> Value {
        json!({"name": "n", "steps": steps})
    }

    #[test]
    fn defaults_start_and_carries_time_forward() {
        let parsed = Scenario::from_value(&scenario(json!([
            {"op": "tick"},
            {"op": "tick", "at": "2026-01-02T00:00:00Z"},
            {"op": "audit"}
        ])));
        let Ok(parsed) = parsed else {
            unreachable!("{parsed:?}")
        };
        let day = 86_400_000;
        let start = instant::parse(DEFAULT_START).ok();
        assert_eq!(Some(parsed.start), start);
        let times: Vec<i64> = parsed.steps.iter().map(|s| s.at - parsed.start).collect();
        assert_eq!(times, [0, day, day]);
    }

    #[test]
    fn names_the_step_and_field_of_each_error() {
        let account = json!({"op": "account", "id": "a", "policy": "celigo", "plan": "paid", "environments": []});
        let grant = json!({"op": "grant", "account": "a", "actor": "u", "environment": "p",
                           "scope": {"level": "admin"}, "expires_in": {"days": 1}, "as": "g"});
        let cases = [
            (json!([account, {"op": "fly"}]), Some(1), "op"),
            (json!([{"account": "a"}]), Some(0), "op"),
            (
                json!([account, {"op": "revoke", "account": "a", "actor": "u", "grant": "g"}]),
                Some(1),
                "grant",
            ),
            (
                json!([grant, {"op": "revoke", "account": "a", "actor": "u", "grant": "g"},
                    {"op": "revoke", "account": "a", "actor": "u"}]),
                Some(2),
                "grant",
            ),
            (
                json!([{"op": "tick", "at": "2026-02-01T00:00:00Z"}, {"op": "tick", "at": "2026-01-31T00:00:00Z"}]),
                Some(1),
                "at",
            ),
            (
                json!([{"op": "tick", "at": "2025-12-31T23:59:59Z"}]),
                Some(0),
                "at",
            ),
            (json!([{"op": "tick", "at": "tomorrow"}]), Some(0), "at"),
            (
                json!([{"op": "act", "account": "a", "agent": "x", "action": {"name": "n"}, "as": "x"}]),
                Some(0),
                "as",
            ),
            (
                json!([{"op": "act", "account": "a", "agent": "x", "action": {"name": "n"},
                     "expect": {"decision": "maybe"}}]),
                Some(0),
                "expect.decision",
            ),
            (
                json!([{"op": "act", "account": "a", "agent": "x", "action": {"name": "n"},
                     "expect": {"decison": "deny"}}]),
                Some(0),
                "expect.decison",
            ),
            (
                json!([{"op": "audit", "expect": {"records": {"grant": 1.5}}}]),
                Some(0),
                "expect.records.grant",
            ),
            (
                json!([{"op": "audit", "expect": {"records": {"grant": -1}}}]),
                Some(0),
                "expect.records.grant",
            ),
            (
                json!([{"op": "grant", "account": "a", "actor": "u", "environment": "p"}]),
                Some(0),
                "scope",
            ),
            (
                json!([account, {"op": "invite", "account": "a", "actor": "u", "email": "e", "as": "i"},
                    {"op": "revoke", "account": "a", "actor": "u", "grant": "i"}]),
                Some(2),
                "grant",
            ),
            (json!([{"op": "audit", "account": 3}]), Some(0), "account"),
            (json!({"op": "tick"}), None, "steps"),
        ];
        for (steps, step, field) in cases {
            let found = error(scenario(steps.clone()));
            assert_eq!(
                found.as_ref().map(|e| (e.step, e.field.as_str())),
                Some((step, field)),
                "{steps}: {found:?}"
            );
        }
        assert_eq!(
            error(json!({"steps": []})).map(|e| e.field),
            Some("name".into())
        );
        assert_eq!(
            error(json!({"name": "n", "steps": [], "start": "x"})).map(|e| e.field),
            Some("start".into())
        );
    }

    #[test]
    fn reports_invalid_json_with_its_position() {
        let found = parse("{\n  \"name\": \"n\",\n  \"steps\": [,]\n}");
        assert!(
            matches!(found, Err(LoadError::Json { line: 3, .. })),
            "{found:?}"
        );
    }

    #[test]
    fn strips_runner_fields_from_the_request() {
        let parsed = Scenario::from_value(&scenario(json!([
            {"op": "tick", "at": "2026-01-01T00:00:00Z"},
            {"op": "grant", "account": "a", "actor": "u", "environment": "p", "scope": {"level": "admin"},
             "as": "g", "at": "2026-01-01T00:00:00Z", "expect": {"decision": "allow"}}
        ])));
        let Ok(parsed) = parsed else {
            unreachable!("{parsed:?}")
        };
        let request = parsed.steps.get(1).map(|s| s.request.clone());
        assert_eq!(
            request,
            Some(
                json!({"op": "grant", "account": "a", "actor": "u", "environment": "p",
                        "scope": {"level": "admin"}})
            )
        );
    }
}
