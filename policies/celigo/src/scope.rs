//! Grant scopes and access levels (CEL-LEVEL).

use chaperone_sdk::json::{self, Map, Value};
use chaperone_sdk::{Decision, Environment};

use crate::{Check, rule};

/// An access level: on one integration (`monitor`, `manage`), or on a whole
/// environment (`admin`). Ordered from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Monitor,
    Manage,
    Admin,
}

impl Level {
    /// An integration level as a scope or a user's access writes it.
    pub(crate) fn integration(text: &str) -> Option<Level> {
        match text {
            "monitor" => Some(Level::Monitor),
            "manage" => Some(Level::Manage),
            _ => None,
        }
    }

    /// The level's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Monitor => "monitor",
            Level::Manage => "manage",
            Level::Admin => "admin",
        }
    }

    /// Whether this level lets an agent run the action `name` (CEL-ACTION):
    /// `monitor` only reads, `manage` and `admin` run anything.
    pub(crate) fn allows(self, name: &str) -> bool {
        match self {
            Level::Monitor => is_read(name),
            Level::Manage | Level::Admin => true,
        }
    }
}

/// Whether an action only reads: its name ends in `.read`.
pub(crate) fn is_read(name: &str) -> bool {
    name.ends_with(".read")
}

/// A well-formed scope.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `{"level":"admin"}`: everything in the environment.
    Admin,
    /// `{"integrations":{ID: LEVEL, ...}}`: non-empty, sorted by id.
    Integrations(Vec<(String, Level)>),
}

impl Scope {
    /// Reads a scope document; the error says why it is not one. Whether
    /// its integrations exist is [`cel_level`]'s business.
    pub(crate) fn read(text: &str) -> Result<Scope, String> {
        let Some(Value::Object(map)) = json::parse(text) else {
            return Err(format!(
                "scope `{text}` is neither `{{\"level\":\"admin\"}}` nor `{{\"integrations\":{{...}}}}`"
            ));
        };
        if map.contains_key("level") && map.contains_key("integrations") {
            return Err("a scope gives `level` or `integrations`, not both".into());
        }
        let mut members = map.into_iter();
        match (members.next(), members.next()) {
            (Some((key, value)), None) => match key.as_str() {
                "level" if value.as_str() == Some("admin") => Ok(Scope::Admin),
                "level" => Err(format!(
                    "level `{}` is not `admin`; name integrations to grant `monitor` or `manage`",
                    shown(&value)
                )),
                "integrations" => integrations(value),
                _ => Err(format!("`{key}` is not a scope field")),
            },
            (None, _) => Err("the scope is empty".into()),
            (Some((key, _)), Some(_)) => Err(format!(
                "a scope gives only `level` or `integrations`, not also `{key}`"
            )),
        }
    }

    /// The level this scope gives on `integration`, or on the environment as
    /// a whole when the action names none.
    pub(crate) fn level_on(&self, integration: Option<&str>) -> Option<Level> {
        match self {
            Scope::Admin => Some(Level::Admin),
            Scope::Integrations(levels) => {
                let integration = integration?;
                levels
                    .iter()
                    .find(|(id, _)| id == integration)
                    .map(|&(_, level)| level)
            }
        }
    }

    /// The scope as normalized JSON text.
    pub(crate) fn to_json(&self) -> String {
        match self {
            Scope::Admin => r#"{"level":"admin"}"#.into(),
            Scope::Integrations(levels) => {
                let mut inner = Map::new();
                for (id, level) in levels {
                    inner.insert(id.clone(), Value::String(level.name().into()));
                }
                let mut outer = Map::new();
                outer.insert("integrations".into(), Value::Object(inner));
                json::to_text(&Value::Object(outer))
            }
        }
    }
}

/// The `integrations` member of a scope.
fn integrations(value: Value) -> Result<Scope, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "`integrations` must map integration ids to `monitor` or `manage`, not `{value}`"
        ));
    };
    if map.is_empty() {
        return Err("`integrations` names no integration".into());
    }
    let mut levels = Vec::with_capacity(map.len());
    for (id, level) in map {
        match level.as_str().and_then(Level::integration) {
            Some(level) => levels.push((id, level)),
            None => {
                return Err(format!(
                    "level `{}` on integration `{id}` is neither `monitor` nor `manage`",
                    shown(&level)
                ));
            }
        }
    }
    levels.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Scope::Integrations(levels))
}

/// A JSON value as a message shows it: a string without its quotes.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// CEL-LEVEL: the scope is `{"level":"admin"}`, or a non-empty map of
/// integrations that all exist in the environment `environment` (`env`,
/// when the account has it) to `monitor` or `manage`.
pub(crate) fn cel_level(text: &str, environment: &str, env: Option<&Environment>) -> Check<Scope> {
    let scope = Scope::read(text).map_err(|message| Decision::deny(rule::LEVEL, message))?;
    if let Scope::Integrations(levels) = &scope {
        let missing = levels
            .iter()
            .find(|(id, _)| !env.is_some_and(|env| env.integrations.contains(id)));
        if let Some((id, _)) = missing {
            return Err(Decision::deny(
                rule::LEVEL,
                format!("integration `{id}` does not exist in environment `{environment}`"),
            ));
        }
    }
    Ok(scope)
}
