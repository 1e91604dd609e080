//! Webhook subscriptions as the API and the CLI manage them
//! (`chaperone_store::outbox`): who may subscribe to what, and the
//! subscription ids. Deliveries are written by the store with the records
//! they tell of; [`crate::webhook`] sends them.

use chaperone_store::StoreError;
use chaperone_store::outbox::{
    Attempt, Due, Outbox, Owner, Subscription, SubscriptionError, SubscriptionStatus,
};
use chaperone_store::registry::reserved_account;

use super::Host;
use super::registry::valid_vendor;

/// Why a subscription could not be added.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A customer subscription names an account that does not exist.
    #[error("no account `{0}`")]
    UnknownAccount(String),
    /// A vendor subscription names no valid vendor id.
    #[error("`{0}` is not a vendor id (1 to 64 of a-z, 0-9, `-`, `_`, `.`)")]
    BadVendor(String),
    /// The URL or the types were refused.
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Host {
    /// Subscribes `url` to the events of `types` that `owner` hears of
    /// (a vendor: all its accounts and its module activations; a customer:
    /// its account), from now on.
    pub fn add_webhook(
        &self,
        at: i64,
        owner: Owner,
        url: &str,
        types: &[String],
        by: &str,
    ) -> Result<Subscription, WebhookError> {
        match &owner {
            Owner::Vendor(vendor) if !valid_vendor(vendor) => {
                return Err(WebhookError::BadVendor(vendor.clone()));
            }
            Owner::Customer(account)
                if reserved_account(account)
                    || self.store.registry().account_vendor(account)?.is_none() =>
            {
                return Err(WebhookError::UnknownAccount(account.clone()));
            }
            _ => {}
        }
        let id = format!("wh_{}", super::registry::random_hex(8));
        Ok(self
            .store
            .outbox()
            .add_subscription(at, &id, owner, url, types, by)?)
    }

    /// Removes subscription `id`; `false` if there is no such live one.
    pub fn remove_webhook(&self, at: i64, id: &str, by: &str) -> Result<bool, StoreError> {
        self.store.outbox().remove_subscription(at, id, by)
    }

    /// Every subscription (of `owner`, or all), removed ones too.
    pub fn webhooks(&self, owner: Option<&Owner>) -> Result<Vec<Subscription>, StoreError> {
        let all = self.store.outbox().subscriptions()?;
        Ok(all
            .into_iter()
            .filter(|s| owner.is_none_or(|o| &s.owner == o))
            .collect())
    }

    /// The deliveries of subscription `id`, counted, with its last error
    /// and next try.
    pub fn webhook_status(&self, id: &str) -> Result<Option<SubscriptionStatus>, StoreError> {
        self.store.outbox().subscription_status(id)
    }
}

/// The host's store as an [`Outbox`] the sender can own.
#[derive(Debug)]
struct StoreOutbox(std::sync::Arc<dyn chaperone_store::Storage>);

impl Outbox for StoreOutbox {
    fn add_subscription(
        &self,
        at: i64,
        id: &str,
        owner: Owner,
        url: &str,
        types: &[String],
        by: &str,
    ) -> Result<Subscription, SubscriptionError> {
        self.0
            .outbox()
            .add_subscription(at, id, owner, url, types, by)
    }

    fn remove_subscription(&self, at: i64, id: &str, by: &str) -> Result<bool, StoreError> {
        self.0.outbox().remove_subscription(at, id, by)
    }

    fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.0.outbox().subscriptions()
    }

    fn subscription_status(&self, id: &str) -> Result<Option<SubscriptionStatus>, StoreError> {
        self.0.outbox().subscription_status(id)
    }

    fn due(
        &self,
        now_ms: i64,
        limit: usize,
        busy: &std::collections::HashSet<(String, String)>,
        per_subscription: usize,
    ) -> Result<Vec<Due>, StoreError> {
        self.0.outbox().due(now_ms, limit, busy, per_subscription)
    }

    fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.0.outbox().next_due_ms()
    }

    fn record_attempt(&self, at: i64, id: i64, attempt: Attempt) -> Result<(), StoreError> {
        self.0.outbox().record_attempt(at, id, attempt)
    }
}

impl Host {
    /// The store's outbox, as the sender owns it.
    pub fn outbox(&self) -> std::sync::Arc<dyn Outbox> {
        std::sync::Arc::new(StoreOutbox(self.store.clone()))
    }
}

impl Host {
    /// Starts the webhook sender ([`crate::webhook::worker`]) on the current
    /// tokio runtime, signing with the store's key and woken by every write
    /// of this host that may have made deliveries, until `shutdown`
    /// resolves.
    pub fn start_webhooks(
        &self,
        options: crate::webhook::worker::WebhookOptions,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<crate::webhook::worker::WorkerHandle, StartError> {
        let signer = self.store.signer().ok_or(StartError::NoKey)?;
        Ok(crate::webhook::worker::spawn_woken_by(
            self.outbox(),
            signer,
            options,
            self.recorded(),
            shutdown,
        )?)
    }
}

/// Why the webhook sender could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Events are signed with the log's key, and this store has none.
    #[error("the store has no signing key: webhook events are signed with it")]
    NoKey,
    /// The sender could not start.
    #[error(transparent)]
    Worker(#[from] crate::webhook::worker::WorkerError),
}
