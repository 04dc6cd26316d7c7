//! Bearer API keys: long random keys that are only ever presented, stored like passwords —
//! better: as HMAC-SHA256 under the vault's pepper key (sealed under the KEK), so a dump
//! of the database gives nothing to test guesses against (a plain SHA-256, as Unkey stores,
//! would be a test oracle).
//!
//! [`ApiKeyService::verify`] runs the checks in docs/API.md's order, each with its code:
//! format and checksum ([`format`]: a mistyped key never reaches the store) → exists →
//! enabled → expiry → credits → rate limit ([`ratelimit`]) → permissions; a credit is
//! taken, atomically in the store, only when every check passed, so `remaining` drops by
//! exactly one per valid verification and never below zero. Lookups are remembered by the
//! SHA-256 of the presented key in a bounded memory that every change on this node clears
//! and that forgets after at most `cache.max_staleness` (so changes made on other nodes apply
//! within it), so the hot path costs one SHA-256 and no store read; the keyed hash is
//! computed only on a miss. The key itself is never stored, logged or audited.
//!
//! A key that passed every check is then held against the caller's fingerprint (source
//! address and user agent, as the verifying service reports them; [`crate::fingerprint`]),
//! before any credit is taken: its first is learned, a new one is reported (for the audit
//! trail) and, under the key's `on_new_fingerprint = deactivate`, disables the key — through
//! the store's update, so the row is re-tagged — and that verification answers `DISABLED`,
//! as does every later one on this node from that moment, before the store has the change.

pub mod format;
mod lifecycle;
pub mod ratelimit;

pub use crate::fingerprint::{Fingerprint, NewFingerprint};
pub use crate::model::ApiKeyState;
pub use crate::store::ApiKeyRecord;
pub use lifecycle::{Activity, MAX_GRACE, Meta, NewApiKey, Patch, STATE_RULE, check_required, valid_id};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::auth::keyed_hash::KeyedHasher;
use crate::clock::SharedClock;
use crate::fingerprint::{self as fingerprints, FingerprintTracker, Pending, Seen};
use crate::keys::cache::CacheSettings;
use crate::keys::cache::TtlCache;
use crate::model::OnNewFingerprint;
use crate::ratelimit::RateLimitBackend;
use crate::store::{ApiKeyActivity, ApiKeyPatch, ApiKeyStore, StoreError};
use ratelimit::{Limit, RateLimiter, Taken};

/// Domain label of API-key hashes under the pepper.
pub(crate) const HASH_DOMAIN: &str = "api-key";

/// `[apikeys]`: what a key's use from a new caller fingerprint does, unless the key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKeySettings {
    /// The default of keys that do not set their own (as `sigv4.on_new_fingerprint`'s).
    pub on_new_fingerprint: OnNewFingerprint,
    /// Caller fingerprints kept per key; beyond it the least recently seen is dropped.
    /// (Last use and fingerprint counts are written every `keys.usage_flush_interval`.)
    pub(crate) max_fingerprints: u32,
}

impl Default for ApiKeySettings {
    fn default() -> Self {
        Self {
            on_new_fingerprint: OnNewFingerprint::Record,
            max_fingerprints: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("no API key has id '{0}'")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored API key data is malformed: {0}")]
    Corrupt(String),
    #[error("the operating system's random generator failed")]
    Random,
}

pub(crate) type ApiKeyResult<T> = Result<T, ApiKeyError>;

/// The outcome codes of a verification, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Valid,
    NotFound,
    Disabled,
    Expired,
    UsageExceeded,
    RateLimited,
    InsufficientPermissions,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Valid => "VALID",
            Code::NotFound => "NOT_FOUND",
            Code::Disabled => "DISABLED",
            Code::Expired => "EXPIRED",
            Code::UsageExceeded => "USAGE_EXCEEDED",
            Code::RateLimited => "RATE_LIMITED",
            Code::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
        }
    }
}

/// A key found by its hash, remembered.
pub struct Found {
    pub record: ApiKeyRecord,
    /// The end of a reroll's grace period when the presented key is the previous one.
    pub(crate) valid_until_ms: Option<i64>,
}

/// What a verification found.
pub struct Outcome {
    pub code: Code,
    /// The key, when one was found (for every code but `NotFound`).
    pub key: Option<Arc<Found>>,
    /// Credits left after this verification (keys with a credit limit).
    pub remaining: Option<u64>,
    /// For `RateLimited`: when a verification can pass again.
    pub retry_after_ms: Option<i64>,
    /// The caller's fingerprint when it was new to the key (its first ever included), and
    /// what the key's rule did: for the audit trail, whatever the code.
    pub new_fingerprint: Option<NewFingerprint>,
}

impl Outcome {
    fn of(code: Code, key: Option<Arc<Found>>) -> Self {
        Self {
            code,
            key,
            remaining: None,
            retry_after_ms: None,
            new_fingerprint: None,
        }
    }
}

pub struct ApiKeyService {
    store: Arc<dyn ApiKeyStore>,
    hasher: Arc<KeyedHasher>,
    clock: SharedClock,
    settings: ApiKeySettings,
    /// Found keys by the SHA-256 of the presented key (memory only; never stored).
    found: TtlCache<[u8; 32], Found>,
    limiter: RateLimiter,
    /// Where the rate limits are counted first (Redis, shared by the nodes); `limiter` decides
    /// what it leaves to this node.
    shared_limits: RateLimitBackend,
    /// Last use and caller fingerprints per key id, written in batches.
    activity: FingerprintTracker<i64>,
    /// Held by [`ApiKeyService::flush_usage`] from its drain to its store write, and by the
    /// reads that merge pending activity into stored rows, so a read never falls between the
    /// two.
    usage_flush: tokio::sync::Mutex<()>,
    /// Lookups that reached the store (a malformed key never does): for tests and metrics.
    store_lookups: AtomicU64,
    /// Rate-limit decisions on keys that have a limit: allowed, limited (for metrics).
    ratelimit_allowed: AtomicU64,
    ratelimit_limited: AtomicU64,
}

impl ApiKeyService {
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        hasher: Arc<KeyedHasher>,
        clock: SharedClock,
        settings: ApiKeySettings,
        cache: CacheSettings,
    ) -> Self {
        Self {
            found: TtlCache::new(cache.max_entries, cache.state_ttl(), clock.clone()),
            limiter: RateLimiter::new(cache.max_entries),
            shared_limits: RateLimitBackend::default(),
            activity: FingerprintTracker::new(settings.max_fingerprints),
            usage_flush: tokio::sync::Mutex::new(()),
            store_lookups: AtomicU64::new(0),
            ratelimit_allowed: AtomicU64::new(0),
            ratelimit_limited: AtomicU64::new(0),
            store,
            hasher,
            clock,
            settings,
        }
    }

    /// Counts the keys' rate limits in `shared` first (`[ratelimit]`); without it, or where it
    /// leaves a decision to this node, in this node's memory.
    #[must_use]
    pub fn with_rate_limits(mut self, shared: RateLimitBackend) -> Self {
        self.shared_limits = shared;
        self
    }

    /// Rate-limit decisions so far on keys with a limit: (allowed, limited).
    pub fn ratelimit_decisions(&self) -> (u64, u64) {
        (
            self.ratelimit_allowed.load(std::sync::atomic::Ordering::Relaxed),
            self.ratelimit_limited.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The server's default fingerprint rule and bound.
    pub fn settings(&self) -> &ApiKeySettings {
        &self.settings
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Lookups that reached the store since start.
    pub fn store_lookups(&self) -> u64 {
        self.store_lookups.load(Ordering::Relaxed)
    }

    /// Forgets every remembered lookup on this node (after any change to any key).
    pub(crate) fn forget_lookups(&self) {
        self.found.invalidate(|_| true);
    }

    async fn lookup(&self, key: &str, digest: [u8; 32]) -> ApiKeyResult<Option<Arc<Found>>> {
        if let Some(hit) = self.found.get(&digest) {
            return Ok(Some(hit));
        }
        let token = self.found.fill_token();
        self.store_lookups.fetch_add(1, Ordering::Relaxed);
        // The presented key is hashed under the pepper; only its keyed hash is looked up.
        let hash = self.hasher.hash(HASH_DOMAIN, key.as_bytes());
        let Some((record, until)) = self.store.find_api_key(&hash).await? else {
            return Ok(None);
        };
        let found = Arc::new(Found {
            record,
            valid_until_ms: until,
        });
        self.found.insert(digest, Arc::clone(&found), token);
        Ok(Some(found))
    }

    /// Verifies a presented key and, when `required` is not empty, that it holds every one
    /// of those permissions; a key that passes is held against `who`, the caller the
    /// verifying service reports. Errors are failures of the vault, never of the key.
    pub async fn verify(&self, key: &str, required: &[String], who: Fingerprint) -> ApiKeyResult<Outcome> {
        if format::check(key).is_err() {
            return Ok(Outcome::of(Code::NotFound, None));
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let Some(found) = self.lookup(key, digest).await? else {
            return Ok(Outcome::of(Code::NotFound, None));
        };
        let now = self.now_ms();
        let r = &found.record;
        if found.valid_until_ms.is_some_and(|until| now >= until) || r.state == ApiKeyState::Revoked {
            return Ok(Outcome::of(Code::NotFound, None));
        }
        if let Some(refused) = self.refusal(&found, required, now).await {
            // A refused use is still the key's last use; its caller's fingerprint is not
            // learned (the key granted nothing).
            self.activity.touch(&r.id, now, ());
            return Ok(refused);
        }
        let rule = r.on_new_fingerprint.unwrap_or(self.settings.on_new_fingerprint);
        let stored = || self.store.list_api_key_fingerprints(&r.id);
        let block_on_new = rule == OnNewFingerprint::Deactivate;
        let seen = self
            .activity
            .notice_loaded(&r.id, stored, &who, (now, ()), block_on_new)
            .await?;
        // A key a new fingerprint disabled on this node refuses every caller, even before
        // the store (and so the remembered lookup) says disabled.
        let Ok(new_fingerprint) = fingerprints::report(seen, &r.id, &r.principal, who, rule) else {
            self.activity.touch(&r.id, now, ());
            return Ok(Outcome::of(Code::Disabled, Some(Arc::clone(&found))));
        };
        if seen == Seen::New && self.act_on_new_fingerprint(&found.record, rule).await? {
            return Ok(Outcome {
                new_fingerprint,
                ..Outcome::of(Code::Disabled, Some(found))
            });
        }
        let outcome = self.take_credit(found, digest).await?;
        Ok(Outcome {
            new_fingerprint,
            ..outcome
        })
    }

    /// The first of the key's own checks it fails, in docs/API.md's order: state, expiry,
    /// credits, rate limit, permissions.
    async fn refusal(&self, found: &Arc<Found>, required: &[String], now: i64) -> Option<Outcome> {
        let r = &found.record;
        let refused = |code| Outcome::of(code, Some(Arc::clone(found)));
        if r.state != ApiKeyState::Enabled {
            return Some(refused(Code::Disabled));
        }
        if r.expires_at_ms.is_some_and(|at| now >= at) {
            return Some(refused(Code::Expired));
        }
        if r.remaining == Some(0) {
            return Some(Outcome {
                remaining: Some(0),
                ..refused(Code::UsageExceeded)
            });
        }
        if let Some((limit, period_ms)) = r.ratelimit {
            if let Taken::Limited { retry_after_ms } = self.take(&r.id, Limit { limit, period_ms }, now).await {
                self.ratelimit_limited
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Some(Outcome {
                    retry_after_ms: Some(retry_after_ms),
                    ..refused(Code::RateLimited)
                });
            }
            self.ratelimit_allowed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if !required.iter().all(|p| r.permissions.contains(p)) {
            return Some(refused(Code::InsufficientPermissions));
        }
        None
    }

    /// Takes a token of the key's rate limit: from the shared count, or this node's.
    async fn take(&self, id: &str, limit: Limit, now: i64) -> Taken {
        match self.shared_limits.take(id, limit, now).await {
            Some(taken) => taken,
            None => self.limiter.take(id, limit, now),
        }
    }

    /// Takes a credit from a key with a credit limit: `Valid` with what is left, or
    /// `UsageExceeded` when none was left.
    async fn take_credit(&self, found: Arc<Found>, digest: [u8; 32]) -> ApiKeyResult<Outcome> {
        if found.record.remaining.is_none() {
            return Ok(Outcome::of(Code::Valid, Some(found)));
        }
        // The one write of the hot path, and only for keys with a credit limit: the store
        // takes the credit atomically, so concurrent verifications (on any node) never spend
        // more than there is.
        match self.store.consume_api_key_credit(&found.record.id).await? {
            Some(left) => Ok(Outcome {
                remaining: Some(left),
                ..Outcome::of(Code::Valid, Some(found))
            }),
            None => {
                // Spent (here or on another node): the next lookup reads the store again, so
                // this key answers USAGE_EXCEEDED before its other checks from now on.
                self.found.invalidate(|d| *d == digest);
                Ok(Outcome {
                    remaining: Some(0),
                    ..Outcome::of(Code::UsageExceeded, Some(found))
                })
            }
        }
    }

    /// Applies the key's rule to a fingerprint new to it: `alert` and `deactivate` warn in
    /// the log, and `deactivate` disables the key through the store's update (the row is
    /// checked and re-tagged; a key revoked meanwhile stays revoked). Returns whether it did
    /// (the verification is then refused).
    async fn act_on_new_fingerprint(&self, key: &ApiKeyRecord, rule: OnNewFingerprint) -> ApiKeyResult<bool> {
        fingerprints::warn_when_alerting("api key", &key.id, &key.principal, rule);
        if rule != OnNewFingerprint::Deactivate {
            return Ok(false);
        }
        let disable = ApiKeyPatch {
            state: Some(ApiKeyState::Disabled),
            ..ApiKeyPatch::default()
        };
        self.store.update_api_key(&key.id, &disable, self.now_ms()).await?;
        self.forget_lookups();
        Ok(true)
    }

    /// This node's last use of `id` not yet written.
    fn pending_use(&self, id: &str) -> Option<i64> {
        self.activity.pending_for(id).map(|p| p.last_use)
    }

    /// Writes pending last uses and fingerprints; on failure they are kept for the next try.
    pub async fn flush_usage(&self) -> ApiKeyResult<()> {
        let _flushing = self.usage_flush.lock().await;
        let write = <dyn ApiKeyStore>::add_api_key_activity;
        let max = self.settings.max_fingerprints;
        self.activity
            .flush((to_store, from_store), self.store.as_ref(), write, max)
            .await?;
        Ok(())
    }

    pub(crate) fn sweep_caches(&self) {
        self.found.sweep();
    }
}

/// A flush's batch as the store takes it.
fn to_store(p: Pending<i64>) -> ApiKeyActivity {
    ApiKeyActivity {
        id: p.id,
        last_used_at_ms: p.last_use,
        fingerprints: p.fingerprints,
    }
}

/// A batch the store refused, back as pending use.
fn from_store(a: ApiKeyActivity) -> Pending<i64> {
    Pending {
        id: a.id,
        last_use: a.last_used_at_ms,
        fingerprints: a.fingerprints,
    }
}

#[cfg(all(test, feature = "ratelimit-redis"))]
mod tests_shared;
