//! A pending request for access, as kept in a vendor entry of the account.
//!
//! `request-access` puts one entry per agent and ticket; `approve` and
//! `deny-request` delete it. The host stores entries and hands them back in
//! every request's snapshot without interpreting them, so everything this
//! module needs later is written into the entry's value.

use chaperone_sdk::Timestamp;
use chaperone_sdk::json::{self, Map, Value};

/// The start of every pending request's entry key.
pub(crate) const KEY_PREFIX: &str = "request:";

/// What an approved grant lets its agent do (TKT-SCOPE, TKT-LEVEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// `.read` actions only.
    Read,
    /// Any action but a user change.
    Write,
}

impl Level {
    /// The level's name in a scope document.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
        }
    }

    /// The scope document for this level: `{"level":"read"}` or
    /// `{"level":"write"}`.
    pub(crate) fn scope(self) -> Value {
        let mut map = Map::new();
        map.insert("level".into(), Value::String(self.name().into()));
        Value::Object(map)
    }

    /// Reads a scope document: exactly `{"level":"read"}` or
    /// `{"level":"write"}`, nothing else.
    pub(crate) fn from_scope(scope: &Value) -> Option<Level> {
        let Value::Object(map) = scope else {
            return None;
        };
        if map.len() != 1 {
            return None;
        }
        match map.get("level")?.as_str()? {
            "read" => Some(Level::Read),
            "write" => Some(Level::Write),
            _ => None,
        }
    }
}

/// The entry key of `agent`'s request for `ticket`: `request:AGENT:TICKET`,
/// the agent's address lowercased so that one agent has one key per ticket
/// however they write their address.
pub(crate) fn key(agent: &str, ticket: &str) -> String {
    format!("{KEY_PREFIX}{}:{ticket}", agent.to_ascii_lowercase())
}

/// The start of every entry key of `agent`'s requests.
///
/// Unambiguous: an agent's address has exactly one `@` (TKT-DOMAIN) and a
/// ticket has none (TKT-TICKET), so one agent's prefix never starts another
/// agent's key.
pub(crate) fn agent_prefix(agent: &str) -> String {
    format!("{KEY_PREFIX}{}:", agent.to_ascii_lowercase())
}

/// One agent's request for access, waiting for a customer admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The asking agent's address, lowercased.
    pub(crate) agent: String,
    /// The helpdesk ticket (`HD-1234`).
    pub(crate) ticket: String,
    /// The environment asked for.
    pub(crate) environment: String,
    /// The scope asked for.
    pub(crate) level: Level,
    /// How many hours the grant should last once approved.
    pub(crate) hours: i64,
    /// When the agent asked.
    pub(crate) requested_at: Timestamp,
}

impl Pending {
    /// This request's entry key.
    pub(crate) fn key(&self) -> String {
        key(&self.agent, &self.ticket)
    }

    /// The entry value: a JSON object with every field (keys sorted).
    pub(crate) fn to_json(&self) -> String {
        let mut map = Map::new();
        map.insert("agent".into(), Value::String(self.agent.clone()));
        map.insert("ticket".into(), Value::String(self.ticket.clone()));
        map.insert(
            "environment".into(),
            Value::String(self.environment.clone()),
        );
        map.insert("scope".into(), self.level.scope());
        map.insert("hours".into(), Value::from(self.hours));
        map.insert("requested_at".into(), Value::from(self.requested_at));
        json::to_text(&Value::Object(map))
    }

    /// Reads an entry value [`to_json`](Self::to_json) wrote; `None` for
    /// anything else.
    pub(crate) fn from_json(text: &str) -> Option<Pending> {
        let Value::Object(map) = json::parse(text)? else {
            return None;
        };
        if map.len() != 6 {
            return None;
        }
        let string = |field: &str| map.get(field)?.as_str().map(str::to_owned);
        let integer = |field: &str| json::as_integer(map.get(field)?);
        Some(Pending {
            agent: string("agent")?,
            ticket: string("ticket")?,
            environment: string("environment")?,
            level: Level::from_scope(map.get("scope")?)?,
            hours: integer("hours")?,
            requested_at: integer("requested_at")?,
        })
    }
}
