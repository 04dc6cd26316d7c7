//! What one verify request pays its in-process caches: a hit on the key metadata (a `String`
//! key looked up by `&str`) and a hit on the unwrapped secret (an `(Arc<str>, u32)` key), as
//! `Keys::cached` and `Keys::secret` do. It compares sigvault's `TtlCache` (its source file,
//! included unchanged: quick_cache underneath) with the hand-written map it replaced and with
//! the same API written over moka's sync cache.
//!
//! It owns only this measurement and must never become a dependency of the server: the two
//! crates it compares against stay out of sigvault's dependency graph. `bench/cache.sh`
//! runs it under callgrind (instruction counts, steady on a shared machine) and natively
//! (wall time, noisy).
//!
//! Usage: `sigvault-cache-bench <ours|hand-written|moka> <lookups>`.

#![allow(dead_code)]

#[path = "../../../src/clock.rs"]
mod clock;

/// sigvault's cache, compiled from its own source: it reaches its clock as `crate::clock`.
#[path = "../../../src/keys/cache.rs"]
mod ours;

mod hand_written;
mod over_moka;

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clock::{SharedClock, SystemClock};
use time::Duration;

/// `cache.max_entries`' default.
const CAPACITY: usize = 10_000;
/// Keys in the cache while it is measured: a vault with a few hundred keys.
const KEYS: u32 = 300;

/// The operations the verify path uses, implemented by all three.
trait Cache<K, V> {
    fn build(capacity: usize, ttl: Duration, clock: SharedClock) -> Self;
    fn fill(&self, key: K, value: Arc<V>) -> bool;
    fn lookup<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized;
}

macro_rules! cache_impl {
    ($ty:ident) => {
        impl<K, V> Cache<K, V> for $ty::TtlCache<K, V>
        where
            K: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
            V: Send + Sync + 'static,
        {
            fn build(capacity: usize, ttl: Duration, clock: SharedClock) -> Self {
                $ty::TtlCache::new(capacity, ttl, clock)
            }
            fn fill(&self, key: K, value: Arc<V>) -> bool {
                self.insert(key, value, self.fill_token())
            }
            fn lookup<Q>(&self, key: &Q) -> Option<Arc<V>>
            where
                K: std::borrow::Borrow<Q>,
                Q: std::hash::Hash + Eq + ?Sized,
            {
                self.get(key)
            }
        }
    };
}
cache_impl!(ours);
cache_impl!(hand_written);
cache_impl!(over_moka);

/// Fills a metadata and a secret cache as a running vault would, then does `lookups`
/// verify-path lookups (two hits each). Returns the number of hits, so nothing is optimised
/// away and a broken variant shows.
fn run<M, S>(lookups: u64) -> u64
where
    M: Cache<String, String>,
    S: Cache<(Arc<str>, u32), [u8; 32]>,
{
    let clock: SharedClock = Arc::new(SystemClock);
    let meta = M::build(CAPACITY, Duration::seconds(30), Arc::clone(&clock));
    let secrets = S::build(CAPACITY, Duration::seconds(30), clock);
    let ids: Vec<Arc<str>> = (0..KEYS).map(|i| Arc::from(format!("k_{i:032x}"))).collect();
    for (i, id) in (0..KEYS).zip(&ids) {
        meta.fill(format!("key-{i}"), Arc::new(format!("metadata of key {i}")));
        secrets.fill((Arc::clone(id), 1), Arc::new([0x5a; 32]));
    }
    let name = "key-137";
    let id = Arc::clone(&ids[137]);
    let mut hits = 0;
    for _ in 0..lookups {
        if black_box(meta.lookup(black_box(name))).is_some() {
            hits += 1;
        }
        let secret_key = (Arc::clone(&id), 1);
        if black_box(secrets.lookup(black_box(&secret_key))).is_some() {
            hits += 1;
        }
    }
    hits
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(variant), Some(Ok(lookups))) = (args.get(1), args.get(2).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: sigvault-cache-bench <ours|hand-written|moka> <lookups>");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let hits = match variant.as_str() {
        "ours" => run::<ours::TtlCache<_, _>, ours::TtlCache<_, _>>(lookups),
        "hand-written" => run::<hand_written::TtlCache<_, _>, hand_written::TtlCache<_, _>>(lookups),
        "moka" => run::<over_moka::TtlCache<_, _>, over_moka::TtlCache<_, _>>(lookups),
        other => {
            eprintln!("unknown variant {other:?}");
            return ExitCode::from(2);
        }
    };
    let elapsed = started.elapsed();
    if hits != 2 * lookups {
        eprintln!("{variant}: {hits} hits for {lookups} lookups: the cache lost entries");
        return ExitCode::FAILURE;
    }
    let per_request = elapsed.as_nanos() as f64 / lookups.max(1) as f64;
    println!("{variant} lookups={lookups} wall={elapsed:?} ns/request={per_request:.1}");
    ExitCode::SUCCESS
}
