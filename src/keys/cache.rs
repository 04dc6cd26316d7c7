//! A bounded cache with a time-to-live, used for key metadata, unwrapped secrets and API-key
//! lookups. It must never hand out a value past its TTL, nor keep a value that was read
//! before an invalidation.
//!
//! Storage and eviction are quick_cache's. Values are held as `Arc<V>`: an evicted, expired
//! or invalidated value is dropped when its last in-flight user finishes, and for
//! [`crate::secret::SecretBytes`] dropping zeroizes it. When full, quick_cache evicts by its
//! CLOCK-Pro-like policy (new entries that were never read go first; entries in use survive
//! a stream of one-off fills), not first-in-first-out: callers rely on the bound, the TTL
//! and invalidation, never on which entry is evicted.
//!
//! Expiry is ours, not quick_cache's: each value carries its expiry time, read against the
//! injected [`crate::clock::Clock`] on every hit, so TTL tests drive time instead of
//! sleeping.
//!
//! Filling races with invalidation: a request that read a key before a `PATCH` disabled it
//! must not put the stale copy back. [`TtlCache::fill_token`] is taken before the read, and
//! [`TtlCache::insert`] drops the value if any invalidation happened since. The check and
//! the insert happen under the read side of `epoch`, and an invalidation takes the write
//! side, so no stale value is ever visible, even briefly; a hit never touches that lock.
//!
//! Measured before replacing the hand-written map (a `Mutex<HashMap>` with SipHash and a
//! FIFO queue), by `bench/cache.sh`: the verify path's two hits (metadata by name, secret by
//! id and version) cost 1,131 instructions with quick_cache, 1,425 with the hand-written map
//! and 2,828 with moka's sync cache (callgrind, 100,000 requests). Wall time on the shared
//! 2-core machine was too noisy to split the first two (165–283 against 187–243 ns per
//! request over five runs; moka 514–581 ns). Most of the difference is the hash function
//! (foldhash against SipHash), and all of it is well under 1 % of a verify request's ~33 µs
//! of server CPU.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

use time::Duration;

use crate::clock::SharedClock;

/// `[cache]`: how many entries each cache holds, and how long they are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long an unwrapped secret stays in memory (it never changes for its id and
    /// version: a deleted key or credential is refused by its metadata first).
    pub ttl: Duration,
    pub max_entries: usize,
    /// The longest any node serves a cached copy of a row that can change (key metadata,
    /// caller tokens, credentials, API-key lookups): a change made on another node that
    /// shares the store, whose notification was lost, takes effect here within this time.
    pub max_staleness: Duration,
}

/// `cache.max_staleness` unless set: 5 s.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::seconds(5);

impl CacheSettings {
    /// The lifetime of a cached row that can change: `ttl`, at most `max_staleness`.
    pub fn state_ttl(&self) -> Duration {
        self.ttl.min(self.max_staleness)
    }
}

/// A cached value and the time (Unix ms) from which it is no longer served.
struct Entry<V> {
    value: Arc<V>,
    expires_at_ms: i64,
}

// Not derived: cloning an entry clones the `Arc`, never `V` (a secret is never copied).
impl<V> Clone for Entry<V> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            expires_at_ms: self.expires_at_ms,
        }
    }
}

pub(crate) struct TtlCache<K, V> {
    entries: quick_cache::sync::Cache<K, Entry<V>>,
    /// How many invalidations have run. Read-locked by a fill's check-and-insert,
    /// write-locked by an invalidation, so the two never interleave.
    epoch: RwLock<u64>,
    ttl_ms: i64,
    clock: SharedClock,
}

/// Proof of the invalidation epoch a fill started in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillToken(u64);

impl<K: Eq + Hash, V> TtlCache<K, V> {
    /// A cache of about `capacity` entries (quick_cache shards it, and each shard holds its
    /// share of the capacity).
    pub(crate) fn new(capacity: usize, ttl: Duration, clock: SharedClock) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            epoch: RwLock::new(0),
            ttl_ms: i64::try_from(ttl.whole_milliseconds()).unwrap_or(i64::MAX),
            clock,
        }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now_ms();
        let entry = self.entries.get(key)?;
        if entry.expires_at_ms > now {
            return Some(entry.value);
        }
        // Only if still expired: a fresh fill may have replaced it since the read above.
        self.entries.remove_if(key, |e| e.expires_at_ms <= now);
        None
    }

    pub(crate) fn fill_token(&self) -> FillToken {
        FillToken(*self.epoch.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Inserts `value` unless an invalidation happened since `token` was taken. Returns
    /// whether it was cached.
    pub(crate) fn insert(&self, key: K, value: Arc<V>, token: FillToken) -> bool {
        let expires_at_ms = self.clock.now_ms().saturating_add(self.ttl_ms);
        let epoch = self.epoch.read().unwrap_or_else(PoisonError::into_inner);
        if *epoch != token.0 {
            return false;
        }
        self.entries.insert(key, Entry { value, expires_at_ms });
        true
    }

    /// Removes every entry whose key matches, and fails fills that started before.
    pub(crate) fn invalidate(&self, matches: impl Fn(&K) -> bool) {
        let mut epoch = self.epoch.write().unwrap_or_else(PoisonError::into_inner);
        *epoch = epoch.wrapping_add(1);
        self.entries.retain(|k, _| !matches(k));
    }

    /// Drops expired entries (run periodically so idle secrets do not outlive their TTL).
    pub(crate) fn sweep(&self) {
        let now = self.clock.now_ms();
        self.entries.retain(|_, e| e.expires_at_ms > now);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Single flight: at most one load per key at a time. Concurrent misses of one cold entry
/// (a burst of requests for a key right after a start, or after its cache entry expired)
/// would otherwise each make the same KEK unwrap — with AWS KMS, a network call each, and
/// throttling the vault's other requests. The first caller loads; the others wait on the
/// key's lock and then find the value in the cache (or, when an invalidation dropped it,
/// load in turn). When a load fails, the callers that waited for it fail at once too
/// ([`Flight::after_failure`]) instead of each trying again — N waiters behind a hung HSM
/// would otherwise wait N call timeouts; the next request after the burst tries afresh.
/// Loads of different keys never wait on each other.
pub(crate) struct Flights<K> {
    running: std::sync::Mutex<std::collections::HashMap<K, Arc<Slot>>>,
}

/// One key's turn lock, and whether a load under it failed.
#[derive(Default)]
struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    failed: std::sync::atomic::AtomicBool,
}

/// A caller's turn at a key's load; ends when dropped.
pub(crate) struct Flight<'a, K: Eq + Hash + Clone> {
    flights: &'a Flights<K>,
    key: K,
    slot: Arc<Slot>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash + Clone> Flights<K> {
    pub(crate) fn new() -> Self {
        Self {
            running: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Waits for the turn at `key`'s load.
    pub(crate) async fn join(&self, key: &K) -> Flight<'_, K> {
        let slot = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(running.entry(key.clone()).or_default())
        };
        // Made before waiting: a caller cancelled while it waits drops it, which removes
        // the entry when it was the last holder (see `Drop`).
        let mut flight = Flight {
            flights: self,
            key: key.clone(),
            guard: None,
            slot,
        };
        flight.guard = Some(Arc::clone(&flight.slot.turn).lock_owned().await);
        flight
    }

    /// Keys with a load running or waited for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl<K: Eq + Hash + Clone> Flight<'_, K> {
    /// Whether a load before this caller's turn, in the same burst, failed: then this
    /// caller should fail too rather than try again at once.
    pub(crate) fn after_failure(&self) -> bool {
        self.slot.failed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// This caller's load failed: the callers waiting behind it will not try again.
    pub(crate) fn failed(&self) {
        self.slot.failed.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl<K: Eq + Hash + Clone> Drop for Flight<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut running = self.flights.running.lock().unwrap_or_else(PoisonError::into_inner);
        // The last holder removes the entry: the map's reference and this flight's are the
        // only ones left (every other caller of the burst holds one until it is dropped).
        if running.get(&self.key).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) && Arc::strong_count(&self.slot) == 2 {
            running.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use time::OffsetDateTime;

    fn cache(capacity: usize) -> (TtlCache<u32, String>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH + Duration::days(1000)));
        (TtlCache::new(capacity, Duration::seconds(60), clock.clone()), clock)
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let (c, clock) = cache(10);
        assert!(c.insert(1, Arc::new("a".into()), c.fill_token()));
        clock.advance(Duration::seconds(59));
        assert_eq!(c.get(&1).as_deref().map(String::as_str), Some("a"));
        clock.advance(Duration::seconds(1));
        assert!(c.get(&1).is_none());
        assert_eq!(c.len(), 0, "an expired entry found by a read is removed");
    }

    #[test]
    fn a_full_cache_stays_within_its_capacity() {
        let (c, _) = cache(2);
        for k in 1..=3 {
            assert!(c.insert(k, Arc::new(k.to_string()), c.fill_token()));
        }
        assert_eq!(c.len(), 2);
        assert_eq!((1..=3).filter(|k| c.get(k).is_some()).count(), 2);
        assert!(c.get(&3).is_some(), "the newest fill is kept");
    }

    #[test]
    fn entries_in_use_survive_a_stream_of_one_off_fills() {
        let (c, _) = cache(64);
        for k in 0..16 {
            c.insert(k, Arc::new(k.to_string()), c.fill_token());
            assert!(c.get(&k).is_some());
        }
        for k in 1000..3000 {
            c.insert(k, Arc::new(String::new()), c.fill_token());
        }
        assert!(c.len() <= 64, "{}", c.len());
        for k in 0..16 {
            assert!(c.get(&k).is_some(), "key {k} was evicted by one-off fills");
        }
    }

    #[test]
    fn a_fill_that_started_before_an_invalidation_is_dropped() {
        let (c, _) = cache(10);
        let token = c.fill_token();
        c.invalidate(|k| *k == 7);
        assert!(!c.insert(7, Arc::new("stale".into()), token));
        assert!(c.get(&7).is_none());
    }

    #[test]
    fn invalidation_removes_only_matching_entries() {
        let (c, _) = cache(10);
        for k in 1..=4 {
            c.insert(k, Arc::new(k.to_string()), c.fill_token());
        }
        c.invalidate(|k| k % 2 == 0);
        assert!(c.get(&1).is_some() && c.get(&3).is_some());
        assert!(c.get(&2).is_none() && c.get(&4).is_none());
    }

    #[test]
    fn evicted_values_are_dropped() {
        struct Tracked(Arc<AtomicUsize>);
        impl Drop for Tracked {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        let c: TtlCache<u32, Tracked> = TtlCache::new(1, Duration::seconds(5), clock.clone());
        c.insert(1, Arc::new(Tracked(drops.clone())), c.fill_token());
        c.insert(2, Arc::new(Tracked(drops.clone())), c.fill_token());
        assert_eq!(drops.load(Ordering::SeqCst), 1, "eviction drops the value");
        clock.advance(Duration::seconds(5));
        c.sweep();
        assert_eq!(drops.load(Ordering::SeqCst), 2, "sweeping drops expired values");
    }

    /// The store is a version counter; a writer bumps it and invalidates, as a `PATCH` does,
    /// while fillers read it and insert. Once an invalidation has returned, no read may see
    /// a version older than the one written before it.
    #[test]
    fn a_fill_racing_an_invalidation_on_another_thread_never_serves_a_stale_value() {
        let (c, _) = cache(10);
        let c = Arc::new(c);
        let version = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let fillers: Vec<_> = (0..2)
            .map(|_| {
                let (c, version, done) = (Arc::clone(&c), Arc::clone(&version), Arc::clone(&done));
                std::thread::spawn(move || {
                    while !done.load(Ordering::SeqCst) {
                        let token = c.fill_token();
                        let read = version.load(Ordering::SeqCst);
                        c.insert(1, Arc::new(read.to_string()), token);
                    }
                })
            })
            .collect();
        let mut hits = 0;
        for written in 1..=20_000u64 {
            version.store(written, Ordering::SeqCst);
            c.invalidate(|_| true);
            // Read for a while: a stale fill that slipped past the check lands later.
            for _ in 0..20 {
                if let Some(seen) = c.get(&1) {
                    let seen: u64 = seen.parse().unwrap();
                    assert!(seen >= written, "read version {seen} after invalidating for {written}");
                    hits += 1;
                }
            }
        }
        done.store(true, Ordering::SeqCst);
        for filler in fillers {
            filler.join().unwrap();
        }
        assert!(hits > 0, "the fillers never filled: the race was not exercised");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_loads_of_one_key_run_one_at_a_time_and_leave_nothing_behind() {
        let flights: Arc<Flights<&'static str>> = Arc::new(Flights::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (flights, inside, most) = (Arc::clone(&flights), Arc::clone(&inside), Arc::clone(&most));
            tasks.push(tokio::spawn(async move {
                let _turn = flights.join(&"key").await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        // Another key's load does not wait for them.
        let other = tokio::time::timeout(std::time::Duration::from_secs(5), flights.join(&"other")).await;
        assert!(other.is_ok());
        drop(other);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one load of a key at a time");
        assert_eq!(flights.len(), 0, "no entry outlives its last flight");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_callers_behind_a_failed_load_fail_at_once_and_the_next_burst_tries_afresh() {
        let flights: Arc<Flights<&'static str>> = Arc::new(Flights::new());
        let first = flights.join(&"key").await;
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let flights = Arc::clone(&flights);
                tokio::spawn(async move { flights.join(&"key").await.after_failure() })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        first.failed();
        drop(first);
        for waiter in waiters {
            assert!(waiter.await.unwrap(), "a waiter sees the failure");
        }
        assert_eq!(flights.len(), 0);
        assert!(
            !flights.join(&"key").await.after_failure(),
            "a later burst starts clean"
        );
    }

    #[tokio::test]
    async fn a_caller_cancelled_while_waiting_leaves_no_entry_behind() {
        let flights: Flights<&'static str> = Flights::new();
        let holder = flights.join(&"key").await;
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), flights.join(&"key")).await;
        assert!(waited.is_err(), "still held");
        drop(holder);
        assert_eq!(flights.len(), 0);
    }
}
