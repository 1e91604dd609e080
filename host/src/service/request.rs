//! Requests as JSON — the shape the HTTP API and the conformance scenarios
//! share — turned once into validated [`StateStep`]s and
//! [`OperationRequest`]s.
//!
//! Each operation's fields are a struct derived with serde, picked by the
//! request's `op` from the model's one table of operation names
//! ([`OperationKind::name`]). The host refuses only what has the wrong
//! shape: malformed JSON, a missing required field, a field of the wrong
//! type, an unknown operation or value of a closed set, a field an
//! environment entry does not have. Everything the policy validates itself
//! (`scope`, `expires_in`, `rights`, setting values, action names, email
//! addresses) passes through as given. Fields other than those of the
//! operation are kept in the request as given (and so in its audit record)
//! but not read.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;
use serde_path_to_error::Segment;

use super::{AccountSpec, OperationRequest, StateStep, UserSpec};
use chaperone_model::{self as model, EnvironmentKind, OperationKind, Plan};

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

/// The request's fields, one struct per operation. Unknown fields are
/// ignored (the request is open: a caller may carry its own context, which
/// the audit record keeps as given); an environment entry is closed.
mod wire {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::{Map, Value};

    #[derive(Deserialize)]
    pub struct Op {
        pub op: String,
    }

    #[derive(Deserialize)]
    pub struct Account {
        pub id: String,
        pub policy: String,
        pub plan: String,
        pub environments: Vec<Environment>,
        pub settings: Option<Map<String, Value>>,
        pub seat_limit: Option<u32>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Environment {
        pub id: String,
        pub kind: String,
    }

    #[derive(Deserialize)]
    pub struct User {
        pub account: String,
        pub id: String,
        pub email: String,
        pub role: String,
        pub access: Option<BTreeMap<String, String>>,
        pub rights: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    pub struct RemoveUser {
        pub account: String,
        pub id: String,
    }

    #[derive(Deserialize)]
    pub struct Integration {
        pub account: String,
        pub environment: String,
        pub id: String,
    }

    /// A customer user asks, by id.
    #[derive(Deserialize)]
    pub struct UserAsks {
        pub account: String,
        pub actor: String,
    }

    /// A vendor agent asks, by email.
    #[derive(Deserialize)]
    pub struct AgentAsks {
        pub account: String,
        pub agent: String,
    }

    /// Either asks: `actor` or `agent`, exactly one of them.
    #[derive(Deserialize)]
    pub struct EitherAsks {
        pub account: String,
        pub actor: Option<String>,
        pub agent: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct SetSetting {
        pub key: String,
        pub value: Value,
    }

    #[derive(Deserialize)]
    pub struct Grant {
        pub environment: String,
        pub scope: Value,
        pub expires_in: Option<Value>,
    }

    #[derive(Deserialize)]
    pub struct Modify {
        pub grant: String,
        pub scope: Option<Value>,
        pub expires_in: Option<Value>,
    }

    #[derive(Deserialize)]
    pub struct Revoke {
        pub grant: String,
    }

    #[derive(Deserialize)]
    pub struct Invite {
        pub email: String,
    }

    #[derive(Deserialize)]
    pub struct SetRights {
        pub service_account: String,
        pub rights: Value,
    }

    #[derive(Deserialize)]
    pub struct RemoveServiceAccount {
        pub service_account: String,
    }

    #[derive(Deserialize)]
    pub struct Custom {
        pub name: String,
        #[serde(default)]
        pub params: Value,
    }

    #[derive(Deserialize)]
    pub struct Act {
        pub action: Action,
    }

    /// Fields of `action` other than these are ignored (CONFORMANCE.md).
    #[derive(Deserialize)]
    pub struct Action {
        pub name: String,
        pub environment: Option<String>,
        pub integration: Option<String>,
    }
}

/// Parses one request object (`{"op": ..., ...}`).
pub fn parse_request(value: &Value) -> Result<ParsedRequest, ShapeError> {
    if !value.is_object() {
        return Err(ShapeError::new(
            "request",
            format!("must be an object, got {}", kind(value)),
        ));
    }
    let wire::Op { op } = decode(value)?;
    match op.as_str() {
        "account" => Ok(ParsedRequest::State(StateStep::Account(account(decode(
            value,
        )?)?))),
        "user" => {
            let user: wire::User = decode(value)?;
            Ok(ParsedRequest::State(StateStep::User {
                account: user.account,
                user: UserSpec {
                    id: user.id,
                    email: user.email,
                    role: user.role,
                    access: user.access.unwrap_or_default(),
                    rights: user.rights.unwrap_or_default(),
                },
            }))
        }
        "remove_user" => {
            let wire::RemoveUser { account, id } = decode(value)?;
            Ok(ParsedRequest::State(StateStep::RemoveUser { account, id }))
        }
        "integration" => {
            let wire::Integration {
                account,
                environment,
                id,
            } = decode(value)?;
            Ok(ParsedRequest::State(StateStep::Integration {
                account,
                environment,
                id,
            }))
        }
        _ => match OperationKind::from_name(&op) {
            Some(kind) => policy_operation(value, kind).map(ParsedRequest::Operation),
            None => Err(ShapeError::new(
                "op",
                format!(
                    "`{}` is not an operation; expected one of {}",
                    clip(&op),
                    STATE_OPS
                        .iter()
                        .copied()
                        .chain(policy_ops())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
    }
}

/// The members a request of operation `op` may have (`None`: `op` names
/// no operation).
pub fn fields_of(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "account" => &[
            "op",
            "id",
            "policy",
            "plan",
            "environments",
            "settings",
            "seat_limit",
        ],
        "user" => &["op", "account", "id", "email", "role", "access", "rights"],
        "remove_user" => &["op", "account", "id"],
        "integration" => &["op", "account", "environment", "id"],
        _ => match OperationKind::from_name(op)? {
            OperationKind::SetSetting => &["op", "account", "actor", "key", "value"],
            OperationKind::Grant => &[
                "op",
                "account",
                "actor",
                "environment",
                "scope",
                "expires_in",
            ],
            OperationKind::Modify => &["op", "account", "actor", "grant", "scope", "expires_in"],
            OperationKind::Revoke => &["op", "account", "actor", "grant"],
            OperationKind::Invite => &["op", "account", "actor", "agent", "email"],
            OperationKind::CreateServiceAccount => &["op", "account", "agent"],
            OperationKind::SetRights => &["op", "account", "actor", "service_account", "rights"],
            OperationKind::RemoveServiceAccount => &["op", "account", "actor", "service_account"],
            OperationKind::Custom => &["op", "account", "actor", "agent", "name", "params"],
            OperationKind::Act => &["op", "account", "agent", "action"],
        },
    })
}

/// Refuses a request object with members its operation does not have (the
/// HTTP API's strict reading; scenarios keep such members as given). The
/// error names them, and the members the operation has.
pub fn refuse_unknown_fields(value: &Value) -> Result<(), ShapeError> {
    let (Some(object), Some(op)) = (value.as_object(), value.get("op").and_then(Value::as_str))
    else {
        return Ok(());
    };
    let Some(known) = fields_of(op) else {
        return Ok(());
    };
    let unknown: Vec<String> = object
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .take(8)
        .map(|k| format!("`{}`", clip(k)))
        .collect();
    match unknown.first() {
        None => Ok(()),
        Some(first) => Err(ShapeError::new(
            first.trim_matches('`'),
            format!(
                "is not a field of `{op}` (unknown: {}); its fields are {}",
                unknown.join(", "),
                known.join(", ")
            ),
        )),
    }
}

/// Who may ask for an operation.
enum Asker {
    /// A customer user (`actor`).
    User,
    /// A vendor agent (`agent`).
    Agent,
    /// Either, exactly one of them.
    Either,
}

/// A policy-evaluated operation of kind `kind`.
fn policy_operation(value: &Value, op: OperationKind) -> Result<OperationRequest, ShapeError> {
    use model::Operation as O;
    let (asker, operation) = match op {
        OperationKind::SetSetting => {
            let wire::SetSetting { key, value } = decode(value)?;
            let value = value.to_string();
            (Asker::User, O::SetSetting(model::Setting { key, value }))
        }
        OperationKind::Grant => {
            let wire::Grant {
                environment,
                scope,
                expires_in,
            } = decode(value)?;
            let grant = model::GrantRequest {
                environment,
                scope: scope.to_string(),
                expires_in: expires_in.as_ref().map(Value::to_string),
            };
            (Asker::User, O::Grant(grant))
        }
        OperationKind::Modify => {
            let wire::Modify {
                grant,
                scope,
                expires_in,
            } = decode(value)?;
            let modify = model::ModifyRequest {
                grant,
                scope: scope.as_ref().map(Value::to_string),
                expires_in: expires_in.as_ref().map(Value::to_string),
            };
            (Asker::User, O::Modify(modify))
        }
        OperationKind::Revoke => {
            let wire::Revoke { grant } = decode(value)?;
            (Asker::User, O::Revoke(grant))
        }
        OperationKind::Invite => {
            let wire::Invite { email } = decode(value)?;
            (Asker::Either, O::Invite(email))
        }
        OperationKind::CreateServiceAccount => (Asker::Agent, O::CreateServiceAccount),
        OperationKind::SetRights => {
            let wire::SetRights {
                service_account,
                rights,
            } = decode(value)?;
            let request = model::SetRightsRequest {
                service_account,
                rights: rights.to_string(),
            };
            (Asker::User, O::SetRights(request))
        }
        OperationKind::RemoveServiceAccount => {
            let wire::RemoveServiceAccount { service_account } = decode(value)?;
            (Asker::User, O::RemoveServiceAccount(service_account))
        }
        OperationKind::Custom => {
            let wire::Custom { name, params } = decode(value)?;
            let request = model::CustomRequest {
                name,
                params: params.to_string(),
            };
            (Asker::Either, O::Custom(request))
        }
        OperationKind::Act => {
            let wire::Act { action } = decode(value)?;
            let action = model::Action {
                name: action.name,
                environment: action.environment,
                integration: action.integration,
            };
            (Asker::Agent, O::Act(action))
        }
    };
    let (account, actor) = match asker {
        Asker::User => {
            let wire::UserAsks { account, actor } = decode(value)?;
            (account, model::Actor::User(actor))
        }
        Asker::Agent => {
            let wire::AgentAsks { account, agent } = decode(value)?;
            (account, model::Actor::Agent(agent))
        }
        Asker::Either => {
            let wire::EitherAsks {
                account,
                actor,
                agent,
            } = decode(value)?;
            let actor = match (actor, agent) {
                (Some(user), None) => model::Actor::User(user),
                (None, Some(agent)) => model::Actor::Agent(agent),
                (Some(_), Some(_)) => {
                    return Err(ShapeError::new("actor", "and `agent` cannot both be given"));
                }
                (None, None) => {
                    return Err(ShapeError::new("actor", "is missing (or give `agent`)"));
                }
            };
            (account, actor)
        }
    };
    Ok(OperationRequest {
        account,
        actor,
        operation,
        given: value.clone(),
    })
}

fn account(account: wire::Account) -> Result<AccountSpec, ShapeError> {
    let plan = Plan::from_name(&account.plan).ok_or_else(|| {
        ShapeError::new(
            "plan",
            format!(
                "`{}` is not a plan; expected free, trial or paid",
                clip(&account.plan)
            ),
        )
    })?;
    let mut environments: Vec<(String, EnvironmentKind)> = Vec::new();
    for (i, env) in account.environments.into_iter().enumerate() {
        let kind = EnvironmentKind::from_name(&env.kind).ok_or_else(|| {
            ShapeError::new(
                format!("environments[{i}].kind"),
                format!(
                    "`{}` is not an environment kind; expected production or sandbox",
                    clip(&env.kind)
                ),
            )
        })?;
        if environments.iter().any(|(existing, _)| *existing == env.id) {
            return Err(ShapeError::new(
                format!("environments[{i}].id"),
                format!("`{}` is given twice", clip(&env.id)),
            ));
        }
        environments.push((env.id, kind));
    }
    Ok(AccountSpec {
        id: account.id,
        policy: account.policy,
        plan,
        environments,
        settings: account
            .settings
            .map(|settings| settings.into_iter().collect())
            .unwrap_or_default(),
        seat_limit: account.seat_limit,
    })
}

/// Decodes `value` into `T`, a shape error naming the field on failure.
pub(crate) fn decode<'v, T: Deserialize<'v>>(value: &'v Value) -> Result<T, ShapeError> {
    serde_path_to_error::deserialize(value).map_err(|error| shape_error(&error))
}

/// serde's message, said the way the host says it: the field's dotted path
/// (`environments[0].kind`, `action.name`), then what is wrong with it.
fn shape_error(error: &serde_path_to_error::Error<serde_json::Error>) -> ShapeError {
    let mut path = String::new();
    for segment in error.path().iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(path, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    let under = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    let message = error.inner().to_string();
    if let Some(name) = quoted(&message, "missing field ") {
        return ShapeError::new(under(&name), "is missing");
    }
    if let Some(name) = quoted(&message, "unknown field ") {
        let expected = message
            .split_once(", ")
            .map(|(_, rest)| rest.replace('`', ""))
            .unwrap_or_default();
        // The path already ends at the unknown member.
        let field = match error.path().iter().next_back() {
            Some(Segment::Map { key }) if *key == name => path.clone(),
            _ => under(&name),
        };
        return ShapeError::new(clip(&field), format!("is not a field here; {expected}"));
    }
    let field = if path.is_empty() {
        "request".to_string()
    } else {
        path.clone()
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((got, expected)) = rest.rsplit_once(", expected ")
        {
            return ShapeError::new(
                field,
                format!("must be {}, got {}", expected_type(expected), got_type(got)),
            );
        }
    }
    ShapeError::new(field, message)
}

/// The name between backticks after `prefix`, if `message` starts so.
fn quoted(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name.to_string())
}

/// serde's name for what a field must be, in the host's words.
fn expected_type(expected: &str) -> &str {
    match expected {
        "a sequence" => "a list",
        "a map" => "an object",
        "u8" | "u16" | "u32" | "u64" => "a whole number",
        other if other.starts_with("struct ") => "an object",
        other => other,
    }
}

/// serde's description of what a field was, in the host's words.
fn got_type(got: &str) -> String {
    if let Some(number) = got
        .strip_prefix("integer ")
        .or_else(|| got.strip_prefix("floating point "))
    {
        return number.to_string();
    }
    if got.starts_with("string ") {
        return "a string".into();
    }
    if got.starts_with("boolean ") {
        return "a boolean".into();
    }
    match got {
        "map" => "an object".into(),
        "sequence" => "a list".into(),
        "unit value" | "null" => "null".into(),
        other => other.into(),
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
    fn says_what_is_wrong_in_the_hosts_words() {
        let account = |extra: Value| {
            let mut value = json!({"op": "account", "id": "a", "policy": "celigo", "plan": "paid",
                "environments": [{"id": "p", "kind": "production"}]});
            if let (Some(object), Value::Object(extra)) = (value.as_object_mut(), extra) {
                object.extend(extra);
            }
            value
        };
        let cases = [
            (
                json!({"op": "grant", "account": "a", "actor": "u", "environment": 7, "scope": {}}),
                "environment",
                "must be a string, got `7`",
            ),
            (
                json!({"op": "grant", "account": "a", "actor": "u", "scope": {}}),
                "environment",
                "is missing",
            ),
            (
                json!({"op": "grant", "account": "a", "environment": "p", "scope": {}}),
                "actor",
                "is missing",
            ),
            (
                json!({"op": "act", "account": "a", "agent": "x", "action": {}}),
                "action.name",
                "is missing",
            ),
            (
                json!({"op": "revoke", "account": null, "actor": "u", "grant": "g"}),
                "account",
                "must be a string, got null",
            ),
            (
                account(
                    json!({"environments": [{"id": "p", "kind": "production", "region": "eu"}]}),
                ),
                "environments[0].region",
                "is not a field here; expected id or kind",
            ),
            (
                account(json!({"environments": {"p": "production"}})),
                "environments",
                "must be a list, got an object",
            ),
            (
                account(json!({"environments": ["p"]})),
                "environments[0]",
                "must be an object, got a string",
            ),
            (
                account(json!({"seat_limit": -1})),
                "seat_limit",
                "must be a whole number, got `-1`",
            ),
            (
                account(json!({"seat_limit": 2.5})),
                "seat_limit",
                "must be a whole number, got `2.5`",
            ),
            (
                account(json!({"seat_limit": 5_000_000_000_u64})),
                "seat_limit",
                "must be a whole number, got `5000000000`",
            ),
            (
                account(json!({"settings": [true]})),
                "settings",
                "must be an object, got a list",
            ),
            (
                account(json!({"environments": [{"id": "p", "kind": "production"},
                    {"id": "p", "kind": "sandbox"}]})),
                "environments[1].id",
                "`p` is given twice",
            ),
            (
                json!({"op": "user", "account": "a", "id": "u", "email": "e", "role": "r",
                    "rights": ["a", false]}),
                "rights[1]",
                "must be a string, got a boolean",
            ),
            (json!({"op": 3}), "op", "must be a string, got `3`"),
            (json!(["op"]), "request", "must be an object, got a list"),
        ];
        for (value, field, problem) in cases {
            let error = shape(value.clone());
            assert_eq!(
                error
                    .as_ref()
                    .map(|e| (e.field.as_str(), e.problem.as_str())),
                Some((field, problem)),
                "{value}"
            );
        }
    }

    #[test]
    fn reads_only_the_fields_of_its_operation() {
        // An agent's operation does not read `actor`, a user's does not read
        // `agent`; other fields are kept in `given` as sent.
        let value = json!({"op": "act", "account": "a", "agent": "x@y", "actor": 7,
            "ticket": {"id": 1}, "action": {"name": "n"}});
        let parsed = parse_request(&value);
        let Ok(ParsedRequest::Operation(op)) = parsed else {
            unreachable!("{parsed:?}")
        };
        assert_eq!(op.actor, model::Actor::Agent("x@y".into()));
        assert_eq!(op.given, value);
        let parsed = parse_request(&json!({"op": "revoke", "account": "a", "actor": "u",
            "agent": ["ignored"], "grant": "g"}));
        let Ok(ParsedRequest::Operation(op)) = parsed else {
            unreachable!("{parsed:?}")
        };
        assert_eq!(op.actor, model::Actor::User("u".into()));
        assert_eq!(op.operation, model::Operation::Revoke("g".into()));
        // Null is absence for optional fields, as before.
        let parsed = parse_request(&json!({"op": "account", "id": "a", "policy": "p",
            "plan": "free", "environments": [], "settings": null, "seat_limit": null}));
        let Ok(ParsedRequest::State(StateStep::Account(spec))) = parsed else {
            unreachable!("{parsed:?}")
        };
        assert_eq!((spec.settings.len(), spec.seat_limit), (0, None));
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

    #[test]
    fn the_api_refuses_members_an_operation_does_not_have_and_names_them() {
        let ok = json!({"op": "grant", "account": "a", "actor": "u", "environment": "e",
                        "scope": {}, "expires_in": {"days": 1}});
        assert_eq!(refuse_unknown_fields(&ok), Ok(()));
        let mut extra = ok.clone();
        if let Some(fields) = extra.as_object_mut() {
            fields.insert("note".into(), json!("x".repeat(10)));
        }
        let Err(error) = refuse_unknown_fields(&extra) else {
            unreachable!("`note` is no field of grant")
        };
        assert_eq!(error.field, "note");
        assert!(
            error.problem.contains("its fields are op, account, actor"),
            "{error}"
        );
        // Every field a well-formed request of each operation may carry is known.
        for (op, fields) in [
            (
                "account",
                vec![
                    "id",
                    "policy",
                    "plan",
                    "environments",
                    "settings",
                    "seat_limit",
                ],
            ),
            ("act", vec!["account", "agent", "action"]),
            (
                "custom",
                vec!["account", "actor", "agent", "name", "params"],
            ),
        ] {
            let mut value = json!({"op": op});
            if let Some(members) = value.as_object_mut() {
                for f in fields {
                    members.insert(f.into(), Value::Null);
                }
            }
            assert_eq!(refuse_unknown_fields(&value), Ok(()), "{value}");
        }
        // Every operation has a field list.
        for op in STATE_OPS.iter().copied().chain(policy_ops()) {
            assert!(fields_of(op).is_some(), "{op}");
        }
    }
}
