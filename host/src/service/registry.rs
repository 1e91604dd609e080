//! Which module decides each vendor's accounts, and who may call the API:
//! the host's view of the store's registry and credentials
//! (`chaperone_store::registry`), kept in memory and refreshed when the
//! store says they changed.
//!
//! A vendor's module is, in order: one given to this process for the vendor
//! ([`Host::use_policy`], `HostOptions::policies`: conformance runs and
//! tests), else the vendor's active module in the store's registry, else
//! the built-in module with that vendor id. The registry is re-read when
//! its version (the head of the `@registry` chain) changed, checked at most
//! every [`REFRESH_EVERY`]; changes made through this host are seen at
//! once, changes made by another process (`chaperone policy activate
//! --db`, `chaperone token revoke --db`) within that interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chaperone_runtime::{Limits, LoadError, PolicyModule, Runtime, probe};
use chaperone_store::registry::{
    Activation, Credential, Installed, InstalledModule, RegistryError, Scope, reserved_account,
};
use chaperone_store::{KeptModule, Storage, StoreError};
use rand_core::{OsRng, RngCore};

use super::{Host, ServiceError};

/// How often the registry's version is checked for changes made by another
/// process.
pub const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// The longest vendor id.
pub const MAX_VENDOR_LEN: usize = 64;

/// Whether `vendor` can name a vendor: 1 to [`MAX_VENDOR_LEN`] lowercase
/// ASCII letters, digits, `-`, `_` or `.`.
pub fn valid_vendor(vendor: &str) -> bool {
    !vendor.is_empty()
        && vendor.len() <= MAX_VENDOR_LEN
        && vendor
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// What the host keeps in memory of the registry and the credentials.
pub(crate) struct RegistryView {
    store: Arc<dyn Storage>,
    runtime: Runtime,
    /// Modules given to this process, by vendor id.
    overrides: RwLock<HashMap<String, Arc<PolicyModule>>>,
    /// Every module loaded so far, by digest.
    loaded: RwLock<HashMap<String, Arc<PolicyModule>>>,
    snapshot: RwLock<Snapshot>,
    refreshing: Mutex<()>,
    /// The vendor id of each account seen (an account's policy never
    /// changes once it exists).
    vendors: RwLock<HashMap<String, String>>,
}

/// The most accounts whose vendor id is kept in memory.
const VENDOR_CACHE: usize = 100_000;

#[derive(Default)]
struct Snapshot {
    /// `None`: never read.
    version: Option<u64>,
    checked: Option<Instant>,
    active: BTreeMap<String, String>,
    credentials: HashMap<String, Credential>,
}

impl RegistryView {
    pub(crate) fn new(store: Arc<dyn Storage>, runtime: Runtime) -> RegistryView {
        RegistryView {
            store,
            runtime,
            overrides: RwLock::default(),
            loaded: RwLock::default(),
            snapshot: RwLock::default(),
            refreshing: Mutex::new(()),
            vendors: RwLock::default(),
        }
    }

    pub(crate) fn set_override(&self, vendor: &str, module: Arc<PolicyModule>) {
        self.overrides
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(vendor.to_owned(), module);
    }

    /// Re-reads the registry if it may have changed: always when `force`,
    /// else when it was last checked [`REFRESH_EVERY`] ago or more (one
    /// caller reads; the others go on with what is known).
    fn refresh(&self, force: bool) -> Result<(), StoreError> {
        let due = |s: &Snapshot| {
            force || s.version.is_none() || s.checked.is_none_or(|at| at.elapsed() >= REFRESH_EVERY)
        };
        if !due(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(());
        }
        let _guard = if force || self.never_read() {
            self.refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        } else {
            match self.refreshing.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(()),
            }
        };
        let version = self.store.registry().registry_version()?;
        let known = self
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .version;
        if known == Some(version) {
            self.snapshot
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .checked = Some(Instant::now());
            return Ok(());
        }
        let active = self.store.registry().active_modules()?;
        let credentials = self
            .store
            .registry()
            .credentials()?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Snapshot {
            version: Some(version),
            checked: Some(Instant::now()),
            active,
            credentials,
        };
        Ok(())
    }

    fn never_read(&self) -> bool {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .version
            .is_none()
    }

    /// Refreshes, or on a store error goes on with what is known (the
    /// error logged), unless nothing was ever read.
    fn refresh_or_keep(&self) -> Result<(), ServiceError> {
        match self.refresh(false) {
            Ok(()) => Ok(()),
            Err(error) if !self.never_read() => {
                tracing::warn!(%error, "cannot re-read the module registry; using what was read before");
                Ok(())
            }
            Err(error) => Err(ServiceError::Store(error)),
        }
    }

    /// The module that decides `vendor`'s accounts now.
    pub(crate) fn module(&self, vendor: &str) -> Result<Arc<PolicyModule>, ServiceError> {
        if let Some(module) = self
            .overrides
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(vendor)
        {
            return Ok(module.clone());
        }
        self.refresh_or_keep()?;
        let active = self
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .active
            .get(vendor)
            .cloned();
        match active {
            Some(digest) => self.by_digest(vendor, &digest),
            None => match crate::builtin::by_vendor(vendor) {
                Some(builtin) => self.load(vendor, builtin.bytes),
                None => Err(ServiceError::NoPolicy(vendor.to_owned())),
            },
        }
    }

    fn cached(&self, digest: &str) -> Option<Arc<PolicyModule>> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    fn by_digest(&self, vendor: &str, digest: &str) -> Result<Arc<PolicyModule>, ServiceError> {
        if let Some(module) = self.cached(digest) {
            return Ok(module);
        }
        let bytes = self
            .store
            .module_bytes(digest)
            .map_err(ServiceError::Store)?
            .ok_or_else(|| ServiceError::NoPolicy(vendor.to_owned()))?;
        self.load(vendor, &bytes)
    }

    fn load(&self, vendor: &str, bytes: &[u8]) -> Result<Arc<PolicyModule>, ServiceError> {
        let digest = chaperone_runtime::ModuleDigest::of(bytes).to_hex();
        if let Some(module) = self.cached(&digest) {
            return Ok(module);
        }
        let module = self
            .runtime
            .load(bytes)
            .map_err(|source| ServiceError::Load {
                vendor: vendor.to_owned(),
                source,
            })?;
        self.loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest, module.clone());
        Ok(module)
    }

    /// The credential with this id. An id not known yet makes the registry's
    /// version be checked at once (a credential just created by another
    /// process works at once; the check is one indexed read, and the
    /// credentials are re-read only if the version changed).
    fn credential(&self, id: &str) -> Result<Option<Credential>, ServiceError> {
        self.refresh_or_keep()?;
        let known = |view: &RegistryView| {
            view.snapshot
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .credentials
                .get(id)
                .cloned()
        };
        if let Some(credential) = known(self) {
            return Ok(Some(credential));
        }
        self.refresh(true).map_err(ServiceError::Store)?;
        Ok(known(self))
    }
}

/// Why a module was not installed; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The vendor id cannot name a vendor.
    #[error(
        "`{0}` is not a vendor id: 1 to {MAX_VENDOR_LEN} lowercase letters, digits, `-`, `_` or `.`"
    )]
    BadVendor(String),
    /// The module does not load.
    #[error("the module does not load: {0}")]
    Load(#[from] LoadError),
    /// The module says it is another vendor's.
    #[error("the module describes itself as vendor `{module}`, not `{given}`")]
    VendorMismatch {
        /// The vendor id it was to be installed for.
        given: String,
        /// The vendor id its `describe()` gives.
        module: String,
    },
    /// `policy check` refuses it.
    #[error("`policy check` refuses the module: {}", .0.join("; "))]
    Check(Vec<String>),
    /// The registry refused the change.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The sandbox could not be set up.
    #[error(transparent)]
    Runtime(#[from] chaperone_runtime::RuntimeError),
}

/// A new credential's token, shown once: `chp_<16 hex digits: the id>_<64
/// hex digits: the secret>`.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The credential as stored.
    pub credential: Credential,
    /// The whole token; only its secret's BLAKE3 hash is stored.
    pub token: String,
}

/// Why a bearer token was not accepted (answered as 401, all alike).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("a bearer token is required (`Authorization: Bearer <token>`)")]
    Missing,
    /// The token is malformed, unknown, wrong or revoked.
    #[error("the bearer token is not valid")]
    Invalid,
}

const TOKEN_PREFIX: &str = "chp_";

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

fn secret_hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// Splits a token into its credential id and its secret.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then(|| (&token[..TOKEN_PREFIX.len() + 16], secret))
}

impl Host {
    /// Installs a module for `vendor` (refused: a module that does not load
    /// or that `policy check` refuses, or whose `describe()` names another
    /// vendor), active at once if `activate` or if it is the vendor's
    /// first. Recorded in the `@registry` chain; `by` says who asked.
    pub fn install_module(
        &self,
        at: i64,
        vendor: &str,
        bytes: &[u8],
        activate: bool,
        by: &str,
    ) -> Result<Installed, InstallError> {
        if !valid_vendor(vendor) {
            return Err(InstallError::BadVendor(vendor.to_owned()));
        }
        let module = self.runtime.load(bytes)?;
        let description = module.description();
        if description.vendor != vendor {
            return Err(InstallError::VendorMismatch {
                given: vendor.to_owned(),
                module: description.vendor.clone(),
            });
        }
        let limits: Limits = self.runtime.limits().clone();
        let report = probe::check(bytes, &limits, &super::record_fits)?;
        if !report.passed() {
            return Err(InstallError::Check(
                report
                    .probes
                    .iter()
                    .filter(|p| !p.ok)
                    .map(|p| format!("{}: {}", p.name, p.detail))
                    .collect(),
            ));
        }
        let kept = KeptModule {
            digest: module.digest().to_hex(),
            vendor: description.vendor.clone(),
            version: description.version.clone(),
            bytes: bytes.into(),
        };
        let installed = self
            .store
            .registry()
            .install_module(at, vendor, kept, activate, by)?;
        self.registry
            .loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(installed.module.digest.clone(), module);
        self.registry.refresh(true).map_err(RegistryError::Store)?;
        self.recorded.notify_one();
        Ok(installed)
    }

    /// Makes an installed module `vendor`'s active one.
    pub fn activate_module(
        &self,
        at: i64,
        vendor: &str,
        digest: &str,
        by: &str,
    ) -> Result<Activation, RegistryError> {
        let activation = self
            .store
            .registry()
            .activate_module(at, vendor, digest, by)?;
        self.registry.refresh(true)?;
        self.recorded.notify_one();
        Ok(activation)
    }

    /// Makes the module active before `vendor`'s current one active again.
    pub fn rollback_module(
        &self,
        at: i64,
        vendor: &str,
        by: &str,
    ) -> Result<Activation, RegistryError> {
        let activation = self.store.registry().rollback_module(at, vendor, by)?;
        self.registry.refresh(true)?;
        self.recorded.notify_one();
        Ok(activation)
    }

    /// The modules installed (for one vendor, or all).
    pub fn installed_modules(
        &self,
        vendor: Option<&str>,
    ) -> Result<Vec<InstalledModule>, ServiceError> {
        self.store
            .registry()
            .installed_modules(vendor)
            .map_err(ServiceError::Store)
    }

    /// Creates a credential for `scope` at `at` and returns it with its
    /// token (shown once; only its secret's hash is stored). A customer
    /// credential needs an existing account; a vendor credential a valid
    /// vendor id.
    pub fn create_credential(
        &self,
        at: i64,
        scope: Scope,
        label: &str,
        by: &str,
    ) -> Result<NewToken, CredentialError> {
        match &scope {
            Scope::Admin => {}
            Scope::Vendor(vendor) => {
                if !valid_vendor(vendor) {
                    return Err(CredentialError::BadVendor(vendor.clone()));
                }
            }
            Scope::Customer(account) => {
                if reserved_account(account)
                    || self
                        .store
                        .registry()
                        .account_vendor(account)
                        .map_err(RegistryError::Store)?
                        .is_none()
                {
                    return Err(CredentialError::UnknownAccount(account.clone()));
                }
            }
        }
        if label.len() > 200 || label.chars().any(char::is_control) {
            return Err(CredentialError::BadLabel);
        }
        let id = format!("{TOKEN_PREFIX}{}", random_hex(8));
        let secret = random_hex(32);
        let credential = Credential {
            id: id.clone(),
            scope,
            label: label.to_owned(),
            created_at: at,
            revoked_at: None,
            hash: secret_hash(&secret),
        };
        self.store
            .registry()
            .create_credential(credential.clone(), by)?;
        self.registry.refresh(true).map_err(RegistryError::Store)?;
        Ok(NewToken {
            credential,
            token: format!("{id}_{secret}"),
        })
    }

    /// Revokes a credential: its token is refused from now on (by another
    /// process using the same store within [`REFRESH_EVERY`]).
    pub fn revoke_credential(&self, at: i64, id: &str, by: &str) -> Result<u64, RegistryError> {
        let seq = self.store.registry().revoke_credential(at, id, by)?;
        self.registry.refresh(true)?;
        Ok(seq)
    }

    /// Every credential (without secrets).
    pub fn credentials(&self) -> Result<Vec<Credential>, ServiceError> {
        self.store
            .registry()
            .credentials()
            .map_err(ServiceError::Store)
    }

    /// The live credential a bearer token belongs to. The secret's hash is
    /// compared in constant time.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Credential, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let (id, secret) = split_token(token).ok_or(AuthError::Invalid)?;
        let credential = self
            .registry
            .credential(id)
            .map_err(|error| {
                tracing::error!(%error, "cannot read the credentials");
                AuthError::Invalid
            })?
            .ok_or(AuthError::Invalid)?;
        // `blake3::Hash`'s equality is constant-time.
        let matches = blake3::Hash::from(credential.hash) == blake3::hash(secret.as_bytes());
        if !matches || credential.revoked_at.is_some() {
            return Err(AuthError::Invalid);
        }
        Ok(credential)
    }

    /// The vendor id (policy) of an account; `None`: no such account.
    pub fn account_vendor(&self, account: &str) -> Result<Option<String>, ServiceError> {
        let vendors = &self.registry.vendors;
        if let Some(vendor) = vendors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account)
        {
            return Ok(Some(vendor.clone()));
        }
        let vendor = self
            .store
            .registry()
            .account_vendor(account)
            .map_err(ServiceError::Store)?;
        if let Some(vendor) = &vendor {
            let mut vendors = vendors.write().unwrap_or_else(PoisonError::into_inner);
            if vendors.len() >= VENDOR_CACHE {
                vendors.clear();
            }
            vendors.insert(account.to_owned(), vendor.clone());
        }
        Ok(vendor)
    }

    /// Records in an existing account's chain that a credential was refused
    /// something on it; `Ok(None)`: no such account.
    pub fn record_refusal(
        &self,
        at: i64,
        account: &str,
        request: serde_json::Value,
    ) -> Result<Option<u64>, StoreError> {
        self.store.registry().record_refusal(at, account, request)
    }
}

/// Why a credential was not created; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The vendor id cannot name a vendor.
    #[error(
        "`{0}` is not a vendor id: 1 to {MAX_VENDOR_LEN} lowercase letters, digits, `-`, `_` or `.`"
    )]
    BadVendor(String),
    /// A customer credential for an account that does not exist.
    #[error("no account `{0}`")]
    UnknownAccount(String),
    /// The label is too long or has control characters.
    #[error("a label is at most 200 bytes, without control characters")]
    BadLabel,
    /// The registry refused the change.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_splits_into_its_id_and_secret_only_when_well_formed() {
        let id = format!("{TOKEN_PREFIX}{}", "0123456789abcdef");
        let secret = "a".repeat(64);
        let token = format!("{id}_{secret}");
        assert_eq!(split_token(&token), Some((id.as_str(), secret.as_str())));
        for bad in [
            "",
            "chp_",
            &format!("{id}_{}", "a".repeat(63)),
            &format!("{id}_{}", "g".repeat(64)),
            &format!("xyz_0123456789abcdef_{secret}"),
            &format!("{TOKEN_PREFIX}0123456789abcde_{secret}a"),
            &format!("{token} "),
        ] {
            assert_eq!(split_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn vendor_ids() {
        for good in ["celigo", "x", "ticketed-2", "a.b_c", &"v".repeat(64)] {
            assert!(valid_vendor(good), "{good}");
        }
        for bad in ["", "Celigo", "a b", "ä", "@registry", &"v".repeat(65)] {
            assert!(!valid_vendor(bad), "{bad}");
        }
    }
}
