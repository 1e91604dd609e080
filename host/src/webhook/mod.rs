//! Webhook delivery: the events of the outbox
//! ([`chaperone_store::outbox`]), signed with the log's key and POSTed to
//! the subscribers' endpoints.
//!
//! - [`sign`]: the signature scheme, and its check for receivers.
//! - [`send`]: one attempt (an HTTP POST) and the backoff between attempts.
//! - [`worker`]: the delivery loop: at least once, in order per
//!   subscription and account, a bounded number of requests per endpoint.
//!
//! `docs/webhooks.md` is the receiver's guide.

pub mod send;
pub mod sign;
pub mod worker;

use chaperone_log::record::write_str;
use chaperone_store::outbox::Due;
use serde_json::value::RawValue;

pub use send::{Addresses, Failure, Sender, retry_delay};
pub use sign::{ReceivedHeaders, SignedHeaders, VerifyError, sign, verify};
pub use worker::{WakeHandle, WebhookOptions, WorkerError, WorkerHandle, spawn};

/// An event's id, its idempotency key: `<account>:<seq>`.
pub fn event_id(due: &Due) -> String {
    format!("{}:{}", due.account, due.seq)
}

/// An event's body, the JSON object POSTed for `due`'s attempt:
///
/// ```text
/// {"id":"<account>:<seq>","type":T,"account":A,"seq":S,"hash":"<64 hex>",
///  "time":"<RFC 3339>","attempt":N,"record":{...the record's bytes...}}
/// ```
///
/// `attempt` counts from 1. `record` is the record's stored bytes as they
/// are, so a receiver can compare them byte for byte with an export. Bytes
/// that are not JSON (a store would have to be damaged for that) go in a
/// `record_text` string instead (not UTF-8: replaced characters).
pub fn event_body(due: &Due) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + due.record.len());
    out.extend_from_slice(b"{\"id\":");
    write_str(&mut out, &event_id(due));
    out.extend_from_slice(b",\"type\":");
    write_str(&mut out, &due.event_type);
    out.extend_from_slice(b",\"account\":");
    write_str(&mut out, &due.account);
    out.extend_from_slice(format!(",\"seq\":{},\"hash\":", due.seq).as_bytes());
    write_str(&mut out, &hex::encode(due.hash));
    out.extend_from_slice(b",\"time\":");
    write_str(&mut out, &crate::instant::format(due.time_ms));
    out.extend_from_slice(format!(",\"attempt\":{}", u64::from(due.attempts) + 1).as_bytes());
    match serde_json::from_slice::<&RawValue>(&due.record) {
        // Surrounding whitespace is not part of the value: only bytes that
        // are the value exactly are embedded as they are.
        Ok(raw) if raw.get().as_bytes() == due.record.as_slice() => {
            out.extend_from_slice(b",\"record\":");
            out.extend_from_slice(raw.get().as_bytes());
        }
        _ => {
            tracing::warn!(
                account = %due.account,
                seq = due.seq,
                "the record's bytes are not JSON; sending them as `record_text`"
            );
            out.extend_from_slice(b",\"record_text\":");
            write_str(&mut out, &String::from_utf8_lossy(&due.record));
        }
    }
    out.push(b'}');
    out
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use serde_json::Value;

    fn due(record: &[u8]) -> Due {
        Due {
            id: 7,
            subscription: "wh_0123456789abcdef".into(),
            url: "http://127.0.0.1:1/hook".into(),
            event_type: "grant".into(),
            account: "acme \"eu\"".into(),
            seq: 42,
            hash: [0xab; 32],
            time_ms: 1_767_258_000_250,
            record: record.to_vec(),
            attempts: 2,
        }
    }

    #[test]
    fn body_embeds_the_record_verbatim() {
        let record = br#"{"v":1,"account":"acme \"eu\"","seq":42,"x":1.0e0,"s":"\u00e9"}"#;
        let body = event_body(&due(record));
        let text = String::from_utf8(body.clone()).unwrap_or_else(|e| unreachable!("{e}"));
        // The record's bytes appear unchanged (`1.0e0` and `\u00e9` are not
        // re-encoded).
        assert!(
            text.ends_with(&format!(
                ",\"record\":{}}}",
                String::from_utf8_lossy(record)
            )),
            "{text}"
        );
        let value: Value = serde_json::from_slice(&body).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(value["id"], "acme \"eu\":42");
        assert_eq!(value["type"], "grant");
        assert_eq!(value["account"], "acme \"eu\"");
        assert_eq!(value["seq"], 42);
        assert_eq!(value["hash"], "ab".repeat(32));
        assert_eq!(value["time"], "2026-01-01T09:00:00.250Z");
        assert_eq!(value["attempt"], 3);
        assert_eq!(value["record"]["seq"], 42);
        assert!(value.get("record_text").is_none());
        let keys: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 8, "{keys:?}");
    }

    #[test]
    fn body_of_bytes_that_are_not_json() {
        for record in [&b"{\"v\":1"[..], b"not json", b"", b" {} ", b"{\"a\":\xff}"] {
            let body = event_body(&due(record));
            let value: Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| unreachable!("{e}"));
            assert!(value.get("record").is_none(), "{value}");
            assert_eq!(
                value["record_text"],
                String::from_utf8_lossy(record).as_ref(),
                "{value}"
            );
            assert_eq!(value["seq"], 42);
        }
    }
}
