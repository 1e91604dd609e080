//! Webhook subscriptions as the API and the CLI manage them
//! (`chaperone_store::outbox`): who may subscribe to what, and the
//! subscription ids. Deliveries are written by the store with the records
//! they tell of; [`crate::webhook`] sends them.

use chaperone_store::StoreError;
use chaperone_store::outbox::{Owner, Subscription, SubscriptionError, SubscriptionStatus};
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
