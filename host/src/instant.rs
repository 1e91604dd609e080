//! Instants: milliseconds since the Unix epoch (UTC), as the policy
//! interface carries them, and their RFC 3339 text form.

use chrono::{DateTime, SecondsFormat, Utc};

/// An RFC 3339 timestamp that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not an RFC 3339 time (e.g. `2026-01-01T09:00:00Z`)")]
pub struct InstantError {
    text: String,
}

/// Parses RFC 3339 text into milliseconds since the Unix epoch.
pub fn parse(text: &str) -> Result<i64, InstantError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| InstantError {
            text: text.chars().take(64).collect(),
        })
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC, with
/// fractional seconds only when there are any (`2026-01-06T09:00:00Z`).
pub fn format(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("@{ms}ms"),
    }
}

/// The current time, read from the system clock. Only the host reads a
/// clock; policies get `now` in the request.
pub fn now() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for text in [
            "2026-01-01T09:00:00Z",
            "1970-01-01T00:00:00Z",
            "2028-02-29T23:59:59.250Z",
        ] {
            let ms = parse(text).ok();
            assert_eq!(ms.map(format).as_deref(), Some(text));
        }
        assert_eq!(
            parse("2026-01-01T10:00:00+01:00").ok(),
            parse("2026-01-01T09:00:00Z").ok()
        );
        assert_eq!(parse("1970-01-01T00:00:01Z").ok(), Some(1000));
    }

    #[test]
    fn refuses_non_rfc3339() {
        for text in ["", "2026-01-01", "yesterday", "2026-13-01T00:00:00Z"] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
