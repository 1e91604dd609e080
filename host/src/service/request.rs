//! Requests as JSON — the shape the HTTP API and the conformance scenarios
//! share — turned once into validated [`StateStep`]s and
//! [`OperationRequest`]s.
//!
//! The host refuses only what has the wrong shape: malformed JSON, a missing
//! required field, a field of the wrong type, an unknown operation or value
//! of a closed set. Everything the policy validates itself (`scope`,
//! `expires_in`, `rights`, setting values, action names, email addresses)
//! passes through as given.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{AccountSpec, OperationRequest, StateStep, UserSpec};
use chaperone_model::{self as model, OperationKind};

/// A request with the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct ShapeError {
    /// The field (dotted path) that is wrong.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ShapeError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ShapeError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A request, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedRequest {
    /// A state step.
    State(StateStep),
    /// A policy-evaluated operation.
    Operation(OperationRequest),
}

/// The state operations.
pub const STATE_OPS: &[&str] = &["account", "user", "remove_user", "integration"];
/// The policy-evaluated operations, by name: the model's one table
/// ([`OperationKind::name`]).
pub fn policy_ops() -> impl Iterator<Item = &'static str> + Clone {
    OperationKind::ALL.into_iter().map(OperationKind::name)
}

/// Whether `op` names a policy-evaluated operation.
pub fn is_policy_op(op: &str) -> bool {
    OperationKind::from_name(op).is_some()
}

/// Parses one request object (`{"op": ..., ...}`). Fields other than those
/// of its operation are ignored.
pub fn parse_request(value: &Value) -> Result<ParsedRequest, ShapeError> {
    let object = value.as_object().ok_or_else(|| {
        ShapeError::new("request", format!("must be an object, got {}", kind(value)))
    })?;
    let f = Fields(object);
    let op = f.string("op")?;
    let account = || f.string("account");
    match op.as_str() {
        "account" => Ok(ParsedRequest::State(StateStep::Account(parse_account(&f)?))),
        "user" => Ok(ParsedRequest::State(StateStep::User {
            account: account()?,
            user: parse_user(&f)?,
        })),
        "remove_user" => Ok(ParsedRequest::State(StateStep::RemoveUser {
            account: account()?,
            id: f.string("id")?,
        })),
        "integration" => Ok(ParsedRequest::State(StateStep::Integration {
            account: account()?,
            environment: f.string("environment")?,
            id: f.string("id")?,
        })),
        _ => policy_operation(value, &f, &op),
    }
}

/// A policy-evaluated operation, by its kind's name.
fn policy_operation(value: &Value, f: &Fields<'_>, op: &str) -> Result<ParsedRequest, ShapeError> {
    let account = || f.string("account");
    let user_actor = || f.string("actor").map(model::Actor::User);
    let agent_actor = || f.string("agent").map(model::Actor::Agent);
    let operation =
        |actor: model::Actor, operation: model::Operation| -> Result<ParsedRequest, ShapeError> {
            Ok(ParsedRequest::Operation(OperationRequest {
                account: account()?,
                actor,
                operation,
                given: value.clone(),
            }))
        };
    let Some(kind) = OperationKind::from_name(op) else {
        return Err(ShapeError::new(
            "op",
            format!(
                "`{}` is not an operation; expected one of {}",
                clip(op),
                STATE_OPS
                    .iter()
                    .copied()
                    .chain(policy_ops())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    match kind {
        OperationKind::SetSetting => operation(
            user_actor()?,
            model::Operation::SetSetting(model::Setting {
                key: f.string("key")?,
                value: f.json_text("value")?,
            }),
        ),
        OperationKind::Grant => operation(
            user_actor()?,
            model::Operation::Grant(model::GrantRequest {
                environment: f.string("environment")?,
                scope: f.json_text("scope")?,
                expires_in: f.optional_json_text("expires_in"),
            }),
        ),
        OperationKind::Modify => operation(
            user_actor()?,
            model::Operation::Modify(model::ModifyRequest {
                grant: f.string("grant")?,
                scope: f.optional_json_text("scope"),
                expires_in: f.optional_json_text("expires_in"),
            }),
        ),
        OperationKind::Revoke => {
            operation(user_actor()?, model::Operation::Revoke(f.string("grant")?))
        }
        OperationKind::Invite => operation(
            either_actor(f)?,
            model::Operation::Invite(f.string("email")?),
        ),
        OperationKind::CreateServiceAccount => {
            operation(agent_actor()?, model::Operation::CreateServiceAccount)
        }
        OperationKind::SetRights => operation(
            user_actor()?,
            model::Operation::SetRights(model::SetRightsRequest {
                service_account: f.string("service_account")?,
                rights: f.json_text("rights")?,
            }),
        ),
        OperationKind::RemoveServiceAccount => operation(
            user_actor()?,
            model::Operation::RemoveServiceAccount(f.string("service_account")?),
        ),
        OperationKind::Custom => operation(
            either_actor(f)?,
            model::Operation::Custom(model::CustomRequest {
                name: f.string("name")?,
                params: f
                    .0
                    .get("params")
                    .cloned()
                    .unwrap_or(Value::Null)
                    .to_string(),
            }),
        ),
        OperationKind::Act => {
            let action = Fields(f.object("action")?);
            operation(
                agent_actor()?,
                model::Operation::Act(model::Action {
                    name: action.string("name").map_err(|e| e.under("action"))?,
                    environment: action
                        .optional_string("environment")
                        .map_err(|e| e.under("action"))?,
                    integration: action
                        .optional_string("integration")
                        .map_err(|e| e.under("action"))?,
                }),
            )
        }
    }
}

/// `actor` (a user id) or `agent` (an email), exactly one of them.
fn either_actor(f: &Fields<'_>) -> Result<model::Actor, ShapeError> {
    match (f.0.contains_key("actor"), f.0.contains_key("agent")) {
        (true, false) => f.string("actor").map(model::Actor::User),
        (false, true) => f.string("agent").map(model::Actor::Agent),
        (true, true) => Err(ShapeError::new("actor", "and `agent` cannot both be given")),
        (false, false) => Err(ShapeError::new("actor", "is missing (or give `agent`)")),
    }
}

fn parse_account(f: &Fields<'_>) -> Result<AccountSpec, ShapeError> {
    let plan = match f.string("plan")?.as_str() {
        "free" => model::Plan::Free,
        "trial" => model::Plan::Trial,
        "paid" => model::Plan::Paid,
        other => {
            return Err(ShapeError::new(
                "plan",
                format!(
                    "`{}` is not a plan; expected free, trial or paid",
                    clip(other)
                ),
            ));
        }
    };
    let mut environments = Vec::new();
    for (i, env) in f.array("environments")?.iter().enumerate() {
        let field = format!("environments[{i}]");
        let env = Fields(env.as_object().ok_or_else(|| {
            ShapeError::new(&field, format!("must be an object, got {}", kind(env)))
        })?);
        let id = env.string("id").map_err(|e| e.under(&field))?;
        let kind = match env.string("kind").map_err(|e| e.under(&field))?.as_str() {
            "production" => model::EnvironmentKind::Production,
            "sandbox" => model::EnvironmentKind::Sandbox,
            other => {
                return Err(ShapeError::new(
                    format!("{field}.kind"),
                    format!(
                        "`{}` is not an environment kind; expected production or sandbox",
                        clip(other)
                    ),
                ));
            }
        };
        if environments.iter().any(|(existing, _)| existing == &id) {
            return Err(ShapeError::new(
                format!("{field}.id"),
                format!("`{}` is given twice", clip(&id)),
            ));
        }
        environments.push((id, kind));
    }
    let settings = match f.optional_object("settings")? {
        Some(settings) => settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => BTreeMap::new(),
    };
    let seat_limit = match f.0.get("seat_limit") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|_| !value.is_f64())
                .ok_or_else(|| {
                    ShapeError::new(
                        "seat_limit",
                        format!("must be a whole number, got {}", kind(value)),
                    )
                })?,
        ),
    };
    Ok(AccountSpec {
        id: f.string("id")?,
        policy: f.string("policy")?,
        plan,
        environments,
        settings,
        seat_limit,
    })
}

fn parse_user(f: &Fields<'_>) -> Result<UserSpec, ShapeError> {
    let mut access = BTreeMap::new();
    if let Some(map) = f.optional_object("access")? {
        for (integration, level) in map {
            let level = level.as_str().ok_or_else(|| {
                ShapeError::new(
                    format!("access.{integration}"),
                    format!("must be a string, got {}", kind(level)),
                )
            })?;
            access.insert(integration.clone(), level.to_string());
        }
    }
    let mut rights = Vec::new();
    if let Some(list) = f.0.get("rights").filter(|v| !v.is_null()) {
        let list = list.as_array().ok_or_else(|| {
            ShapeError::new("rights", format!("must be a list, got {}", kind(list)))
        })?;
        for (i, right) in list.iter().enumerate() {
            rights.push(
                right
                    .as_str()
                    .ok_or_else(|| {
                        ShapeError::new(
                            format!("rights[{i}]"),
                            format!("must be a string, got {}", kind(right)),
                        )
                    })?
                    .to_string(),
            );
        }
    }
    Ok(UserSpec {
        id: f.string("id")?,
        email: f.string("email")?,
        role: f.string("role")?,
        access,
        rights,
    })
}

struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn required(&self, name: &str) -> Result<&'a Value, ShapeError> {
        self.0
            .get(name)
            .ok_or_else(|| ShapeError::new(name, "is missing"))
    }

    fn string(&self, name: &str) -> Result<String, ShapeError> {
        let value = self.required(name)?;
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ShapeError::new(name, format!("must be a string, got {}", kind(value))))
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>, ShapeError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.string(name).map(Some),
        }
    }

    fn object(&self, name: &str) -> Result<&'a Map<String, Value>, ShapeError> {
        let value = self.required(name)?;
        value
            .as_object()
            .ok_or_else(|| ShapeError::new(name, format!("must be an object, got {}", kind(value))))
    }

    fn optional_object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, ShapeError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.object(name).map(Some),
        }
    }

    /// A field the policy judges itself, as JSON text: any JSON value, the
    /// host does not judge its shape (`docs`: CONFORMANCE.md, "inputs reach
    /// the module as given").
    fn json_text(&self, name: &str) -> Result<String, ShapeError> {
        Ok(self.required(name)?.to_string())
    }

    /// An optional field the policy judges itself: absent or `null` is
    /// `None`, anything else its JSON text.
    fn optional_json_text(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .filter(|v| !v.is_null())
            .map(Value::to_string)
    }

    fn array(&self, name: &str) -> Result<&'a Vec<Value>, ShapeError> {
        let value = self.required(name)?;
        value
            .as_array()
            .ok_or_else(|| ShapeError::new(name, format!("must be a list, got {}", kind(value))))
    }
}

impl ShapeError {
    fn under(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// The JSON type of a value, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(value: Value) -> Option<ShapeError> {
        parse_request(&value).err()
    }

    #[test]
    fn refuses_wrong_shapes_naming_the_field() {
        let cases = [
            (
                json!({"op": "grant", "account": "a", "actor": "u", "environment": "prod"}),
                "scope",
            ),
            (
                json!({"op": "grant", "account": "a", "actor": "u", "scope": {}}),
                "environment",
            ),
            (
                json!({"op": "grant", "account": 7, "actor": "u", "environment": "p", "scope": {}}),
                "account",
            ),
            (json!({"op": "fly", "account": "a"}), "op"),
            (json!({"account": "a"}), "op"),
            (
                json!({"op": "act", "account": "a", "agent": "x@y", "action": {"name": 3}}),
                "action.name",
            ),
            (
                json!({"op": "act", "account": "a", "agent": "x@y", "action": "read"}),
                "action",
            ),
            (
                json!({"op": "invite", "account": "a", "email": "x@y"}),
                "actor",
            ),
            (
                json!({"op": "account", "id": "a", "policy": "celigo", "plan": "gold", "environments": []}),
                "plan",
            ),
            (
                json!({"op": "account", "id": "a", "policy": "celigo", "plan": "paid",
                    "environments": [{"id": "p", "kind": "staging"}]}),
                "environments[0].kind",
            ),
            (
                json!({"op": "user", "account": "a", "id": "u", "email": "e", "role": "admin",
                    "access": {"i": 1}}),
                "access.i",
            ),
        ];
        for (value, field) in cases {
            let error = shape(value.clone());
            assert_eq!(
                error.as_ref().map(|e| e.field.as_str()),
                Some(field),
                "{value}: {error:?}"
            );
        }
    }

    #[test]
    fn passes_policy_validated_values_through_as_given() {
        let parsed = parse_request(&json!({"op": "grant", "account": "a", "actor": "u",
            "environment": "prod", "scope": {"level": "admin"}, "expires_in": {"days": 5.0}}));
        let Ok(ParsedRequest::Operation(op)) = parsed else {
            unreachable!("{parsed:?}")
        };
        let model::Operation::Grant(grant) = op.operation else {
            unreachable!()
        };
        assert_eq!(grant.expires_in.as_deref(), Some(r#"{"days":5.0}"#));
        // Shapes only the policy judges reach it as given: a scope that is
        // a string or a list, an expiry that is a number or a string.
        for (scope, expires_in) in [
            (json!("admin"), json!(5)),
            (json!(["a", "b"]), json!("5d")),
            (json!(null), json!({"days": 1})),
        ] {
            let parsed = parse_request(&json!({"op": "grant", "account": "a", "actor": "u",
                "environment": "prod", "scope": scope, "expires_in": expires_in}));
            let Ok(ParsedRequest::Operation(op)) = parsed else {
                unreachable!("{parsed:?}")
            };
            let model::Operation::Grant(grant) = op.operation else {
                unreachable!()
            };
            assert_eq!(grant.scope, scope.to_string());
            assert_eq!(grant.expires_in, Some(expires_in.to_string()));
        }
        let parsed = parse_request(&json!({"op": "set_rights", "account": "a", "actor": "u",
            "service_account": "s", "rights": "orders.read"}));
        assert!(
            matches!(parsed, Ok(ParsedRequest::Operation(_))),
            "{parsed:?}"
        );
        let parsed = parse_request(&json!({"op": "act", "account": "a", "agent": "x",
            "action": {"name": "n", "extra": [1]}}));
        assert!(
            matches!(parsed, Ok(ParsedRequest::Operation(_))),
            "{parsed:?}"
        );
    }
}
