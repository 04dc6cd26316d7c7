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
//! and that forgets after at most [`MAX_LOOKUP_TTL`] (so changes made on other nodes apply
//! within it), so the hot path costs one SHA-256 and no store read; the keyed hash is
//! computed only on a miss. The key itself is never stored, logged or audited.

pub mod format;
mod lifecycle;
pub mod ratelimit;

pub use crate::model::ApiKeyState;
pub use crate::store::ApiKeyRecord;
pub use lifecycle::{MAX_GRACE, Meta, NewApiKey, Patch, STATE_RULE, check_required, valid_id};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::auth::keyed_hash::KeyedHasher;
use crate::clock::SharedClock;
use crate::keys::cache::CacheSettings;
use crate::keys::cache::TtlCache;
use crate::store::{ApiKeyStore, StoreError};
use ratelimit::{Limit, RateLimiter, Taken};

/// Domain label of API-key hashes under the pepper.
pub(crate) const HASH_DOMAIN: &str = "api-key";
/// Longest a node remembers a lookup: a revocation, disable or reroll on another node (which
/// cannot clear this node's memory) takes effect here within this time.
pub(crate) const MAX_LOOKUP_TTL: time::Duration = time::Duration::seconds(30);

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
}

impl Outcome {
    fn of(code: Code, key: Option<Arc<Found>>) -> Self {
        Self {
            code,
            key,
            remaining: None,
            retry_after_ms: None,
        }
    }
}

pub struct ApiKeyService {
    store: Arc<dyn ApiKeyStore>,
    hasher: Arc<KeyedHasher>,
    clock: SharedClock,
    /// Found keys by the SHA-256 of the presented key (memory only; never stored).
    found: TtlCache<[u8; 32], Found>,
    limiter: RateLimiter,
    /// Last use per key id, written in batches.
    used: Mutex<HashMap<String, i64>>,
    /// Held by [`ApiKeyService::flush_usage`] from its drain to its store write, and by the
    /// reads that merge `used` into stored rows, so a read never falls between the two.
    usage_flush: tokio::sync::Mutex<()>,
    /// Lookups that reached the store (a malformed key never does): for tests and metrics.
    store_lookups: AtomicU64,
}

impl ApiKeyService {
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        hasher: Arc<KeyedHasher>,
        clock: SharedClock,
        cache: CacheSettings,
    ) -> Self {
        Self {
            found: TtlCache::new(cache.max_entries, cache.ttl.min(MAX_LOOKUP_TTL), clock.clone()),
            limiter: RateLimiter::new(cache.max_entries),
            used: Mutex::new(HashMap::new()),
            usage_flush: tokio::sync::Mutex::new(()),
            store_lookups: AtomicU64::new(0),
            store,
            hasher,
            clock,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Lookups that reached the store since start.
    pub fn store_lookups(&self) -> u64 {
        self.store_lookups.load(Ordering::Relaxed)
    }

    /// Forgets every remembered lookup on this node (after any change to any key).
    fn forget_lookups(&self) {
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
    /// of those permissions. Errors are failures of the vault, never of the key.
    pub async fn verify(&self, key: &str, required: &[String]) -> ApiKeyResult<Outcome> {
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
        self.note_use(&r.id, now);
        if r.state != ApiKeyState::Enabled {
            return Ok(Outcome::of(Code::Disabled, Some(found)));
        }
        if r.expires_at_ms.is_some_and(|at| now >= at) {
            return Ok(Outcome::of(Code::Expired, Some(found)));
        }
        if r.remaining == Some(0) {
            return Ok(Outcome {
                remaining: Some(0),
                ..Outcome::of(Code::UsageExceeded, Some(found))
            });
        }
        if let Some((limit, period_ms)) = r.ratelimit
            && let Taken::Limited { retry_after_ms } = self.limiter.take(&r.id, Limit { limit, period_ms }, now)
        {
            return Ok(Outcome {
                retry_after_ms: Some(retry_after_ms),
                ..Outcome::of(Code::RateLimited, Some(found))
            });
        }
        if !required.iter().all(|p| r.permissions.contains(p)) {
            return Ok(Outcome::of(Code::InsufficientPermissions, Some(found)));
        }
        let mut remaining = None;
        if r.remaining.is_some() {
            // The one write of the hot path, and only for keys with a credit limit: the
            // store takes the credit atomically, so concurrent verifications (on any node)
            // never spend more than there is.
            match self.store.consume_api_key_credit(&r.id).await? {
                Some(left) => remaining = Some(left),
                None => {
                    // Spent (here or on another node): the next lookup reads the store again,
                    // so this key answers USAGE_EXCEEDED before its other checks from now on.
                    self.found.invalidate(|d| *d == digest);
                    return Ok(Outcome {
                        remaining: Some(0),
                        ..Outcome::of(Code::UsageExceeded, Some(found))
                    });
                }
            }
        }
        Ok(Outcome {
            remaining,
            ..Outcome::of(Code::Valid, Some(found))
        })
    }

    fn note_use(&self, id: &str, now_ms: i64) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        match used.get_mut(id) {
            Some(at) => *at = (*at).max(now_ms),
            None => {
                used.insert(id.to_owned(), now_ms);
            }
        }
    }

    /// This node's last use of `id` not yet written.
    fn pending_use(&self, id: &str) -> Option<i64> {
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .copied()
    }

    /// Writes pending last-use times; on failure they are kept for the next try.
    pub async fn flush_usage(&self) -> ApiKeyResult<()> {
        let _flushing = self.usage_flush.lock().await;
        let pending: Vec<(String, i64)> = self
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.touch_api_keys(&pending).await {
            let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, at) in pending {
                let slot = used.entry(id).or_insert(at);
                *slot = (*slot).max(at);
            }
            return Err(e.into());
        }
        Ok(())
    }

    pub(crate) fn sweep_caches(&self) {
        self.found.sweep();
    }
}
