//! Signing keys: creation inside the vault, plaintext import, versions and rotation, state
//! changes, deletion with a waiting period, and the sign/verify hot path.
//!
//! Key material exists in memory only as [`SecretBytes`] — in the unwrapped-secret cache
//! (bounded, TTL, zeroized on eviction) or for the duration of one call. It is written
//! only as a sealed record under a fresh DEK (see [`crate::kek::Keyring`]). This module
//! never returns material to a caller, never logs it, and never touches HTTP.

pub mod cache;
pub mod model;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;

use time::Duration;

use crate::clock::{SharedClock, from_unix_ms, unix_ms};
use crate::config::{CacheSettings, KeySettings};
use crate::envelope::RecordIdentity;
use crate::kek::{KekError, Keyring};
use crate::secret::SecretBytes;
use crate::store::{KeyRecord, NewVersion, Store, StoreError, VersionInfo};
use cache::TtlCache;
use model::{Algorithm, Boundary, KeyState, MAX_KEY_SIZE, MIN_GENERATED_KEY_SIZE, MIN_IMPORTED_KEY_SIZE};
use usage::UsageTracker;

/// Record kind bound into the AAD of signing-key versions.
pub const KIND_HMAC_KEY: &str = "hmac-key";
/// The only tenant until multi-tenancy lands; bound into every AAD already.
pub const DEFAULT_TENANT: &str = "default";
/// Shortest automatic rotation period accepted.
pub const MIN_AUTO_ROTATE: Duration = Duration::hours(1);
/// Longest automatic rotation period accepted (100 years).
pub const MAX_AUTO_ROTATE: Duration = Duration::days(36_500);
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

pub type KeyResult<T> = Result<T, KeyError>;

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
}

/// Fields of `PATCH /v1/keys/{name}`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub state: Option<KeyState>,
    pub min_verify_version: Option<u32>,
    /// `Some(None)` turns automatic rotation off.
    pub auto_rotate_period: Option<Option<Duration>>,
    pub exportable: Option<bool>,
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

/// A parsed, cached view of a key's row.
struct CachedKey {
    /// `record.id`, shared: cache and counter keys clone it without allocating.
    id: Arc<str>,
    record: KeyRecord,
    algorithm: Algorithm,
    state: KeyState,
}

pub struct KeyService {
    store: Arc<dyn Store>,
    keyring: Keyring,
    clock: SharedClock,
    settings: KeySettings,
    max_message_bytes: usize,
    meta: TtlCache<String, CachedKey>,
    secrets: TtlCache<(Arc<str>, u32), SecretBytes>,
    usage: UsageTracker,
    /// Serialises this node's read-modify-write of key rows, so concurrent callers on one
    /// node never exhaust the optimistic-locking retries (which remain for other nodes).
    /// Writes are rare; the hot path never takes it.
    writes: tokio::sync::Mutex<()>,
}

fn parse_cached(record: KeyRecord) -> KeyResult<CachedKey> {
    let algorithm = Algorithm::parse(&record.algorithm)
        .ok_or_else(|| KeyError::Corrupt(format!("algorithm '{}'", record.algorithm)))?;
    let state = KeyState::parse(&record.state).ok_or_else(|| KeyError::Corrupt(format!("state '{}'", record.state)))?;
    Ok(CachedKey {
        id: Arc::from(record.id.as_str()),
        record,
        algorithm,
        state,
    })
}

fn random_id() -> KeyResult<String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| KeyError::Random)?;
    Ok(format!(
        "k_{}",
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn identity(record: &KeyRecord, version: u32) -> RecordIdentity<'_> {
    RecordIdentity {
        kind: KIND_HMAC_KEY,
        tenant: &record.tenant,
        id: &record.id,
        version,
    }
}

impl KeyService {
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Keyring,
        clock: SharedClock,
        settings: KeySettings,
        cache: CacheSettings,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            store,
            keyring,
            settings,
            max_message_bytes,
            meta: TtlCache::new(cache.max_entries, cache.ttl, clock.clone()),
            secrets: TtlCache::new(cache.max_entries, cache.ttl, clock.clone()),
            usage: UsageTracker::default(),
            writes: tokio::sync::Mutex::new(()),
            clock,
        }
    }

    fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    // ----- lifecycle -------------------------------------------------------------------

    /// Creates a key whose first version is generated inside the vault.
    pub async fn create(&self, name: &str, opts: CreateOptions) -> KeyResult<KeyDetails> {
        let size = opts.key_size.unwrap_or_else(|| opts.algorithm.default_key_size());
        if !(MIN_GENERATED_KEY_SIZE..=MAX_KEY_SIZE).contains(&size) {
            return Err(KeyError::Invalid(format!(
                "key_size must be between {MIN_GENERATED_KEY_SIZE} and {MAX_KEY_SIZE} bytes"
            )));
        }
        let material = SecretBytes::random(size).map_err(|_| KeyError::Random)?;
        self.insert_new_key(name, &opts, &material).await
    }

    /// Imports `material` as a new key (with `create`), or as a new version of an existing
    /// key — which refuses create options the caller stated (`explicit_options`). Returns the
    /// key and whether it was created.
    pub async fn import(
        &self,
        name: &str,
        material: SecretBytes,
        algorithm: Option<Algorithm>,
        create: CreateOptions,
        explicit_options: bool,
    ) -> KeyResult<(KeyDetails, bool)> {
        model::validate_name(name).map_err(KeyError::Invalid)?;
        if !(MIN_IMPORTED_KEY_SIZE..=MAX_KEY_SIZE).contains(&material.len()) {
            return Err(KeyError::Invalid(format!(
                "key_material must be between {MIN_IMPORTED_KEY_SIZE} and {MAX_KEY_SIZE} bytes"
            )));
        }
        if let Some(existing) = self.store.get_key(name).await? {
            if explicit_options {
                return Err(KeyError::Invalid(format!(
                    "key '{name}' exists: an import into it takes only key_material and algorithm"
                )));
            }
            let cached = parse_cached(existing)?;
            if algorithm.is_some_and(|a| a != cached.algorithm) {
                return Err(KeyError::Invalid(format!(
                    "key '{name}' uses {}; an imported version must too",
                    cached.algorithm.as_str()
                )));
            }
            let details = self.add_version(name, &material).await?;
            return Ok((details, false));
        }
        let details = self.insert_new_key(name, &create, &material).await?;
        Ok((details, true))
    }

    async fn insert_new_key(&self, name: &str, opts: &CreateOptions, material: &SecretBytes) -> KeyResult<KeyDetails> {
        model::validate_name(name).map_err(KeyError::Invalid)?;
        model::validate_owner(&opts.owner).map_err(KeyError::Invalid)?;
        model::validate_tags(&opts.tags).map_err(KeyError::Invalid)?;
        let auto_rotate_period_s = opts.auto_rotate_period.map(validate_rotation).transpose()?;
        let now = self.now_ms();
        let record = KeyRecord {
            id: random_id()?,
            name: name.to_owned(),
            tenant: DEFAULT_TENANT.to_owned(),
            algorithm: opts.algorithm.as_str().to_owned(),
            boundary: opts.boundary.as_str().to_owned(),
            owner: opts.owner.clone(),
            tags: serde_json::to_string(&opts.tags).map_err(|e| KeyError::Invalid(e.to_string()))?,
            state: KeyState::Enabled.as_str().to_owned(),
            latest_version: 1,
            min_verify_version: 1,
            exportable: opts.exportable,
            auto_rotate_period_s,
            deletion_due_ms: None,
            state_before_deletion: None,
            created_at_ms: now,
            updated_at_ms: now,
            revision: 0,
        };
        // Sealing the material for this key's identity: the only place it is consumed.
        let sealed = self
            .keyring
            .seal(&identity(&record, 1), material.expose_secret())
            .await?;
        let first = NewVersion {
            version: 1,
            created_at_ms: now,
            sealed,
        };
        match self.store.create_key(&record, &first).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => return Err(KeyError::AlreadyExists(name.to_owned())),
            Err(e) => return Err(e.into()),
        }
        self.invalidate(name, None);
        self.details(record).await
    }

    /// Adds a version generated inside the vault, of the same size as the latest one.
    pub async fn rotate(&self, name: &str) -> KeyResult<KeyDetails> {
        let current = self.load_fresh(name).await?;
        let latest = self.secret(&current, current.record.latest_version).await?;
        let size = latest.len().max(MIN_GENERATED_KEY_SIZE);
        drop(latest);
        let material = SecretBytes::random(size).map_err(|_| KeyError::Random)?;
        self.add_version(name, &material).await
    }

    /// Appends a version holding `material`, sealed for its own identity.
    async fn add_version(&self, name: &str, material: &SecretBytes) -> KeyResult<KeyDetails> {
        self.write_key(name, |current| async move {
            if current.state == KeyState::PendingDeletion {
                return Err(KeyError::Precondition(format!("key '{name}' is pending deletion")));
            }
            let version = current.record.latest_version.saturating_add(1);
            // Sealing the new version's material: the only place it is consumed.
            let sealed = self
                .keyring
                .seal(&identity(&current.record, version), material.expose_secret())
                .await?;
            let new = NewVersion {
                version,
                created_at_ms: self.now_ms(),
                sealed,
            };
            Ok(self.store.add_version(&current.record, &new).await?)
        })
        .await
    }

    pub async fn patch(&self, name: &str, patch: KeyPatch) -> KeyResult<KeyDetails> {
        let period = match patch.auto_rotate_period {
            Some(Some(p)) => Some(Some(validate_rotation(p)?)),
            Some(None) => Some(None),
            None => None,
        };
        let now = self.now_ms();
        self.update(name, |key| {
            if key.state == KeyState::PendingDeletion {
                return Err(KeyError::Precondition(format!(
                    "key '{name}' is pending deletion; restore it first"
                )));
            }
            let r = &mut key.record;
            if let Some(state) = patch.state {
                if state == KeyState::PendingDeletion {
                    return Err(KeyError::Invalid("use DELETE to schedule a key's deletion".into()));
                }
                r.state = state.as_str().to_owned();
            }
            if let Some(min) = patch.min_verify_version {
                if min == 0 || min > r.latest_version {
                    return Err(KeyError::Invalid(format!(
                        "min_verify_version must be between 1 and the latest version ({})",
                        r.latest_version
                    )));
                }
                r.min_verify_version = min;
            }
            if let Some(exportable) = patch.exportable {
                if exportable && !r.exportable {
                    return Err(KeyError::Invalid(
                        "exportable can only change from true to false".into(),
                    ));
                }
                r.exportable = exportable;
            }
            if let Some(p) = period {
                r.auto_rotate_period_s = p;
            }
            r.updated_at_ms = now;
            Ok(())
        })
        .await
    }

    /// Schedules destruction after `pending_days` (default from settings).
    pub async fn schedule_deletion(&self, name: &str, pending_days: Option<u32>) -> KeyResult<KeyDetails> {
        let days = pending_days.unwrap_or(self.settings.default_pending_days);
        if !(1..=self.settings.max_pending_days).contains(&days) {
            return Err(KeyError::Invalid(format!(
                "pending_days must be between 1 and {}",
                self.settings.max_pending_days
            )));
        }
        let now = self.clock.now();
        let due = unix_ms(now + Duration::days(i64::from(days)));
        self.update(name, |key| {
            if key.state == KeyState::PendingDeletion {
                return Err(KeyError::Precondition(format!(
                    "key '{name}' is already pending deletion"
                )));
            }
            let r = &mut key.record;
            r.state_before_deletion = Some(r.state.clone());
            r.state = KeyState::PendingDeletion.as_str().to_owned();
            r.deletion_due_ms = Some(due);
            r.updated_at_ms = unix_ms(now);
            Ok(())
        })
        .await
    }

    /// Cancels a scheduled deletion; the key returns to the state it had before.
    pub async fn restore(&self, name: &str) -> KeyResult<KeyDetails> {
        let now = self.now_ms();
        self.update(name, |key| {
            if key.state != KeyState::PendingDeletion {
                return Err(KeyError::Precondition(format!("key '{name}' is not pending deletion")));
            }
            let r = &mut key.record;
            let back = r
                .state_before_deletion
                .take()
                .and_then(|s| KeyState::parse(&s))
                .filter(|s| *s != KeyState::PendingDeletion)
                .unwrap_or(KeyState::Disabled);
            r.state = back.as_str().to_owned();
            r.deletion_due_ms = None;
            r.updated_at_ms = now;
            Ok(())
        })
        .await
    }

    /// Destroys every key whose waiting period has ended. Returns how many.
    pub async fn purge_due(&self) -> KeyResult<usize> {
        let due = self.store.keys_due_for_deletion(self.now_ms()).await?;
        let mut destroyed = 0;
        for record in due {
            if self.store.destroy_key(&record.id).await? {
                destroyed += 1;
            }
            self.invalidate(&record.name, Some(&record.id));
            self.usage.forget(&record.id);
            tracing::info!(key = %record.name, "key destroyed after its waiting period");
        }
        if destroyed > 0
            && let Err(e) = self.store.checkpoint().await
        {
            tracing::warn!(error = %e, "checkpoint after destroying keys failed; retried at shutdown");
        }
        Ok(destroyed)
    }

    /// Rotates every enabled key whose latest version is older than its rotation period.
    pub async fn rotate_due(&self) -> KeyResult<usize> {
        let now = self.now_ms();
        let mut rotated = 0;
        for (record, latest_created_ms) in self.store.auto_rotating_keys().await? {
            let Some(period_s) = record.auto_rotate_period_s else {
                continue;
            };
            if latest_created_ms.saturating_add(period_s.saturating_mul(1000)) <= now {
                match self.rotate(&record.name).await {
                    Ok(_) => {
                        rotated += 1;
                        tracing::info!(key = %record.name, "key rotated automatically");
                    }
                    Err(e) => tracing::warn!(key = %record.name, error = %e, "automatic rotation failed"),
                }
            }
        }
        Ok(rotated)
    }

    /// Read-modify-write of a key's settings.
    async fn update(&self, name: &str, apply: impl Fn(&mut CachedKey) -> KeyResult<()>) -> KeyResult<KeyDetails> {
        let apply = &apply;
        self.write_key(name, |mut key| async move {
            apply(&mut key)?;
            Ok(self.store.update_key(&key.record).await?)
        })
        .await
    }

    /// One write of a key row: `write` gets a fresh copy of the row and writes it back with
    /// the revision it read. Writes of this node are serialised; a conflict with another
    /// node retries on a fresh copy. Caches are invalidated after the write.
    async fn write_key<F, Fut>(&self, name: &str, write: F) -> KeyResult<KeyDetails>
    where
        F: Fn(CachedKey) -> Fut,
        Fut: std::future::Future<Output = KeyResult<KeyRecord>>,
    {
        let _serialised = self.writes.lock().await;
        for _ in 0..UPDATE_ATTEMPTS {
            match write(self.load_fresh(name).await?).await {
                Ok(record) => {
                    self.invalidate(name, Some(&record.id));
                    return self.details(record).await;
                }
                Err(KeyError::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(KeyError::Store(StoreError::Conflict))
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
        let record = self
            .store
            .get_key(name)
            .await?
            .ok_or_else(|| KeyError::NotFound(name.to_owned()))?;
        parse_cached(record)
    }

    /// The key's cached metadata, loading it on a miss.
    async fn cached(&self, name: &str) -> KeyResult<Arc<CachedKey>> {
        if let Some(hit) = self.meta.get(name) {
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
            return Ok(hit);
        }
        let token = self.secrets.fill_token();
        let sealed =
            self.store.get_sealed(&key.record.id, version).await?.ok_or_else(|| {
                KeyError::Corrupt(format!("version {version} of '{}' has no record", key.record.name))
            })?;
        let secret = Arc::new(self.keyring.open(&identity(&key.record, version), &sealed).await?);
        self.secrets.insert(cache_key, Arc::clone(&secret), token);
        Ok(secret)
    }

    fn invalidate(&self, name: &str, key_id: Option<&str>) {
        self.meta.invalidate(|n| n == name);
        if let Some(id) = key_id {
            self.secrets.invalidate(|(k, _)| k.as_ref() == id);
        }
    }

    // ----- hot path --------------------------------------------------------------------

    async fn usable(&self, name: &str) -> KeyResult<Arc<CachedKey>> {
        let key = self.cached(name).await?;
        match key.state {
            KeyState::Enabled => Ok(key),
            KeyState::Disabled => Err(KeyError::Precondition(format!("key '{name}' is disabled"))),
            KeyState::PendingDeletion => Err(KeyError::Precondition(format!("key '{name}' is pending deletion"))),
        }
    }

    fn check_message(&self, message: &[u8]) -> KeyResult<()> {
        if message.len() > self.max_message_bytes {
            return Err(KeyError::TooLarge(format!(
                "messages are limited to {} bytes",
                self.max_message_bytes
            )));
        }
        Ok(())
    }

    fn check_version(key: &CachedKey, version: u32) -> KeyResult<()> {
        if version == 0 || version > key.record.latest_version {
            return Err(KeyError::Invalid(format!(
                "key_version must be between 1 and {}",
                key.record.latest_version
            )));
        }
        if version < key.record.min_verify_version {
            return Err(KeyError::Precondition(format!(
                "version {version} is below the key's min_verify_version ({})",
                key.record.min_verify_version
            )));
        }
        Ok(())
    }

    /// MAC of `message` with `version` (default: latest). Returns the tag and the version.
    pub async fn sign(&self, name: &str, message: &[u8], version: Option<u32>) -> KeyResult<(Vec<u8>, u32)> {
        self.check_message(message)?;
        let key = self.usable(name).await?;
        let version = version.unwrap_or(key.record.latest_version);
        Self::check_version(&key, version)?;
        let secret = self.secret(&key, version).await?;
        // The HMAC consumes the key material; the tag is public.
        let tag = key.algorithm.sign(secret.expose_secret(), message);
        self.usage.record(&key.id, version, 1, 0, self.now_ms());
        Ok((tag, version))
    }

    /// Checks `tag` against one version, or every version from `min_verify_version` to the
    /// latest. Says which version matched, or why none did.
    pub async fn verify(&self, name: &str, message: &[u8], tag: &[u8], version: Option<u32>) -> KeyResult<Verdict> {
        self.check_message(message)?;
        let key = self.usable(name).await?;
        let window = match version {
            Some(v) => {
                Self::check_version(&key, v)?;
                v..=v
            }
            None => key.record.min_verify_version..=key.record.latest_version,
        };
        if tag.len() != key.algorithm.tag_len() {
            return Ok(Verdict::MalformedSignature);
        }
        for v in window.rev() {
            let secret = self.secret(&key, v).await?;
            // The HMAC consumes the key material; comparison is constant-time.
            if key.algorithm.verify(secret.expose_secret(), message, tag) {
                self.usage.record(&key.id, v, 0, 1, self.now_ms());
                return Ok(Verdict::Valid(v));
            }
        }
        Ok(Verdict::Mismatch)
    }

    // ----- maintenance -----------------------------------------------------------------

    /// Writes pending usage counters to the store; on failure they are kept for the next try.
    pub async fn flush_usage(&self) -> KeyResult<()> {
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
    pub fn sweep_caches(&self) {
        self.meta.sweep();
        self.secrets.sweep();
    }

    /// Number of unwrapped secrets currently cached.
    pub fn cached_secrets(&self) -> usize {
        self.secrets.len()
    }

    /// When a key is due to be destroyed, as a time.
    pub fn deletion_time(record: &KeyRecord) -> Option<time::OffsetDateTime> {
        record.deletion_due_ms.map(from_unix_ms)
    }
}

fn validate_rotation(period: Duration) -> KeyResult<i64> {
    if period < MIN_AUTO_ROTATE || period > MAX_AUTO_ROTATE {
        return Err(KeyError::Invalid(
            "auto_rotate_period must be between 1h and 36500d".into(),
        ));
    }
    Ok(period.whole_seconds())
}
