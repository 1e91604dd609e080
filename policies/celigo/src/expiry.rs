//! How long a grant lasts (CEL-EXPIRY).

use chaperone_sdk::json::{self, Value};
use chaperone_sdk::time::{DAY, HOUR};
use chaperone_sdk::{Decision, Timestamp};

use crate::{Check, rule};

/// The longest grant, in days.
pub(crate) const MAX_DAYS: i64 = 180;
/// The longest grant, in hours.
pub(crate) const MAX_HOURS: i64 = MAX_DAYS * 24;

/// CEL-EXPIRY for a requested `expires_in`: exactly one of `days` or
/// `hours`, a JSON integer greater than zero and at most 180 days (4320
/// hours). Returns `now + duration`.
pub(crate) fn cel_expiry(expires_in: Option<&str>, now: Timestamp) -> Check<Timestamp> {
    let duration = duration(expires_in).map_err(|message| Decision::deny(rule::EXPIRY, message))?;
    now.checked_add(duration)
        .ok_or_else(|| Decision::deny(rule::EXPIRY, "the expiry is out of range"))
}

/// CEL-EXPIRY for a modification that keeps the grant's expiry: it must
/// have one, at most 180 days from `now`.
pub(crate) fn cel_expiry_kept(expires_at: Option<Timestamp>, now: Timestamp) -> Check<Timestamp> {
    match expires_at {
        Some(at) if at.saturating_sub(now) <= MAX_DAYS * DAY => Ok(at),
        Some(_) => Err(Decision::deny(
            rule::EXPIRY,
            format!("the grant's expiry is more than the {MAX_DAYS}-day maximum away"),
        )),
        None => Err(Decision::deny(
            rule::EXPIRY,
            "an expiry is required, in whole `days` or `hours`",
        )),
    }
}

/// The duration `expires_in` asks for, in milliseconds; the error says why
/// it is not a valid one.
fn duration(expires_in: Option<&str>) -> Result<i64, String> {
    let Some(text) = expires_in else {
        return Err("an expiry is required, in whole `days` or `hours`".into());
    };
    let Some(Value::Object(map)) = json::parse(text) else {
        return Err(format!(
            "expiry `{text}` is neither `{{\"days\": n}}` nor `{{\"hours\": n}}`"
        ));
    };
    let (value, unit, max, unit_ms) = match (map.get("days"), map.get("hours")) {
        (Some(_), Some(_)) => {
            return Err("an expiry gives `days` or `hours`, not both".into());
        }
        (Some(days), None) => (days, "day", MAX_DAYS, DAY),
        (None, Some(hours)) => (hours, "hour", MAX_HOURS, HOUR),
        (None, None) => {
            return Err(format!("expiry `{text}` gives neither `days` nor `hours`"));
        }
    };
    if map.len() != 1 {
        return Err(format!("expiry `{text}` gives more than `{unit}s`"));
    }
    let Some(count) = json::as_integer(value) else {
        return Err(format!("expiry of `{value}` {unit}s is not a whole number"));
    };
    if count <= 0 {
        return Err(format!(
            "expiry of `{count}` {unit}s must be greater than zero"
        ));
    }
    if count > max {
        return Err(format!(
            "expiry of `{count}` {unit}s exceeds the {max}-{unit} maximum"
        ));
    }
    Ok(count * unit_ms)
}
