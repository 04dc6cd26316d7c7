//! Failed authentications counted per source address and per (address, credential) pair.
//!
//! A credential is the trimmed `Authorization` header value (or its absence), known here
//! only by a 16-byte SHA-256 digest: the token itself is never stored or logged.
//!
//! - A pair that fails `max` times in its window is refused until the window ends, for that
//!   credential only: a client repeating one wrong token does not lock out the right one
//!   sent from the same address.
//! - A source counts the *distinct* credentials that failed from it (a pair's first failure
//!   in the pair's window counts once); a source that reaches `max` in its window is refused
//!   for every credential, so guessing stays limited.
//!
//! Memory is bounded and cannot be flushed. Sources: at most [`MAX_TRACKED_SOURCES`]
//! entries; when the table is full, expired windows go first, then addresses that are not
//! blocked; a blocked address is kept until its window ends, however many others fail.
//! Under pressure (the table three quarters full) an address not tracked yet is counted
//! under its network — IPv4 /24, IPv6 /64 — so many addresses of one network share one
//! entry and are blocked together, rather than each taking one. Pairs: at most
//! [`MAX_TRACKED_PAIRS`], made room for the same way; a failure whose pair cannot be
//! tracked (the table is full of live blocks), or whose pair entry was dropped to make
//! room, counts at the source level as a new credential, so nothing escapes the limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::clock::SharedClock;

/// Most entries (addresses and networks) tracked at once by the failure limiter.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// Most (address, credential) pairs tracked at once.
const MAX_TRACKED_PAIRS: usize = 65_536;

/// From this many entries on, a new address is counted under its network.
const PRESSURE: usize = MAX_TRACKED_SOURCES / 4 * 3;

/// What an entry counts: one address, or every address of a network (under pressure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Address(IpAddr),
    Network(IpAddr),
}

/// The first 16 bytes of the SHA-256 of a credential ([`credential_digest`]).
type Credential = [u8; 16];

/// One address and one credential it failed with.
type Pair = (IpAddr, Credential);

/// A fixed window: its start (Unix ms) and the failures counted in it.
type Window = (i64, u32);

/// The credential of a request, as the limiter knows it: the first 16 bytes of the SHA-256
/// of the trimmed `Authorization` header value, or of a marker when there is no header
/// (one credential, "missing"). The two inputs are prefixed differently, so no header value
/// digests like the missing one.
pub(super) fn credential_digest(authorization: Option<&str>) -> Credential {
    let mut hasher = Sha256::new();
    match authorization {
        None => hasher.update(b"missing"),
        Some(value) => {
            hasher.update(b"header:");
            hasher.update(value.trim().as_bytes());
        }
    }
    let digest: [u8; 32] = hasher.finalize().into();
    digest.first_chunk::<16>().copied().unwrap_or_default()
}

/// The network an address is aggregated into: its IPv4 /24 or IPv6 /64.
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_bits() & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

/// The two tables, under one lock: a failure updates both.
#[derive(Default)]
struct Tables {
    /// Per source: distinct failing credentials in its window.
    sources: HashMap<Source, Window>,
    /// Per (address, credential): failures in its window.
    pairs: HashMap<Pair, Window>,
}

/// Counts failed authentications in fixed windows per (address, credential) pair and, by
/// distinct credentials, per source; a pair or a source that reaches `max` in a window is
/// refused until the window ends (a pair for its credential only, a source for all).
pub(super) struct FailureLimiter {
    max: u32,
    window_ms: i64,
    clock: SharedClock,
    tables: Mutex<Tables>,
    /// When the last block of any source ends (Unix ms): until then `blocked` looks the
    /// address up; after it — the normal case — it answers without taking the lock.
    source_blocks_end_ms: AtomicI64,
    /// When the last block of any pair ends (Unix ms): until then `blocked` digests the
    /// credential and looks the pair up; after it, neither.
    pair_blocks_end_ms: AtomicI64,
    /// While every source entry is a live block (Unix ms, until the first of them ends),
    /// failures of untracked sources go uncounted without a scan of the table each.
    sources_full_until_ms: AtomicI64,
    /// The same for the pair table: meanwhile the failure of an untracked pair counts at
    /// the source level without a scan.
    pairs_full_until_ms: AtomicI64,
}

impl FailureLimiter {
    pub(super) fn new(max: u32, window: time::Duration, clock: SharedClock) -> Self {
        Self {
            max,
            window_ms: i64::try_from(window.whole_milliseconds()).unwrap_or(i64::MAX),
            clock,
            tables: Mutex::new(Tables::default()),
            source_blocks_end_ms: AtomicI64::new(i64::MIN),
            pair_blocks_end_ms: AtomicI64::new(i64::MIN),
            sources_full_until_ms: AtomicI64::new(i64::MIN),
            pairs_full_until_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Seconds until `ip` may try again with `authorization` (the header value, `None` when
    /// absent), when it (or its network) is over the limit, or the pair is. While no block is
    /// live it takes no lock and digests nothing; the credential is digested only while a
    /// pair block is.
    pub(super) fn blocked(&self, ip: IpAddr, authorization: Option<&str>) -> Option<u64> {
        let now = self.clock.now_ms();
        let sources_live = now < self.source_blocks_end_ms.load(Ordering::Acquire);
        let pairs_live = now < self.pair_blocks_end_ms.load(Ordering::Acquire);
        if !sources_live && !pairs_live {
            return None;
        }
        let pair = pairs_live.then(|| (ip, credential_digest(authorization)));
        let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let sources = [Source::Address(ip), Source::Network(network(ip))]
            .into_iter()
            .filter(|_| sources_live)
            .filter_map(|source| tables.sources.get(&source));
        let pairs = pair.iter().filter_map(|pair| tables.pairs.get(pair));
        sources
            .chain(pairs)
            .filter_map(|window| self.block_end(window, now))
            .max()
            .map(|ends| u64::try_from((ends - now + 999) / 1000).unwrap_or(1))
    }

    /// Counts a failed authentication of `ip` with `authorization` (`None`: no header).
    pub(super) fn record(&self, ip: IpAddr, authorization: Option<&str>) {
        let credential = credential_digest(authorization);
        let now = self.clock.now_ms();
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        if self.count_pair(&mut tables.pairs, (ip, credential), now) {
            self.count_source(&mut tables.sources, ip, now);
        }
    }

    /// When `window` blocks until (Unix ms), if it is a live block.
    fn block_end(&self, &(start, count): &Window, now: i64) -> Option<i64> {
        let end = start.saturating_add(self.window_ms);
        (count >= self.max && now < end).then_some(end)
    }

    /// Counts one failure of `pair`; true when it also counts at the source level: the
    /// pair's first failure in its window, or a pair that cannot be tracked.
    fn count_pair(&self, pairs: &mut HashMap<Pair, Window>, pair: Pair, now: i64) -> bool {
        if !pairs.contains_key(&pair) && pairs.len() >= MAX_TRACKED_PAIRS {
            if now < self.pairs_full_until_ms.load(Ordering::Acquire) {
                return true;
            }
            self.make_room(pairs, MAX_TRACKED_PAIRS, now);
            if pairs.len() >= MAX_TRACKED_PAIRS {
                self.pairs_full_until_ms
                    .store(self.first_end(pairs, now), Ordering::Release);
                tracing::warn!(
                    "authentication failures from too many blocked (address, token) pairs to track another; \
                     counting them per address"
                );
                return true;
            }
        }
        let (first, blocked_until) = self.count(pairs.entry(pair).or_insert((now, 0)), now);
        if let Some(end) = blocked_until {
            self.pair_blocks_end_ms.fetch_max(end, Ordering::AcqRel);
        }
        first
    }

    /// Counts one more distinct failing credential of `ip` (or of its network).
    fn count_source(&self, sources: &mut HashMap<Source, Window>, ip: IpAddr, now: i64) {
        let mut source = Self::source_of(sources, ip);
        if !sources.contains_key(&source) && sources.len() >= MAX_TRACKED_SOURCES {
            if now < self.sources_full_until_ms.load(Ordering::Acquire) {
                return;
            }
            self.make_room(sources, MAX_TRACKED_SOURCES, now);
            if sources.len() >= MAX_TRACKED_SOURCES {
                // Every entry is a live block: they are kept, and failures of other sources
                // go uncounted until the first block ends.
                self.sources_full_until_ms
                    .store(self.first_end(sources, now), Ordering::Release);
                tracing::warn!("authentication failures from too many blocked sources to track another");
                return;
            }
            source = Self::source_of(sources, ip);
        }
        let (_, blocked_until) = self.count(sources.entry(source).or_insert((now, 0)), now);
        if let Some(end) = blocked_until {
            self.source_blocks_end_ms.fetch_max(end, Ordering::AcqRel);
        }
    }

    /// Adds one failure to `window` (a new window if it ended); returns whether it is the
    /// window's first, and when the block ends if the window is now at the limit.
    fn count(&self, window: &mut Window, now: i64) -> (bool, Option<i64>) {
        if now >= window.0.saturating_add(self.window_ms) {
            *window = (now, 0);
        }
        let first = window.1 == 0;
        window.1 = window.1.saturating_add(1);
        (first, self.block_end(window, now))
    }

    /// Where a failure of `ip` counts: its own entry if it has one; else its network's if
    /// that has one or the table is under pressure; else a new entry of its own.
    fn source_of(sources: &HashMap<Source, Window>, ip: IpAddr) -> Source {
        let own = Source::Address(ip);
        let net = Source::Network(network(ip));
        if !sources.contains_key(&own) && (sources.contains_key(&net) || sources.len() >= PRESSURE) {
            net
        } else {
            own
        }
    }

    /// Drops the entries whose window has ended, then those not blocked; blocks stay.
    fn make_room<K: Eq + Hash>(&self, table: &mut HashMap<K, Window>, capacity: usize, now: i64) {
        let (window, max) = (self.window_ms, self.max);
        table.retain(|_, (start, _)| now < start.saturating_add(window));
        if table.len() >= capacity {
            table.retain(|_, (_, count)| *count >= max);
        }
    }

    /// When the first window of `table` ends (Unix ms).
    fn first_end<K>(&self, table: &HashMap<K, Window>, now: i64) -> i64 {
        table
            .values()
            .map(|(start, _)| start.saturating_add(self.window_ms))
            .min()
            .unwrap_or(now)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner).sources.len()
    }

    #[cfg(test)]
    fn tracked_pairs(&self) -> usize {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner).pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    const WRONG: Option<&str> = Some("Bearer svt_wrong-wrong-wrong");
    const RIGHT: Option<&str> = Some("Bearer svt_right-right-right");

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

    /// Three failures of `ip`, each with a different credential: enough to block the source.
    fn fail_distinct(limiter: &FailureLimiter, ip: IpAddr) {
        for i in 0..3 {
            limiter.record(ip, Some(&format!("Bearer guess-{i}")));
        }
    }

    #[test]
    fn one_credential_failing_max_times_is_blocked_alone() {
        let (limiter, _clock) = limiter();
        let ip = v4(0xc000_0201);
        for _ in 0..20 {
            limiter.record(ip, WRONG);
        }
        assert_eq!(limiter.blocked(ip, WRONG), Some(60), "the failing credential");
        assert_eq!(
            limiter.blocked(ip, Some("  Bearer svt_wrong-wrong-wrong ")),
            Some(60),
            "the header is trimmed"
        );
        assert_eq!(
            limiter.blocked(ip, RIGHT),
            None,
            "another credential from the same address"
        );
        assert_eq!(limiter.blocked(ip, None), None, "no header from the same address");
        assert_eq!(
            limiter.blocked(v4(0xc000_0202), WRONG),
            None,
            "the same credential elsewhere"
        );
        assert_eq!(limiter.tracked_pairs(), 1);
        // Twenty failures of one credential are one at the source level: two more distinct
        // ones do not reach three... the third does.
        limiter.record(ip, Some("Bearer other-1"));
        assert_eq!(limiter.blocked(ip, RIGHT), None, "two distinct credentials so far");
        limiter.record(ip, Some("Bearer other-2"));
        assert_eq!(limiter.blocked(ip, RIGHT), Some(60), "three distinct: every credential");
    }

    #[test]
    fn max_distinct_credentials_block_the_source_for_every_credential() {
        let (limiter, clock) = limiter();
        let ip = v4(0xc000_0201);
        fail_distinct(&limiter, ip);
        for credential in [RIGHT, WRONG, None, Some("Bearer guess-0")] {
            assert_eq!(limiter.blocked(ip, credential), Some(60), "{credential:?}");
        }
        assert_eq!(limiter.blocked(v4(0xc000_0202), RIGHT), None, "another address");
        clock.advance(time::Duration::seconds(30));
        assert_eq!(limiter.blocked(ip, RIGHT), Some(30), "Retry-After counts down");
        clock.advance(time::Duration::seconds(31));
        assert_eq!(limiter.blocked(ip, RIGHT), None, "the window ended");
    }

    #[test]
    fn a_missing_header_is_one_credential() {
        let (limiter, _clock) = limiter();
        let ip = v4(0xc000_0201);
        for _ in 0..3 {
            limiter.record(ip, None);
        }
        assert_eq!(limiter.blocked(ip, None), Some(60));
        assert_eq!(
            limiter.blocked(ip, Some("")),
            None,
            "an empty header is another credential"
        );
        assert_eq!(limiter.blocked(ip, RIGHT), None);
        limiter.record(ip, WRONG);
        limiter.record(ip, Some("Bearer"));
        assert_eq!(
            limiter.blocked(ip, RIGHT),
            Some(60),
            "missing, WRONG and `Bearer`: three"
        );
    }

    #[test]
    fn windows_end_for_pairs_and_a_credential_counts_again_at_the_source_in_a_new_one() {
        let (limiter, clock) = limiter();
        let ip = v4(0xc000_0201);
        for _ in 0..3 {
            limiter.record(ip, WRONG);
        }
        assert_eq!(limiter.blocked(ip, WRONG), Some(60));
        clock.advance(time::Duration::seconds(59));
        assert_eq!(limiter.blocked(ip, WRONG), Some(1));
        clock.advance(time::Duration::seconds(1));
        assert_eq!(limiter.blocked(ip, WRONG), None, "the pair's window ended");
        // A new window for the source (its first ended with the pair's): WRONG is counted
        // once more, with two other credentials that makes three.
        limiter.record(ip, WRONG);
        assert_eq!(limiter.blocked(ip, WRONG), None, "one failure in the new window");
        limiter.record(ip, Some("Bearer a"));
        limiter.record(ip, Some("Bearer b"));
        assert_eq!(limiter.blocked(ip, RIGHT), Some(60));
    }

    #[test]
    fn a_pair_table_full_of_blocks_counts_new_pairs_at_the_source() {
        let (limiter, clock) = limiter();
        // One blocked pair per address, the addresses in distinct /24s; none blocked as a
        // source (one credential each).
        for n in 0..MAX_TRACKED_PAIRS as u32 {
            for _ in 0..3 {
                limiter.record(v4(n << 8), WRONG);
            }
        }
        assert_eq!(limiter.tracked_pairs(), MAX_TRACKED_PAIRS);
        assert_eq!(limiter.blocked(v4(0), RIGHT), None);
        let newcomer = v4(0xdead_beef);
        limiter.record(newcomer, WRONG);
        limiter.record(newcomer, WRONG);
        assert_eq!(limiter.blocked(newcomer, RIGHT), None);
        limiter.record(newcomer, WRONG);
        assert_eq!(
            limiter.blocked(newcomer, RIGHT),
            Some(60),
            "no room for the pair: each failure counted as a new credential of the source"
        );
        assert_eq!(limiter.tracked_pairs(), MAX_TRACKED_PAIRS, "bounded");
        assert_eq!(limiter.blocked(v4(0), WRONG), Some(60), "every pair block kept");
        assert_eq!(
            limiter.blocked(v4((MAX_TRACKED_PAIRS as u32 - 1) << 8), WRONG),
            Some(60)
        );
        clock.advance(time::Duration::seconds(61));
        let next = v4(0xdead_be00);
        for _ in 0..3 {
            limiter.record(next, WRONG);
        }
        assert_eq!(limiter.blocked(next, WRONG), Some(60), "pairs tracked again");
        assert_eq!(limiter.blocked(next, RIGHT), None, "for that credential only");
    }

    #[test]
    fn a_pair_dropped_to_make_room_counts_again_at_the_source() {
        let (limiter, _clock) = limiter();
        let ip = v4(0xc000_0201);
        limiter.record(ip, WRONG);
        // Fill the pair table with one failure each (no pair blocked), all from one other
        // address so the source table stays small: the next new pair drops them all,
        // WRONG's too.
        let filler = v4(0x0a00_0001);
        for n in 0..MAX_TRACKED_PAIRS {
            limiter.record(filler, Some(&format!("Bearer filler-{n}")));
        }
        assert!(limiter.tracked_pairs() < MAX_TRACKED_PAIRS);
        limiter.record(ip, WRONG);
        assert_eq!(limiter.blocked(ip, RIGHT), None, "WRONG counted twice at the source");
        limiter.record(ip, Some("Bearer other"));
        assert_eq!(limiter.blocked(ip, RIGHT), Some(60), "twice WRONG and one other: three");
    }

    #[test]
    fn failures_from_seventy_thousand_addresses_do_not_unblock_a_blocked_one() {
        let (limiter, _clock) = limiter();
        let blocked = v4(0xc000_0201);
        fail_distinct(&limiter, blocked);
        assert_eq!(limiter.blocked(blocked, RIGHT), Some(60));
        // Distinct addresses in distinct /24s (the worst case for aggregation), twice over.
        for round in 0..2 {
            for n in 0..70_000u32 {
                limiter.record(v4(0x0a00_0000 + (n << 8) + round), WRONG);
            }
        }
        assert_eq!(limiter.blocked(blocked, RIGHT), Some(60), "still blocked");
        assert!(limiter.tracked() <= MAX_TRACKED_SOURCES, "{}", limiter.tracked());
        assert!(
            limiter.tracked_pairs() <= MAX_TRACKED_PAIRS,
            "{}",
            limiter.tracked_pairs()
        );
        // IPv6 from distinct /64s as well.
        for n in 0..70_000u128 {
            limiter.record(
                IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) + (n << 64) + 1)),
                WRONG,
            );
        }
        assert_eq!(
            limiter.blocked(blocked, RIGHT),
            Some(60),
            "still blocked after IPv6 too"
        );
        assert!(limiter.tracked() <= MAX_TRACKED_SOURCES, "{}", limiter.tracked());
        assert!(
            limiter.tracked_pairs() <= MAX_TRACKED_PAIRS,
            "{}",
            limiter.tracked_pairs()
        );
    }

    #[test]
    fn under_pressure_new_addresses_are_counted_and_blocked_by_network() {
        let (limiter, clock) = limiter();
        // Fill the table to the pressure mark with one failure each (none blocked).
        for n in 0..PRESSURE as u32 {
            limiter.record(v4(0x0a00_0000 + n), WRONG);
        }
        // Three addresses of one /24 not seen before: one entry, blocked as a network,
        // although each failed with the same credential (three pairs).
        for host in [1, 2, 3] {
            limiter.record(v4(0xc633_6400 + host), WRONG);
        }
        for host in [1, 200, 255] {
            assert_eq!(limiter.blocked(v4(0xc633_6400 + host), RIGHT), Some(60), "host {host}");
        }
        assert_eq!(limiter.blocked(v4(0xc633_6500), RIGHT), None, "the next /24 is not");
        // An address tracked on its own before the pressure keeps its own count.
        assert_eq!(limiter.blocked(v4(0x0a00_0001), RIGHT), None);
        clock.advance(time::Duration::seconds(61));
        assert_eq!(limiter.blocked(v4(0xc633_6401), RIGHT), None, "the window ended");
    }

    #[test]
    fn a_table_full_of_blocks_keeps_them_all_and_takes_new_sources_once_the_first_ends() {
        let (limiter, clock) = limiter();
        let mut n = 0u32;
        // Blocked /24 networks (past the pressure mark addresses are counted by network),
        // until the table is full of blocks.
        while limiter.tracked() < MAX_TRACKED_SOURCES {
            fail_distinct(&limiter, v4(n << 8));
            n += 1;
        }
        let newcomer = v4(0xdead_0000);
        for i in 0..5 {
            limiter.record(newcomer, Some(&format!("Bearer newcomer-{i}")));
        }
        assert_eq!(limiter.blocked(newcomer, RIGHT), None, "no room: uncounted");
        assert_eq!(limiter.blocked(v4(0), RIGHT), Some(60), "every block kept");
        assert_eq!(limiter.blocked(v4((n - 1) << 8), RIGHT), Some(60));
        clock.advance(time::Duration::seconds(61));
        fail_distinct(&limiter, newcomer);
        assert_eq!(
            limiter.blocked(newcomer, RIGHT),
            Some(60),
            "counted once the blocks ended"
        );
    }

    #[test]
    fn credential_digests_trim_and_tell_a_missing_header_from_an_empty_one() {
        assert_eq!(
            credential_digest(Some(" Bearer x \t")),
            credential_digest(Some("Bearer x"))
        );
        assert_ne!(credential_digest(Some("Bearer x")), credential_digest(Some("Bearer y")));
        assert_ne!(credential_digest(None), credential_digest(Some("")));
        assert_ne!(credential_digest(None), credential_digest(Some("missing")));
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
