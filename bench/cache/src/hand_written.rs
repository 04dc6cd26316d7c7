//! The hand-written `TtlCache` that `keys::cache` replaced (a `Mutex<HashMap>` with SipHash
//! and a FIFO queue), unchanged but for this paragraph and its tests: the baseline of the
//! measurement. It must never be used outside this benchmark.
//!
//! Original doc: a bounded cache with a time-to-live, used for key metadata and for
//! unwrapped secrets.
//!
//! Values are held as `Arc<V>`: an evicted, expired or invalidated value is dropped when
//! its last in-flight user finishes, and for [`crate::secret::SecretBytes`] dropping
//! zeroizes it. Eviction is first-in-first-out when full.
//!
//! Filling races with invalidation: a request that read a key before a `PATCH` disabled
//! it must not put the stale copy back. [`TtlCache::fill_token`] is taken before the read,
//! and [`TtlCache::insert`] drops the value if any invalidation happened since.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::Duration;

use crate::clock::{SharedClock, unix_ms};

struct Entry<V> {
    value: Arc<V>,
    expires_at_ms: i64,
    seq: u64,
}

struct Inner<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Insertion order; may hold stale (already removed or replaced) entries, skipped by seq.
    order: VecDeque<(K, u64)>,
    next_seq: u64,
    invalidations: u64,
}

pub struct TtlCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
    ttl_ms: i64,
    clock: SharedClock,
}

/// Proof of the invalidation epoch a fill started in.
#[derive(Debug, Clone, Copy)]
pub struct FillToken(u64);

impl<K: Eq + Hash + Clone, V> TtlCache<K, V> {
    pub fn new(capacity: usize, ttl: Duration, clock: SharedClock) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
                invalidations: 0,
            }),
            capacity: capacity.max(1),
            ttl_ms: i64::try_from(ttl.whole_milliseconds()).unwrap_or(i64::MAX),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = unix_ms(self.clock.now());
        let mut inner = self.lock();
        match inner.map.get(key) {
            Some(entry) if entry.expires_at_ms > now => Some(Arc::clone(&entry.value)),
            Some(_) => {
                inner.map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn fill_token(&self) -> FillToken {
        FillToken(self.lock().invalidations)
    }

    /// Inserts `value` unless an invalidation happened since `token` was taken. Returns
    /// whether it was cached.
    pub fn insert(&self, key: K, value: Arc<V>, token: FillToken) -> bool {
        let expires_at_ms = unix_ms(self.clock.now()).saturating_add(self.ttl_ms);
        let mut inner = self.lock();
        if inner.invalidations != token.0 {
            return false;
        }
        while inner.map.len() >= self.capacity && !inner.map.contains_key(&key) {
            let Some((old, seq)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&old).is_some_and(|e| e.seq == seq) {
                inner.map.remove(&old);
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.push_back((key.clone(), seq));
        inner.map.insert(
            key,
            Entry {
                value,
                expires_at_ms,
                seq,
            },
        );
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
        true
    }

    /// Removes every entry whose key matches, and fails fills that started before.
    pub fn invalidate(&self, matches: impl Fn(&K) -> bool) {
        let mut inner = self.lock();
        inner.invalidations += 1;
        inner.map.retain(|k, _| !matches(k));
    }

    /// Drops expired entries (run periodically so idle secrets do not outlive their TTL).
    pub fn sweep(&self) {
        let now = unix_ms(self.clock.now());
        self.lock().map.retain(|_, e| e.expires_at_ms > now);
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
