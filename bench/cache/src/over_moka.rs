//! `TtlCache`'s API over `moka::sync::Cache`: what replacing sigvault's cache with moka would
//! look like. The expiry lives in the value and is checked against the injected clock (moka's
//! own TTL reads the system clock, which the TTL tests cannot drive); the fill token is an
//! invalidation counter checked around the insert. Eviction is moka's (TinyLFU admission,
//! LRU), not first-in-first-out.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use time::Duration;

use crate::clock::{SharedClock, unix_ms};

pub struct TtlCache<K, V> {
    cache: moka::sync::Cache<K, (Arc<V>, i64)>,
    invalidations: AtomicU64,
    ttl_ms: i64,
    clock: SharedClock,
}

#[derive(Debug, Clone, Copy)]
pub struct FillToken(u64);

impl<K, V> TtlCache<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub fn new(capacity: usize, ttl: Duration, clock: SharedClock) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(u64::try_from(capacity.max(1)).unwrap_or(u64::MAX))
                .support_invalidation_closures()
                .build(),
            invalidations: AtomicU64::new(0),
            ttl_ms: i64::try_from(ttl.whole_milliseconds()).unwrap_or(i64::MAX),
            clock,
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = unix_ms(self.clock.now());
        let (value, expires_at_ms) = self.cache.get(key)?;
        if expires_at_ms > now {
            Some(value)
        } else {
            self.cache.invalidate(key);
            None
        }
    }

    pub fn fill_token(&self) -> FillToken {
        FillToken(self.invalidations.load(Ordering::Acquire))
    }

    pub fn insert(&self, key: K, value: Arc<V>, token: FillToken) -> bool {
        if self.invalidations.load(Ordering::Acquire) != token.0 {
            return false;
        }
        let expires_at_ms = unix_ms(self.clock.now()).saturating_add(self.ttl_ms);
        self.cache.insert(key.clone(), (value, expires_at_ms));
        // An invalidation that ran between the check and the insert: take the value back out.
        if self.invalidations.load(Ordering::Acquire) != token.0 {
            self.cache.invalidate(&key);
            return false;
        }
        true
    }

    pub fn invalidate(&self, matches: impl Fn(&K) -> bool + Send + Sync + 'static) {
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        let _ = self.cache.invalidate_entries_if(move |k, _| matches(k));
        self.cache.run_pending_tasks();
    }

    pub fn sweep(&self) {
        let now = unix_ms(self.clock.now());
        let _ = self
            .cache
            .invalidate_entries_if(move |_, (_, expires_at_ms)| *expires_at_ms <= now);
        self.cache.run_pending_tasks();
    }

    pub fn len(&self) -> usize {
        self.cache.run_pending_tasks();
        usize::try_from(self.cache.entry_count()).unwrap_or(usize::MAX)
    }
}
