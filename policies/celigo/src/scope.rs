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
        match read_normalized(text) {
            Some(scope) => Ok(scope),
            None => Scope::parse(text),
        }
    }

    /// [`Scope::read`] through a full JSON parse.
    fn parse(text: &str) -> Result<Scope, String> {
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
            Scope::Admin => ADMIN.into(),
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

/// The admin scope, as [`Scope::to_json`] writes it.
const ADMIN: &str = r#"{"level":"admin"}"#;

/// A scope as [`Scope::to_json`] writes it, which is what the grants this
/// policy created hold: no whitespace, no escapes. `None` for any other
/// text, which [`Scope::read`] then parses in full; for text this accepts,
/// the full parse gives the same scope (the tests check it). Building a
/// JSON tree for every grant an action is checked against was most of
/// what deciding an action cost.
fn read_normalized(text: &str) -> Option<Scope> {
    if text == ADMIN {
        return Some(Scope::Admin);
    }
    let mut rest = text
        .strip_prefix(r#"{"integrations":{"#)?
        .strip_suffix("}}")?;
    let mut levels: Vec<(String, Level)> = Vec::new();
    loop {
        rest = rest.strip_prefix('"')?;
        let (id, after) = rest.split_at(rest.find('"')?);
        if id.bytes().any(|b| b == b'\\' || b < 0x20) || levels.iter().any(|(i, _)| i == id) {
            return None;
        }
        let after = after.strip_prefix(r#"":""#)?;
        let (level, after) = match after.strip_prefix(r#"monitor""#) {
            Some(after) => (Level::Monitor, after),
            None => (Level::Manage, after.strip_prefix(r#"manage""#)?),
        };
        levels.push((id.to_owned(), level));
        if after.is_empty() {
            break;
        }
        rest = after.strip_prefix(',')?;
    }
    levels.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Scope::Integrations(levels))
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

#[cfg(test)]
mod tests {
    use super::{Level, Scope, read_normalized};

    /// Whatever the fast path accepts, the full parse reads the same way;
    /// and it accepts everything `to_json` writes.
    #[test]
    fn the_fast_path_agrees_with_the_full_parse() {
        let texts = [
            r#"{"level":"admin"}"#,
            r#"{"level": "admin"}"#,
            r#"{"level":"monitor"}"#,
            r#"{"integrations":{"a":"manage"}}"#,
            r#"{"integrations":{"b":"monitor","a":"manage"}}"#,
            r#"{"integrations":{"a":"manage","a":"monitor"}}"#,
            r#"{"integrations":{"a\"b":"manage"}}"#,
            r#"{"integrations":{"a,b":"manage","c:d":"monitor"}}"#,
            r#"{"integrations":{"":"manage"}}"#,
            r#"{"integrations":{}}"#,
            r#"{"integrations":{"a":"admin"}}"#,
            r#"{"integrations":{"a":"manage"}}}"#,
            r#"{"integrations":{"a":"manage"},"level":"admin"}"#,
            r#"{"integrations":{"a":"manage",}}"#,
            r#"{"integrations":{"a":"manage""b":"monitor"}}"#,
            r#"{"integrations":{"a":"manager"}}"#,
            r#"{"integrations":{"a":"manage"}} "#,
            "{\"integrations\":{\"a\u{1}\":\"manage\"}}",
            r#"{}"#,
            r#"null"#,
            "",
        ];
        for text in texts {
            if let Some(fast) = read_normalized(text) {
                assert_eq!(Scope::parse(text), Ok(fast), "{text}");
            }
        }
        let scopes = [
            Scope::Admin,
            Scope::Integrations(vec![("a".into(), Level::Manage)]),
            Scope::Integrations(vec![
                ("a,b".into(), Level::Monitor),
                ("c:d".into(), Level::Manage),
                ("shopify-sync".into(), Level::Monitor),
            ]),
        ];
        for scope in scopes {
            let text = scope.to_json();
            assert_eq!(read_normalized(&text), Some(scope), "{text}");
        }
    }
}
