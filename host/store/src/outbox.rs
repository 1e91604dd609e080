//! Event notifications: subscriptions (who wants to hear of which events of
//! which accounts, at which endpoint) and the outbox of deliveries.
//!
//! A delivery row is written by the append of the record it tells of, in
//! the same transaction: no event without its record, and no record of a
//! subscribed type without its delivery rows. The row holds no copy of the
//! record: the sender reads the record's exact bytes back when it sends.
//! Deliveries of one subscription and one account go out in record order;
//! a delivery that failed `max_attempts` times is dead (kept, with its last
//! error), and the next one goes on.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use serde_json::json;

use crate::registry::REGISTRY_CHAIN;
use crate::{Store, StoreError};

/// Who a subscription belongs to, and so which accounts it hears of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "subject", rename_all = "lowercase")]
pub enum Owner {
    /// A vendor: every account whose policy is this vendor, and the
    /// vendor's module activations.
    Vendor(String),
    /// A customer: this one account.
    Customer(String),
}

/// The event types a subscription can ask for. A type of a
/// policy-decided operation can be narrowed by verdict with a suffix:
/// `act.allowed`, `act.denied` (`act` is both).
pub const EVENT_TYPES: &[&str] = &[
    "grant",
    "modify",
    "revoke",
    "expire",
    "act",
    "setting",
    "invitation",
    "service_account.created",
    "service_account.rights_changed",
    "service_account.removed",
    "module.activated",
    "policy_error",
];

/// A subscription: an endpoint and the event types it wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    /// `wh_` and 16 hex digits.
    pub id: String,
    /// Whose it is.
    pub owner: Owner,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// The event types it wants (from [`EVENT_TYPES`], maybe with a
    /// `.allowed`/`.denied` suffix), or `["*"]` for every type.
    pub types: Vec<String>,
    /// Who added it (a credential id, or `cli`).
    pub created_by: String,
    /// When it was added (ms since the epoch).
    pub created_ms: i64,
    /// When it was removed, if it was: it gets nothing after.
    pub removed_ms: Option<i64>,
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet: due at `next_attempt_ms`.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Failed `max_attempts` times; not tried again.
    Dead,
}

/// One event to deliver to one subscription, as the sender needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The delivery's id (increasing in the order deliveries were made).
    pub id: i64,
    /// The subscription.
    pub subscription: String,
    /// Its endpoint.
    pub url: String,
    /// The event's type (one of [`EVENT_TYPES`], never a pattern).
    pub event_type: String,
    /// The account whose record it tells of.
    pub account: String,
    /// The record's seq in that account's chain.
    pub seq: u64,
    /// The record's chain hash (the hash an export shows for it).
    pub hash: [u8; 32],
    /// The record's time (ms since the epoch).
    pub time_ms: i64,
    /// The record's exact bytes, as stored and hashed.
    pub record: Vec<u8>,
    /// Attempts made so far (0 for a first try).
    pub attempts: u32,
}

/// A subscription's deliveries, counted; the last failure, and when the
/// next try is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionStatus {
    /// The subscription.
    pub subscription: Subscription,
    /// Deliveries waiting.
    pub pending: u64,
    /// Deliveries done.
    pub delivered: u64,
    /// Deliveries given up.
    pub dead: u64,
    /// The last failed attempt, if any: when, what, and the HTTP status.
    pub last_error: Option<LastError>,
    /// When the next attempt is due, if one is pending.
    pub next_attempt_ms: Option<i64>,
    /// When the last delivery succeeded.
    pub last_delivered_ms: Option<i64>,
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// The delivery.
    pub delivery: i64,
    /// When it failed.
    pub at_ms: i64,
    /// What happened.
    pub error: String,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
}

/// What an attempt came to, for [`Outbox::record_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered 2xx.
    Delivered {
        /// Its status.
        status: u16,
    },
    /// It did not; try again at `retry_at_ms`, or never (`None`: dead).
    Failed {
        /// What happened.
        error: String,
        /// The endpoint's status, if it answered.
        status: Option<u16>,
        /// When to try again; `None` gives the delivery up.
        retry_at_ms: Option<i64>,
    },
}

/// Subscriptions and deliveries: part of every [`Storage`](crate::Storage).
pub trait Outbox: Send + Sync {
    /// Adds subscription `id` (`wh_` and 16 hex digits, made by the
    /// caller) at `at`, recording it in the registry chain. The URL and
    /// types are checked ([`check_subscription`]).
    fn add_subscription(
        &self,
        at: i64,
        id: &str,
        owner: Owner,
        url: &str,
        types: &[String],
        by: &str,
    ) -> Result<Subscription, SubscriptionError>;
    /// Removes subscription `id` at `at`, recording it: its pending
    /// deliveries are dropped (marked dead, "subscription removed"). `false`:
    /// no such live subscription.
    fn remove_subscription(&self, at: i64, id: &str, by: &str) -> Result<bool, StoreError>;
    /// Every subscription (removed ones too), oldest first.
    fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;
    /// The counts, last error and next try of subscription `id`.
    fn subscription_status(&self, id: &str) -> Result<Option<SubscriptionStatus>, StoreError>;
    /// Up to `limit` deliveries due at `now_ms`, oldest first: for each
    /// (subscription, account) only its oldest pending delivery, none of
    /// the pairs in `busy` (being sent), and no more of one subscription
    /// than make its pairs in `busy` and those handed out
    /// `per_subscription` (so that every delivery handed out can start).
    fn due(
        &self,
        now_ms: i64,
        limit: usize,
        busy: &HashSet<(String, String)>,
        per_subscription: usize,
    ) -> Result<Vec<Due>, StoreError>;
    /// The earliest `next_attempt_ms` of any pending delivery, if any.
    fn next_due_ms(&self) -> Result<Option<i64>, StoreError>;
    /// Records what attempt `attempts + 1` of delivery `id` came to at
    /// `at`.
    fn record_attempt(&self, at: i64, id: i64, attempt: Attempt) -> Result<(), StoreError>;
}

/// The tables (`docs/webhooks.md`): subscriptions, which only change by
/// being removed, once; deliveries, one per (subscription, record), which
/// only move from pending to delivered or dead; and one queue row per
/// (subscription, account) with deliveries pending, saying when its oldest
/// is due, so that finding due work reads the queues, not every pending
/// delivery.
pub const SCHEMA: &str = r#"
CREATE TABLE webhook_subscriptions (
    id         TEXT NOT NULL PRIMARY KEY,
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('vendor', 'customer')),
    owner      TEXT NOT NULL,
    url        TEXT NOT NULL,
    types      TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    removed_ms INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX webhook_subscriptions_live ON webhook_subscriptions (owner_kind, owner)
    WHERE removed_ms IS NULL;
CREATE TRIGGER webhook_subscriptions_no_delete BEFORE DELETE ON webhook_subscriptions
BEGIN SELECT RAISE(ABORT, 'subscriptions are kept; remove them instead'); END;
CREATE TRIGGER webhook_subscriptions_remove_only BEFORE UPDATE ON webhook_subscriptions
WHEN OLD.removed_ms IS NOT NULL OR NEW.removed_ms IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.owner_kind IS NOT OLD.owner_kind OR NEW.owner IS NOT OLD.owner
  OR NEW.url IS NOT OLD.url OR NEW.types IS NOT OLD.types
  OR NEW.created_by IS NOT OLD.created_by OR NEW.created_ms IS NOT OLD.created_ms
BEGIN SELECT RAISE(ABORT, 'a subscription only changes by being removed, once'); END;

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    subscription    TEXT NOT NULL REFERENCES webhook_subscriptions (id),
    account         TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    last_error      TEXT,
    last_status     INTEGER,
    UNIQUE (subscription, account, seq)
) STRICT;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (subscription, account, id)
    WHERE state = 'pending';
CREATE TRIGGER webhook_deliveries_no_delete BEFORE DELETE ON webhook_deliveries
BEGIN SELECT RAISE(ABORT, 'deliveries are kept'); END;
CREATE TRIGGER webhook_deliveries_settled BEFORE UPDATE ON webhook_deliveries
WHEN OLD.state <> 'pending'
  OR NEW.id IS NOT OLD.id OR NEW.subscription IS NOT OLD.subscription
  OR NEW.account IS NOT OLD.account OR NEW.seq IS NOT OLD.seq
  OR NEW.event_type IS NOT OLD.event_type OR NEW.created_ms IS NOT OLD.created_ms
BEGIN SELECT RAISE(ABORT, 'a settled delivery does not change'); END;

CREATE TABLE webhook_queues (
    subscription    TEXT NOT NULL,
    account         TEXT NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    PRIMARY KEY (subscription, account)
) STRICT, WITHOUT ROWID;
CREATE INDEX webhook_queues_due ON webhook_queues (next_attempt_ms);
"#;

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// The URL is not an absolute `http://` or `https://` URL.
    #[error("`{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    /// No types were asked for.
    #[error("name at least one event type (or `*` for all): {}", EVENT_TYPES.join(", "))]
    NoTypes,
    /// A type that does not exist, or a verdict suffix on a type without
    /// a verdict.
    #[error("unknown event type `{0}`; the types are {types} (a decided one may end in `.allowed` or `.denied`), or `*`", types = EVENT_TYPES.join(", "))]
    UnknownType(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The types an operation's decision has a verdict for.
const DECIDED: &[&str] = &[
    "grant",
    "modify",
    "revoke",
    "act",
    "setting",
    "invitation",
    "service_account.created",
    "service_account.rights_changed",
    "service_account.removed",
];

/// Checks one type pattern: `*`, a type, or a decided type with
/// `.allowed`/`.denied`.
pub fn valid_pattern(pattern: &str) -> bool {
    if pattern == "*" || EVENT_TYPES.contains(&pattern) {
        return true;
    }
    [".allowed", ".denied"].iter().any(|suffix| {
        pattern
            .strip_suffix(suffix)
            .is_some_and(|base| DECIDED.contains(&base))
    })
}

/// Checks a URL and the type patterns of a new subscription; the patterns
/// sorted, without repeats.
pub fn check_subscription(url: &str, types: &[String]) -> Result<Vec<String>, SubscriptionError> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !host.contains(char::is_whitespace)
    });
    if !host_ok || url.len() > 2048 || url.chars().any(char::is_control) {
        return Err(SubscriptionError::BadUrl(url.to_owned()));
    }
    if types.is_empty() {
        return Err(SubscriptionError::NoTypes);
    }
    if let Some(bad) = types.iter().find(|t| !valid_pattern(t)) {
        return Err(SubscriptionError::UnknownType(bad.clone()));
    }
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    Ok(types)
}

/// The event types a record is of: its operation's type (from its kind),
/// and `policy_error` when the host failed closed on the module. Records
/// of other kinds (syncs, refusals, custom operations) are of none.
pub fn record_types(
    kind: &str,
    decided: Option<(chaperone_log::Verdict, &str)>,
) -> Vec<&'static str> {
    let base = match kind {
        "grant" => Some("grant"),
        "modify" => Some("modify"),
        "revoke" => Some("revoke"),
        "expire" => Some("expire"),
        "act" => Some("act"),
        "set_setting" => Some("setting"),
        "invite" => Some("invitation"),
        "create_service_account" => Some("service_account.created"),
        "set_rights" => Some("service_account.rights_changed"),
        "remove_service_account" => Some("service_account.removed"),
        _ => None,
    };
    let mut types: Vec<&'static str> = base.into_iter().collect();
    if decided.is_some_and(|(_, rule)| rule == "HOST-POLICY-ERROR") {
        types.push("policy_error");
    }
    types
}

/// Whether `patterns` take an event of type `event_type` with `verdict`.
fn wants(patterns: &[String], event_type: &str, verdict: Option<chaperone_log::Verdict>) -> bool {
    patterns.iter().any(|p| {
        if p == "*" || p == event_type {
            return true;
        }
        let suffix = match verdict {
            Some(chaperone_log::Verdict::Allow) => ".allowed",
            Some(chaperone_log::Verdict::Deny) => ".denied",
            None => return false,
        };
        p.strip_suffix(suffix) == Some(event_type)
    })
}

/// A live subscription, as the writer matches records against it.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    id: String,
    owner: Owner,
    types: Vec<String>,
}

/// The live subscriptions, read once per write transaction in which they
/// may have changed (the writer's cache is cleared when another
/// connection commits or a job rolls back, and by the writer's own
/// subscription changes).
pub(crate) fn live(conn: &rusqlite::Connection) -> Result<Vec<Live>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, owner_kind, owner, types FROM webhook_subscriptions
         WHERE removed_ms IS NULL ORDER BY created_ms, id",
    )?;
    let rows = statement.query_map([], |r| {
        let types: String = r.get(3)?;
        Ok(Live {
            id: r.get(0)?,
            owner: owner_from(r.get(1)?, r.get(2)?),
            types: serde_json::from_str(&types).unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Writes the deliveries of `prepared`, just appended at `seq` of its
/// account's chain, in the append's transaction: one per live subscription
/// that hears of the account and wants one of the record's types.
pub(crate) fn enqueue(
    conn: &rusqlite::Connection,
    subscriptions: &[Live],
    prepared: &chaperone_log::Prepared,
    seq: u64,
) -> Result<(), StoreError> {
    let types = record_types(prepared.kind(), prepared.decided());
    if types.is_empty() {
        return Ok(());
    }
    let (account, at) = (prepared.account(), prepared.time_ms());
    let verdict = prepared.decided().map(|(verdict, _)| verdict);
    let mut vendor: Option<Option<String>> = None;
    for subscription in subscriptions {
        let hears = match &subscription.owner {
            Owner::Customer(own) => own == account,
            Owner::Vendor(own) => {
                let vendor = match &vendor {
                    Some(v) => v.clone(),
                    None => {
                        let v = crate::read::account_policy(conn, account)?;
                        vendor = Some(v.clone());
                        v
                    }
                };
                vendor.as_deref() == Some(own.as_str())
            }
        };
        if !hears {
            continue;
        }
        if let Some(event_type) = types
            .iter()
            .find(|t| wants(&subscription.types, t, verdict))
        {
            insert(conn, &subscription.id, account, seq, event_type, at)?;
        }
    }
    Ok(())
}

/// Writes the deliveries of a module activation recorded in the registry
/// chain: to the vendor's subscriptions that want `module.activated`.
pub(crate) fn enqueue_module_activated(
    conn: &rusqlite::Connection,
    subscriptions: &[Live],
    vendor: &str,
    chain: &str,
    seq: u64,
    at: i64,
) -> Result<(), StoreError> {
    for subscription in subscriptions {
        if subscription.owner == Owner::Vendor(vendor.to_owned())
            && wants(&subscription.types, "module.activated", None)
        {
            insert(conn, &subscription.id, chain, seq, "module.activated", at)?;
        }
    }
    Ok(())
}

fn insert(
    conn: &rusqlite::Connection,
    subscription: &str,
    account: &str,
    seq: u64,
    event_type: &str,
    at: i64,
) -> Result<(), StoreError> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (subscription, account, seq, event_type, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![
        subscription,
        account,
        seq,
        event_type,
        at
    ])?;
    // Due at once, unless the queue already waits on an earlier delivery.
    conn.prepare_cached(
        "INSERT OR IGNORE INTO webhook_queues (subscription, account, next_attempt_ms)
         VALUES (?1, ?2, 0)",
    )?
    .execute(rusqlite::params![subscription, account])?;
    Ok(())
}

fn owner_parts(owner: &Owner) -> (&'static str, &str) {
    match owner {
        Owner::Vendor(v) => ("vendor", v),
        Owner::Customer(a) => ("customer", a),
    }
}

/// The owner a row's `owner_kind` and `owner` columns name.
fn owner_from(kind: String, owner: String) -> Owner {
    if kind == "vendor" {
        Owner::Vendor(owner)
    } else {
        Owner::Customer(owner)
    }
}

fn subscription_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    let types: String = r.get(4)?;
    Ok(Subscription {
        id: r.get(0)?,
        owner: owner_from(r.get(1)?, r.get(2)?),
        url: r.get(3)?,
        types: serde_json::from_str(&types).unwrap_or_default(),
        created_by: r.get(5)?,
        created_ms: r.get(6)?,
        removed_ms: r.get(7)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, owner_kind, owner, url, types, created_by, created_ms, removed_ms";

fn subscription(conn: &Connection, id: &str) -> rusqlite::Result<Option<Subscription>> {
    conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = ?1"
    ))?
    .query_row(params![id], subscription_row)
    .optional()
}

/// After delivery `id` of (`subscription`, `account`) settled: the queue's
/// next delivery is due at once, or the queue is gone.
fn advance(conn: &Connection, subscription: &str, account: &str) -> rusqlite::Result<()> {
    let more = conn
        .prepare_cached(
            "SELECT 1 FROM webhook_deliveries
             WHERE subscription = ?1 AND account = ?2 AND state = 'pending' LIMIT 1",
        )?
        .query_row(params![subscription, account], |_| Ok(()))
        .optional()?
        .is_some();
    if more {
        conn.prepare_cached(
            "UPDATE webhook_queues SET next_attempt_ms = 0 WHERE subscription = ?1 AND account = ?2",
        )?
        .execute(params![subscription, account])?;
    } else {
        conn.prepare_cached("DELETE FROM webhook_queues WHERE subscription = ?1 AND account = ?2")?
            .execute(params![subscription, account])?;
    }
    Ok(())
}

impl Outbox for Store {
    fn add_subscription(
        &self,
        at: i64,
        id: &str,
        owner: Owner,
        url: &str,
        types: &[String],
        by: &str,
    ) -> Result<Subscription, SubscriptionError> {
        let types = check_subscription(url, types)?;
        let subscription = Subscription {
            id: id.to_owned(),
            owner,
            url: url.to_owned(),
            types,
            created_by: by.to_owned(),
            created_ms: at,
            removed_ms: None,
        };
        let added = subscription.clone();
        self.write(move |tx| {
            let (kind, owner) = owner_parts(&added.owner);
            tx.conn()
                .prepare_cached(&format!(
                    "INSERT INTO webhook_subscriptions ({SUBSCRIPTION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)"
                ))?
                .execute(params![
                    added.id,
                    kind,
                    owner,
                    added.url,
                    serde_json::to_string(&added.types).unwrap_or_default(),
                    added.created_by,
                    added.created_ms,
                ])?;
            tx.heads.forget_subscriptions();
            tx.append(&chaperone_log::RecordDraft {
                account: REGISTRY_CHAIN.to_owned(),
                time_ms: at,
                kind: "webhook-add".into(),
                actor: None,
                request: json!({
                    "id": added.id, "owner": added.owner, "url": added.url,
                    "types": added.types, "by": added.created_by,
                }),
                decision: None,
                effects: json!([{"add_webhook": {"id": added.id}}]),
                policy: None,
                input: None,
            })?;
            Ok::<_, StoreError>(())
        })
        .map_err(|e| SubscriptionError::Store(crate::flatten_write(e)))?;
        Ok(subscription)
    }

    fn remove_subscription(&self, at: i64, id: &str, by: &str) -> Result<bool, StoreError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let removed = tx
                .conn()
                .prepare_cached(
                    "UPDATE webhook_subscriptions SET removed_ms = ?2
                     WHERE id = ?1 AND removed_ms IS NULL",
                )?
                .execute(params![id, at])?;
            if removed == 0 {
                return Ok(false);
            }
            tx.conn()
                .prepare_cached(
                    "UPDATE webhook_deliveries
                     SET state = 'dead', last_error = 'subscription removed'
                     WHERE subscription = ?1 AND state = 'pending'",
                )?
                .execute(params![id])?;
            tx.conn()
                .prepare_cached("DELETE FROM webhook_queues WHERE subscription = ?1")?
                .execute(params![id])?;
            tx.heads.forget_subscriptions();
            tx.append(&chaperone_log::RecordDraft {
                account: REGISTRY_CHAIN.to_owned(),
                time_ms: at,
                kind: "webhook-remove".into(),
                actor: None,
                request: json!({"id": id, "by": by}),
                decision: None,
                effects: json!([{"remove_webhook": {"id": id}}]),
                policy: None,
                input: None,
            })?;
            Ok(true)
        })
        .map_err(crate::flatten_write)
    }

    fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY created_ms, id"
            ))?
            .query_map([], subscription_row)?
            .collect()
        })
    }

    fn subscription_status(&self, id: &str) -> Result<Option<SubscriptionStatus>, StoreError> {
        self.read(|conn| {
            let Some(subscription) = subscription(conn, id)? else {
                return Ok(None);
            };
            let mut counts = [0u64; 3];
            let mut statement = conn.prepare_cached(
                "SELECT state, count(*) FROM webhook_deliveries WHERE subscription = ?1 GROUP BY state",
            )?;
            let mut rows = statement.query(params![id])?;
            while let Some(row) = rows.next()? {
                let state: String = row.get(0)?;
                let n: i64 = row.get(1)?;
                let slot = match state.as_str() {
                    "pending" => 0,
                    "delivered" => 1,
                    _ => 2,
                };
                if let Some(count) = counts.get_mut(slot) {
                    *count = u64::try_from(n).unwrap_or(0);
                }
            }
            let last_error = conn
                .prepare_cached(
                    "SELECT id, last_attempt_ms, last_error, last_status FROM webhook_deliveries
                     WHERE subscription = ?1 AND last_error IS NOT NULL AND last_attempt_ms IS NOT NULL
                     ORDER BY last_attempt_ms DESC, id DESC LIMIT 1",
                )?
                .query_row(params![id], |r| {
                    Ok(LastError {
                        delivery: r.get(0)?,
                        at_ms: r.get(1)?,
                        error: r.get(2)?,
                        status: r
                            .get::<_, Option<i64>>(3)?
                            .and_then(|s| u16::try_from(s).ok()),
                    })
                })
                .optional()?;
            let next_attempt_ms = conn
                .prepare_cached(
                    "SELECT min(next_attempt_ms) FROM webhook_queues WHERE subscription = ?1",
                )?
                .query_row(params![id], |r| r.get::<_, Option<i64>>(0))?;
            let last_delivered_ms = conn
                .prepare_cached(
                    "SELECT max(last_attempt_ms) FROM webhook_deliveries
                     WHERE subscription = ?1 AND state = 'delivered'",
                )?
                .query_row(params![id], |r| r.get::<_, Option<i64>>(0))?;
            let [pending, delivered, dead] = counts;
            Ok(Some(SubscriptionStatus {
                subscription,
                pending,
                delivered,
                dead,
                last_error,
                next_attempt_ms,
                last_delivered_ms,
            }))
        })
    }

    fn due(
        &self,
        now_ms: i64,
        limit: usize,
        busy: &HashSet<(String, String)>,
        per_subscription: usize,
    ) -> Result<Vec<Due>, StoreError> {
        self.read(|conn| {
            let mut sending: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            for (subscription, _) in busy {
                *sending.entry(subscription.clone()).or_default() += 1;
            }
            let mut queues = conn.prepare_cached(
                "SELECT subscription, account FROM webhook_queues
                 WHERE next_attempt_ms <= ?1 ORDER BY next_attempt_ms",
            )?;
            let mut head = conn.prepare_cached(
                "SELECT d.id, s.url, d.event_type, d.seq, d.attempts, r.hash, r.time_ms, r.bytes
                 FROM webhook_deliveries d
                 JOIN webhook_subscriptions s ON s.id = d.subscription
                 JOIN audit_records r ON r.account = d.account AND r.seq = d.seq
                 WHERE d.subscription = ?1 AND d.account = ?2 AND d.state = 'pending'
                 ORDER BY d.id LIMIT 1",
            )?;
            let mut due = Vec::new();
            // The queues are stepped through only as far as needed.
            let mut rows = queues.query(params![now_ms])?;
            while due.len() < limit {
                let Some(row) = rows.next()? else {
                    break;
                };
                let subscription: String = row.get(0)?;
                let account: String = row.get(1)?;
                let count = sending.entry(subscription.clone()).or_default();
                if *count >= per_subscription
                    || busy.contains(&(subscription.clone(), account.clone()))
                {
                    continue;
                }
                let found = head
                    .query_row(params![subscription, account], |r| {
                        let hash: Vec<u8> = r.get(5)?;
                        Ok(Due {
                            id: r.get(0)?,
                            subscription: subscription.clone(),
                            url: r.get(1)?,
                            event_type: r.get(2)?,
                            account: account.clone(),
                            seq: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                            hash: hash.try_into().unwrap_or([0; 32]),
                            time_ms: r.get(6)?,
                            record: r.get(7)?,
                            attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                        })
                    })
                    .optional()?;
                if let Some(found) = found {
                    *count += 1;
                    due.push(found);
                }
            }
            due.sort_by_key(|d| d.id);
            Ok(due)
        })
    }

    fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT min(next_attempt_ms) FROM webhook_queues")?
                .query_row([], |r| r.get(0))
        })
    }

    fn record_attempt(&self, at: i64, id: i64, attempt: Attempt) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.allow_unaudited_changes();
            let conn = tx.conn();
            let pair: Option<(String, String)> = conn
                .prepare_cached(
                    "SELECT subscription, account FROM webhook_deliveries
                     WHERE id = ?1 AND state = 'pending'",
                )?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            // Settled meanwhile (its subscription removed): nothing to do.
            let Some((subscription, account)) = pair else {
                return Ok(());
            };
            match attempt {
                Attempt::Delivered { status } => {
                    conn.prepare_cached(
                        "UPDATE webhook_deliveries
                         SET state = 'delivered', attempts = attempts + 1, last_attempt_ms = ?2,
                             last_status = ?3
                         WHERE id = ?1",
                    )?
                    .execute(params![id, at, status])?;
                    advance(conn, &subscription, &account)?;
                }
                Attempt::Failed {
                    error,
                    status,
                    retry_at_ms,
                } => {
                    let state = if retry_at_ms.is_some() {
                        "pending"
                    } else {
                        "dead"
                    };
                    conn.prepare_cached(
                        "UPDATE webhook_deliveries
                         SET state = ?2, attempts = attempts + 1, last_attempt_ms = ?3,
                             last_error = ?4, last_status = ?5
                         WHERE id = ?1",
                    )?
                    .execute(params![id, state, at, error, status])?;
                    match retry_at_ms {
                        Some(retry) => {
                            conn.prepare_cached(
                                "UPDATE webhook_queues SET next_attempt_ms = ?3
                                 WHERE subscription = ?1 AND account = ?2",
                            )?
                            .execute(params![
                                subscription,
                                account,
                                retry
                            ])?;
                        }
                        None => advance(conn, &subscription, &account)?,
                    }
                }
            }
            Ok::<_, StoreError>(())
        })
        .map_err(crate::flatten_write)
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::indexing_slicing, reason = "tests")]

    use super::*;
    use chaperone_log::{DecisionRecord, RecordDraft, Verdict};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = Store::open(dir.path().join("s.db")).unwrap_or_else(|e| unreachable!("{e}"));
        (dir, store)
    }

    fn record(store: &Store, account: &str, kind: &str, verdict: Option<(Verdict, &str)>) -> u64 {
        let draft = RecordDraft {
            account: account.into(),
            time_ms: 1_000,
            kind: kind.into(),
            actor: None,
            request: json!({}),
            decision: verdict.map(|(verdict, rule)| DecisionRecord {
                verdict,
                rule: rule.into(),
                message: String::new(),
                rules: vec![],
            }),
            effects: json!([]),
            policy: None,
            input: None,
        };
        store
            .write(move |tx| tx.append(&draft))
            .unwrap_or_else(|e| unreachable!("{e}"))
            .seq
            .get()
    }

    fn subscribe(store: &Store, id: &str, owner: Owner, types: &[&str]) -> Subscription {
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        store
            .add_subscription(1, id, owner, "http://127.0.0.1:9/hook", &types, "test")
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn due(store: &Store) -> Vec<(String, String, u64, String)> {
        store
            .due(i64::MAX, 100, &HashSet::new(), usize::MAX)
            .unwrap_or_else(|e| unreachable!("{e}"))
            .into_iter()
            .map(|d| (d.subscription, d.account, d.seq, d.event_type))
            .collect()
    }

    #[test]
    fn patterns_are_checked() {
        assert!(valid_pattern("act.denied") && valid_pattern("*") && valid_pattern("expire"));
        assert!(!valid_pattern("expire.denied") && !valid_pattern("acts") && !valid_pattern(""));
        let bad = check_subscription("ftp://x", &["act".into()]).map(|_| ());
        assert!(matches!(bad, Err(SubscriptionError::BadUrl(_))), "{bad:?}");
        assert!(matches!(
            check_subscription("https://", &["act".into()]),
            Err(SubscriptionError::BadUrl(_))
        ));
        assert!(matches!(
            check_subscription("https://x.test/h", &[]),
            Err(SubscriptionError::NoTypes)
        ));
        let unknown = check_subscription("https://x.test/h", &["grants".into()]).map(|_| ());
        assert!(
            unknown
                .as_ref()
                .is_err_and(|e| e.to_string().contains("`grants`")),
            "{unknown:?}"
        );
        assert_eq!(
            check_subscription(
                "https://x.test/h",
                &["revoke".into(), "grant".into(), "grant".into()]
            )
            .ok(),
            Some(vec!["grant".to_owned(), "revoke".to_owned()])
        );
    }

    /// A record of a subscribed type gets its delivery in its own
    /// transaction; others get none; a verdict suffix filters.
    #[test]
    fn records_of_subscribed_types_get_deliveries() {
        let (_dir, store) = store();
        subscribe(
            &store,
            "wh_1",
            Owner::Customer("acme".into()),
            &["grant", "act.denied", "policy_error"],
        );
        let grant = record(&store, "acme", "grant", Some((Verdict::Allow, "CEL-WHO")));
        record(&store, "acme", "act", Some((Verdict::Allow, "CEL-ACTION")));
        let denied = record(&store, "acme", "act", Some((Verdict::Deny, "CEL-PERMS")));
        let failed = record(
            &store,
            "acme",
            "modify",
            Some((Verdict::Deny, "HOST-POLICY-ERROR")),
        );
        record(&store, "acme", "sync", None);
        record(&store, "globex", "grant", Some((Verdict::Allow, "CEL-WHO")));
        // Only the oldest of the queue is due.
        assert_eq!(
            due(&store),
            [("wh_1".into(), "acme".into(), grant, "grant".into())]
        );
        let mut seen = Vec::new();
        while let Some(first) = store
            .due(i64::MAX, 10, &HashSet::new(), usize::MAX)
            .unwrap_or_else(|e| unreachable!("{e}"))
            .first()
            .cloned()
        {
            seen.push((first.seq, first.event_type.clone()));
            store
                .record_attempt(2, first.id, Attempt::Delivered { status: 200 })
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        assert_eq!(
            seen,
            [
                (grant, "grant".into()),
                (denied, "act".into()),
                (failed, "policy_error".into())
            ]
        );
        let status = store
            .subscription_status("wh_1")
            .unwrap_or_else(|e| unreachable!("{e}"))
            .unwrap_or_else(|| unreachable!("no status"));
        assert_eq!((status.pending, status.delivered, status.dead), (0, 3, 0));
        assert_eq!(status.next_attempt_ms, None);
        assert_eq!(
            store.next_due_ms().unwrap_or_else(|e| unreachable!("{e}")),
            None
        );
    }

    /// A failure waits for its retry, and the queue behind it waits too;
    /// a delivery given up is dead and the next goes on; the last error is
    /// kept.
    #[test]
    fn failures_retry_in_order_then_die() {
        let (_dir, store) = store();
        subscribe(&store, "wh_1", Owner::Customer("acme".into()), &["*"]);
        subscribe(&store, "wh_2", Owner::Customer("acme".into()), &["revoke"]);
        let first = record(&store, "acme", "grant", Some((Verdict::Allow, "R")));
        let second = record(&store, "acme", "revoke", Some((Verdict::Allow, "R")));
        let pending = store
            .due(100, 10, &HashSet::new(), usize::MAX)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(pending.len(), 2, "{pending:?}");
        let head = pending[0].clone();
        assert_eq!((head.subscription.as_str(), head.seq), ("wh_1", first));
        // Busy pairs are skipped.
        let busy = HashSet::from([("wh_1".to_owned(), "acme".to_owned())]);
        let others = store
            .due(100, 10, &busy, usize::MAX)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(others.len(), 1);
        assert_eq!(
            (others[0].subscription.as_str(), others[0].seq),
            ("wh_2", second)
        );
        let failed = |retry| Attempt::Failed {
            error: "HTTP 503".into(),
            status: Some(503),
            retry_at_ms: retry,
        };
        store
            .record_attempt(100, head.id, failed(Some(5_000)))
            .unwrap_or_else(|e| unreachable!("{e}"));
        // wh_1's queue waits for the retry; wh_2's does not.
        let now = store
            .due(200, 10, &HashSet::new(), usize::MAX)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            now.iter()
                .map(|d| d.subscription.as_str())
                .collect::<Vec<_>>(),
            ["wh_2"]
        );
        assert_eq!(
            store.next_due_ms().unwrap_or_else(|e| unreachable!("{e}")),
            Some(0)
        );
        let later = store
            .due(5_000, 10, &HashSet::new(), usize::MAX)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let retried = later
            .iter()
            .find(|d| d.subscription == "wh_1")
            .unwrap_or_else(|| unreachable!("no retry"));
        assert_eq!((retried.seq, retried.attempts), (first, 1));
        store
            .record_attempt(5_000, retried.id, failed(None))
            .unwrap_or_else(|e| unreachable!("{e}"));
        let next = store
            .due(5_001, 10, &busy_of("wh_2"), usize::MAX)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(next.iter().map(|d| d.seq).collect::<Vec<_>>(), [second]);
        let status = store
            .subscription_status("wh_1")
            .unwrap_or_else(|e| unreachable!("{e}"))
            .unwrap_or_else(|| unreachable!("no status"));
        assert_eq!((status.pending, status.delivered, status.dead), (1, 0, 1));
        let last = status
            .last_error
            .unwrap_or_else(|| unreachable!("no error"));
        assert_eq!(
            (last.error.as_str(), last.status, last.at_ms),
            ("HTTP 503", Some(503), 5_000)
        );
        // The record's exact bytes and hash come with the delivery.
        let stored = store
            .records("acme")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let revoke = stored
            .iter()
            .find(|r| r.seq.get() == second)
            .unwrap_or_else(|| unreachable!());
        assert_eq!(next[0].record, revoke.bytes);
        assert_eq!(&next[0].hash, revoke.hash.as_bytes());
    }

    fn busy_of(subscription: &str) -> HashSet<(String, String)> {
        HashSet::from([(subscription.to_owned(), "acme".to_owned())])
    }

    /// No more of a subscription is handed out than its room: its limit
    /// less its pairs being sent.
    #[test]
    fn a_subscription_gets_no_more_than_its_room() {
        let (_dir, store) = store();
        subscribe(&store, "wh_1", Owner::Customer("acme".into()), &["*"]);
        subscribe(&store, "wh_2", Owner::Customer("globex".into()), &["*"]);
        for account in ["acme", "acme", "globex"] {
            record(&store, account, "grant", Some((Verdict::Allow, "R")));
        }
        let none = HashSet::new();
        let got = store
            .due(10, 10, &none, 1)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(got.len(), 2, "{got:?}");
        let busy = busy_of("wh_1");
        let got = store
            .due(10, 10, &busy, 1)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            got.iter()
                .map(|d| d.subscription.as_str())
                .collect::<Vec<_>>(),
            ["wh_2"]
        );
        let got = store
            .due(10, 1, &none, 5)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(got.len(), 1);
    }

    /// A removed subscription gets nothing more; its pending deliveries are
    /// dead; both changes are records of the registry chain; the tables
    /// refuse edits that would rewrite what happened.
    #[test]
    fn removal_is_recorded_and_history_is_kept() {
        let (_dir, store) = store();
        subscribe(&store, "wh_1", Owner::Customer("acme".into()), &["grant"]);
        record(&store, "acme", "grant", Some((Verdict::Allow, "R")));
        assert!(
            store
                .remove_subscription(2, "wh_1", "test")
                .unwrap_or_else(|e| unreachable!("{e}"))
        );
        assert!(
            !store
                .remove_subscription(3, "wh_1", "test")
                .unwrap_or_else(|e| unreachable!("{e}"))
        );
        record(&store, "acme", "grant", Some((Verdict::Allow, "R")));
        assert!(due(&store).is_empty());
        let status = store
            .subscription_status("wh_1")
            .unwrap_or_else(|e| unreachable!("{e}"))
            .unwrap_or_else(|| unreachable!("no status"));
        assert_eq!((status.pending, status.dead), (0, 1));
        assert_eq!(status.subscription.removed_ms, Some(2));
        let kinds: Vec<String> = store
            .records(REGISTRY_CHAIN)
            .unwrap_or_else(|e| unreachable!("{e}"))
            .into_iter()
            .map(|r| r.record.kind)
            .collect();
        assert_eq!(kinds, ["webhook-add", "webhook-remove"]);
        let tamper = store.write(|tx| {
            tx.allow_unaudited_changes();
            tx.conn()
                .execute("UPDATE webhook_deliveries SET state = 'pending'", [])
                .map_err(StoreError::from)
        });
        assert!(tamper.is_err(), "a settled delivery was changed");
        let tamper = store.write(|tx| {
            tx.allow_unaudited_changes();
            tx.conn()
                .execute(
                    "UPDATE webhook_subscriptions SET url = 'http://evil.test/'",
                    [],
                )
                .map_err(StoreError::from)
        });
        assert!(tamper.is_err(), "a subscription's URL was changed");
    }

    /// Module activations reach the vendor's subscriptions that want them.
    #[test]
    fn a_module_activation_reaches_its_vendor() {
        let (_dir, store) = store();
        subscribe(
            &store,
            "wh_v",
            Owner::Vendor("rollout".into()),
            &["module.activated"],
        );
        subscribe(&store, "wh_o", Owner::Vendor("other".into()), &["*"]);
        let module = crate::storage::KeptModule {
            digest: "ab".repeat(32),
            vendor: "rollout".into(),
            version: "1".into(),
            bytes: std::sync::Arc::from(vec![0u8, 97, 115, 109]),
        };
        use crate::registry::Registry as _;
        let installed = store
            .install_module(5, "rollout", module, false, "test")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(installed.module.active);
        assert_eq!(
            due(&store),
            [(
                "wh_v".into(),
                REGISTRY_CHAIN.into(),
                installed.seq,
                "module.activated".into()
            )]
        );
    }
}
