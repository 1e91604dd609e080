//! Audit records: what the host hands in ([`RecordDraft`]), the canonical
//! bytes a record is stored as, and the decoded form ([`Record`]).
//!
//! The byte format is specified in `docs/audit-format.md` ("Record bytes").
//! Encoding happens once, when a record is appended; everything after that
//! (verification, export) works on the stored bytes.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AuditError;
use super::chain::{ChainHash, Seq};

/// The record format version, the first field of every record.
pub const FORMAT_VERSION: u32 = 1;

/// The largest record, in bytes, the log accepts.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// How deep a record's JSON nests, at most: the record object is level 1,
/// so `request`, `effects` and `input` can nest 63 levels.
pub const MAX_RECORD_DEPTH: usize = 64;

/// The longest account id, in bytes.
pub const MAX_ACCOUNT_LEN: usize = 256;

/// The longest record kind, in bytes.
pub const MAX_KIND_LEN: usize = 64;

/// One event to append to an account's chain.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordDraft {
    /// The account whose chain gets the record (see [`valid_account`]).
    pub account: String,
    /// The event's time, in milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// What happened: `sync`, `grant`, `modify`, `revoke`, `act`, `expire`,
    /// `set_setting`, `invite`, ... (see [`valid_kind`]).
    pub kind: String,
    /// Who asked; `None` when the host itself acted (a sync, an expiry).
    pub actor: Option<ActorRef>,
    /// The request as the caller gave it.
    pub request: Value,
    /// The policy's decision; `None` for events no policy decided.
    pub decision: Option<DecisionRecord>,
    /// The effects applied, as a JSON array (empty on a deny).
    pub effects: Value,
    /// The policy module that decided.
    pub policy: Option<PolicyRef>,
    /// The exact input the policy was given, for replay.
    pub input: Option<Value>,
}

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ActorRef {
    /// A customer user of the account.
    User {
        /// The user's id.
        id: String,
        /// The user's email address, when known.
        email: Option<String>,
    },
    /// A vendor support agent.
    Agent {
        /// The agent's email address, as given.
        email: String,
    },
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The request was allowed.
    Allow,
    /// The request was denied.
    Deny,
}

impl Verdict {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// A policy's decision, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// Allow or deny.
    pub verdict: Verdict,
    /// The rule that decided (for a deny, the one that failed).
    pub rule: String,
    /// The human-readable explanation.
    pub message: String,
    /// On an allow, the rules that applied.
    pub rules: Vec<String>,
}

/// The policy module that decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    /// BLAKE3 of the module's bytes, 64 lowercase hex digits.
    pub digest: String,
    /// The module's vendor id.
    pub vendor: String,
    /// The module's own version.
    pub version: String,
}

/// A decoded record: the fields of its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The format version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// The account whose chain holds the record.
    pub account: String,
    /// Its position in that chain.
    pub seq: u64,
    /// The event's time, in milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// What happened.
    pub kind: String,
    /// Who asked; `None` for the host itself.
    pub actor: Option<ActorRef>,
    /// The request as given.
    pub request: Value,
    /// The decision, if a policy decided.
    pub decision: Option<DecisionRecord>,
    /// The effects applied.
    pub effects: Value,
    /// The module that decided.
    pub policy: Option<PolicyRef>,
    /// The policy input, for replay.
    pub input: Option<Value>,
}

/// A record as stored: its exact bytes, the chain hash after it, and its
/// decoded fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The decoded fields.
    pub record: Record,
    /// Its position in the chain.
    pub seq: Seq,
    /// The chain hash after it, as stored.
    pub hash: ChainHash,
    /// The exact bytes that were hashed.
    pub bytes: Vec<u8>,
}

/// Whether `account` can name a chain: 1 to [`MAX_ACCOUNT_LEN`] bytes of
/// printable ASCII other than space, `"` and `\`.
pub fn valid_account(account: &str) -> bool {
    !account.is_empty()
        && account.len() <= MAX_ACCOUNT_LEN
        && account
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Whether `kind` can be a record kind: 1 to [`MAX_KIND_LEN`] bytes of
/// lowercase ASCII letters, digits, `_`, `-` and `.`.
pub fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// The bytes every record of `account` at `seq` begins with:
/// `{"v":1,"account":"<account>","seq":<seq>,"time_ms":`.
///
/// `account` must satisfy [`valid_account`] (no escaping is needed then).
pub fn header_prefix(out: &mut Vec<u8>, account: &str, seq: u64) {
    position(out, account, seq);
    out.extend_from_slice(b",\"time_ms\":");
}

/// `{"v":1,"account":"<account>","seq":<seq>`: the part of a record's bytes
/// that [`Prepared`] leaves out.
fn position(out: &mut Vec<u8>, account: &str, seq: u64) {
    out.extend_from_slice(b"{\"v\":1,\"account\":\"");
    out.extend_from_slice(account.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    push_u64(out, seq);
}

/// The length of [`position`] at the largest seq: a bound on it at any.
fn longest_position(account: &str) -> usize {
    // `u64::MAX` has 20 digits.
    r#"{"v":1,"account":"","seq":"#.len() + account.len() + 20
}

/// The header prefix followed by the time and kind:
/// `{"v":1,"account":"<account>","seq":<seq>,"time_ms":<time>,"kind":"<kind>",`.
pub fn full_prefix(out: &mut Vec<u8>, account: &str, seq: u64, time_ms: i64, kind: &str) {
    header_prefix(out, account, seq);
    push_i64(out, time_ms);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",");
}

/// Whether `bytes` begins with [`full_prefix`]`(account, seq, time_ms,
/// kind)`, without building it (the fast verifier asks this of every record).
pub fn starts_with_full_prefix(
    bytes: &[u8],
    account: &str,
    seq: u64,
    time_ms: i64,
    kind: &str,
) -> bool {
    (|| {
        let rest = bytes.strip_prefix(b"{\"v\":1,\"account\":\"")?;
        let rest = rest.strip_prefix(account.as_bytes())?;
        let rest = rest.strip_prefix(b"\",\"seq\":")?;
        let rest = strip_decimal(rest, seq)?;
        let rest = rest.strip_prefix(b",\"time_ms\":")?;
        let rest = match time_ms < 0 {
            true => rest.strip_prefix(b"-")?,
            false => rest,
        };
        let rest = strip_decimal(rest, time_ms.unsigned_abs())?;
        let rest = rest.strip_prefix(b",\"kind\":\"")?;
        let rest = rest.strip_prefix(kind.as_bytes())?;
        rest.strip_prefix(b"\",")
    })()
    .is_some()
}

/// `bytes` after a leading canonical decimal `value` (no leading zeros;
/// what [`push_u64`] writes), or `None`. Parses rather than formats: no
/// division per digit.
fn strip_decimal(bytes: &[u8], value: u64) -> Option<&[u8]> {
    let mut scanner = crate::json::Scanner::new(bytes, false);
    (scanner.canonical_u64()? == value).then(|| scanner.rest())
}

fn push_u64(out: &mut Vec<u8>, value: u64) {
    let mut buf = itoa_buf();
    let text = fmt_u64(&mut buf, value);
    out.extend_from_slice(text);
}

fn push_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_u64(out, value.unsigned_abs());
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

/// Formats `value` in decimal into the end of `buf`, returning the digits.
fn fmt_u64(buf: &mut [u8; 20], mut value: u64) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        // `value % 10` is a single digit.
        *slot = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
        start -= 1;
        if value == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

/// Encodes a draft as the canonical bytes of record `seq` of its account.
pub fn encode(draft: &RecordDraft, seq: Seq) -> Result<Vec<u8>, AuditError> {
    Prepared::new(draft)?.bytes(seq)
}

/// A draft checked and encoded up to its sequence number: everything of its
/// canonical bytes but the leading `{"v":1,"account":"<account>","seq":<seq>`.
///
/// Preparing is most of the work of an append and needs no transaction, so
/// callers do it on their own threads ([`crate::store::WriteTx::append_prepared`]);
/// the writer only puts the header in front, hashes and inserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    account: String,
    time_ms: i64,
    kind: String,
    /// The decision's verdict and rule, if a policy decided.
    decided: Option<(Verdict, String)>,
    /// From `,"time_ms":` to the closing `}`.
    tail: Vec<u8>,
    /// Where in `tail` the value of `effects` is.
    effects: std::ops::Range<usize>,
}

impl Prepared {
    /// Checks and encodes `draft`.
    pub fn new(draft: &RecordDraft) -> Result<Prepared, AuditError> {
        if !valid_account(&draft.account) {
            return Err(AuditError::InvalidAccount(draft.account.clone()));
        }
        if !valid_kind(&draft.kind) {
            return Err(AuditError::InvalidKind(draft.kind.clone()));
        }
        check_effects(&draft.effects)?;
        if let Some(policy) = &draft.policy {
            let hex_ok = policy.digest.len() == 64
                && policy
                    .digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(AuditError::InvalidDraft(format!(
                    "policy digest `{}` is not 64 lowercase hex digits",
                    policy.digest
                )));
            }
        }
        let deep = |value: &Value| !within_depth(value, 2, MAX_RECORD_DEPTH);
        if deep(&draft.request) || draft.input.as_ref().is_some_and(deep) {
            return Err(AuditError::InvalidDraft(format!(
                "the record would nest deeper than {MAX_RECORD_DEPTH} levels"
            )));
        }
        let (tail, effects) = encode_tail(draft);
        // Checked with the longest position the record could get, so that
        // a prepared record fits at any seq.
        let size = longest_position(&draft.account) + tail.len();
        if size > MAX_RECORD_BYTES {
            return Err(AuditError::TooLarge {
                account: draft.account.clone(),
                size,
            });
        }
        Ok(Prepared {
            account: draft.account.clone(),
            time_ms: draft.time_ms,
            kind: draft.kind.clone(),
            decided: draft.decision.as_ref().map(|d| (d.verdict, d.rule.clone())),
            tail,
            effects,
        })
    }

    /// Replaces the record's `effects` with `effects`, checked as
    /// [`Prepared::new`] checks them. The rest stays encoded: a writer that
    /// learns the effects only as it applies them (the ids of the objects
    /// they create) encodes just them.
    pub fn set_effects(&mut self, effects: &Value) -> Result<(), AuditError> {
        check_effects(effects)?;
        let mut encoded = Vec::new();
        write_value(&mut encoded, effects);
        let size =
            longest_position(&self.account) + self.tail.len() - self.effects.len() + encoded.len();
        if size > MAX_RECORD_BYTES {
            return Err(AuditError::TooLarge {
                account: self.account.clone(),
                size,
            });
        }
        let start = self.effects.start;
        self.tail
            .splice(self.effects.clone(), encoded.iter().copied());
        self.effects = start..start + encoded.len();
        Ok(())
    }

    /// The account whose chain gets the record.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The event's time (the `time_ms` column).
    pub fn time_ms(&self) -> i64 {
        self.time_ms
    }

    /// The record kind (the `kind` column).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The decision's verdict and rule, if a policy decided.
    pub fn decided(&self) -> Option<(Verdict, &str)> {
        self.decided.as_ref().map(|(v, r)| (*v, r.as_str()))
    }

    /// The canonical bytes of the record at `seq`.
    pub fn bytes(&self, seq: Seq) -> Result<Vec<u8>, AuditError> {
        let mut out = Vec::with_capacity(self.account.len() + 40 + self.tail.len());
        position(&mut out, &self.account, seq.get());
        out.extend_from_slice(&self.tail);
        if out.len() > MAX_RECORD_BYTES {
            return Err(AuditError::TooLarge {
                account: self.account.clone(),
                size: out.len(),
            });
        }
        Ok(out)
    }
}

/// `effects` is what a record's `effects` may be: an array, nested no
/// deeper than the record allows.
fn check_effects(effects: &Value) -> Result<(), AuditError> {
    if !effects.is_array() {
        return Err(AuditError::InvalidDraft(
            "the effects are not a JSON array".into(),
        ));
    }
    if !within_depth(effects, 2, MAX_RECORD_DEPTH) {
        return Err(AuditError::InvalidDraft(format!(
            "the record would nest deeper than {MAX_RECORD_DEPTH} levels"
        )));
    }
    Ok(())
}

/// The canonical bytes of a checked draft after its sequence number, and
/// where in them the value of `effects` is.
fn encode_tail(draft: &RecordDraft) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b",\"time_ms\":");
    push_i64(&mut out, draft.time_ms);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(draft.kind.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(b"\"actor\":");
    match &draft.actor {
        None => out.extend_from_slice(b"null"),
        Some(ActorRef::User { id, email }) => {
            out.extend_from_slice(b"{\"type\":\"user\",\"id\":");
            write_str(&mut out, id);
            out.extend_from_slice(b",\"email\":");
            match email {
                Some(email) => write_str(&mut out, email),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b'}');
        }
        Some(ActorRef::Agent { email }) => {
            out.extend_from_slice(b"{\"type\":\"agent\",\"email\":");
            write_str(&mut out, email);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"request\":");
    write_value(&mut out, &draft.request);
    out.extend_from_slice(b",\"decision\":");
    match &draft.decision {
        None => out.extend_from_slice(b"null"),
        Some(decision) => {
            out.extend_from_slice(b"{\"verdict\":\"");
            out.extend_from_slice(decision.verdict.as_str().as_bytes());
            out.extend_from_slice(b"\",\"rule\":");
            write_str(&mut out, &decision.rule);
            out.extend_from_slice(b",\"message\":");
            write_str(&mut out, &decision.message);
            out.extend_from_slice(b",\"rules\":[");
            for (i, rule) in decision.rules.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(&mut out, rule);
            }
            out.extend_from_slice(b"]}");
        }
    }
    out.extend_from_slice(b",\"effects\":");
    let start = out.len();
    write_value(&mut out, &draft.effects);
    let effects = start..out.len();
    out.extend_from_slice(b",\"policy\":");
    match &draft.policy {
        None => out.extend_from_slice(b"null"),
        Some(policy) => {
            out.extend_from_slice(b"{\"digest\":");
            write_str(&mut out, &policy.digest);
            out.extend_from_slice(b",\"vendor\":");
            write_str(&mut out, &policy.vendor);
            out.extend_from_slice(b",\"version\":");
            write_str(&mut out, &policy.version);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"input\":");
    match &draft.input {
        None => out.extend_from_slice(b"null"),
        Some(input) => write_value(&mut out, input),
    }
    out.push(b'}');
    (out, effects)
}

/// Writes a JSON value canonically: no whitespace, object members sorted by
/// the UTF-8 bytes of their keys, strings as in [`write_str`], numbers as
/// `serde_json` prints them.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            let mut text = String::new();
            // Writing to a String cannot fail.
            let _ = write!(text, "{number}");
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Writes a JSON string: `"` and `\` escaped with a backslash, U+0008, U+0009,
/// U+000A, U+000C and U+000D as `\b`, `\t`, `\n`, `\f`, `\r`, the other
/// control characters below U+0020 as `\u00xx` (lowercase hex), everything
/// else as its UTF-8 bytes.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x09 => Some(b"\\t"),
            0x0a => Some(b"\\n"),
            0x0c => Some(b"\\f"),
            0x0d => Some(b"\\r"),
            _ => None,
        };
        if escape.is_none() && b >= 0x20 {
            continue;
        }
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        match escape {
            Some(seq) => out.extend_from_slice(seq),
            None => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
                out.push(HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'));
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Decodes a record's bytes into its fields.
pub fn decode(bytes: &[u8]) -> Result<Record, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Whether the arrays and objects of `value`, itself at `level`, nest no
/// deeper than `max` (looks no deeper than that).
fn within_depth(value: &Value, level: usize, max: usize) -> bool {
    match value {
        Value::Array(_) | Value::Object(_) if level > max => false,
        Value::Array(items) => items.iter().all(|v| within_depth(v, level + 1, max)),
        Value::Object(members) => members.values().all(|v| within_depth(v, level + 1, max)),
        _ => true,
    }
}

/// The account and sequence number a record's bytes claim (the *claim* of
/// the record checks): if the bytes are JSON, at most 64 levels deep, whose
/// value is an object with an `account` string and a `seq` integer from 0
/// to 2^64 - 1. For diagnosing a record that does not begin with its header.
pub(crate) fn claimed_position(bytes: &[u8]) -> Option<(String, u64)> {
    if !crate::json::is_json(bytes, MAX_RECORD_DEPTH) {
        return None;
    }
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let account = value.get("account")?.as_str()?.to_owned();
    // `as_u64` holds integers only: `5.0`, `5e0` and `-0` are floats.
    let seq = value.get("seq")?.as_u64()?;
    Some((account, seq))
}

/// What the header of a record says, past its account and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader<'b> {
    /// The time.
    pub time_ms: i64,
    /// The kind.
    pub kind: &'b str,
}

/// Why bytes are not a record of an account at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotARecord(&'static str);

/// Checks that `bytes` are a record of `account` at `seq`, as a verifier
/// accepts one (`docs/audit-format.md`, "What a verifier accepts as a
/// record"): at most [`MAX_RECORD_BYTES`], JSON without whitespace nesting
/// at most [`MAX_RECORD_DEPTH`] levels, the full header, then exactly the
/// members of the record format. Returns the header's time and kind.
///
/// One pass over the bytes, allocating only for an object of many members
/// or a member name with an escape: the fast verifier asks this
/// of every record.
pub fn check_record<'b>(
    bytes: &'b [u8],
    account: &str,
    seq: u64,
) -> Result<RecordHeader<'b>, NotARecord> {
    use crate::json::Scanner;
    const S: usize = MAX_RECORD_DEPTH;
    let fail = |what: &'static str| move || NotARecord(what);
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(NotARecord("it is larger than 16 MiB"));
    }
    let mut s = Scanner::new(bytes, false);
    let header = (|| {
        s.expect(b"{\"v\":1,\"account\":")?;
        // The account as it is, and a JSON string.
        (s.string_raw()? == account.as_bytes()).then_some(())?;
        s.expect(b",\"seq\":")?;
        (s.canonical_u64()? == seq).then_some(())?;
        s.expect(b",\"time_ms\":")?;
        let time_ms = s.canonical_i64()?;
        s.expect(b",\"kind\":")?;
        let kind = std::str::from_utf8(s.string_raw()?).ok()?;
        valid_kind(kind).then_some(RecordHeader { time_ms, kind })
    })()
    .ok_or_else(fail("its header is not in its exact form"))?;
    // From here on the scanner checks that strings are UTF-8, and nothing
    // else can hold a byte from 0x80 up.
    (|| {
        s.expect(b",\"actor\":")?;
        if s.eat(b"{\"type\":\"user\",\"id\":") {
            s.string()?;
            s.expect(b",\"email\":")?;
            if !s.eat(b"null") {
                s.string()?;
            }
            s.expect(b"}")
        } else if s.eat(b"{\"type\":\"agent\",\"email\":") {
            s.string()?;
            s.expect(b"}")
        } else {
            s.expect(b"null")
        }
    })()
    .ok_or_else(fail("its `actor` is not in the record format"))?;
    (|| {
        s.expect(b",\"request\":")?;
        s.value(2, S)
    })()
    .ok_or_else(fail("its `request` is not JSON nested at most 64 levels"))?;
    (|| {
        s.expect(b",\"decision\":")?;
        if s.eat(b"null") {
            return Some(());
        }
        s.expect(b"{\"verdict\":")?;
        if !s.eat(b"\"allow\"") {
            s.expect(b"\"deny\"")?;
        }
        s.expect(b",\"rule\":")?;
        s.string()?;
        s.expect(b",\"message\":")?;
        s.string()?;
        s.expect(b",\"rules\":[")?;
        if !s.eat(b"]") {
            loop {
                s.string()?;
                if s.eat(b"]") {
                    break;
                }
                s.expect(b",")?;
            }
        }
        s.expect(b"}")
    })()
    .ok_or_else(fail("its `decision` is not in the record format"))?;
    (|| {
        s.expect(b",\"effects\":")?;
        s.array(2, S)
    })()
    .ok_or_else(fail(
        "its `effects` are not a JSON array nested at most 64 levels",
    ))?;
    (|| {
        s.expect(b",\"policy\":")?;
        if s.eat(b"null") {
            return Some(());
        }
        s.expect(b"{\"digest\":\"")?;
        s.take_if(64, |b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))?;
        s.expect(b"\",\"vendor\":")?;
        s.string()?;
        s.expect(b",\"version\":")?;
        s.string()?;
        s.expect(b"}")
    })()
    .ok_or_else(fail("its `policy` is not in the record format"))?;
    (|| {
        s.expect(b",\"input\":")?;
        s.value(2, S)
    })()
    .ok_or_else(fail("its `input` is not JSON nested at most 64 levels"))?;
    (s.eat(b"}") && s.at_end())
        .then_some(header)
        .ok_or(NotARecord("it does not end after its `input`"))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn draft() -> RecordDraft {
        RecordDraft {
            account: "acme".into(),
            time_ms: 1_700_000_000_000,
            kind: "grant".into(),
            actor: Some(ActorRef::User {
                id: "u1".into(),
                email: Some("ann@acme.test".into()),
            }),
            request: json!({"z": 1, "a": [true, null, "x\"\n\u{1}é"], "m": {"b": 2, "a": 1.5}}),
            decision: Some(DecisionRecord {
                verdict: Verdict::Allow,
                rule: "CEL-WHO".into(),
                message: "ok".into(),
                rules: vec!["CEL-WHO".into(), "CEL-PLAN".into()],
            }),
            effects: json!([]),
            policy: Some(PolicyRef {
                digest: "ab".repeat(32),
                vendor: "celigo".into(),
                version: "0.1.0".into(),
            }),
            input: None,
        }
    }

    #[test]
    fn encoding_is_canonical_and_decodes() {
        let bytes = encode(&draft(), Seq::FIRST).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(
            r#"{"v":1,"account":"acme","seq":1,"time_ms":1700000000000,"kind":"grant","actor":{"type":"user","id":"u1","email":"ann@acme.test"},"request":{"a":[true,null,"x\"\n\u0001é"],"m":{"a":1.5,"b":2},"z":1},"#
        ));
        let record = decode(&bytes).unwrap();
        assert_eq!(record.account, "acme");
        assert_eq!(record.decision.unwrap().rules.len(), 2);
        // Agrees with serde_json's own compact writer on sorted input.
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let mut again = Vec::new();
        write_value(&mut again, &value);
        assert_eq!(again.len(), bytes.len());
    }

    #[test]
    fn negative_time_and_prefix() {
        let mut d = draft();
        d.time_ms = -5;
        let bytes = encode(&d, Seq::new(42).unwrap()).unwrap();
        let mut prefix = Vec::new();
        full_prefix(&mut prefix, "acme", 42, -5, "grant");
        assert!(bytes.starts_with(&prefix));
        assert_eq!(claimed_position(&bytes), Some(("acme".into(), 42)));
    }

    #[test]
    fn rejects_bad_drafts() {
        let mut d = draft();
        d.account = "a b".into();
        assert!(matches!(
            encode(&d, Seq::FIRST),
            Err(AuditError::InvalidAccount(_))
        ));
        let mut d = draft();
        d.kind = "Grant".into();
        assert!(matches!(
            encode(&d, Seq::FIRST),
            Err(AuditError::InvalidKind(_))
        ));
        let mut d = draft();
        d.effects = json!({});
        assert!(encode(&d, Seq::FIRST).is_err());
        let mut d = draft();
        d.policy.as_mut().unwrap().digest = "AB".repeat(32);
        assert!(encode(&d, Seq::FIRST).is_err());
    }

    #[test]
    fn prefix_check_agrees_with_the_prefix() {
        let d = draft();
        let bytes = encode(&d, Seq::new(42).unwrap()).unwrap();
        let mut cases = vec![bytes.clone()];
        let mut negative = d.clone();
        negative.time_ms = -7;
        cases.push(encode(&negative, Seq::new(42).unwrap()).unwrap());
        cases.push(
            br#"{"v":1,"account":"acme","seq":042,"time_ms":1700000000000,"kind":"grant","#
                .to_vec(),
        );
        cases.push(br#"{"v":1,"account":"acme","seq":42,"time_ms":-0,"kind":"grant","#.to_vec());
        cases.push(br#"{"v":1,"account":"acme","seq":42,"time_ms":0,"kind":"grant","#.to_vec());
        cases.push(br#"{"v":1,"account":"acme","seq":42,"time_ms":0,"kind":"grant""#.to_vec());
        for end in 0..bytes.len().min(90) {
            cases.push(bytes.get(..end).unwrap().to_vec());
        }
        for account in ["acme", "acm", "acmee"] {
            for seq in [0, 4, 42, 420, u64::MAX] {
                for time_ms in [0, -7, 7, 1_700_000_000_000, i64::MIN, i64::MAX] {
                    for kind in ["grant", "gran", "grants"] {
                        for case in &cases {
                            let mut prefix = Vec::new();
                            full_prefix(&mut prefix, account, seq, time_ms, kind);
                            assert_eq!(
                                starts_with_full_prefix(case, account, seq, time_ms, kind),
                                case.starts_with(&prefix),
                                "{account} {seq} {time_ms} {kind} {}",
                                String::from_utf8_lossy(case)
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn prepared_bytes_are_the_encoding() {
        let d = draft();
        let prepared = Prepared::new(&d).unwrap();
        let mut first = Vec::new();
        header_prefix(&mut first, "acme", 1);
        let one = prepared.bytes(Seq::FIRST).unwrap();
        let body = one.strip_prefix(first.as_slice()).unwrap();
        for seq in [9, 10, 12345] {
            let bytes = prepared.bytes(Seq::new(seq).unwrap()).unwrap();
            let mut header = Vec::new();
            header_prefix(&mut header, "acme", seq);
            assert_eq!(bytes.strip_prefix(header.as_slice()), Some(body));
            assert_eq!(decode(&bytes).unwrap().seq, seq);
        }
        assert_eq!(prepared.account(), "acme");
        assert_eq!(prepared.kind(), "grant");
        assert_eq!(prepared.time_ms(), d.time_ms);
    }

    #[test]
    fn set_effects_encodes_as_a_draft_with_those_effects() {
        let d = draft();
        let mut prepared = Prepared::new(&d).unwrap();
        for effects in [
            json!([]),
            json!([{"effect": {"create_grant": {"scope": "full"}}, "id": "grant-12"}]),
            json!([1, "two", {"b": [3], "a": null}]),
            json!([]),
        ] {
            prepared.set_effects(&effects).unwrap();
            let mut expected = d.clone();
            expected.effects = effects;
            for seq in [1, 77] {
                let seq = Seq::new(seq).unwrap();
                assert_eq!(
                    prepared.bytes(seq).unwrap(),
                    encode(&expected, seq).unwrap()
                );
            }
        }
        let before = prepared.clone();
        assert!(matches!(
            prepared.set_effects(&json!({})),
            Err(AuditError::InvalidDraft(_))
        ));
        let mut deep = json!([]);
        for _ in 0..MAX_RECORD_DEPTH {
            deep = json!([deep]);
        }
        assert!(matches!(
            prepared.set_effects(&deep),
            Err(AuditError::InvalidDraft(_))
        ));
        let huge = json!(["x".repeat(MAX_RECORD_BYTES)]);
        assert!(matches!(
            prepared.set_effects(&huge),
            Err(AuditError::TooLarge { .. })
        ));
        assert_eq!(prepared, before, "a refused set_effects changes nothing");
    }

    #[test]
    fn u64_formatting() {
        for v in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
        let mut out = Vec::new();
        push_i64(&mut out, i64::MIN);
        assert_eq!(out, i64::MIN.to_string().into_bytes());
    }

    #[test]
    fn number_forms_are_the_documented_ones() {
        let written = |value: Value| {
            let mut out = Vec::new();
            write_value(&mut out, &value);
            String::from_utf8(out).unwrap()
        };
        for (value, text) in [
            (json!(1e16), "1e+16"),
            (json!(1.2345e16), "1.2345e+16"),
            (json!(1e-6), "1e-6"),
            (json!(2.5e-10), "2.5e-10"),
            (json!(5e-324), "5e-324"),
            (json!(0.00001), "0.00001"),
            (json!(0.0000099), "9.9e-6"),
            (json!(100.0), "100.0"),
            (json!(1.5), "1.5"),
            (json!(0.0), "0.0"),
            (json!(-0.0), "-0.0"),
            (json!(1234.5678), "1234.5678"),
            (json!(1_000_000_000_000_000.0), "1000000000000000.0"),
            (json!(9_999_999_999_999_998.0), "9999999999999998.0"),
            (json!(100), "100"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(i64::MIN), "-9223372036854775808"),
        ] {
            assert_eq!(written(value), text);
        }
        // The document's examples of request values and how they are written.
        for (given, text) in [
            ("1.50", "1.5"),
            ("1e2", "100.0"),
            ("2E-7", "2e-7"),
            ("-0", "-0.0"),
            ("18446744073709551616", "1.8446744073709552e+19"),
            ("100", "100"),
        ] {
            assert_eq!(
                written(serde_json::from_str(given).unwrap()),
                text,
                "{given}"
            );
        }
    }

    #[test]
    fn the_writers_records_are_records() {
        for seq in [1, 42, i64::MAX as u64] {
            let bytes = encode(&draft(), Seq::new(seq).unwrap()).unwrap();
            let header = check_record(&bytes, "acme", seq).unwrap();
            assert_eq!(header.time_ms, 1_700_000_000_000);
            assert_eq!(header.kind, "grant");
            assert!(check_record(&bytes, "acme", seq + 1).is_err());
            assert!(check_record(&bytes, "acm", seq).is_err());
        }
        let mut d = draft();
        d.actor = Some(ActorRef::User {
            id: "u\u{0}".into(),
            email: None,
        });
        d.decision.as_mut().unwrap().rules.clear();
        d.decision.as_mut().unwrap().verdict = Verdict::Deny;
        d.policy = None;
        d.input = Some(json!({"now": -1, "deep": [[[{"x": 1e300}]]]}));
        d.time_ms = i64::MIN;
        let bytes = encode(&d, Seq::FIRST).unwrap();
        assert_eq!(check_record(&bytes, "acme", 1).unwrap().time_ms, i64::MIN);
        d.actor = Some(ActorRef::Agent {
            email: "sam@vendor.test".into(),
        });
        d.decision = None;
        let bytes = encode(&d, Seq::FIRST).unwrap();
        assert!(check_record(&bytes, "acme", 1).is_ok());
    }

    #[test]
    fn bytes_that_are_not_records_are_refused() {
        let good = String::from_utf8(encode(&draft(), Seq::new(5).unwrap()).unwrap()).unwrap();
        assert!(check_record(good.as_bytes(), "acme", 5).is_ok());
        let variants: Vec<(String, &str)> = vec![
            (
                good.replace("\"input\":null}", "\"input\":null,\"x\":1}"),
                "a member too many",
            ),
            (
                good.replace("\"input\":null}", "\"input\":null} "),
                "trailing whitespace",
            ),
            (
                good.replace("\"input\":null}", "\"input\":null}}"),
                "trailing bytes",
            ),
            (
                good.replace("\"request\":{", "\"request\": {"),
                "whitespace",
            ),
            (good.replace("\"z\":1", "\"z\":1e400"), "an infinite number"),
            (good.replace("\"z\":1", "\"z\":01"), "a leading zero"),
            (
                good.replace("\"z\":1", "\"z\":1,\"z\":2"),
                "a member name twice",
            ),
            (
                good.replace("\"z\":1", "\"z\":1,\"\\u007a\":1"),
                "a member name twice, once escaped",
            ),
            (
                good.replace("\"z\":1", "\"z\":\"\\ud800\""),
                "an unpaired surrogate",
            ),
            (good.replace("\"z\":1", "\"z\":\"\t\""), "a raw tab"),
            (
                good.replace("1700000000000", "01700000000000"),
                "a time not canonical",
            ),
            (
                good.replace("1700000000000", "9223372036854775808"),
                "a time too large",
            ),
            (
                good.replace("\"kind\":\"grant\"", "\"kind\":\"Grant\""),
                "a bad kind",
            ),
            (
                good.replace("\"kind\":\"grant\"", "\"kind\":\"gr\\u0061nt\""),
                "an escaped kind",
            ),
            (
                good.replace("\"type\":\"user\"", "\"type\":\"User\""),
                "a bad actor type",
            ),
            (
                good.replace(",\"email\":\"ann@acme.test\"", ""),
                "a user without email",
            ),
            (
                good.replace("\"verdict\":\"allow\"", "\"verdict\":\"maybe\""),
                "a bad verdict",
            ),
            (
                good.replace("\"CEL-WHO\",\"CEL-PLAN\"", "\"CEL-WHO\",1"),
                "a rule not a string",
            ),
            (
                good.replace("\"effects\":[]", "\"effects\":{}"),
                "effects not an array",
            ),
            (
                good.replace(&"ab".repeat(32), &"AB".repeat(32)),
                "an uppercase digest",
            ),
            (
                good.replace(&"ab".repeat(32), &"ab".repeat(31)),
                "a short digest",
            ),
            (
                good.replace("\"policy\":{", "\"policy\":{\"vendor\":\"x\","),
                "a policy member too many",
            ),
            (good.replace("{\"v\":1,", "{\"v\":2,"), "another version"),
            (
                good.replace("\"input\":null", "\"input\":"),
                "no input value",
            ),
            (good.replacen('{', "{\"v\":1,", 1), "a duplicated version"),
        ];
        for (bytes, what) in &variants {
            assert_ne!(bytes, &good, "{what}");
            assert!(check_record(bytes.as_bytes(), "acme", 5).is_err(), "{what}");
        }
        // Not UTF-8.
        let mut bytes = good.clone().into_bytes();
        let at = good.find("x\\\"").unwrap();
        bytes[at] = 0xff;
        assert!(check_record(&bytes, "acme", 5).is_err());
        // Too deep: 63 levels inside `request` is the most.
        let nested = |levels: usize| "[".repeat(levels) + &"]".repeat(levels);
        let request = good.find("\"request\":").unwrap() + "\"request\":".len();
        let end = good.find(",\"decision\"").unwrap();
        for (levels, ok) in [(63, true), (64, false)] {
            let bytes = format!("{}{}{}", &good[..request], nested(levels), &good[end..]);
            assert_eq!(
                check_record(bytes.as_bytes(), "acme", 5).is_ok(),
                ok,
                "{levels}"
            );
        }
    }

    #[test]
    fn the_writer_refuses_records_nested_too_deep() {
        let nested = |levels: usize| (0..levels).fold(json!(null), |inner, _| json!([inner]));
        let mut d = draft();
        d.request = nested(63);
        assert!(encode(&d, Seq::FIRST).is_ok());
        d.request = nested(64);
        assert!(matches!(
            encode(&d, Seq::FIRST),
            Err(AuditError::InvalidDraft(_))
        ));
        let mut d = draft();
        d.effects = json!([nested(62)]);
        assert!(encode(&d, Seq::FIRST).is_ok());
        d.effects = json!([nested(63)]);
        assert!(encode(&d, Seq::FIRST).is_err());
        let mut d = draft();
        d.input = Some(nested(64));
        assert!(encode(&d, Seq::FIRST).is_err());
    }

    /// Any JSON value a caller can hand in: every scalar form (floats at
    /// both ends of their range included), strings of any characters,
    /// nested arrays and objects.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            prop_oneof![
                Just(1e16),
                Just(-0.0),
                Just(5e-324),
                Just(1e-5),
                Just(f64::MAX)
            ]
            .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\/\\u{7f}\\u{d7ff}\\u{e000}\\u{10ffff}a]{0,6}"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(8, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_draft() -> impl Strategy<Value = RecordDraft> {
        let account = "[!#-\\[\\]-~]{1,20}";
        let kind = "[a-z0-9_.-]{1,64}";
        // Printable text (`any::<String>()`), or any characters at all.
        let text = || {
            prop_oneof![
                any::<String>(),
                "[\\x00-\\x1f\"\\\\\\u{7f}-\\u{10ffff}]{0,8}"
            ]
        };
        let actor = prop_oneof![
            Just(None),
            (text(), prop::option::of(text()))
                .prop_map(|(id, email)| Some(ActorRef::User { id, email })),
            text().prop_map(|email| Some(ActorRef::Agent { email })),
        ];
        let decision = prop::option::of(
            (
                any::<bool>(),
                text(),
                text(),
                prop::collection::vec(text(), 0..4),
            )
                .prop_map(|(allow, rule, message, rules)| DecisionRecord {
                    verdict: if allow { Verdict::Allow } else { Verdict::Deny },
                    rule,
                    message,
                    rules,
                }),
        );
        let policy = prop::option::of(("[0-9a-f]{64}", text(), text()).prop_map(
            |(digest, vendor, version)| PolicyRef {
                digest,
                vendor,
                version,
            },
        ));
        (
            (account, any::<i64>(), kind, actor),
            (
                any_json(),
                decision,
                prop::collection::vec(any_json(), 0..4),
                policy,
                prop::option::of(any_json()),
            ),
        )
            .prop_map(
                |((account, time_ms, kind, actor), (request, decision, effects, policy, input))| {
                    RecordDraft {
                        account,
                        time_ms,
                        kind,
                        actor,
                        request,
                        decision,
                        effects: Value::Array(effects),
                        policy,
                        input,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Everything the writer produces is a record in the verifier's
        /// sense, with the draft's time and kind in its header.
        #[test]
        fn everything_the_writer_encodes_is_a_record(
            draft in any_draft(),
            seq in 1..=i64::MAX as u64,
        ) {
            let bytes = encode(&draft, Seq::new(seq).unwrap()).unwrap();
            let header = check_record(&bytes, &draft.account, seq);
            prop_assert_eq!(
                header,
                Ok(RecordHeader { time_ms: draft.time_ms, kind: &draft.kind }),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            prop_assert_eq!(decode(&bytes).unwrap().seq, seq);
        }
    }
}
