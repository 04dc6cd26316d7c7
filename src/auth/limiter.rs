//! Failed authentications counted per source address.
//!
//! Memory is bounded ([`MAX_TRACKED_SOURCES`] entries) and cannot be flushed: when the table
//! is full, expired windows go first, then addresses that are not blocked; a blocked
//! address is kept until its window ends, however many others fail. Under pressure (the
//! table three quarters full) an address not tracked yet is counted under its network —
//! IPv4 /24, IPv6 /64 — so many addresses of one network share one entry and are blocked
//! together, rather than each taking one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::clock::SharedClock;

/// Most entries (addresses and networks) tracked at once by the failure limiter.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// From this many entries on, a new address is counted under its network.
const PRESSURE: usize = MAX_TRACKED_SOURCES / 4 * 3;

/// What an entry counts: one address, or every address of a network (under pressure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Address(IpAddr),
    Network(IpAddr),
}

/// The network an address is aggregated into: its IPv4 /24 or IPv6 /64.
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_bits() & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

/// Counts failed authentications per source in fixed windows; a source that reaches `max`
/// failures in a window is refused until the window ends.
pub(super) struct FailureLimiter {
    max: u32,
    window_ms: i64,
    clock: SharedClock,
    /// Per source: the window's start (Unix ms) and the failures in it.
    sources: Mutex<HashMap<Source, (i64, u32)>>,
    /// When the last block of any source ends (Unix ms): until then `blocked` looks the
    /// address up; after it — the normal case — it answers without taking the lock.
    blocks_end_ms: AtomicI64,
    /// While every entry is a live block (Unix ms, until the first of them ends), further
    /// failures of untracked sources go uncounted without a scan of the table each.
    full_until_ms: AtomicI64,
}

impl FailureLimiter {
    pub(super) fn new(max: u32, window: time::Duration, clock: SharedClock) -> Self {
        Self {
            max,
            window_ms: i64::try_from(window.whole_milliseconds()).unwrap_or(i64::MAX),
            clock,
            sources: Mutex::new(HashMap::new()),
            blocks_end_ms: AtomicI64::new(i64::MIN),
            full_until_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Seconds until `ip` may try again, when it (or its network) is over the limit.
    pub(super) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let now = self.clock.now_ms();
        if now >= self.blocks_end_ms.load(Ordering::Acquire) {
            return None;
        }
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        [Source::Address(ip), Source::Network(network(ip))]
            .iter()
            .filter_map(|source| sources.get(source))
            .filter(|(start, count)| *count >= self.max && now < start.saturating_add(self.window_ms))
            .map(|(start, _)| start.saturating_add(self.window_ms))
            .max()
            .map(|ends| u64::try_from((ends - now + 999) / 1000).unwrap_or(1))
    }

    pub(super) fn record(&self, ip: IpAddr) {
        let now = self.clock.now_ms();
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let mut source = Self::source_of(&sources, ip);
        if !sources.contains_key(&source) && sources.len() >= MAX_TRACKED_SOURCES {
            if now < self.full_until_ms.load(Ordering::Acquire) {
                return;
            }
            self.make_room(&mut sources, now);
            if sources.len() >= MAX_TRACKED_SOURCES {
                // Every entry is a live block: they are kept, and failures of other sources
                // go uncounted until the first block ends.
                let first_end = sources
                    .values()
                    .map(|(start, _)| start.saturating_add(self.window_ms))
                    .min()
                    .unwrap_or(now);
                self.full_until_ms.store(first_end, Ordering::Release);
                tracing::warn!("authentication failures from too many blocked sources to track another");
                return;
            }
            source = Self::source_of(&sources, ip);
        }
        let entry = sources.entry(source).or_insert((now, 0));
        if now >= entry.0.saturating_add(self.window_ms) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 >= self.max {
            self.blocks_end_ms
                .fetch_max(entry.0.saturating_add(self.window_ms), Ordering::AcqRel);
        }
    }

    /// Where a failure of `ip` counts: its own entry if it has one; else its network's if
    /// that has one or the table is under pressure; else a new entry of its own.
    fn source_of(sources: &HashMap<Source, (i64, u32)>, ip: IpAddr) -> Source {
        let own = Source::Address(ip);
        let net = Source::Network(network(ip));
        if !sources.contains_key(&own) && (sources.contains_key(&net) || sources.len() >= PRESSURE) {
            net
        } else {
            own
        }
    }

    /// Drops the entries whose window has ended, then those not blocked; blocks stay.
    fn make_room(&self, sources: &mut HashMap<Source, (i64, u32)>, now: i64) {
        let (window, max) = (self.window_ms, self.max);
        sources.retain(|_, (start, _)| now < start.saturating_add(window));
        if sources.len() >= MAX_TRACKED_SOURCES {
            sources.retain(|_, (_, count)| *count >= max);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    fn limiter() -> (FailureLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(
            time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(1),
        ));
        let shared: SharedClock = clock.clone();
        (FailureLimiter::new(3, time::Duration::minutes(1), shared), clock)
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn failures_from_seventy_thousand_addresses_do_not_unblock_a_blocked_one() {
        let (limiter, _clock) = limiter();
        let blocked = v4(0xc000_0201);
        for _ in 0..3 {
            limiter.record(blocked);
        }
        assert_eq!(limiter.blocked(blocked), Some(60));
        // Distinct addresses in distinct /24s (the worst case for aggregation), twice over.
        for round in 0..2 {
            for n in 0..70_000u32 {
                limiter.record(v4(0x0a00_0000 + (n << 8) + round));
            }
        }
        assert_eq!(limiter.blocked(blocked), Some(60), "still blocked");
        assert!(limiter.tracked() <= MAX_TRACKED_SOURCES, "{}", limiter.tracked());
        // IPv6 from distinct /64s as well.
        for n in 0..70_000u128 {
            limiter.record(IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) + (n << 64) + 1)));
        }
        assert_eq!(limiter.blocked(blocked), Some(60), "still blocked after IPv6 too");
        assert!(limiter.tracked() <= MAX_TRACKED_SOURCES, "{}", limiter.tracked());
    }

    #[test]
    fn under_pressure_new_addresses_are_counted_and_blocked_by_network() {
        let (limiter, clock) = limiter();
        // Fill the table to the pressure mark with one failure each (none blocked).
        for n in 0..PRESSURE as u32 {
            limiter.record(v4(0x0a00_0000 + n));
        }
        // Three addresses of one /24 not seen before: one entry, blocked as a network.
        for host in [1, 2, 3] {
            limiter.record(v4(0xc633_6400 + host));
        }
        for host in [1, 200, 255] {
            assert_eq!(limiter.blocked(v4(0xc633_6400 + host)), Some(60), "host {host}");
        }
        assert_eq!(limiter.blocked(v4(0xc633_6500)), None, "the next /24 is not");
        // An address tracked on its own before the pressure keeps its own count.
        assert_eq!(limiter.blocked(v4(0x0a00_0001)), None);
        clock.advance(time::Duration::seconds(61));
        assert_eq!(limiter.blocked(v4(0xc633_6401)), None, "the window ended");
    }

    #[test]
    fn a_table_full_of_blocks_keeps_them_all_and_takes_new_sources_once_the_first_ends() {
        let (limiter, clock) = limiter();
        let mut n = 0u32;
        // Blocked /24 networks (past the pressure mark addresses are counted by network),
        // until the table is full of blocks.
        while limiter.tracked() < MAX_TRACKED_SOURCES {
            for _ in 0..3 {
                limiter.record(v4(n << 8));
            }
            n += 1;
        }
        let newcomer = v4(0xdead_0000);
        for _ in 0..5 {
            limiter.record(newcomer);
        }
        assert_eq!(limiter.blocked(newcomer), None, "no room: uncounted");
        assert_eq!(limiter.blocked(v4(0)), Some(60), "every block kept");
        assert_eq!(limiter.blocked(v4((n - 1) << 8)), Some(60));
        clock.advance(time::Duration::seconds(61));
        for _ in 0..3 {
            limiter.record(newcomer);
        }
        assert_eq!(limiter.blocked(newcomer), Some(60), "counted once the blocks ended");
    }

    #[test]
    fn networks_are_the_ipv4_24_and_the_ipv6_64() {
        assert_eq!(
            network("192.0.2.77".parse().unwrap()),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }
}
