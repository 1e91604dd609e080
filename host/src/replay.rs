//! Replay: re-evaluate every recorded decision with the module whose digest
//! the record names and the exact input it recorded, and report any record
//! whose decision differs (HOST-REPLAY).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use chaperone_log::{ActorRef, DecisionRecord, Record, RecordDraft, Verdict as RecordVerdict};
use chaperone_model as model;
use chaperone_runtime::{ModuleDigest, PolicyModule, Runtime};
use chaperone_store::{Storage, StoreError};

use crate::service::{HOST_POLICY_ERROR, decision_record, record_refusal};

/// One record whose replayed decision differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    /// The account.
    pub account: String,
    /// The record's sequence number.
    pub seq: u64,
    /// What differs.
    pub reason: String,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Records re-evaluated.
    pub replayed: u64,
    /// Records no policy decided (`sync`, `expire`, host refusals).
    pub skipped: u64,
    /// Records whose decision differs, in chain order.
    pub mismatches: Vec<Mismatch>,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The store could not be read.
    #[error("cannot read the store")]
    Store(#[from] StoreError),
}

/// Replays the records of one account, or of every account.
pub fn replay(
    store: &dyn Storage,
    runtime: &Runtime,
    account: Option<&str>,
) -> Result<ReplayReport, ReplayError> {
    let accounts = match account {
        Some(account) => vec![account.to_string()],
        None => store.accounts()?,
    };
    let mut report = ReplayReport::default();
    let mut modules: HashMap<String, Result<Arc<PolicyModule>, String>> = HashMap::new();
    for account in accounts {
        // One record at a time: an account's history can be long.
        store.scan_records(&account, &mut |stored| {
            let record = &stored.record;
            let (Some(policy), Some(input), Some(decision)) =
                (&record.policy, &record.input, &record.decision)
            else {
                report.skipped += 1;
                return Ok(());
            };
            report.replayed += 1;
            let module = modules
                .entry(policy.digest.clone())
                .or_insert_with(|| load(store, runtime, &policy.digest))
                .clone();
            let outcome = module.and_then(|module| {
                let request: model::Request = serde_json::from_value(input.clone())
                    .map_err(|e| format!("the recorded input cannot be read: {e}"))?;
                Ok(runtime.evaluate(&module, &request))
            });
            let reason = match outcome {
                Err(reason) => Some(reason),
                Ok(Err(error)) if decision.rule != HOST_POLICY_ERROR => Some(format!(
                    "recorded {} `{}`, replay failed: {error}",
                    decision.verdict.as_str(),
                    decision.rule
                )),
                Ok(Err(_)) => None,
                // The host refused a decision whose record would not fit.
                Ok(Ok(evaluation))
                    if decision.rule == HOST_POLICY_ERROR
                        && oversized(record, &evaluation.decision).as_deref()
                            == Some(decision.message.as_str()) =>
                {
                    None
                }
                Ok(Ok(evaluation)) => differs(decision, &record.effects, &evaluation.decision),
            };
            if let Some(reason) = reason {
                report.mismatches.push(Mismatch {
                    account: account.clone(),
                    seq: stored.seq.get(),
                    reason,
                });
            }
            Ok(())
        })?;
    }
    Ok(report)
}

fn load(store: &dyn Storage, runtime: &Runtime, digest: &str) -> Result<Arc<PolicyModule>, String> {
    let bytes = store
        .module_bytes(digest)
        .map_err(|e| format!("cannot read module `{digest}`: {e}"))?
        .ok_or_else(|| format!("the store does not keep module `{digest}`"))?;
    let actual = ModuleDigest::of(&bytes);
    if actual.to_hex() != digest {
        return Err(format!(
            "the kept bytes of module `{digest}` have digest `{actual}`: the module was altered"
        ));
    }
    runtime
        .load(&bytes)
        .map_err(|e| format!("cannot load module `{digest}`: {e}"))
}

/// The host's refusal if `decision`'s record, made as the host makes it
/// from what `record` recorded, would not fit (see
/// [`crate::service::oversized_record_message`]).
fn oversized(record: &Record, decision: &model::Decision) -> Option<String> {
    let actor = match record.actor.as_ref()? {
        ActorRef::User { id, .. } => model::Actor::User(id.clone()),
        ActorRef::Agent { email } => model::Actor::Agent(email.clone()),
    };
    let mut draft = RecordDraft {
        account: record.account.clone(),
        time_ms: record.time_ms,
        kind: record.kind.clone(),
        actor: record.actor.clone(),
        request: record.request.clone(),
        decision: Some(decision_record(
            decision.verdict,
            &decision.rule,
            &decision.message,
            &decision.rules,
        )),
        effects: Value::Null,
        policy: record.policy.clone(),
        input: record.input.clone(),
    };
    record_refusal(&mut draft, actor, decision)
}

fn differs(
    recorded: &DecisionRecord,
    recorded_effects: &Value,
    now: &model::Decision,
) -> Option<String> {
    let verdict = match now.verdict {
        model::Verdict::Allow => RecordVerdict::Allow,
        model::Verdict::Deny => RecordVerdict::Deny,
    };
    if verdict != recorded.verdict || now.rule != recorded.rule {
        return Some(format!(
            "recorded {} `{}`, replay gives {} `{}`",
            recorded.verdict.as_str(),
            recorded.rule,
            verdict.as_str(),
            now.rule
        ));
    }
    if now.message != recorded.message || now.rules != recorded.rules {
        return Some(format!(
            "recorded message `{}` and rules {:?}, replay gives `{}` and {:?}",
            recorded.message, recorded.rules, now.message, now.rules
        ));
    }
    let recorded_effects: Vec<Value> = recorded_effects
        .as_array()
        .map(|effects| {
            effects
                .iter()
                .filter_map(|e| e.get("effect").cloned())
                .collect()
        })
        .unwrap_or_default();
    let replayed: Vec<Value> = now
        .effects
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    (recorded_effects != replayed).then(|| {
        format!(
            "recorded effects {}, replay gives {}",
            Value::Array(recorded_effects),
            Value::Array(replayed)
        )
    })
}

/// One recorded decision a candidate module decides differently.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The account.
    pub account: String,
    /// The record's sequence number.
    pub seq: u64,
    /// When it was decided (RFC 3339).
    pub time: String,
    /// The record's kind (the operation).
    pub kind: String,
    /// The recorded verdict and rule.
    pub old: Verdict,
    /// The candidate's verdict and rule (a failure of the candidate is the
    /// host's `HOST-POLICY-ERROR` deny, as it would be recorded).
    pub new: Verdict,
    /// What differs, in words.
    pub detail: String,
}

/// A verdict and the rule that decided it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// `allow` or `deny`.
    pub verdict: String,
    /// The rule id.
    pub rule: String,
}

/// What `policy diff` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiffReport {
    /// The vendor id.
    pub vendor: String,
    /// The candidate's digest.
    pub candidate: String,
    /// Accounts of the vendor looked at.
    pub accounts: u64,
    /// Decisions re-decided.
    pub decisions: u64,
    /// Decisions decided the same way.
    pub unchanged: u64,
    /// Decisions decided differently, in chain order per account.
    pub changes: Vec<Change>,
}

/// Re-decides every recorded policy decision of `vendor`'s accounts (from
/// `since`, ms, if given) with `candidate`, from the exact input each record
/// kept, and reports those it decides differently: another verdict, rule,
/// message, rules or effects.
pub fn diff(
    store: &dyn Storage,
    runtime: &Runtime,
    candidate: &PolicyModule,
    vendor: &str,
    since: Option<i64>,
) -> Result<DiffReport, ReplayError> {
    let mut report = DiffReport {
        vendor: vendor.to_owned(),
        candidate: candidate.digest().to_hex(),
        ..DiffReport::default()
    };
    for account in store.accounts()? {
        if store.registry().account_vendor(&account)?.as_deref() != Some(vendor) {
            continue;
        }
        report.accounts += 1;
        store.scan_records(&account, &mut |stored| {
            let record = &stored.record;
            let (Some(_), Some(input), Some(decision)) =
                (&record.policy, &record.input, &record.decision)
            else {
                return Ok(());
            };
            if since.is_some_and(|since| record.time_ms < since) {
                return Ok(());
            }
            report.decisions += 1;
            let old = Verdict {
                verdict: decision.verdict.as_str().to_owned(),
                rule: decision.rule.clone(),
            };
            let evaluated = serde_json::from_value::<model::Request>(input.clone())
                .map_err(|e| format!("the recorded input cannot be read: {e}"))
                .and_then(|request| {
                    runtime
                        .evaluate(candidate, &request)
                        .map_err(|e| e.to_string())
                });
            let (new, detail) = match evaluated {
                Ok(evaluation) => {
                    let now = &evaluation.decision;
                    let new = Verdict {
                        verdict: now.verdict.name().to_owned(),
                        rule: now.rule.clone(),
                    };
                    (new, differs(decision, &record.effects, now))
                }
                Err(error) => (
                    Verdict {
                        verdict: "deny".into(),
                        rule: HOST_POLICY_ERROR.into(),
                    },
                    (decision.rule != HOST_POLICY_ERROR)
                        .then(|| format!("the candidate fails: {error}")),
                ),
            };
            match detail {
                None => report.unchanged += 1,
                Some(detail) => report.changes.push(Change {
                    account: account.clone(),
                    seq: stored.seq.get(),
                    time: crate::instant::format(record.time_ms),
                    kind: record.kind.clone(),
                    old,
                    new,
                    detail,
                }),
            }
            Ok(())
        })?;
    }
    Ok(report)
}
