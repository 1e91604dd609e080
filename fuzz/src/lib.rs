//! The bodies of the fuzz targets, one function per target
//! (`fuzz_targets/<name>.rs` calls `<name>`). Each panics exactly when its
//! property is broken: never a panic of the code under test, and for the
//! decoders that have an encoder, decoding what was encoded gives it back.
//!
//! `tests/it/fuzz_regressions.rs` includes this file with `#[path]` and
//! replays every input under `fuzz/regressions/<target>/` through
//! [`TARGETS`], so that what a fuzzer found stays found in `cargo test`.
//! Hence this file is a single module that names only external crates (no
//! `crate::` paths) and keeps to the workspace's lints.

use std::io::Cursor;
use std::sync::Once;

use arbitrary::{Result as Drawn, Unstructured};
use chaperone_model as model;
use serde_json::{Map, Value};

/// A target's body: panics exactly when its property is broken.
pub type Body = fn(&[u8]);

/// Every target, by name.
pub const TARGETS: &[(&str, Body)] = &[
    ("request_json", request_json),
    ("request_structured", request_structured),
    ("scenario", scenario),
    ("sdk_packed_request", sdk_packed_request),
    ("packed_decision", packed_decision),
    ("decision_structured", decision_structured),
    ("record", record),
    ("export", export),
    ("module", module),
];

// ---------------------------------------------------------------------------
// Requests as JSON (`chaperone::service::parse_request`).

/// Arbitrary bytes, parsed as JSON first, to the request decoder: never a
/// panic, and the same answer twice.
pub fn request_json(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    parse_request(&value);
}

/// A request object built from the input: an `op` (known or not) and
/// members named like the request format's, with values of every JSON type.
pub fn request_structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(value) = request_object(&mut u) else {
        return;
    };
    parse_request(&value);
}

fn parse_request(value: &Value) {
    let first = chaperone::service::parse_request(value);
    let again = chaperone::service::parse_request(value);
    assert_eq!(
        format!("{first:?}"),
        format!("{again:?}"),
        "parse_request is not deterministic"
    );
}

const OPS: &[&str] = &[
    "account",
    "user",
    "remove_user",
    "integration",
    "set_setting",
    "grant",
    "modify",
    "revoke",
    "invite",
    "create_service_account",
    "set_rights",
    "remove_service_account",
    "act",
    "custom",
];

const FIELDS: &[&str] = &[
    "op",
    "access",
    "account",
    "action",
    "actor",
    "agent",
    "email",
    "environment",
    "environments",
    "expires_in",
    "grant",
    "id",
    "integration",
    "key",
    "kind",
    "name",
    "params",
    "plan",
    "policy",
    "rights",
    "role",
    "scope",
    "seat_limit",
    "service_account",
    "settings",
    "value",
    "at",
    "expect",
    "as",
    "user",
];

const WORDS: &[&str] = &[
    "acme",
    "celigo",
    "xentral",
    "prod",
    "sandbox",
    "production",
    "staging",
    "owner",
    "admin",
    "custom",
    "ben",
    "ann@acme.test",
    "g-1",
    "sa-1",
    "manage",
    "monitor",
    "free",
    "trial",
    "paid",
    "flow.read",
    "custom.x",
    "consent",
    "invite",
    "",
    "\u{0}",
    "é",
];

fn request_object(u: &mut Unstructured<'_>) -> Drawn<Value> {
    let mut object = Map::new();
    let op = match u.int_in_range(0..=7u8)? {
        0 => Value::String(u.arbitrary()?),
        1 => json_value(u, 1)?,
        _ => Value::String((*u.choose(OPS)?).to_owned()),
    };
    object.insert("op".into(), op);
    for _ in 0..u.int_in_range(0..=10u8)? {
        let key = if u.ratio(1, 8u8)? {
            u.arbitrary::<String>()?
        } else {
            (*u.choose(FIELDS)?).to_owned()
        };
        let value = json_value(u, 4)?;
        object.insert(key, value);
    }
    Ok(Value::Object(object))
}

fn json_value(u: &mut Unstructured<'_>, depth: u8) -> Drawn<Value> {
    let most = if depth == 0 { 5 } else { 7u8 };
    Ok(match u.int_in_range(0..=most)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => {
            let x: f64 = u.arbitrary()?;
            serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
        }
        4 => Value::String(u.arbitrary()?),
        5 => Value::String((*u.choose(WORDS)?).to_owned()),
        6 => {
            let mut items = Vec::new();
            for _ in 0..u.int_in_range(0..=4u8)? {
                items.push(json_value(u, depth - 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let mut members = Map::new();
            for _ in 0..u.int_in_range(0..=4u8)? {
                let key = if u.ratio(1, 4u8)? {
                    u.arbitrary::<String>()?
                } else {
                    (*u.choose(FIELDS)?).to_owned()
                };
                members.insert(key, json_value(u, depth - 1)?);
            }
            Value::Object(members)
        }
    })
}

// ---------------------------------------------------------------------------
// Scenarios (`chaperone::conformance::scenario::parse`).

/// Arbitrary UTF-8 to the scenario parser: never a panic.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = chaperone::conformance::scenario::parse(text);
}

// ---------------------------------------------------------------------------
// The packed request, as the SDK decodes it (`chaperone_sdk::unpack`, over
// the SDK's `packed::decode`).

/// What `chaperone_sdk::unpack` panics with, natively, on bytes that are
/// not a request (in a module it traps instead): the one panic allowed.
const UNDECODABLE: &str = "the packed request does not decode";

/// Lets [`UNDECODABLE`] unwind quietly (libFuzzer's hook would abort the
/// process on it); every other panic still goes to the hook before.
fn quiet_undecodable() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&UNDECODABLE) {
                before(info);
            }
        }));
    });
}

/// The SDK's decoding of `bytes`: `None` when they are not a request.
/// Panics on any other panic.
fn unpack(bytes: &[u8]) -> Option<chaperone_sdk::Request> {
    quiet_undecodable();
    let owned = bytes.to_vec();
    match std::panic::catch_unwind(move || chaperone_sdk::unpack(owned)) {
        Ok(request) => Some(request),
        Err(payload) => match payload.downcast_ref::<&str>() {
            Some(&UNDECODABLE) => None,
            _ => std::panic::resume_unwind(payload),
        },
    }
}

/// Arbitrary bytes to the SDK's request decoder: never a panic but the
/// documented one; a request it decodes is the host's type field for field,
/// the host's encoder (`encode_packed_request`) writes exactly what postcard
/// writes for it, and the SDK decodes that back to the same request.
pub fn sdk_packed_request(data: &[u8]) {
    let Some(request) = unpack(data) else {
        return;
    };
    let as_json = serde_json::to_value(&request);
    let host: model::Request = match as_json.map(serde_json::from_value) {
        Ok(Ok(host)) => host,
        other => unreachable!("the SDK's request is not the host's: {other:?}"),
    };
    let encoded = chaperone_runtime::encode_packed_request(&host);
    match postcard::to_allocvec(&request) {
        Ok(expected) => assert_eq!(encoded, expected, "host encoder != postcard"),
        Err(e) => unreachable!("postcard cannot encode a decoded request: {e}"),
    }
    assert_eq!(
        unpack(&encoded).as_ref(),
        Some(&request),
        "decode(encode(request)) != request"
    );
    // Where postcard reads the input as a request too, it reads the same.
    if let Ok(theirs) = postcard::from_bytes::<model::Request>(data) {
        assert_eq!(theirs, host, "postcard reads the bytes differently");
    }
}

// ---------------------------------------------------------------------------
// Packed decisions and the contract (`chaperone_runtime`).

/// The sample requests of `policy check`, one per operation kind.
fn sample_requests() -> Vec<model::Request> {
    model::OperationKind::ALL
        .iter()
        .map(|kind| chaperone_runtime::probe::sample_request("celigo", *kind, Some("x")))
        .collect()
}

/// A decoded decision against every sample request: the contract check and
/// the audit record's size check answer without panicking.
fn judge(decision: &model::Decision) {
    for request in sample_requests() {
        if chaperone_runtime::check_decision(decision, &request).is_ok() {
            let _ = chaperone::service::record_fits(&request, decision);
        }
    }
}

/// Arbitrary bytes to the host's decision decoder: never a panic; a
/// decision it decodes costs at most the limit, and its postcard encoding
/// decodes back to it.
pub fn packed_decision(data: &[u8]) {
    let Ok(decision) = chaperone_runtime::decode_packed_decision(data) else {
        return;
    };
    assert!(
        chaperone_runtime::decision_cost(&decision) <= chaperone_runtime::MAX_DECISION_BYTES,
        "a decoded decision is over the cost limit"
    );
    let encoded = match postcard::to_allocvec(&decision) {
        Ok(bytes) => bytes,
        Err(e) => unreachable!("postcard cannot encode a decoded decision: {e}"),
    };
    match chaperone_runtime::decode_packed_decision(&encoded) {
        Ok(again) => assert_eq!(again, decision, "decode(encode(decision)) != decision"),
        Err(e) => unreachable!("the encoding of a decoded decision does not decode: {e}"),
    }
    judge(&decision);
}

/// A decision built with the SDK's types, near and over every limit,
/// packed by the SDK (`pack_as_is`): the SDK writes what postcard writes,
/// the host decodes it to the same decision or refuses it as over a limit
/// (never as malformed), and a refused one also fails the contract check.
pub fn decision_structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(decision) = sdk_decision(&mut u) else {
        return;
    };
    let expected = match postcard::to_allocvec(&decision) {
        Ok(bytes) => bytes,
        Err(e) => unreachable!("postcard cannot encode a decision: {e}"),
    };
    let as_json = serde_json::to_value(&decision);
    let host: model::Decision = match as_json.map(serde_json::from_value) {
        Ok(Ok(host)) => host,
        other => unreachable!("the SDK's decision is not the host's: {other:?}"),
    };
    let packed = chaperone_sdk::pack_as_is(decision);
    assert_eq!(packed, expected, "the SDK's encoder != postcard");
    match chaperone_runtime::decode_packed_decision(&packed) {
        Ok(decoded) => {
            assert_eq!(decoded, host, "decode(encode(decision)) != decision");
            judge(&decoded);
        }
        Err(chaperone_runtime::EvalError::Contract(why)) => {
            for request in sample_requests() {
                assert!(
                    chaperone_runtime::check_decision(&host, &request).is_err(),
                    "decoding refused a decision the contract accepts: {why}"
                );
            }
        }
        Err(e) => unreachable!("a valid encoding was refused as malformed: {e}"),
    }
}

/// A string: a word, arbitrary text, or a run of one character long enough
/// to cross a limit (a rule's 64 bytes, a message's 4096, a value's 64 KiB).
fn text(u: &mut Unstructured<'_>) -> Drawn<String> {
    Ok(match u.int_in_range(0..=9u8)? {
        0..=4 => (*u.choose(WORDS)?).to_owned(),
        5..=7 => u.arbitrary()?,
        _ => {
            let c = *u.choose(&['a', '\u{1}', 'é', '"'])?;
            let len = *u.choose(&[63usize, 64, 65, 4095, 4096, 4097, 65_535, 65_536, 65_537])?;
            std::iter::repeat_n(c, len / c.len_utf8()).collect()
        }
    })
}

fn texts(u: &mut Unstructured<'_>) -> Drawn<Vec<String>> {
    let len = match u.int_in_range(0..=7u8)? {
        0 => *u.choose(&[31usize, 32, 33])?,
        n => usize::from(n % 4),
    };
    (0..len).map(|_| text(u)).collect()
}

fn maybe<T>(
    u: &mut Unstructured<'_>,
    f: impl FnOnce(&mut Unstructured<'_>) -> Drawn<T>,
) -> Drawn<Option<T>> {
    Ok(if u.arbitrary()? { Some(f(u)?) } else { None })
}

fn sdk_decision(u: &mut Unstructured<'_>) -> Drawn<chaperone_sdk::Decision> {
    use chaperone_sdk::{
        Effect, Entry, GrantUpdate, NewGrant, NewServiceAccount, Origin, RightsUpdate, Setting,
        Verdict,
    };
    let verdict = if u.arbitrary()? {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    let rule = text(u)?;
    let message = text(u)?;
    let rules = texts(u)?;
    let count = match u.int_in_range(0..=7u8)? {
        0 => *u.choose(&[63usize, 64, 65])?,
        n => usize::from(n % 4),
    };
    let mut effects = Vec::with_capacity(count);
    for _ in 0..count {
        let effect = match u.int_in_range(0..=10u8)? {
            0 => Effect::CreateGrant(NewGrant {
                environment: text(u)?,
                grantee: maybe(u, text)?,
                scope: text(u)?,
                expires_at: maybe(u, |u| u.arbitrary())?,
                metadata: text(u)?,
            }),
            1 => Effect::UpdateGrant(GrantUpdate {
                id: text(u)?,
                scope: text(u)?,
                expires_at: maybe(u, |u| u.arbitrary())?,
                metadata: text(u)?,
            }),
            2 => Effect::RevokeGrant(text(u)?),
            3 => Effect::CreateServiceAccount(NewServiceAccount {
                agent_email: text(u)?,
                rights: texts(u)?,
                origin: if u.arbitrary()? {
                    Origin::Consent
                } else {
                    Origin::Invite
                },
                description: text(u)?,
            }),
            4 => Effect::SetServiceAccountRights(RightsUpdate {
                id: text(u)?,
                rights: texts(u)?,
            }),
            5 => Effect::RemoveServiceAccount(text(u)?),
            6 => Effect::SetSetting(Setting {
                key: text(u)?,
                value: text(u)?,
            }),
            7 => Effect::CreateInvitation(text(u)?),
            8 => Effect::UseInvitation(text(u)?),
            9 => Effect::PutEntry(Entry {
                key: text(u)?,
                value: text(u)?,
            }),
            _ => Effect::DeleteEntry(text(u)?),
        };
        effects.push(effect);
    }
    Ok(chaperone_sdk::Decision {
        verdict,
        rule,
        message,
        rules,
        effects,
    })
}

// ---------------------------------------------------------------------------
// Audit records (`chaperone_log::record`).

fn draft_of(record: &chaperone_log::Record) -> chaperone_log::RecordDraft {
    chaperone_log::RecordDraft {
        account: record.account.clone(),
        time_ms: record.time_ms,
        kind: record.kind.clone(),
        actor: record.actor.clone(),
        request: record.request.clone(),
        decision: record.decision.clone(),
        effects: record.effects.clone(),
        policy: record.policy.clone(),
        input: record.input.clone(),
    }
}

/// Arbitrary bytes to the record decoder and to the verifiers' strict
/// check (`check_record`, over the log's JSON scanner): never a panic;
/// bytes the strict check accepts decode; a decoded record encodes to
/// bytes that the strict check accepts and that decode to it again, and
/// encoding is a fixed point.
pub fn record(data: &[u8]) {
    use chaperone_log::record::{check_record, decode, encode};
    let decoded = decode(data);
    let Ok(record) = decoded else {
        // The claim a verifier would check the bytes against is unknown:
        // try the usual one.
        let _ = check_record(data, "acme", 1);
        return;
    };
    let checked = check_record(data, &record.account, record.seq);
    if let Ok(header) = &checked {
        assert_eq!(header.time_ms, record.time_ms);
        assert_eq!(header.kind, record.kind);
    }
    let Some(seq) = chaperone_log::Seq::new(record.seq) else {
        return;
    };
    if record.v != chaperone_log::record::FORMAT_VERSION {
        return;
    }
    let Ok(bytes) = encode(&draft_of(&record), seq) else {
        return;
    };
    match decode(&bytes) {
        Ok(again) => assert_eq!(again, record, "decode(encode(record)) != record"),
        Err(e) => unreachable!("an encoded record does not decode: {e}"),
    }
    if let Err(e) = check_record(&bytes, &record.account, record.seq) {
        unreachable!("the strict check refuses an encoded record: {e}");
    }
    if checked.is_ok() && data == bytes.as_slice() {
        return;
    }
    match decode(&bytes).map(|again| encode(&draft_of(&again), seq)) {
        Ok(Ok(twice)) => assert_eq!(twice, bytes, "encoding is not canonical"),
        other => unreachable!("re-encoding failed: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Exports (`chaperone_log::export::verify_export`).

/// The log's key in these targets (a fixed seed: runs are reproducible).
fn signer() -> chaperone_log::keys::Signer {
    match chaperone_log::keys::Signer::from_seed("fuzz-log", [7; 32]) {
        Ok(signer) => signer,
        Err(e) => unreachable!("the fuzz key: {e}"),
    }
}

/// The first byte picks the mode. Even: the rest, as it is, to the export
/// verifier. Odd: an export of records built from the input, which must
/// verify clean, then changed at places the input picks, which must not
/// make the verifier panic.
pub fn export(data: &[u8]) {
    let verifier = signer().verifier();
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = chaperone_log::export::verify_export(Cursor::new(rest), Some(&verifier));
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok((text, records)) = built_export(&mut u) else {
        return;
    };
    match chaperone_log::export::verify_export(Cursor::new(&text), Some(&verifier)) {
        Ok(report) => {
            assert!(report.is_ok(), "a clean export fails: {report:?}");
            assert_eq!(report.records, records, "records verified");
        }
        Err(e) => unreachable!("a clean export is refused: {e}"),
    }
    let mut changed = text;
    let Ok(edits) = u.int_in_range(1..=4u8) else {
        return;
    };
    for _ in 0..edits {
        if changed.is_empty() || mutate(&mut u, &mut changed).is_err() {
            break;
        }
    }
    let _ = chaperone_log::export::verify_export(Cursor::new(&changed), Some(&verifier));
}

fn mutate(u: &mut Unstructured<'_>, bytes: &mut Vec<u8>) -> Drawn<()> {
    let at = u.choose_index(bytes.len())?;
    match u.int_in_range(0..=4u8)? {
        0 => {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 1 << u.int_in_range(0..=7u8)?;
            }
        }
        1 => bytes.truncate(at),
        2 => {
            bytes.remove(at);
        }
        3 => {
            let word: &str = u.choose(&["0", "9", "\"", "\n", "{", "}", ",", "null", "\\"])?;
            bytes.splice(at..at, word.bytes());
        }
        _ => {
            // Repeat or drop a line.
            let lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let pick = u.choose_index(lines.len())?;
            let repeat = u.arbitrary::<bool>()?;
            let mut out = Vec::with_capacity(bytes.len());
            for (i, line) in lines.iter().enumerate() {
                let times = match (i == pick, repeat) {
                    (false, _) => 1,
                    (true, true) => 2,
                    (true, false) => 0,
                };
                for _ in 0..times {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
            }
            out.pop();
            *bytes = out;
        }
    }
    Ok(())
}

/// A clean export of 1 to 6 records built from the input, with its signed
/// checkpoint (over this account and maybe others, none of them named in
/// it) and the account's head with its inclusion proof; and how many
/// records it has.
fn built_export(u: &mut Unstructured<'_>) -> Drawn<(Vec<u8>, u64)> {
    use chaperone_log::chain::{genesis, link};
    use chaperone_log::export::{checkpoint_line, header_line, proof_line, push_record_line};
    use chaperone_log::{ChainHead, Checkpoint, Seq, TreeHeads};
    let account = (*u.choose(&["acme", "globex", "a", "x-1_2.z"])?).to_owned();
    let count = u.int_in_range(1..=6u64)?;
    let mut out = header_line(&account, count).into_bytes();
    out.push(b'\n');
    let mut hash = genesis(&account);
    let mut head = None;
    for n in 1..=count {
        let Some(seq) = Seq::new(n) else {
            return Err(arbitrary::Error::IncorrectFormat);
        };
        let draft = record_draft(u, &account)?;
        let Ok(bytes) = chaperone_log::record::encode(&draft, seq) else {
            return Err(arbitrary::Error::IncorrectFormat);
        };
        hash = link(&hash, &bytes);
        push_record_line(&mut out, seq.to_i64(), &unhex(&hash.to_hex()), &bytes);
        head = Some(ChainHead { seq, hash });
    }
    let Some(head) = head else {
        return Err(arbitrary::Error::IncorrectFormat);
    };
    let mut heads = vec![(account.clone(), head)];
    for other in 0..u.int_in_range(0..=4u8)? {
        let name = format!("other-{other}");
        let hash = link(&genesis(&name), name.as_bytes());
        let Some(seq) = Seq::new(u64::from(other) + 1) else {
            return Err(arbitrary::Error::IncorrectFormat);
        };
        heads.push((name, ChainHead { seq, hash }));
    }
    let Ok(tree) = TreeHeads::new(heads) else {
        return Err(arbitrary::Error::IncorrectFormat);
    };
    let checkpoint = Checkpoint::sign(&signer(), u.arbitrary()?, &tree);
    let Some(proof) = tree.proof(&account) else {
        return Err(arbitrary::Error::IncorrectFormat);
    };
    out.extend_from_slice(checkpoint_line(&checkpoint.note).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(proof_line(&proof).as_bytes());
    out.push(b'\n');
    Ok((out, count))
}

/// The bytes of lowercase hex digits.
fn unhex(text: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        _ => c.wrapping_sub(b'a').wrapping_add(10),
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| pair.iter().fold(0u8, |n, &c| (n << 4) | (digit(c) & 0xf)))
        .collect()
}

fn record_draft(u: &mut Unstructured<'_>, account: &str) -> Drawn<chaperone_log::RecordDraft> {
    use chaperone_log::{ActorRef, DecisionRecord, PolicyRef, RecordDraft, Verdict};
    let kind = (*u.choose(&["grant", "act", "sync", "custom.x", "expire"])?).to_owned();
    let actor = match u.int_in_range(0..=2u8)? {
        0 => None,
        1 => Some(ActorRef::User {
            id: u.arbitrary()?,
            email: u.arbitrary()?,
        }),
        _ => Some(ActorRef::Agent {
            email: u.arbitrary()?,
        }),
    };
    let decision = if u.arbitrary()? {
        Some(DecisionRecord {
            verdict: if u.arbitrary()? {
                Verdict::Allow
            } else {
                Verdict::Deny
            },
            rule: u.arbitrary()?,
            message: u.arbitrary()?,
            rules: u.arbitrary()?,
        })
    } else {
        None
    };
    let policy = if u.arbitrary()? {
        Some(PolicyRef {
            digest: "ab".repeat(32),
            vendor: u.arbitrary()?,
            version: u.arbitrary()?,
        })
    } else {
        None
    };
    let mut effects = Vec::new();
    for _ in 0..u.int_in_range(0..=2u8)? {
        effects.push(json_value(u, 2)?);
    }
    Ok(RecordDraft {
        account: account.to_owned(),
        time_ms: u.arbitrary()?,
        kind,
        actor,
        request: json_value(u, 3)?,
        decision,
        effects: Value::Array(effects),
        policy,
        input: maybe(u, |u| json_value(u, 3))?,
    })
}

// ---------------------------------------------------------------------------
// Modules (`Runtime::load`, `probe::check`, `Runtime::evaluate`).

/// Small limits, so that one run takes milliseconds.
fn small_limits() -> chaperone_runtime::Limits {
    chaperone_runtime::Limits {
        fuel: 200_000,
        deadline: std::time::Duration::from_secs(5),
        memory_bytes: 2 << 20,
        max_instances: 2,
        module_bytes: 1 << 20,
    }
}

/// The `sdk-policy` world, to embed as a module's component type.
fn sdk_world() -> (wit_parser::Resolve, wit_parser::WorldId) {
    let wit = include_str!("../../sdk/wit/policy.wit");
    let mut resolve = wit_parser::Resolve::default();
    match resolve
        .push_str("policy.wit", wit)
        .and_then(|package| resolve.select_world(&[package], Some("sdk-policy")))
    {
        Ok(world) => (resolve, world),
        Err(e) => unreachable!("the WIT package: {e:#}"),
    }
}

/// A core module with exactly the exports of a module built with the SDK:
/// what wasm-smith is asked to match.
fn export_template(resolve: &wit_parser::Resolve, world: wit_parser::WorldId) -> Vec<u8> {
    wit_component::dummy_module(
        resolve,
        world,
        wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync),
    )
}

/// A `describe` body that lays out a valid description at address 16
/// (vendor `fuzz`, version `1.0.0`, the operations in `ops`) and returns
/// a pointer to it, growing the memory first if it has no page.
fn describe_body(ops: &[u8]) -> Vec<u8> {
    let mut area = [0u8; 80];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(slot) = area.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    // Laid out from address 16: "fuzz" at 16, "1.0.0" at 32, the
    // operations at 48, the record of (pointer, length) pairs at 64.
    put(0, b"fuzz");
    put(16, b"1.0.0");
    put(32, ops);
    let record: [u32; 8] = [16, 4, 32, 5, 48, ops.len() as u32, 0, 0];
    for (i, word) in record.iter().enumerate() {
        put(48 + 4 * i, &word.to_le_bytes());
    }
    let mut body = String::from(
        "(func (result i32)
            memory.size
            i32.eqz
            if
                i32.const 1
                memory.grow
                drop
            end\n",
    );
    for (i, chunk) in area.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word.iter_mut().zip(chunk).for_each(|(w, c)| *w = *c);
        body.push_str(&format!(
            "i32.const {} i64.const {} i64.store\n",
            16 + 8 * i,
            i64::from_le_bytes(word)
        ));
    }
    body.push_str("i32.const 64)");
    let module = match wat::parse_str(format!("(module (memory 1) {body})")) {
        Ok(module) => module,
        Err(e) => unreachable!("describe's body: {e}"),
    };
    for payload in wasmparser::Parser::new(0).parse_all(&module) {
        if let Ok(wasmparser::Payload::CodeSectionEntry(f)) = payload {
            return f.as_bytes().to_vec();
        }
    }
    unreachable!("describe's module has no body")
}

fn leb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `module` with the body of the function it exports as `describe`
/// replaced by `body` (the code section rewritten; all else as it was).
fn with_describe(module: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    use wasmparser::{ExternalKind, Payload};
    let mut imported = 0u32;
    let mut describe = None;
    let mut code = None;
    let mut bodies = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload.ok()? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if matches!(import.ok()?.ty, wasmparser::TypeRef::Func(_)) {
                        imported += 1;
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.ok()?;
                    if export.name == "describe" && export.kind == ExternalKind::Func {
                        describe = Some(export.index);
                    }
                }
            }
            Payload::CodeSectionStart { range, .. } => code = Some(range),
            Payload::CodeSectionEntry(f) => bodies.push(f.range()),
            _ => {}
        }
    }
    let index = usize::try_from(describe?.checked_sub(imported)?).ok()?;
    let code = code?;
    let mut section = Vec::new();
    leb(&mut section, bodies.len() as u64);
    for (i, range) in bodies.iter().enumerate() {
        let bytes = if i == index {
            body
        } else {
            module.get(range.clone())?
        };
        leb(&mut section, bytes.len() as u64);
        section.extend_from_slice(bytes);
    }
    // Before the contents: the section's id (10), then its size as a
    // LEB128 number (every byte but the last with the high bit set).
    let mut id_at = code.start.checked_sub(2)?;
    while module.get(id_at)? & 0x80 != 0 {
        id_at = id_at.checked_sub(1)?;
    }
    if module.get(id_at) != Some(&10) {
        return None;
    }
    let mut out = module.get(..id_at)?.to_vec();
    out.push(10);
    leb(&mut out, section.len() as u64);
    out.extend_from_slice(&section);
    out.extend_from_slice(module.get(code.end..)?);
    Some(out)
}

/// The wasm-smith configuration: only what the host's engine supports, and
/// small, so that compiling takes milliseconds.
fn smith_config(exports: Vec<u8>) -> wasm_smith::Config {
    wasm_smith::Config {
        exports: Some(exports),
        max_imports: 0,
        max_funcs: 12,
        max_instructions: 200,
        max_memories: 1,
        max_memory32_bytes: 1 << 20,
        memory64_enabled: false,
        max_tables: 2,
        max_table_elements: 1000,
        max_data_segments: 8,
        max_element_segments: 8,
        max_globals: 8,
        max_types: 20,
        gc_enabled: false,
        exceptions_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        custom_descriptors_enabled: false,
        ..wasm_smith::Config::default()
    }
}

/// A module from the input: wasm-smith's, with the exports of an SDK
/// module and, for most inputs, a `describe` that works (so that load gets
/// to evaluation), carrying the `sdk-policy` world as its component type.
fn smith_module(data: &[u8]) -> Option<Vec<u8>> {
    let (resolve, world) = sdk_world();
    let mut u = Unstructured::new(data);
    let patch: u8 = u.arbitrary().ok()?;
    let mut ops: Vec<u8> = Vec::new();
    for _ in 0..=(patch % 3) {
        let op = u.int_in_range(0..=8u8).ok()?;
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    let config = smith_config(export_template(&resolve, world));
    let smith = wasm_smith::Module::new(config, &mut u).ok()?;
    let mut module = smith.to_bytes();
    if patch & 0x80 == 0 {
        module = with_describe(&module, &describe_body(&ops))?;
    }
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .ok()?;
    Some(module)
}

/// wasm-smith modules through load, evaluation and `policy check`: never a
/// panic; an evaluation gives the same result (decision and fuel, or
/// error) every time; `policy check` runs, agrees with load, and never
/// finds a module nondeterministic.
pub fn module(data: &[u8]) {
    let Some(bytes) = smith_module(data) else {
        return;
    };
    let limits = small_limits();
    let runtime = match chaperone_runtime::Runtime::new(limits.clone()) {
        Ok(runtime) => runtime,
        Err(e) => unreachable!("a runtime: {e}"),
    };
    let loaded = runtime.load(&bytes);
    if let Ok(module) = &loaded {
        let description = module.description().clone();
        for kind in &description.operations {
            let request =
                chaperone_runtime::probe::sample_request(&description.vendor, *kind, None);
            let outcome = || {
                runtime
                    .evaluate(module, &request)
                    .map(|e| (e.decision, e.fuel_used))
                    .map_err(|e| e.to_string())
            };
            let first = outcome();
            assert_eq!(first, outcome(), "two evaluations differ");
            if let Ok((decision, _)) = &first
                && let Err(why) = chaperone_runtime::check_decision(decision, &request)
            {
                unreachable!("an evaluation returned a decision the contract refuses: {why}");
            }
        }
    }
    drop(runtime);
    let report =
        match chaperone_runtime::probe::check(&bytes, &limits, &chaperone::service::record_fits) {
            Ok(report) => report,
            Err(e) => unreachable!("policy check failed to run: {e}"),
        };
    let described = report.probes.iter().any(|p| p.name == "describe" && p.ok);
    assert_eq!(
        described,
        loaded.is_ok(),
        "policy check and load disagree: {report:?} / {loaded:?}"
    );
    for probe in &report.probes {
        assert!(
            !probe.detail.contains("not deterministic"),
            "policy check found a module nondeterministic: {probe:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Seeds.

/// Seed inputs for the targets whose inputs are binary or hashed (written
/// to `fuzz/corpus/<target>/` by the ignored test `write_seeds` in
/// `tests/it/fuzz_regressions.rs`): the packed encoding of every sample
/// request, decisions with every kind of effect, records, and clean
/// exports.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use model::{Decision, Effect, Entry, NewGrant, RightsUpdate, Setting, Verdict};
    let mut out = Vec::new();
    for vendor in ["celigo", "xentral"] {
        for kind in model::OperationKind::ALL {
            let request = chaperone_runtime::probe::sample_request(vendor, kind, Some("x"));
            out.push((
                "sdk_packed_request",
                format!("{vendor}-{}", kind.name()),
                chaperone_runtime::encode_packed_request(&request),
            ));
        }
    }
    let decisions = [
        Decision {
            verdict: Verdict::Deny,
            rule: "CEL-WHO".into(),
            message: "only an owner may grant".into(),
            rules: vec![],
            effects: vec![],
        },
        Decision {
            verdict: Verdict::Allow,
            rule: "CEL-WHO".into(),
            message: "ok".into(),
            rules: vec!["CEL-WHO".into(), "CEL-PLAN".into()],
            effects: vec![
                Effect::CreateGrant(NewGrant {
                    environment: "prod".into(),
                    grantee: Some("sam.reyes@celigo.com".into()),
                    scope: r#"{"level":"admin"}"#.into(),
                    expires_at: Some(1_767_258_000_000),
                    metadata: "null".into(),
                }),
                Effect::RevokeGrant("g-1".into()),
                Effect::SetServiceAccountRights(RightsUpdate {
                    id: "sa-1".into(),
                    rights: vec!["orders.*".into()],
                }),
                Effect::SetSetting(Setting {
                    key: "allow_non_admin_grants".into(),
                    value: "true".into(),
                }),
                Effect::PutEntry(Entry {
                    key: "note".into(),
                    value: r#"{"ticket":"T-1"}"#.into(),
                }),
                Effect::CreateInvitation("ann@acme.test".into()),
                Effect::DeleteEntry("note".into()),
            ],
        },
    ];
    for (i, decision) in decisions.iter().enumerate() {
        if let Ok(bytes) = postcard::to_allocvec(decision) {
            out.push(("packed_decision", format!("decision-{i}"), bytes));
        }
    }
    for i in 0..4u8 {
        let noise: Vec<u8> = (0..600u32)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> (13 + u32::from(i))) as u8)
            .collect();
        let mut u = Unstructured::new(&noise);
        if let Ok(draft) = record_draft(&mut u, "acme")
            && let Some(seq) = chaperone_log::Seq::new(u64::from(i) + 1)
            && let Ok(bytes) = chaperone_log::record::encode(&draft, seq)
        {
            out.push(("record", format!("record-{i}"), bytes));
        }
        let mut u = Unstructured::new(&noise);
        if let Ok((text, _)) = built_export(&mut u) {
            let mut input = vec![0];
            input.extend_from_slice(&text);
            out.push(("export", format!("export-{i}"), input));
        }
    }
    out
}
