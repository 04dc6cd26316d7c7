//! Per-key rate limits: a token bucket of `limit` tokens refilled evenly over `period`, in
//! this node's memory (a limit is per node). Time comes from the caller (the injected
//! clock), so tests step through windows without sleeping.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A key's limit: at most `limit` verifications per `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub limit: u32,
    pub(crate) period_ms: i64,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Allowed; this many whole tokens are left.
    Allowed { left: u32 },
    /// Refused; a token will be there in this many milliseconds.
    Limited { retry_after_ms: i64 },
}

struct Bucket {
    /// Tokens scaled by `period_ms` (integer arithmetic, no drift): one token = `period_ms`.
    scaled: i128,
    at_ms: i64,
    limit: Limit,
}

/// Buckets by key id. Bounded: beyond `max_keys` the fullest buckets (idle keys) are dropped,
/// which can only make a limit more lenient for a key idle long enough to be full anyway.
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    max_keys: usize,
}

impl RateLimiter {
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Takes one token for `key_id` at `now_ms`.
    pub(crate) fn take(&self, key_id: &str, limit: Limit, now_ms: i64) -> Taken {
        let period = i128::from(limit.period_ms.max(1));
        let capacity = i128::from(limit.limit).saturating_mul(period);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= self.max_keys && !buckets.contains_key(key_id) {
            buckets.retain(|_, b| b.scaled < i128::from(b.limit.limit).saturating_mul(i128::from(b.limit.period_ms)));
            if buckets.len() >= self.max_keys {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key_id.to_owned()).or_insert(Bucket {
            scaled: capacity,
            at_ms: now_ms,
            limit,
        });
        if bucket.limit != limit {
            // The key's limit changed: start over with a full bucket of the new size.
            *bucket = Bucket {
                scaled: capacity,
                at_ms: now_ms,
                limit,
            };
        }
        let elapsed = i128::from(now_ms.saturating_sub(bucket.at_ms).max(0));
        // Refill: `limit` tokens per `period` ms, i.e. `limit` scaled units per ms.
        bucket.scaled = bucket
            .scaled
            .saturating_add(elapsed.saturating_mul(i128::from(limit.limit)))
            .min(capacity);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.scaled >= period {
            bucket.scaled -= period;
            Taken::Allowed {
                left: u32::try_from(bucket.scaled / period).unwrap_or(u32::MAX),
            }
        } else {
            let missing = period - bucket.scaled;
            let per_ms = i128::from(limit.limit.max(1));
            let wait = (missing + per_ms - 1) / per_ms;
            Taken::Limited {
                retry_after_ms: i64::try_from(wait).unwrap_or(i64::MAX).max(1),
            }
        }
    }

    /// Forgets a key's bucket (revoked, or its limit removed).
    pub(crate) fn forget(&self, key_id: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_PER_SECOND: Limit = Limit {
        limit: 5,
        period_ms: 1000,
    };

    #[test]
    fn the_sixth_in_a_window_is_limited_and_the_next_window_passes() {
        let r = RateLimiter::new(100);
        for i in 0..5 {
            assert_eq!(r.take("k", FIVE_PER_SECOND, 0), Taken::Allowed { left: 4 - i }, "{i}");
        }
        assert_eq!(r.take("k", FIVE_PER_SECOND, 0), Taken::Limited { retry_after_ms: 200 });
        assert_eq!(r.take("k", FIVE_PER_SECOND, 199), Taken::Limited { retry_after_ms: 1 });
        assert_eq!(r.take("k", FIVE_PER_SECOND, 200), Taken::Allowed { left: 0 });
        for _ in 0..5 {
            assert!(matches!(r.take("k", FIVE_PER_SECOND, 1200), Taken::Allowed { .. }));
        }
        assert!(matches!(r.take("k", FIVE_PER_SECOND, 1200), Taken::Limited { .. }));
        assert_eq!(
            r.take("other", FIVE_PER_SECOND, 1200),
            Taken::Allowed { left: 4 },
            "per key"
        );
    }

    #[test]
    fn a_changed_limit_starts_a_fresh_bucket_and_forget_resets() {
        let r = RateLimiter::new(100);
        let one = Limit {
            limit: 1,
            period_ms: 60_000,
        };
        assert!(matches!(r.take("k", one, 0), Taken::Allowed { .. }));
        assert!(matches!(r.take("k", one, 1), Taken::Limited { .. }));
        assert!(matches!(r.take("k", FIVE_PER_SECOND, 2), Taken::Allowed { left: 4 }));
        r.forget("k");
        assert!(matches!(r.take("k", one, 3), Taken::Allowed { .. }));
    }

    #[test]
    fn the_map_stays_bounded() {
        let r = RateLimiter::new(10);
        for i in 0..100 {
            r.take(&format!("k{i}"), FIVE_PER_SECOND, 0);
        }
        assert!(r.buckets.lock().unwrap().len() <= 10);
    }
}
