//! Signing keys: creation inside the vault, plaintext import, versions and rotation, state
//! changes, deletion with a waiting period, and the sign/verify hot path.
//!
//! Key material exists in memory only as [`SecretBytes`] — in the unwrapped-secret cache
//! (bounded, TTL, zeroized on eviction) or for the duration of one call. It is written
//! only as a sealed record under a fresh DEK (see [`crate::kek::Keyring`]). This module
//! never returns material to a caller, never logs it, and never touches HTTP.

mod backup;
pub mod cache;
mod cipher;
mod custody;
mod kwp;
mod lifecycle;
pub(crate) mod resident;
pub use cipher::{DATA_KEY_BYTES, Encrypted};
pub use custody::{Exported, WRAPPING_FORMAT, WRAPPING_KEY_ALGORITHM, WrappingKey, recipient_fingerprint};
pub use lifecycle::AutoRotated;
mod mac;
pub mod model;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;

use time::Duration;

use crate::clock::SharedClock;
use crate::envelope::RecordIdentity;
use crate::kek::{KekError, Keyring};
use crate::secret::SecretBytes;
pub use crate::store::{KeyRecord, VersionInfo};
use crate::store::{KeyStore, StoreError, SystemStore};
use cache::{CacheSettings, Flights, TtlCache};
use model::{Algorithm, Boundary, KeyState};
use usage::UsageTracker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySettings {
    pub default_pending_days: u32,
    pub max_pending_days: u32,
    pub usage_flush_interval: Duration,
}

/// Record kind bound into the AAD of signing-key versions.
pub(crate) const KIND_HMAC_KEY: &str = "hmac-key";
/// The only tenant until multi-tenancy lands; bound into every AAD already.
pub(crate) const DEFAULT_TENANT: &str = "default";
/// Shortest automatic rotation period accepted.
pub(crate) const MIN_AUTO_ROTATE: Duration = Duration::hours(1);
/// Longest automatic rotation period accepted (100 years).
pub(crate) const MAX_AUTO_ROTATE: Duration = Duration::days(36_500);
const UPDATE_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key '{0}' does not exist")]
    NotFound(String),
    #[error("key '{0}' already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Precondition(String),
    /// Refused whatever the caller's rights (no policy can allow it).
    #[error("{0}")]
    Forbidden(String),
    /// A conditional change found the key already changed (a scheduled rotation another
    /// node made first).
    #[error("{0}")]
    Superseded(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored key data is malformed: {0}")]
    Corrupt(String),
    #[error("the operating system's random generator failed")]
    Random,
}

pub(crate) type KeyResult<T> = Result<T, KeyError>;

/// A key as the API shows it: metadata and per-version usage, never material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDetails {
    pub record: KeyRecord,
    pub versions: Vec<VersionInfo>,
}

/// Options of `POST /v1/keys` (and of an import that creates the key).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub algorithm: Algorithm,
    pub key_size: Option<usize>,
    pub boundary: Boundary,
    pub exportable: bool,
    pub auto_rotate_period: Option<Duration>,
    pub owner: String,
    pub tags: BTreeMap<String, String>,
    /// Whether the key may be scheduled for deletion (true through the native API; false,
    /// as in Vault, for a key Transit creates).
    pub deletion_allowed: bool,
}

/// Fields of `PATCH /v1/keys/{name}`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub state: Option<KeyState>,
    pub min_verify_version: Option<u32>,
    /// `Some(None)` turns automatic rotation off.
    pub auto_rotate_period: Option<Option<Duration>>,
    pub exportable: Option<bool>,
    /// 0: any version from `min_verify_version`.
    pub min_encryption_version: Option<u32>,
    pub deletion_allowed: Option<bool>,
}

/// One use of a key version, counted by [`KeyService::count`] after the operation was
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    key_id: Arc<str>,
    version: u32,
    signs: u64,
    verifies: u64,
}

/// The outcome of a verification that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The tag matched this version.
    Valid(u32),
    /// The tag has the algorithm's length but no version in the window produced it.
    Mismatch,
    /// The tag does not have the algorithm's full length (truncated tags are not accepted).
    MalformedSignature,
}

impl Verdict {
    /// The `code` a failed verification carries in the API.
    pub fn code(self) -> &'static str {
        match self {
            Verdict::Valid(_) => "VALID",
            Verdict::Mismatch => "SIGNATURE_MISMATCH",
            Verdict::MalformedSignature => "MALFORMED_SIGNATURE",
        }
    }
}

/// The key caches' hits, misses and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    pub metadata_hits: u64,
    /// Key rows read from the store.
    pub metadata_misses: u64,
    pub secret_hits: u64,
    /// KEK unwraps of key versions.
    pub secret_misses: u64,
    pub metadata_entries: usize,
    pub secret_entries: usize,
}

/// A cached key row.
struct CachedKey {
    /// `record.id`, shared: cache and counter keys clone it without allocating.
    id: Arc<str>,
    record: KeyRecord,
}

/// What policies see of an existing key: its owner and tags (from the metadata cache).
pub(crate) struct KeyFacts(Arc<CachedKey>);

impl KeyFacts {
    pub(crate) fn owner(&self) -> &str {
        &self.0.record.owner
    }

    pub(crate) fn tags(&self) -> &BTreeMap<String, String> {
        &self.0.record.tags
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.0.record.algorithm
    }

    pub(crate) fn state(&self) -> KeyState {
        self.0.record.state
    }
}

pub struct KeyService {
    store: Arc<dyn KeyStore>,
    /// For the journal checkpoint after keys are destroyed.
    system: Arc<dyn SystemStore>,
    keyring: Keyring,
    clock: SharedClock,
    settings: KeySettings,
    max_message_bytes: usize,
    meta: TtlCache<String, CachedKey>,
    /// Names found to hold no key, for policy decisions only ([`KeyService::facts`]): a
    /// caller asking again about a missing key is answered from memory like one asking about
    /// an existing (cached) key, so the time of a denial does not tell whether the key
    /// exists. Created names are invalidated here as in `meta`.
    absent: TtlCache<String, ()>,
    secrets: TtlCache<(Arc<str>, u32), SecretBytes>,
    /// One KEK unwrap at a time per key version: a burst of requests for a cold key makes
    /// one HSM or KMS call, not one each.
    unwraps: Flights<(Arc<str>, u32)>,
    /// KEK unwraps made for key versions (cold secrets): for tests and metrics.
    kek_unwraps: std::sync::atomic::AtomicU64,
    usage: UsageTracker,
    /// Key rows read from the store (cache misses): for tests and metrics.
    store_lookups: std::sync::atomic::AtomicU64,
    /// Key rows and secrets found in the caches: for metrics.
    meta_hits: std::sync::atomic::AtomicU64,
    secret_hits: std::sync::atomic::AtomicU64,
    /// Held while pending usage moves from memory to the store, and while a reader merges
    /// the two, so a reader never misses or double-counts a flush in flight.
    usage_flush: tokio::sync::Mutex<()>,
    /// Serialises this node's read-modify-write of key rows, so concurrent callers on one
    /// node never exhaust the optimistic-locking retries (which remain for other nodes).
    /// Writes are rare; the hot path never takes it.
    writes: tokio::sync::Mutex<()>,
    /// Set when keys were destroyed and the store's journal still needs a checkpoint.
    checkpoint_pending: std::sync::atomic::AtomicBool,
}

fn cached_key(record: KeyRecord) -> CachedKey {
    CachedKey {
        id: Arc::from(record.id.as_str()),
        record,
    }
}

fn random_id() -> KeyResult<String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| KeyError::Random)?;
    Ok(format!("k_{}", base16ct::lower::encode_string(&raw)))
}

/// The identity part of a key version's AAD: `<key id>/<name>`. The random id keeps a
/// recreated name from opening old blobs; the name (which never changes: there is no
/// rename) keeps a writer of the database from swapping two rows' names so that one key's
/// route serves another key's secret — such a row fails to open instead. Names cannot
/// contain `/`, so the encoding is unambiguous.
fn aad_id(record: &KeyRecord) -> String {
    format!("{}/{}", record.id, record.name)
}

fn identity<'a>(record: &'a KeyRecord, aad_id: &'a str, version: u32) -> RecordIdentity<'a> {
    RecordIdentity {
        kind: KIND_HMAC_KEY,
        tenant: &record.tenant,
        id: aad_id,
        version,
    }
}

impl KeyService {
    pub fn new(
        store: Arc<dyn KeyStore>,
        system: Arc<dyn SystemStore>,
        keyring: Keyring,
        clock: SharedClock,
        settings: KeySettings,
        cache: CacheSettings,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            store,
            system,
            keyring,
            settings,
            max_message_bytes,
            meta: TtlCache::new(cache.max_entries, cache.state_ttl(), clock.clone()),
            absent: TtlCache::new(cache.max_entries, cache.state_ttl(), clock.clone()),
            secrets: TtlCache::new(cache.max_entries, cache.ttl, clock.clone()),
            unwraps: Flights::new(),
            kek_unwraps: std::sync::atomic::AtomicU64::new(0),
            usage: UsageTracker::default(),
            store_lookups: std::sync::atomic::AtomicU64::new(0),
            meta_hits: std::sync::atomic::AtomicU64::new(0),
            secret_hits: std::sync::atomic::AtomicU64::new(0),
            usage_flush: tokio::sync::Mutex::new(()),
            writes: tokio::sync::Mutex::new(()),
            checkpoint_pending: std::sync::atomic::AtomicBool::new(false),
            clock,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    // ----- reads -----------------------------------------------------------------------

    pub async fn get(&self, name: &str) -> KeyResult<KeyDetails> {
        let key = self.load_fresh(name).await?;
        self.details(key.record).await
    }

    /// Keys in name order after `after`; at most `limit`.
    pub async fn list(&self, after: Option<&str>, limit: u32) -> KeyResult<Vec<KeyDetails>> {
        let records = self.store.list_keys(after, limit).await?;
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            out.push(self.details(record).await?);
        }
        Ok(out)
    }

    async fn details(&self, record: KeyRecord) -> KeyResult<KeyDetails> {
        let _no_flush = self.usage_flush.lock().await;
        let mut versions = self.store.list_versions(&record.id).await?;
        let pending = self.usage.pending_for(&record.id);
        for v in &mut versions {
            if let Some(p) = pending.get(&v.version) {
                v.sign_count += p.signs;
                v.verify_count += p.verifies;
                v.last_used_at_ms = Some(v.last_used_at_ms.unwrap_or(0).max(p.last_used_at_ms));
            }
        }
        Ok(KeyDetails { record, versions })
    }

    async fn load_fresh(&self, name: &str) -> KeyResult<CachedKey> {
        model::validate_name(name).map_err(KeyError::Invalid)?;
        self.store_lookups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let record = self
            .store
            .get_key(name)
            .await?
            .ok_or_else(|| KeyError::NotFound(name.to_owned()))?;
        Ok(cached_key(record))
    }

    /// The owner and tags of key `name` for a policy decision; `None` when there is no such
    /// key (or the name is not a valid one: the operation itself will say so).
    /// A name found missing is remembered (`absent`), so asking again costs what asking
    /// about a cached key costs.
    pub(crate) async fn facts(&self, name: &str) -> KeyResult<Option<KeyFacts>> {
        if self.absent.get(name).is_some() {
            return Ok(None);
        }
        let token = self.absent.fill_token();
        match self.cached(name).await {
            Ok(key) => Ok(Some(KeyFacts(key))),
            Err(KeyError::NotFound(_)) => {
                self.absent.insert(name.to_owned(), Arc::new(()), token);
                Ok(None)
            }
            Err(KeyError::Invalid(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How many KEK unwraps were made for key versions (secrets not in the cache).
    pub fn kek_unwraps(&self) -> u64 {
        self.kek_unwraps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many key rows were read from the store (cache misses).
    pub fn store_lookups(&self) -> u64 {
        self.store_lookups.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The caches' hits and misses so far, for `/metrics`.
    pub fn cache_counts(&self) -> CacheCounts {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        CacheCounts {
            metadata_hits: load(&self.meta_hits),
            metadata_misses: load(&self.store_lookups),
            secret_hits: load(&self.secret_hits),
            secret_misses: load(&self.kek_unwraps),
            metadata_entries: self.meta.len(),
            secret_entries: self.secrets.len(),
        }
    }

    /// The key's cached metadata, loading it on a miss.
    async fn cached(&self, name: &str) -> KeyResult<Arc<CachedKey>> {
        if let Some(hit) = self.meta.get(name) {
            self.meta_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(hit);
        }
        let token = self.meta.fill_token();
        let key = Arc::new(self.load_fresh(name).await?);
        self.meta.insert(name.to_owned(), Arc::clone(&key), token);
        Ok(key)
    }

    /// The unwrapped material of one version: from the cache, or one KEK unwrap.
    async fn secret(&self, key: &CachedKey, version: u32) -> KeyResult<Arc<SecretBytes>> {
        let cache_key = (Arc::clone(&key.id), version);
        if let Some(hit) = self.secrets.get(&cache_key) {
            self.secret_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(hit);
        }
        let turn = self.unwraps.join(&cache_key).await;
        // Filled by the caller whose turn came before.
        if let Some(hit) = self.secrets.get(&cache_key) {
            return Ok(hit);
        }
        if turn.after_failure() {
            return Err(KekError::Unavailable(Box::new(crate::kek::ConcurrentLoadFailed)).into());
        }
        let token = self.secrets.fill_token();
        self.kek_unwraps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let opened = async {
            let sealed = self.store.get_sealed(&key.record.id, version).await?.ok_or_else(|| {
                KeyError::Corrupt(format!("version {version} of '{}' has no record", key.record.name))
            })?;
            let aad_id = aad_id(&key.record);
            Ok::<_, KeyError>(
                self.keyring
                    .open(&identity(&key.record, &aad_id, version), &sealed)
                    .await?,
            )
        }
        .await;
        let secret = Arc::new(opened.inspect_err(|_| turn.failed())?);
        self.secrets.insert(cache_key, Arc::clone(&secret), token);
        Ok(secret)
    }

    /// Drops every cached row and secret (announcements from other nodes were missed).
    pub(crate) fn forget_all(&self) {
        self.meta.invalidate(|_| true);
        self.absent.invalidate(|_| true);
        self.secrets.invalidate(|_| true);
    }

    pub(crate) fn invalidate(&self, name: &str, key_id: Option<&str>) {
        self.meta.invalidate(|n| n == name);
        self.absent.invalidate(|n| n == name);
        if let Some(id) = key_id {
            self.secrets.invalidate(|(k, _)| k.as_ref() == id);
        }
    }

    /// Counts operations that were recorded (audited) and answered. Counting only then
    /// keeps the counters honest when the audit trail refuses an operation.
    pub fn count(&self, used: &[Usage]) {
        let now = self.now_ms();
        for u in used {
            self.usage.record(&u.key_id, u.version, u.signs, u.verifies, now);
        }
    }

    // ----- maintenance -----------------------------------------------------------------

    /// Writes pending usage counters to the store; on failure they are kept for the next try.
    pub async fn flush_usage(&self) -> KeyResult<()> {
        let _flushing = self.usage_flush.lock().await;
        let deltas = self.usage.take();
        if deltas.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.add_usage(&deltas).await {
            self.usage.restore(deltas);
            return Err(e.into());
        }
        Ok(())
    }

    /// Drops expired cache entries (their secrets are zeroized as they drop).
    pub(crate) fn sweep_caches(&self) {
        self.meta.sweep();
        self.absent.sweep();
        self.secrets.sweep();
    }
}
