//! Conveniences over the generated interface types.

use crate::{
    Account, Decision, Effect, Environment, Grant, Invitation, ServiceAccount, User, Verdict,
};

impl Decision {
    /// An allow decided by `rule`, with no effects yet.
    pub fn allow(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Decision {
            verdict: Verdict::Allow,
            rule: rule.into(),
            message: message.into(),
            rules: Vec::new(),
            effects: Vec::new(),
        }
    }

    /// A deny naming the rule that failed.
    pub fn deny(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Decision {
            verdict: Verdict::Deny,
            rule: rule.into(),
            message: message.into(),
            rules: Vec::new(),
            effects: Vec::new(),
        }
    }

    /// Adds an effect the host applies when the decision allows.
    #[must_use]
    pub fn with_effect(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }

    /// Records the rules that applied to an allow.
    #[must_use]
    pub fn with_rules<I, S>(mut self, rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.extend(rules.into_iter().map(Into::into));
        self
    }

    /// Whether the decision allows.
    pub fn is_allow(&self) -> bool {
        matches!(self.verdict, Verdict::Allow)
    }
}

impl Account {
    /// The user with this id.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// The environment with this id.
    pub fn environment(&self, id: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.id == id)
    }

    /// The parsed value of a setting, if it is set and is valid JSON.
    pub fn setting(&self, key: &str) -> Option<json::Value> {
        self.settings
            .iter()
            .find(|s| s.key == key)
            .and_then(|s| json::parse(&s.value))
    }

    /// Whether a setting holds exactly JSON `true`.
    pub fn setting_is_true(&self, key: &str) -> bool {
        matches!(self.setting(key), Some(json::Value::Bool(true)))
    }

    /// The active grant with this id.
    pub fn grant(&self, id: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| g.id == id)
    }

    /// The active service account with this id.
    pub fn service_account(&self, id: &str) -> Option<&ServiceAccount> {
        self.service_accounts.iter().find(|s| s.id == id)
    }

    /// The unused invitation with this id.
    pub fn invitation(&self, id: &str) -> Option<&Invitation> {
        self.invitations.iter().find(|i| i.id == id)
    }
}

impl User {
    /// This user's access level on an integration, if any.
    pub fn access_to(&self, integration: &str) -> Option<&str> {
        self.access
            .iter()
            .find(|a| a.integration == integration)
            .map(|a| a.level.as_str())
    }

    /// Whether the user holds this exact right.
    pub fn has_right(&self, right: &str) -> bool {
        self.rights.iter().any(|r| r == right)
    }
}

pub mod json {
    //! JSON values as they cross the interface.

    pub use serde_json::{Map, Number, Value};

    /// Parses JSON text; `None` when it is not valid JSON.
    pub fn parse(text: &str) -> Option<Value> {
        serde_json::from_str(text).ok()
    }

    /// Writes a value as compact JSON text.
    pub fn to_text(value: &Value) -> String {
        value.to_string()
    }

    /// A JSON integer: a number written without a fraction or exponent.
    /// `5` is one; `5.0` and `5e0` are not.
    pub fn as_integer(value: &Value) -> Option<i64> {
        match value {
            Value::Number(n) if !n.is_f64() => n.as_i64(),
            _ => None,
        }
    }
}

pub mod time {
    //! Instants are milliseconds since the Unix epoch; these are durations in
    //! the same unit.

    /// One second.
    pub const SECOND: i64 = 1_000;
    /// One minute.
    pub const MINUTE: i64 = 60 * SECOND;
    /// One hour.
    pub const HOUR: i64 = 60 * MINUTE;
    /// One day (24 hours; the host's clock is UTC).
    pub const DAY: i64 = 24 * HOUR;
}
