//! Failed authentications counted per source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::clock::SharedClock;

/// Most source addresses tracked at once by the failure limiter.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// Counts failed authentications per source address in fixed windows; an address that
/// reaches `max` failures in a window is refused until the window ends.
pub(super) struct FailureLimiter {
    max: u32,
    window_ms: i64,
    clock: SharedClock,
    sources: Mutex<HashMap<IpAddr, (i64, u32)>>,
    /// When the last block of any address ends (Unix ms): until then `blocked` looks the
    /// address up; after it — the normal case — it answers without taking the lock.
    blocks_end_ms: AtomicI64,
}

impl FailureLimiter {
    pub(super) fn new(max: u32, window: time::Duration, clock: SharedClock) -> Self {
        Self {
            max,
            window_ms: i64::try_from(window.whole_milliseconds()).unwrap_or(i64::MAX),
            clock,
            sources: Mutex::new(HashMap::new()),
            blocks_end_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Seconds until `ip` may try again, when it is over the limit.
    pub(super) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let now = self.clock.now_ms();
        if now >= self.blocks_end_ms.load(Ordering::Acquire) {
            return None;
        }
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, count) = sources.get(&ip)?;
        let ends = start.saturating_add(self.window_ms);
        (*count >= self.max && now < ends).then(|| u64::try_from((ends - now + 999) / 1000).unwrap_or(1))
    }

    pub(super) fn record(&self, ip: IpAddr) {
        let now = self.clock.now_ms();
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        if sources.len() >= MAX_TRACKED_SOURCES && !sources.contains_key(&ip) {
            let window = self.window_ms;
            sources.retain(|_, (start, _)| now < start.saturating_add(window));
            if sources.len() >= MAX_TRACKED_SOURCES {
                tracing::warn!("authentication failures from too many addresses to track; counts reset");
                sources.clear();
            }
        }
        let entry = sources.entry(ip).or_insert((now, 0));
        if now >= entry.0.saturating_add(self.window_ms) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 >= self.max {
            self.blocks_end_ms
                .fetch_max(entry.0.saturating_add(self.window_ms), Ordering::AcqRel);
        }
    }
}
