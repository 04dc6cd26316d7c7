//! Per-version usage counters (`sign_count`, `verify_count`, `last_used_at`), accumulated
//! in memory on the hot path and flushed to the store in one transaction per interval.
//!
//! A crash loses at most one interval of counts (they are statistics, not security state;
//! the audit trail is the record of every operation). Reads merge pending counts so the API
//! is always current on this node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::store::UsageDelta;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub signs: u64,
    pub verifies: u64,
    pub(crate) last_used_at_ms: i64,
}

#[derive(Default)]
pub(crate) struct UsageTracker {
    pending: Mutex<HashMap<(Arc<str>, u32), Pending>>,
}

impl UsageTracker {
    fn lock(&self) -> MutexGuard<'_, HashMap<(Arc<str>, u32), Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds to a version's counts. `key_id` is shared, so the hot path does not allocate.
    pub(crate) fn record(&self, key_id: &Arc<str>, version: u32, signs: u64, verifies: u64, now_ms: i64) {
        let mut pending = self.lock();
        let entry = pending.entry((Arc::clone(key_id), version)).or_default();
        entry.signs += signs;
        entry.verifies += verifies;
        entry.last_used_at_ms = entry.last_used_at_ms.max(now_ms);
    }

    /// Pending counts of one key, by version.
    pub(crate) fn pending_for(&self, key_id: &str) -> HashMap<u32, Pending> {
        self.lock()
            .iter()
            .filter(|((id, _), _)| id.as_ref() == key_id)
            .map(|((_, v), p)| (*v, *p))
            .collect()
    }

    /// Takes everything pending, for a flush.
    pub(crate) fn take(&self) -> Vec<UsageDelta> {
        self.lock()
            .drain()
            .map(|((key_id, version), p)| UsageDelta {
                key_id: key_id.to_string(),
                version,
                signs: p.signs,
                verifies: p.verifies,
                last_used_at_ms: p.last_used_at_ms,
            })
            .collect()
    }

    /// Puts back deltas whose flush failed, so nothing is lost to a store outage.
    pub(crate) fn restore(&self, deltas: Vec<UsageDelta>) {
        for d in deltas {
            self.record(&Arc::from(d.key_id), d.version, d.signs, d.verifies, d.last_used_at_ms);
        }
    }

    /// Drops pending counts of a destroyed key.
    pub(crate) fn forget(&self, key_id: &str) {
        self.lock().retain(|(id, _), _| id.as_ref() != key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_until_taken_and_survive_a_failed_flush() {
        let u = UsageTracker::default();
        let (k1, k2): (Arc<str>, Arc<str>) = (Arc::from("k1"), Arc::from("k2"));
        u.record(&k1, 1, 1, 0, 10);
        u.record(&k1, 1, 1, 0, 5);
        u.record(&k1, 2, 0, 1, 20);
        u.record(&k2, 1, 0, 1, 30);
        let mine = u.pending_for("k1");
        assert_eq!(
            mine.get(&1),
            Some(&Pending {
                signs: 2,
                verifies: 0,
                last_used_at_ms: 10
            })
        );
        assert_eq!(
            mine.get(&2),
            Some(&Pending {
                signs: 0,
                verifies: 1,
                last_used_at_ms: 20
            })
        );
        let taken = u.take();
        assert_eq!(taken.len(), 3);
        assert!(u.pending_for("k1").is_empty());
        u.restore(taken);
        assert_eq!(u.pending_for("k1").len(), 2);
        u.forget("k1");
        assert!(u.pending_for("k1").is_empty());
        assert_eq!(u.pending_for("k2").len(), 1);
    }
}
