//! The delivery worker: a task on the tokio runtime that takes due
//! deliveries from the outbox, sends them, and records what each attempt
//! came to.
//!
//! - **At least once.** A delivery is done only once its 2xx is recorded;
//!   whatever stops the worker before that (a crash, a restart, a store that
//!   cannot record) leaves it pending, and it is sent again.
//! - **In order per subscription and account.** The store hands out only
//!   the oldest pending delivery of each (subscription, account), and none
//!   of a pair being sent (`busy`): the next event of an account goes out
//!   once the one before it is delivered or dead.
//! - **No endpoint delays another.** At most
//!   [`WebhookOptions::per_endpoint_concurrency`] requests of a subscription
//!   are in flight, and the loop never waits for one: a subscription at its
//!   limit is passed over until one of its requests ends.
//! - **Nothing delays decisions.** The worker only reads the outbox and
//!   records attempts; decisions never wait for it.
//!
//! The store is SQLite, so its calls block: they run on tokio's blocking
//! pool. A store error is logged and the call tried again after a pause
//! (doubling, up to a minute).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chaperone_log::keys::Signer;
use chaperone_store::StoreError;
use chaperone_store::outbox::{Attempt, Due, Outbox};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::send::{Addresses, ClientError, Sender, retry_delay};
use super::{event_body, event_id, sign};

/// The most deliveries asked of the store at once.
const MAX_BATCH: usize = 256;

/// How many times an attempt's outcome is offered to the store.
const RECORD_TRIES: u32 = 5;

/// The longest pause after store errors.
const MAX_STORE_PAUSE: Duration = Duration::from_secs(60);

/// How the worker delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// Attempts before a delivery is given up (dead). Default 10.
    pub max_attempts: u32,
    /// Requests of one subscription in flight at once, at most. Default 4.
    pub per_endpoint_concurrency: usize,
    /// Requests in flight at once, at most. Default 64.
    pub total_concurrency: usize,
    /// How long one attempt may take, connecting included. Default 10 s.
    pub request_timeout: Duration,
    /// The backoff's first ceiling (see [`retry_delay`]). Default 1 s.
    pub retry_base: Duration,
    /// The backoff's largest ceiling. Default 10 minutes.
    pub retry_cap: Duration,
    /// How often the outbox is looked at when nothing wakes the worker
    /// (deliveries written by another process). Default 250 ms.
    pub poll_interval: Duration,
    /// The first pause after a store error (then doubling, up to a
    /// minute). Default 1 s.
    pub store_retry: Duration,
    /// Which endpoint addresses may be sent to. Default
    /// [`Addresses::PublicOnly`]: a subscriber cannot make the server
    /// probe its own network.
    pub addresses: Addresses,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            max_attempts: 10,
            per_endpoint_concurrency: 4,
            total_concurrency: 64,
            request_timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(600),
            poll_interval: Duration::from_millis(250),
            store_retry: Duration::from_secs(1),
            addresses: Addresses::PublicOnly,
        }
    }
}

impl WebhookOptions {
    fn check(&self) -> Result<(), WorkerError> {
        let problem = if self.max_attempts == 0 {
            "max_attempts must be at least 1"
        } else if self.per_endpoint_concurrency == 0 {
            "per_endpoint_concurrency must be at least 1"
        } else if self.total_concurrency == 0 {
            "total_concurrency must be at least 1"
        } else if self.request_timeout.is_zero() {
            "request_timeout must be more than zero"
        } else if self.poll_interval.is_zero() {
            "poll_interval must be more than zero"
        } else if self.store_retry.is_zero() {
            "store_retry must be more than zero"
        } else if self.retry_cap < self.retry_base {
            "retry_cap must be at least retry_base"
        } else {
            return Ok(());
        };
        Err(WorkerError::Options(problem.into()))
    }
}

/// Why the worker could not start, or did not end well.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// [`spawn`] was called outside a tokio runtime.
    #[error("the webhook worker must be started on a tokio runtime")]
    NoRuntime,
    /// The options make no sense.
    #[error("invalid webhook options: {0}")]
    Options(String),
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The worker's task panicked or was cancelled.
    #[error("the webhook worker failed: {0}")]
    Failed(#[source] JoinError),
}

/// Wakes the worker: call it after a commit that wrote deliveries, so that
/// they go out at once instead of at the next poll. Cheap to clone; waking
/// a worker that has stopped does nothing.
#[derive(Debug, Clone)]
pub struct WakeHandle(Arc<Notify>);

impl WakeHandle {
    /// Wakes the worker (wakes while it is busy are not lost: it looks
    /// again once it is done).
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    wake: WakeHandle,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Wakes the worker (see [`WakeHandle`]).
    pub fn wake(&self) {
        self.wake.wake();
    }

    /// A handle that wakes the worker, to keep where writes are committed.
    pub fn waker(&self) -> WakeHandle {
        self.wake.clone()
    }

    /// Waits for the worker to end: after its shutdown future resolved and
    /// the requests in flight then ended (each within the request timeout).
    pub async fn join(self) -> Result<(), WorkerError> {
        self.task.await.map_err(WorkerError::Failed)
    }
}

/// Starts the delivery worker on the current tokio runtime: it delivers the
/// outbox's due deliveries, signed by `signer`, until `shutdown` resolves;
/// then it takes no new work, lets the requests in flight end, and stops.
pub fn spawn(
    outbox: Arc<dyn Outbox>,
    signer: Arc<Signer>,
    options: WebhookOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkerHandle, WorkerError> {
    spawn_woken_by(outbox, signer, options, Arc::new(Notify::new()), shutdown)
}

/// [`spawn`], woken by `wake`: a `Notify` the write path already pokes
/// after each commit that may have made deliveries (the host's), so that
/// nothing has to pass the wake on.
pub fn spawn_woken_by(
    outbox: Arc<dyn Outbox>,
    signer: Arc<Signer>,
    options: WebhookOptions,
    wake: Arc<Notify>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkerHandle, WorkerError> {
    options.check()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| WorkerError::NoRuntime)?;
    let sender = Sender::new(options.request_timeout, options.addresses)?;
    let wake = WakeHandle(wake);
    let (stop, stopping) = watch::channel(false);
    let worker = Worker {
        shared: Arc::new(Shared {
            outbox,
            signer,
            sender,
            options,
            stopping,
        }),
        wake: Arc::clone(&wake.0),
        stop,
        tasks: JoinSet::new(),
        retries: BTreeSet::new(),
        pairs: HashMap::new(),
        per_subscription: HashMap::new(),
        deferred: HashMap::new(),
    };
    let task = runtime.spawn(worker.run(shutdown));
    Ok(WorkerHandle { wake, task })
}

/// What the loop and the deliveries share.
struct Shared {
    outbox: Arc<dyn Outbox>,
    signer: Arc<Signer>,
    sender: Sender,
    options: WebhookOptions,
    /// Becomes `true` when the worker stops.
    stopping: watch::Receiver<bool>,
}

/// A (subscription, account) pair.
type Pair = (String, String);

/// The loop's state. Only the loop changes it: deliveries are tasks of its
/// [`JoinSet`], and their ends are seen there.
struct Worker {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    /// The delivery tasks; each ends with the retry time it recorded.
    tasks: JoinSet<Option<i64>>,
    /// The retry times this worker recorded and has not reached yet (ms
    /// since the epoch): the loop wakes for them. The store's
    /// `next_due_ms` covers the rest (deliveries written, or retries
    /// recorded, by an earlier run or another process).
    retries: BTreeSet<i64>,
    /// The pair of each delivery task, by task id: the pairs being sent.
    pairs: HashMap<tokio::task::Id, Pair>,
    /// Requests in flight per subscription.
    per_subscription: HashMap<String, usize>,
    /// Accounts with a delivery due but passed over because their
    /// subscription was at its limit, by subscription: passed to the store
    /// as busy (so that it hands out other work), until one of the
    /// subscription's requests ends.
    deferred: HashMap<String, HashSet<String>>,
}

impl Worker {
    async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut pause: Option<Duration> = None;
        let mut paused_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let deadline = match paused_until.filter(|until| *until > now) {
                Some(until) => until,
                None => match self.fill().await {
                    Ok(deadline) => {
                        pause = None;
                        paused_until = None;
                        deadline
                    }
                    Err(error) => {
                        let length = pause.map_or(self.shared.options.store_retry, |p| {
                            p.saturating_mul(2).min(MAX_STORE_PAUSE)
                        });
                        tracing::warn!(
                            %error,
                            retry_in_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX),
                            "webhook delivery cannot read the outbox"
                        );
                        pause = Some(length);
                        let until = after(length);
                        paused_until = Some(until);
                        until
                    }
                },
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(ended) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.ended(ended);
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
        let _ = self.stop.send(true);
        if !self.tasks.is_empty() {
            tracing::info!(
                in_flight = self.tasks.len(),
                "webhook delivery stopping: waiting for the requests in flight"
            );
        }
        while let Some(ended) = self.tasks.join_next_with_id().await {
            self.ended(ended);
        }
        tracing::info!("webhook delivery stopped");
    }

    /// Starts every due delivery there is room for; then when to look
    /// again: when the next delivery is due, or after the poll interval.
    async fn fill(&mut self) -> Result<Instant, CallError> {
        let shared = Arc::clone(&self.shared);
        let options = &shared.options;
        let mut asked_at = crate::instant::now();
        loop {
            let room = options.total_concurrency.saturating_sub(self.pairs.len());
            if room == 0 {
                break;
            }
            // The pairs being sent: the store hands out no other delivery
            // of theirs, and no more of a subscription than its limit lets
            // start.
            let busy: HashSet<Pair> = self.pairs.values().cloned().collect();
            let outbox = Arc::clone(&self.shared.outbox);
            let limit = room.min(MAX_BATCH);
            asked_at = crate::instant::now();
            let per_subscription = options.per_endpoint_concurrency;
            let batch =
                blocking(move || outbox.due(asked_at, limit, &busy, per_subscription)).await?;
            // Each round starts a delivery or passes a pair over (which the
            // next round then excludes), or ends: no spinning.
            let mut progressed = false;
            for due in batch {
                let pair = (due.subscription.clone(), due.account.clone());
                let deferred = self
                    .deferred
                    .get(&pair.0)
                    .is_some_and(|accounts| accounts.contains(&pair.1));
                if deferred || self.pairs.values().any(|p| *p == pair) {
                    // Busy: a store that handed it out anyway is not obeyed.
                    continue;
                }
                if self.pairs.len() >= options.total_concurrency {
                    break;
                }
                let sending = self.per_subscription.get(&pair.0).copied().unwrap_or(0);
                if sending >= options.per_endpoint_concurrency {
                    self.deferred.entry(pair.0).or_default().insert(pair.1);
                } else {
                    self.start(due, pair);
                }
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        let outbox = Arc::clone(&self.shared.outbox);
        let next = blocking(move || outbox.next_due_ms()).await?;
        // Times up to `asked_at` were asked about: what was due then and not
        // handed out is being sent, passed over (an end brings the loop
        // back to it), or waits behind an older delivery of its pair (whose
        // own time is among the retries, or else found by polling). A time
        // after it is worth waking for, even if it has come meanwhile.
        self.retries = self.retries.split_off(&asked_at.saturating_add(1));
        let wake_at = next
            .filter(|at| *at > asked_at)
            .into_iter()
            .chain(self.retries.first().copied())
            .min();
        let now_ms = crate::instant::now();
        let wait = wake_at.map_or(options.poll_interval, |at| {
            Duration::from_millis(u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0))
        });
        Ok(after(wait.min(options.poll_interval)))
    }

    fn start(&mut self, due: Due, pair: Pair) {
        *self.per_subscription.entry(pair.0.clone()).or_default() += 1;
        let shared = Arc::clone(&self.shared);
        let task = self.tasks.spawn(deliver(shared, due));
        self.pairs.insert(task.id(), pair);
    }

    /// A delivery task ended: its pair is free, and so is a place of its
    /// subscription.
    fn ended(&mut self, ended: Result<(tokio::task::Id, Option<i64>), JoinError>) {
        let id = match ended {
            Ok((id, retry_at)) => {
                self.retries.extend(retry_at);
                id
            }
            Err(error) => {
                tracing::error!(%error, "a webhook delivery task failed");
                error.id()
            }
        };
        let Some((subscription, _account)) = self.pairs.remove(&id) else {
            return;
        };
        self.deferred.remove(&subscription);
        if let Some(sending) = self.per_subscription.get_mut(&subscription) {
            *sending = sending.saturating_sub(1);
            if *sending == 0 {
                self.per_subscription.remove(&subscription);
            }
        }
    }
}

/// One attempt of one delivery: sign, send, record. Its end: the retry
/// time recorded, if one was.
async fn deliver(shared: Arc<Shared>, due: Due) -> Option<i64> {
    let attempt = u64::from(due.attempts) + 1;
    let span = tracing::info_span!(
        "webhook.deliver",
        subscription = %due.subscription,
        account = %due.account,
        seq = due.seq,
        r#type = %due.event_type,
        attempt,
    );
    attempt_and_record(shared, due).instrument(span).await
}

async fn attempt_and_record(shared: Arc<Shared>, due: Due) -> Option<i64> {
    let options = &shared.options;
    let body = event_body(&due);
    let signed = sign::sign(
        &shared.signer,
        crate::instant::now().div_euclid(1000),
        &body,
    );
    let started = Instant::now();
    let result = shared
        .sender
        .send(&due.url, &event_id(&due), &signed, body)
        .await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let at = crate::instant::now();
    let outcome = match result {
        Ok(status) => {
            tracing::debug!(status, latency_ms, "webhook delivered");
            Attempt::Delivered { status }
        }
        Err(failure) => {
            let last = failure.permanent || due.attempts.saturating_add(1) >= options.max_attempts;
            let retry_at_ms = if last {
                tracing::warn!(
                    error = %failure.error,
                    status = failure.status,
                    latency_ms,
                    "webhook delivery failed; giving it up"
                );
                None
            } else {
                let delay = retry_delay(
                    due.attempts,
                    options.retry_base,
                    options.retry_cap,
                    &mut rand_core::OsRng,
                );
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                tracing::warn!(
                    error = %failure.error,
                    status = failure.status,
                    latency_ms,
                    retry_in_ms = delay_ms,
                    "webhook delivery failed; will retry"
                );
                Some(at.saturating_add(delay_ms))
            };
            Attempt::Failed {
                error: failure.error,
                status: failure.status,
                retry_at_ms,
            }
        }
    };
    let retry_at = match &outcome {
        Attempt::Failed { retry_at_ms, .. } => *retry_at_ms,
        Attempt::Delivered { .. } => None,
    };
    record(&shared, at, due.id, outcome)
        .await
        .then_some(retry_at)
        .flatten()
}

/// Records an attempt, trying again after store errors (up to
/// [`RECORD_TRIES`] tries, while the worker runs): the pair stays busy
/// meanwhile, so the delivery is not sent again while its outcome is known.
/// Unrecorded, it stays pending and is sent again later (at least once); a
/// store that refuses one attempt for good holds no place for long.
/// Whether it was recorded.
async fn record(shared: &Shared, at: i64, id: i64, attempt: Attempt) -> bool {
    let mut stopping = shared.stopping.clone();
    let mut pause = shared.options.store_retry;
    for tried in 1.. {
        let outbox = Arc::clone(&shared.outbox);
        let this = attempt.clone();
        let error = match blocking(move || outbox.record_attempt(at, id, this)).await {
            Ok(()) => return true,
            Err(error) => error,
        };
        if *stopping.borrow() || tried >= RECORD_TRIES {
            tracing::warn!(
                %error,
                "cannot record the webhook attempt; giving up, so it will be sent again"
            );
            return false;
        }
        tracing::warn!(
            %error,
            retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "cannot record the webhook attempt"
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stopping.changed() => {}
        }
        pause = pause.saturating_mul(2).min(MAX_STORE_PAUSE);
    }
    false
}

/// The instant `wait` from now (at most a day: any option's value is safe).
fn after(wait: Duration) -> Instant {
    Instant::now() + wait.min(Duration::from_secs(86_400))
}

/// A store call that failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store call panicked")]
    Panicked,
}

/// Runs a blocking store call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CallError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(CallError::Store),
        Err(_) => Err(CallError::Panicked),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

    use axum::http::HeaderMap;
    use chaperone_store::outbox::{
        DeliveryState, LastError, Owner, Subscription, SubscriptionError, SubscriptionStatus,
    };
    use serde_json::Value;
    use serde_json::value::RawValue;

    use super::*;
    use crate::webhook::sign::{HEADER_EVENT_ID, ReceivedHeaders, verify};

    // --- An outbox in memory ---------------------------------------------

    /// A delivery of the fake outbox, and every attempt recorded for it.
    #[derive(Debug, Clone)]
    struct Row {
        due: Due,
        state: DeliveryState,
        next_ms: i64,
        attempts: Vec<(i64, Attempt)>,
    }

    /// The [`Outbox`] contract in memory, with store failures on demand.
    #[derive(Default)]
    struct Fake {
        rows: Mutex<Vec<Row>>,
        subscriptions: Mutex<Vec<Subscription>>,
        /// `due` calls to fail from now on.
        fail_due: AtomicU32,
        /// `record_attempt` calls to fail from now on.
        fail_record: AtomicU32,
        /// When each `due` call came, and whether it failed.
        due_calls: Mutex<Vec<(Instant, bool)>>,
    }

    fn failed(what: &str) -> StoreError {
        StoreError::Aborted(format!("the fake store fails `{what}` on purpose"))
    }

    fn take_one(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    impl Fake {
        fn subscribe(&self, url: &str) -> String {
            let id = format!(
                "wh_{:016x}",
                self.subscriptions
                    .lock()
                    .unwrap_or_else(|e| unreachable!("{e}"))
                    .len()
                    + 1
            );
            self.add_subscription(
                1,
                &id,
                Owner::Vendor("v".into()),
                url,
                &["*".to_owned()],
                "test",
            )
            .map(|s| s.id)
            .unwrap_or_else(|e| unreachable!("{e}"))
        }

        /// Adds a `grant` event of `account`'s record `seq` for
        /// `subscription`, due at once; its delivery id.
        fn push(&self, subscription: &str, account: &str, seq: u64) -> i64 {
            self.push_at(subscription, account, seq, 0)
        }

        /// [`Fake::push`], due at `next_ms`.
        fn push_at(&self, subscription: &str, account: &str, seq: u64, next_ms: i64) -> i64 {
            let url = self
                .subscriptions
                .lock()
                .unwrap_or_else(|e| unreachable!("{e}"))
                .iter()
                .find(|s| s.id == subscription)
                .map(|s| s.url.clone())
                .unwrap_or_default();
            let record = format!(
                r#"{{"v":1,"account":"{account}","seq":{seq},"time_ms":1767258000000,"kind":"grant","x":1.50}}"#
            )
            .into_bytes();
            let mut rows = self.rows.lock().unwrap_or_else(|e| unreachable!("{e}"));
            let id = i64::try_from(rows.len()).unwrap_or_default() + 1;
            rows.push(Row {
                due: Due {
                    id,
                    subscription: subscription.to_owned(),
                    url,
                    event_type: "grant".into(),
                    account: account.to_owned(),
                    seq,
                    hash: *blake3::hash(&record).as_bytes(),
                    time_ms: 1_767_258_000_000,
                    record,
                    attempts: 0,
                },
                state: DeliveryState::Pending,
                next_ms,
                attempts: Vec::new(),
            });
            id
        }

        fn rows(&self) -> Vec<Row> {
            self.rows
                .lock()
                .unwrap_or_else(|e| unreachable!("{e}"))
                .clone()
        }

        fn row(&self, id: i64) -> Row {
            self.rows()
                .into_iter()
                .find(|r| r.due.id == id)
                .unwrap_or_else(|| unreachable!("no delivery {id}"))
        }

        fn settled(&self, id: i64) -> bool {
            self.row(id).state != DeliveryState::Pending
        }
    }

    impl Outbox for Fake {
        fn add_subscription(
            &self,
            at: i64,
            id: &str,
            owner: Owner,
            url: &str,
            types: &[String],
            by: &str,
        ) -> Result<Subscription, SubscriptionError> {
            let mut subscriptions = self
                .subscriptions
                .lock()
                .unwrap_or_else(|e| unreachable!("{e}"));
            let subscription = Subscription {
                id: id.to_owned(),
                owner,
                url: url.to_owned(),
                types: types.to_vec(),
                created_by: by.to_owned(),
                created_ms: at,
                removed_ms: None,
            };
            subscriptions.push(subscription.clone());
            Ok(subscription)
        }

        fn remove_subscription(&self, at: i64, id: &str, _by: &str) -> Result<bool, StoreError> {
            let mut subscriptions = self
                .subscriptions
                .lock()
                .unwrap_or_else(|e| unreachable!("{e}"));
            let Some(subscription) = subscriptions
                .iter_mut()
                .find(|s| s.id == id && s.removed_ms.is_none())
            else {
                return Ok(false);
            };
            subscription.removed_ms = Some(at);
            let mut rows = self.rows.lock().unwrap_or_else(|e| unreachable!("{e}"));
            for row in rows
                .iter_mut()
                .filter(|r| r.due.subscription == id && r.state == DeliveryState::Pending)
            {
                row.state = DeliveryState::Dead;
                row.attempts.push((
                    at,
                    Attempt::Failed {
                        error: "subscription removed".into(),
                        status: None,
                        retry_at_ms: None,
                    },
                ));
            }
            Ok(true)
        }

        fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
            Ok(self
                .subscriptions
                .lock()
                .unwrap_or_else(|e| unreachable!("{e}"))
                .clone())
        }

        fn subscription_status(&self, id: &str) -> Result<Option<SubscriptionStatus>, StoreError> {
            let Some(subscription) = self.subscriptions()?.into_iter().find(|s| s.id == id) else {
                return Ok(None);
            };
            let rows: Vec<Row> = self
                .rows()
                .into_iter()
                .filter(|r| r.due.subscription == id)
                .collect();
            let count = |state| {
                u64::try_from(rows.iter().filter(|r| r.state == state).count()).unwrap_or(0)
            };
            let mut last_error = None;
            let mut last_delivered_ms = None;
            for row in &rows {
                for (at, attempt) in &row.attempts {
                    match attempt {
                        Attempt::Delivered { .. } => {
                            last_delivered_ms = last_delivered_ms.max(Some(*at));
                        }
                        Attempt::Failed { error, status, .. } => {
                            if last_error
                                .as_ref()
                                .is_none_or(|e: &LastError| e.at_ms <= *at)
                            {
                                last_error = Some(LastError {
                                    delivery: row.due.id,
                                    at_ms: *at,
                                    error: error.clone(),
                                    status: *status,
                                });
                            }
                        }
                    }
                }
            }
            Ok(Some(SubscriptionStatus {
                subscription,
                pending: count(DeliveryState::Pending),
                delivered: count(DeliveryState::Delivered),
                dead: count(DeliveryState::Dead),
                last_error,
                next_attempt_ms: rows
                    .iter()
                    .filter(|r| r.state == DeliveryState::Pending)
                    .map(|r| r.next_ms)
                    .min(),
                last_delivered_ms,
            }))
        }

        fn due(
            &self,
            now_ms: i64,
            limit: usize,
            busy: &HashSet<(String, String)>,
            per_subscription: usize,
        ) -> Result<Vec<Due>, StoreError> {
            let rows = self.rows.lock().unwrap_or_else(|e| unreachable!("{e}"));
            let fail = take_one(&self.fail_due);
            self.due_calls
                .lock()
                .unwrap_or_else(|e| unreachable!("{e}"))
                .push((Instant::now(), fail));
            if fail {
                return Err(failed("due"));
            }
            // Each pair's oldest pending delivery, if it is due and the
            // pair is not busy, no more of a subscription than its room;
            // oldest first; the limit after the rest.
            let mut seen = HashSet::new();
            let mut sending: HashMap<String, usize> = HashMap::new();
            for (subscription, _) in busy {
                *sending.entry(subscription.clone()).or_default() += 1;
            }
            Ok(rows
                .iter()
                .filter(|r| r.state == DeliveryState::Pending)
                .filter(|r| seen.insert((r.due.subscription.clone(), r.due.account.clone())))
                .filter(|r| {
                    r.next_ms <= now_ms
                        && !busy.contains(&(r.due.subscription.clone(), r.due.account.clone()))
                })
                .filter(|r| {
                    let count = sending.entry(r.due.subscription.clone()).or_default();
                    *count += 1;
                    *count <= per_subscription
                })
                .take(limit)
                .map(|r| r.due.clone())
                .collect())
        }

        fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
            Ok(self
                .rows()
                .iter()
                .filter(|r| r.state == DeliveryState::Pending)
                .map(|r| r.next_ms)
                .min())
        }

        fn record_attempt(&self, at: i64, id: i64, attempt: Attempt) -> Result<(), StoreError> {
            if take_one(&self.fail_record) {
                return Err(failed("record_attempt"));
            }
            let mut rows = self.rows.lock().unwrap_or_else(|e| unreachable!("{e}"));
            let row = rows
                .iter_mut()
                .find(|r| r.due.id == id)
                .ok_or_else(|| StoreError::Aborted(format!("no delivery {id}")))?;
            if row.state != DeliveryState::Pending {
                return Err(StoreError::Aborted(format!("delivery {id} is settled")));
            }
            row.due.attempts += 1;
            match &attempt {
                Attempt::Delivered { .. } => row.state = DeliveryState::Delivered,
                Attempt::Failed {
                    retry_at_ms: Some(t),
                    ..
                } => row.next_ms = *t,
                Attempt::Failed {
                    retry_at_ms: None, ..
                } => row.state = DeliveryState::Dead,
            }
            row.attempts.push((at, attempt));
            Ok(())
        }
    }

    // --- Receivers on loopback -------------------------------------------

    /// A request a receiver got.
    #[derive(Debug, Clone)]
    struct Request {
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Request {
        fn event_id(&self) -> String {
            self.header(HEADER_EVENT_ID)
        }

        fn header(&self, name: &str) -> String {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }
    }

    /// How a receiver answers a request.
    #[derive(Debug, Clone, Copy)]
    enum Reply {
        Status(u16),
        /// No answer until the receiver is released, then 200.
        Hang,
    }

    type Script = Box<dyn Fn(usize, &Request) -> Reply + Send + Sync>;

    struct ReceiverState {
        script: Script,
        requests: Mutex<Vec<Request>>,
        open: AtomicUsize,
        peak: AtomicUsize,
        release: watch::Receiver<bool>,
    }

    /// An HTTP server on 127.0.0.1 that logs every request and answers by
    /// its script (given the request's index and the request).
    struct Receiver {
        url: String,
        state: Arc<ReceiverState>,
        release: watch::Sender<bool>,
    }

    impl Receiver {
        async fn start(script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Self {
            let (release, released) = watch::channel(false);
            let state = Arc::new(ReceiverState {
                script: Box::new(script),
                requests: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                release: released,
            });
            let shared = Arc::clone(&state);
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                    let state = Arc::clone(&shared);
                    async move { answer(&state, headers, body.to_vec()).await }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| unreachable!("{e}"));
            let port = listener
                .local_addr()
                .unwrap_or_else(|e| unreachable!("{e}"))
                .port();
            tokio::spawn(async move { axum::serve(listener, app).await });
            Receiver {
                url: format!("http://127.0.0.1:{port}/hook"),
                state,
                release,
            }
        }

        fn requests(&self) -> Vec<Request> {
            self.state
                .requests
                .lock()
                .unwrap_or_else(|e| unreachable!("{e}"))
                .clone()
        }

        fn ids(&self) -> Vec<String> {
            self.requests().iter().map(Request::event_id).collect()
        }

        fn release(&self) {
            let _ = self.release.send(true);
        }

        fn peak(&self) -> usize {
            self.state.peak.load(Ordering::SeqCst)
        }
    }

    /// Counts a request as open while it lives.
    struct Open<'a>(&'a ReceiverState);

    impl Drop for Open<'_> {
        fn drop(&mut self) {
            self.0.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn answer(
        state: &ReceiverState,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> axum::http::StatusCode {
        let open = state.open.fetch_add(1, Ordering::SeqCst) + 1;
        let _open = Open(state);
        state.peak.fetch_max(open, Ordering::SeqCst);
        let request = Request { headers, body };
        let reply = {
            let mut requests = state
                .requests
                .lock()
                .unwrap_or_else(|e| unreachable!("{e}"));
            let reply = (state.script)(requests.len(), &request);
            requests.push(request);
            reply
        };
        match reply {
            Reply::Status(code) => axum::http::StatusCode::from_u16(code)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
            Reply::Hang => {
                let mut release = state.release.clone();
                let _ = release.wait_for(|released| *released).await;
                axum::http::StatusCode::OK
            }
        }
    }

    // --- Helpers -------------------------------------------------------------

    fn signer() -> Arc<Signer> {
        Arc::new(
            Signer::from_seed("test.example/log", [9; 32]).unwrap_or_else(|e| unreachable!("{e}")),
        )
    }

    /// Options for tests: fast retries; no polling unless a test wants it
    /// (wakes, ends and `next_due_ms` must be enough).
    fn options() -> WebhookOptions {
        WebhookOptions {
            max_attempts: 5,
            per_endpoint_concurrency: 4,
            total_concurrency: 64,
            request_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(5),
            retry_cap: Duration::from_millis(40),
            poll_interval: Duration::from_secs(3600),
            store_retry: Duration::from_millis(20),
            addresses: Addresses::Any,
        }
    }

    /// A worker over `fake`, and what stops it.
    fn start(
        fake: &Arc<Fake>,
        options: WebhookOptions,
    ) -> (WorkerHandle, tokio::sync::oneshot::Sender<()>) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let outbox: Arc<dyn Outbox> = Arc::clone(fake) as Arc<dyn Outbox>;
        let worker = spawn(outbox, signer(), options, async move {
            let _ = stopped.await;
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        (worker, stop)
    }

    /// Whether `done` holds within 10 s (looked at every 5 ms).
    async fn within_10s(done: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done()
    }

    async fn stop(worker: WorkerHandle, stop: tokio::sync::oneshot::Sender<()>) {
        let _ = stop.send(());
        let joined = tokio::time::timeout(Duration::from_secs(20), worker.join()).await;
        assert!(matches!(joined, Ok(Ok(()))), "{joined:?}");
    }

    fn errors(row: &Row) -> Vec<(String, Option<u16>, bool)> {
        row.attempts
            .iter()
            .filter_map(|(_, attempt)| match attempt {
                Attempt::Failed {
                    error,
                    status,
                    retry_at_ms,
                } => Some((error.clone(), *status, retry_at_ms.is_some())),
                Attempt::Delivered { .. } => None,
            })
            .collect()
    }

    // --- Tests ---------------------------------------------------------------

    #[tokio::test]
    async fn delivers_in_order_signed_and_matching_the_record() {
        let receiver = Receiver::start(|_, _| Reply::Status(204)).await;
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe(&receiver.url);
        let mut ids = Vec::new();
        for seq in 1..=4 {
            for account in ["acme", "globex"] {
                ids.push(fake.push(&sub, account, seq));
            }
        }
        let (worker, stopper) = start(&fake, options());
        assert!(within_10s(|| ids.iter().all(|id| fake.settled(*id))).await);
        stop(worker, stopper).await;

        let requests = receiver.requests();
        assert_eq!(requests.len(), 8);
        // In seq order per account.
        for account in ["acme", "globex"] {
            let seqs: Vec<String> = receiver
                .ids()
                .into_iter()
                .filter(|id| id.starts_with(&format!("{account}:")))
                .collect();
            assert_eq!(
                seqs,
                (1..=4)
                    .map(|s| format!("{account}:{s}"))
                    .collect::<Vec<_>>()
            );
        }
        let verifier = signer().verifier();
        let rows = fake.rows();
        for request in &requests {
            assert_eq!(request.header("content-type"), "application/json");
            assert_eq!(
                verify(
                    &verifier,
                    &ReceivedHeaders::from_header_map(&request.headers),
                    &request.body,
                    crate::instant::now() / 1000,
                    Duration::from_secs(300),
                ),
                Ok(())
            );
            // The body tells of the record the event id names, whose bytes
            // it carries verbatim.
            let body: Value =
                serde_json::from_slice(&request.body).unwrap_or_else(|e| unreachable!("{e}"));
            let row = rows
                .iter()
                .find(|r| format!("{}:{}", r.due.account, r.due.seq) == request.event_id())
                .unwrap_or_else(|| unreachable!("{}", request.event_id()));
            assert_eq!(body.get("id"), Some(&Value::from(request.event_id())));
            assert_eq!(body.get("type"), Some(&Value::from("grant")));
            assert_eq!(
                body.get("account"),
                Some(&Value::from(row.due.account.clone()))
            );
            assert_eq!(body.get("seq"), Some(&Value::from(row.due.seq)));
            assert_eq!(
                body.get("hash"),
                Some(&Value::from(hex::encode(row.due.hash)))
            );
            assert_eq!(body.get("time"), Some(&Value::from("2026-01-01T09:00:00Z")));
            assert_eq!(body.get("attempt"), Some(&Value::from(1)));
            #[derive(serde::Deserialize)]
            struct Raw<'a> {
                #[serde(borrow)]
                record: &'a RawValue,
            }
            let raw: Raw<'_> =
                serde_json::from_slice(&request.body).unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(raw.record.get().as_bytes(), row.due.record.as_slice());
        }
        // Recorded as delivered, with the endpoint's status, once each.
        for row in rows {
            assert_eq!(row.state, DeliveryState::Delivered);
            assert!(matches!(
                row.attempts.as_slice(),
                [(_, Attempt::Delivered { status: 204 })]
            ));
        }
    }

    #[tokio::test]
    async fn retries_with_backoff_until_the_endpoint_recovers() {
        // 500 twice, then 200.
        let receiver = Receiver::start(|n, _| Reply::Status(if n < 2 { 500 } else { 200 })).await;
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe(&receiver.url);
        let first = fake.push(&sub, "acme", 1);
        let second = fake.push(&sub, "acme", 2);
        let (worker, stopper) = start(&fake, options());
        assert!(within_10s(|| fake.settled(first) && fake.settled(second)).await);
        stop(worker, stopper).await;

        // Record 2 waited for record 1, which was tried three times.
        assert_eq!(receiver.ids(), ["acme:1", "acme:1", "acme:1", "acme:2"]);
        let attempts: Vec<Value> = receiver
            .requests()
            .iter()
            .map(|r| {
                serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|b| b.get("attempt").cloned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(attempts, [1, 2, 3, 1].map(Value::from));
        let row = fake.row(first);
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(
            errors(&row),
            [
                ("HTTP 500".to_owned(), Some(500), true),
                ("HTTP 500".to_owned(), Some(500), true)
            ]
        );
        // Each retry was scheduled within the backoff's ceiling.
        for (n, (at, attempt)) in row.attempts.iter().take(2).enumerate() {
            let Attempt::Failed {
                retry_at_ms: Some(retry_at),
                ..
            } = attempt
            else {
                unreachable!("{attempt:?}")
            };
            let ceiling = (5i64 << n).min(40);
            assert!(
                (0..=ceiling).contains(&(retry_at - at)),
                "{n}: {at} {retry_at}"
            );
        }
        assert_eq!(fake.row(second).state, DeliveryState::Delivered);
    }

    #[tokio::test]
    async fn a_hanging_endpoint_times_out_and_is_retried() {
        let receiver = Receiver::start(|n, _| {
            if n == 0 {
                Reply::Hang
            } else {
                Reply::Status(200)
            }
        })
        .await;
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe(&receiver.url);
        let id = fake.push(&sub, "acme", 1);
        let (worker, stopper) = start(
            &fake,
            WebhookOptions {
                request_timeout: Duration::from_millis(300),
                ..options()
            },
        );
        assert!(within_10s(|| fake.settled(id)).await);
        stop(worker, stopper).await;
        let row = fake.row(id);
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(
            errors(&row),
            [("timed out after 300 ms".to_owned(), None, true)]
        );
        assert_eq!(receiver.ids(), ["acme:1", "acme:1"]);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_goes_on() {
        // Record 1 always fails; the others are fine.
        let receiver = Receiver::start(|_, request| {
            Reply::Status(if request.event_id() == "acme:1" {
                503
            } else {
                200
            })
        })
        .await;
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe(&receiver.url);
        let first = fake.push(&sub, "acme", 1);
        let second = fake.push(&sub, "acme", 2);
        let (worker, stopper) = start(
            &fake,
            WebhookOptions {
                max_attempts: 3,
                ..options()
            },
        );
        assert!(within_10s(|| fake.settled(first) && fake.settled(second)).await);
        stop(worker, stopper).await;

        let dead = fake.row(first);
        assert_eq!(dead.state, DeliveryState::Dead);
        assert_eq!(dead.due.attempts, 3);
        assert_eq!(
            errors(&dead),
            [
                ("HTTP 503".to_owned(), Some(503), true),
                ("HTTP 503".to_owned(), Some(503), true),
                ("HTTP 503".to_owned(), Some(503), false)
            ]
        );
        let status = fake
            .subscription_status(&sub)
            .ok()
            .flatten()
            .unwrap_or_else(|| unreachable!());
        assert_eq!((status.dead, status.delivered, status.pending), (1, 1, 0));
        assert_eq!(
            status.last_error.map(|e| (e.delivery, e.error, e.status)),
            Some((first, "HTTP 503".to_owned(), Some(503)))
        );
        assert_eq!(receiver.ids(), ["acme:1", "acme:1", "acme:1", "acme:2"]);
    }

    #[tokio::test]
    async fn a_hanging_endpoint_does_not_delay_another() {
        let slow = Receiver::start(|_, _| Reply::Hang).await;
        let fast = Receiver::start(|_, _| Reply::Status(200)).await;
        let fake = Arc::new(Fake::default());
        let slow_sub = fake.subscribe(&slow.url);
        let fast_sub = fake.subscribe(&fast.url);
        // The slow endpoint's events come first, for five accounts.
        let slow_ids: Vec<i64> = (0..5)
            .map(|n| fake.push(&slow_sub, &format!("s{n}"), 1))
            .collect();
        let fast_ids: Vec<i64> = (1..=3)
            .flat_map(|seq| {
                [
                    fake.push(&fast_sub, "f0", seq),
                    fake.push(&fast_sub, "f1", seq),
                ]
            })
            .collect();
        let (worker, stopper) = start(
            &fake,
            WebhookOptions {
                per_endpoint_concurrency: 2,
                total_concurrency: 4,
                ..options()
            },
        );
        assert!(within_10s(|| fast_ids.iter().all(|id| fake.settled(*id))).await);
        // Every fast delivery is done while the slow endpoint holds its two
        // requests: none of its deliveries got an answer, and it never had
        // more than its limit.
        assert!(slow_ids.iter().all(|id| fake.row(*id).attempts.is_empty()));
        assert!(within_10s(|| slow.requests().len() == 2).await);
        assert_eq!(fast.requests().len(), 6);

        slow.release();
        assert!(within_10s(|| slow_ids.iter().all(|id| fake.settled(*id))).await);
        stop(worker, stopper).await;
        let mut seen = slow.ids();
        seen.sort();
        assert_eq!(seen, ["s0:1", "s1:1", "s2:1", "s3:1", "s4:1"]);
        assert_eq!(slow.peak(), 2);
        assert!(
            slow_ids
                .iter()
                .all(|id| fake.row(*id).state == DeliveryState::Delivered)
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_connection_refused() {
        let port = {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| unreachable!("{e}"));
            listener
                .local_addr()
                .unwrap_or_else(|e| unreachable!("{e}"))
                .port()
        };
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe(&format!("http://127.0.0.1:{port}/hook"));
        let id = fake.push(&sub, "acme", 1);
        let (worker, stopper) = start(
            &fake,
            WebhookOptions {
                max_attempts: 2,
                ..options()
            },
        );
        assert!(within_10s(|| fake.settled(id)).await);
        stop(worker, stopper).await;
        let row = fake.row(id);
        assert_eq!(row.state, DeliveryState::Dead);
        assert_eq!(
            errors(&row),
            [
                ("connection refused".to_owned(), None, true),
                ("connection refused".to_owned(), None, false)
            ]
        );
    }

    #[tokio::test]
    async fn a_url_that_cannot_be_sent_to_is_given_up_at_once() {
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe("ftp://127.0.0.1/hook");
        let id = fake.push(&sub, "acme", 1);
        let (worker, stopper) = start(&fake, options());
        assert!(within_10s(|| fake.settled(id)).await);
        stop(worker, stopper).await;
        let row = fake.row(id);
        assert_eq!(row.state, DeliveryState::Dead);
        assert_eq!(
            errors(&row),
            [(
                "URL scheme `ftp` is not http or https".to_owned(),
                None,
                false
            )]
        );
    }

    #[tokio::test]
    async fn store_errors_pause_then_resume_without_resending() {
        let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
        let fake = Arc::new(Fake::default());
        fake.fail_due.store(3, Ordering::SeqCst);
        fake.fail_record.store(2, Ordering::SeqCst);
        let sub = fake.subscribe(&receiver.url);
        let id = fake.push(&sub, "acme", 1);
        let (worker, stopper) = start(&fake, options());
        assert!(within_10s(|| fake.settled(id)).await);
        stop(worker, stopper).await;
        // Sent once: its outcome was kept until the store took it.
        assert_eq!(receiver.ids(), ["acme:1"]);
        assert_eq!(fake.row(id).state, DeliveryState::Delivered);
        // Three failed reads, each followed by a pause (20, 40, 80 ms), not
        // by another read at once.
        let calls = fake
            .due_calls
            .lock()
            .unwrap_or_else(|e| unreachable!("{e}"))
            .clone();
        let failures: Vec<Instant> = calls.iter().filter(|c| c.1).map(|c| c.0).collect();
        assert_eq!(failures.len(), 3);
        let next_reads: Vec<Instant> = calls.iter().skip(1).map(|c| c.0).collect();
        for ((at, next), pause) in calls.iter().map(|c| c.0).zip(&next_reads).zip([20, 40, 80]) {
            assert!(
                next.duration_since(at) >= Duration::from_millis(pause),
                "{pause}: {:?}",
                next.duration_since(at)
            );
        }
    }

    #[tokio::test]
    async fn an_outcome_the_store_will_not_take_is_sent_again() {
        let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
        let fake = Arc::new(Fake::default());
        // The first send's five tries to record fail, then two more.
        fake.fail_record.store(RECORD_TRIES + 2, Ordering::SeqCst);
        let sub = fake.subscribe(&receiver.url);
        let id = fake.push(&sub, "acme", 1);
        let (worker, stopper) = start(
            &fake,
            WebhookOptions {
                store_retry: Duration::from_millis(2),
                ..options()
            },
        );
        assert!(within_10s(|| fake.settled(id)).await);
        stop(worker, stopper).await;
        // At least once: given up recording, the delivery was sent again.
        assert_eq!(receiver.ids(), ["acme:1", "acme:1"]);
        let row = fake.row(id);
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(row.attempts.len(), 1);
    }

    #[tokio::test]
    async fn a_wake_starts_delivery_at_once() {
        let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe(&receiver.url);
        // Never polls: only the wake brings the event. (Huge values are
        // fine too.)
        let (worker, stopper) = start(
            &fake,
            WebhookOptions {
                poll_interval: Duration::MAX,
                request_timeout: Duration::MAX,
                retry_cap: Duration::MAX,
                store_retry: Duration::MAX,
                ..options()
            },
        );
        assert!(within_10s(|| !fake.due_calls.lock().map(|c| c.is_empty()).unwrap_or(true)).await);
        let id = fake.push(&sub, "acme", 1);
        let waker = worker.waker();
        waker.wake();
        assert!(within_10s(|| fake.settled(id)).await);
        stop(worker, stopper).await;
        assert_eq!(receiver.ids(), ["acme:1"]);
    }

    #[tokio::test]
    async fn a_delivery_due_later_goes_out_when_due() {
        // As after a restart: a retry the store has, due in 300 ms.
        let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe(&receiver.url);
        let due_at = crate::instant::now() + 300;
        let id = fake.push_at(&sub, "acme", 1, due_at);
        // Polls once an hour: the store's `next_due_ms` is the clock.
        let (worker, stopper) = start(&fake, options());
        assert!(within_10s(|| fake.settled(id)).await);
        stop(worker, stopper).await;
        let row = fake.row(id);
        assert_eq!(row.state, DeliveryState::Delivered);
        assert!(row.attempts.iter().all(|(at, _)| *at >= due_at));
    }

    #[tokio::test]
    async fn shutdown_takes_no_new_work_and_lets_sends_finish() {
        let receiver = Receiver::start(|_, _| Reply::Hang).await;
        let fake = Arc::new(Fake::default());
        let sub = fake.subscribe(&receiver.url);
        let first = fake.push(&sub, "acme", 1);
        let (worker, stopper) = start(&fake, options());
        assert!(within_10s(|| receiver.requests().len() == 1).await);
        // Stop, then new work and a wake: the worker stops first.
        let _ = stopper.send(());
        let later = fake.push(&sub, "globex", 1);
        worker.wake();
        receiver.release();
        let joined = tokio::time::timeout(Duration::from_secs(20), worker.join()).await;
        assert!(matches!(joined, Ok(Ok(()))), "{joined:?}");
        // The send in flight ended and was recorded; the new one waits.
        assert_eq!(fake.row(first).state, DeliveryState::Delivered);
        assert_eq!(fake.row(later).state, DeliveryState::Pending);
        assert!(fake.row(later).attempts.is_empty());
        assert_eq!(receiver.ids(), ["acme:1"]);
    }

    #[tokio::test]
    async fn refuses_bad_options_and_needs_a_runtime() {
        let fake: Arc<dyn Outbox> = Arc::new(Fake::default());
        for options in [
            WebhookOptions {
                max_attempts: 0,
                ..options()
            },
            WebhookOptions {
                per_endpoint_concurrency: 0,
                ..options()
            },
            WebhookOptions {
                request_timeout: Duration::ZERO,
                ..options()
            },
            WebhookOptions {
                retry_cap: Duration::from_millis(1),
                ..options()
            },
        ] {
            let started = spawn(Arc::clone(&fake), signer(), options, async {});
            assert!(
                matches!(started, Err(WorkerError::Options(_))),
                "{started:?}"
            );
        }
        let outside = std::thread::spawn(move || {
            spawn(fake, signer(), WebhookOptions::default(), async {}).err()
        })
        .join()
        .ok()
        .flatten();
        assert!(
            matches!(outside, Some(WorkerError::NoRuntime)),
            "{outside:?}"
        );
    }
}
