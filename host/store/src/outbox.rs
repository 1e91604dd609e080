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

use serde::Serialize;

use crate::StoreError;

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
    /// Adds a subscription at `at`, recording it in the registry chain.
    fn add_subscription(
        &self,
        at: i64,
        owner: Owner,
        url: &str,
        types: &[String],
        by: &str,
    ) -> Result<Subscription, StoreError>;
    /// Removes subscription `id` at `at`, recording it: its pending
    /// deliveries are dropped (marked dead, "subscription removed"). `false`:
    /// no such live subscription.
    fn remove_subscription(&self, at: i64, id: &str, by: &str) -> Result<bool, StoreError>;
    /// Every subscription (removed ones too), oldest first.
    fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;
    /// The counts, last error and next try of subscription `id`.
    fn subscription_status(&self, id: &str) -> Result<Option<SubscriptionStatus>, StoreError>;
    /// Up to `limit` deliveries due at `now_ms`, oldest first: for each
    /// (subscription, account) only its oldest pending delivery, and none
    /// of the pairs in `busy` (being sent).
    fn due(
        &self,
        now_ms: i64,
        limit: usize,
        busy: &std::collections::HashSet<(String, String)>,
    ) -> Result<Vec<Due>, StoreError>;
    /// The earliest `next_attempt_ms` of any pending delivery, if any.
    fn next_due_ms(&self) -> Result<Option<i64>, StoreError>;
    /// Records what attempt `attempts + 1` of delivery `id` came to at
    /// `at`.
    fn record_attempt(&self, at: i64, id: i64, attempt: Attempt) -> Result<(), StoreError>;
}
