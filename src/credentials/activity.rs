//! Where credentials are used from: last use (time, region, service) and caller
//! fingerprints (source address + user agent), noticed on the hot path and written to the
//! store in one transaction per interval.
//!
//! Each credential's known fingerprints are loaded from the store the first time it is
//! seen on this node, so "new" means new to the credential, not to the process. Noticing is
//! atomic per credential: two concurrent requests from one new fingerprint raise one
//! event. A crash loses at most one interval of counts and last-use times; whether a
//! fingerprint is new is decided again after a restart from what was flushed.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::store::{CredentialActivity, FingerprintRecord};

/// A caller as the verifying service saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The caller's address (`""` when the service did not say).
    pub source_ip: String,
    /// The caller's user agent (`""` when absent).
    pub user_agent: String,
}

/// What noticing a use found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// This fingerprint has used the credential before.
    Known,
    /// The credential's first fingerprint ever: learned, not alarming.
    First,
    /// A fingerprint the credential has not been used from before.
    New,
    /// The credential was stopped by a new fingerprint (rule `deactivate`) on this node and
    /// has not been reactivated since: refuse, whatever the fingerprint.
    Blocked,
}

#[derive(Default)]
struct Credential {
    /// `None` until loaded from the store.
    known: Option<HashSet<Fingerprint>>,
    last_used: Option<(i64, String, String)>,
    pending: HashMap<Fingerprint, FingerprintRecord>,
    /// Set, under the same lock as the noticing, when a new fingerprint deactivates the
    /// credential: a concurrent request from that fingerprint cannot slip through while
    /// the store is being updated.
    blocked: bool,
}

impl Credential {
    /// Classifies `who` against the known fingerprints and learns it. With `block_on_new`,
    /// a new one blocks the credential (under the caller's lock, so a concurrent request
    /// from it cannot slip through). Beyond `max_known`, one known fingerprint is dropped.
    fn learn(&mut self, who: &Fingerprint, block_on_new: bool, max_known: usize) -> Seen {
        let known = self.known.get_or_insert_with(HashSet::new);
        let seen = if known.contains(who) {
            Seen::Known
        } else if known.is_empty() {
            Seen::First
        } else {
            Seen::New
        };
        if seen == Seen::New && block_on_new {
            self.blocked = true;
        }
        if seen != Seen::Known {
            // Evict one rather than clear: an empty set would make the next caller "first".
            if known.len() >= max_known
                && let Some(evicted) = known.iter().next().cloned()
            {
                known.remove(&evicted);
            }
            known.insert(who.clone());
        }
        seen
    }

    /// Keeps the latest use: a use older than the one held (requests finish out of order)
    /// does not move it back.
    fn note_last_use(&mut self, now_ms: i64, region: &str, service: &str) {
        match &mut self.last_used {
            Some((t, r, s)) if *t <= now_ms => {
                *t = now_ms;
                if r != region || s != service {
                    *r = region.to_owned();
                    *s = service.to_owned();
                }
            }
            Some(_) => {}
            None => self.last_used = Some((now_ms, region.to_owned(), service.to_owned())),
        }
    }

    /// Counts the use for `who` until the next flush. At most `max_known` fingerprints are
    /// pending between flushes; a use from one more is not counted (it is still noticed,
    /// and audited when new).
    fn count_use(&mut self, who: &Fingerprint, now_ms: i64, max_known: usize) {
        if !self.pending.contains_key(who) {
            if self.pending.len() >= max_known {
                return;
            }
            self.pending.insert(
                who.clone(),
                FingerprintRecord {
                    source_ip: who.source_ip.clone(),
                    user_agent: who.user_agent.clone(),
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    count: 0,
                },
            );
        }
        let Some(pending) = self.pending.get_mut(who) else {
            return;
        };
        pending.count = pending.count.saturating_add(1);
        pending.first_seen_ms = pending.first_seen_ms.min(now_ms);
        pending.last_seen_ms = pending.last_seen_ms.max(now_ms);
    }
}

pub(crate) struct ActivityTracker {
    credentials: Mutex<HashMap<String, Credential>>,
    /// Known fingerprints held per credential; beyond it the set is reloaded from the store
    /// (which keeps the most recent ones), so memory stays bounded.
    max_known: usize,
}

impl ActivityTracker {
    pub(crate) fn new(max_fingerprints: u32) -> Self {
        Self {
            credentials: Mutex::new(HashMap::new()),
            max_known: usize::try_from(max_fingerprints)
                .unwrap_or(usize::MAX)
                .saturating_mul(2),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Credential>> {
        self.credentials.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this node knows the credential's fingerprints yet (else the caller loads them
    /// with [`ActivityTracker::load`] before [`ActivityTracker::notice`]).
    pub(crate) fn is_loaded(&self, access_key_id: &str) -> bool {
        self.lock().get(access_key_id).is_some_and(|c| c.known.is_some())
    }

    /// Sets the fingerprints the store holds for a credential (kept if another request
    /// loaded them meanwhile).
    pub(crate) fn load(&self, access_key_id: &str, stored: Vec<FingerprintRecord>) {
        let mut all = self.lock();
        let entry = all.entry(access_key_id.to_owned()).or_default();
        if entry.known.is_none() {
            let mut known: HashSet<Fingerprint> = stored
                .into_iter()
                .map(|f| Fingerprint {
                    source_ip: f.source_ip,
                    user_agent: f.user_agent,
                })
                .collect();
            known.extend(entry.pending.keys().cloned());
            entry.known = Some(known);
        }
    }

    /// Counts one use and says whether its fingerprint is new to the credential. Call after
    /// [`ActivityTracker::load`]; an unloaded credential counts as having no fingerprints.
    /// With `block_on_new`, a new fingerprint blocks the credential until [`ActivityTracker::unblock`].
    pub(crate) fn notice(
        &self,
        access_key_id: &str,
        who: &Fingerprint,
        now_ms: i64,
        scope: (&str, &str),
        block_on_new: bool,
    ) -> Seen {
        let (region, service) = scope;
        let mut all = self.lock();
        // The steady state (a known credential) allocates no key: look up before inserting.
        if !all.contains_key(access_key_id) {
            all.insert(access_key_id.to_owned(), Credential::default());
        }
        let Some(entry) = all.get_mut(access_key_id) else {
            return Seen::Known;
        };
        if entry.blocked {
            return Seen::Blocked;
        }
        let seen = entry.learn(who, block_on_new, self.max_known);
        entry.note_last_use(now_ms, region, service);
        entry.count_use(who, now_ms, self.max_known);
        seen
    }

    /// Activity not yet flushed for one credential: its last use and fingerprint counts.
    pub(crate) fn pending_for(&self, access_key_id: &str) -> Option<CredentialActivity> {
        let all = self.lock();
        let c = all.get(access_key_id)?;
        activity_of(access_key_id, c)
    }

    /// Takes everything pending, for a flush.
    pub(crate) fn take(&self) -> Vec<CredentialActivity> {
        let mut all = self.lock();
        let mut out = Vec::new();
        for (id, c) in all.iter_mut() {
            if let Some(a) = activity_of(id, c) {
                out.push(a);
            }
            c.last_used = None;
            c.pending.clear();
        }
        out
    }

    /// Puts back activity whose flush failed (merged with what arrived meanwhile).
    pub(crate) fn restore(&self, activity: Vec<CredentialActivity>) {
        let mut all = self.lock();
        for a in activity {
            let entry = all.entry(a.access_key_id).or_default();
            if entry.last_used.as_ref().is_none_or(|(t, _, _)| *t < a.last_used_at_ms) {
                entry.last_used = Some((a.last_used_at_ms, a.region, a.service));
            }
            for f in a.fingerprints {
                let who = Fingerprint {
                    source_ip: f.source_ip.clone(),
                    user_agent: f.user_agent.clone(),
                };
                match entry.pending.get_mut(&who) {
                    Some(p) => {
                        p.count = p.count.saturating_add(f.count);
                        p.first_seen_ms = p.first_seen_ms.min(f.first_seen_ms);
                        p.last_seen_ms = p.last_seen_ms.max(f.last_seen_ms);
                    }
                    None => {
                        entry.pending.insert(who, f);
                    }
                }
            }
        }
    }

    /// Lets a reactivated credential be used again.
    pub(crate) fn unblock(&self, access_key_id: &str) {
        if let Some(c) = self.lock().get_mut(access_key_id) {
            c.blocked = false;
        }
    }

    /// Drops everything about a deleted credential.
    pub(crate) fn forget(&self, access_key_id: &str) {
        self.lock().remove(access_key_id);
    }
}

fn activity_of(access_key_id: &str, c: &Credential) -> Option<CredentialActivity> {
    let (at, region, service) = c.last_used.clone()?;
    Some(CredentialActivity {
        access_key_id: access_key_id.to_owned(),
        last_used_at_ms: at,
        region,
        service,
        fingerprints: c.pending.values().cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(ip: &str, ua: &str) -> Fingerprint {
        Fingerprint {
            source_ip: ip.into(),
            user_agent: ua.into(),
        }
    }

    #[test]
    fn the_first_fingerprint_is_learned_and_a_different_one_is_new_once() {
        let t = ActivityTracker::new(64);
        t.load("AK", Vec::new());
        assert_eq!(t.notice("AK", &who("10.0.0.1", "a"), 1, ("r", "s"), false), Seen::First);
        assert_eq!(t.notice("AK", &who("10.0.0.1", "a"), 2, ("r", "s"), false), Seen::Known);
        assert_eq!(t.notice("AK", &who("10.0.0.1", "b"), 3, ("r", "s"), false), Seen::New);
        assert_eq!(t.notice("AK", &who("10.0.0.1", "b"), 4, ("r", "s"), false), Seen::Known);
        assert_eq!(t.notice("AK", &who("10.0.0.2", "a"), 5, ("r", "s"), false), Seen::New);
    }

    #[test]
    fn a_blocking_new_fingerprint_blocks_every_caller_until_unblocked() {
        let t = ActivityTracker::new(64);
        t.load("AK", Vec::new());
        assert_eq!(
            t.notice("AK", &who("a", "a"), 1, ("r", "s"), true),
            Seen::First,
            "the first is learned"
        );
        assert_eq!(t.notice("AK", &who("b", "b"), 2, ("r", "s"), true), Seen::New);
        assert_eq!(t.notice("AK", &who("b", "b"), 3, ("r", "s"), true), Seen::Blocked);
        assert_eq!(t.notice("AK", &who("a", "a"), 4, ("r", "s"), false), Seen::Blocked);
        t.unblock("AK");
        assert_eq!(t.notice("AK", &who("b", "b"), 5, ("r", "s"), true), Seen::Known);
    }

    #[test]
    fn stored_fingerprints_are_known_after_a_restart() {
        let t = ActivityTracker::new(64);
        t.load(
            "AK",
            vec![FingerprintRecord {
                source_ip: "10.0.0.1".into(),
                user_agent: "a".into(),
                first_seen_ms: 1,
                last_seen_ms: 1,
                count: 1,
            }],
        );
        assert_eq!(t.notice("AK", &who("10.0.0.1", "a"), 2, ("r", "s"), false), Seen::Known);
        assert_eq!(t.notice("AK", &who("10.0.0.9", "a"), 3, ("r", "s"), false), Seen::New);
    }

    #[test]
    fn take_hands_over_counts_and_the_latest_use_once_and_restore_merges_them_back() {
        let t = ActivityTracker::new(64);
        t.load("AK", Vec::new());
        t.notice("AK", &who("ip", "a"), 10, ("eu-west-1", "s3"), false);
        t.notice("AK", &who("ip", "a"), 5, ("us-east-1", "sts"), false);
        t.notice("AK", &who("ip", "b"), 7, ("eu-west-1", "s3"), false);
        let taken = t.take();
        assert_eq!(taken.len(), 1);
        let a = &taken[0];
        assert_eq!((a.last_used_at_ms, a.region.as_str()), (10, "eu-west-1"));
        let mut counts: Vec<(String, u64, i64, i64)> = a
            .fingerprints
            .iter()
            .map(|f| (f.user_agent.clone(), f.count, f.first_seen_ms, f.last_seen_ms))
            .collect();
        counts.sort();
        assert_eq!(counts, [("a".into(), 2, 5, 10), ("b".into(), 1, 7, 7)]);
        assert!(t.take().is_empty(), "taken once");

        t.notice("AK", &who("ip", "a"), 11, ("eu-west-1", "s3"), false);
        t.restore(taken);
        let again = t.take();
        let a = &again[0];
        assert_eq!(a.last_used_at_ms, 11);
        let total: u64 = a.fingerprints.iter().map(|f| f.count).sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn a_use_from_one_fingerprint_too_many_between_flushes_is_noticed_but_not_counted() {
        let t = ActivityTracker::new(1);
        t.load("AK", Vec::new());
        assert_eq!(t.notice("AK", &who("a", "a"), 1, ("r", "s"), false), Seen::First);
        assert_eq!(t.notice("AK", &who("b", "b"), 2, ("r", "s"), false), Seen::New);
        assert_eq!(t.notice("AK", &who("c", "c"), 3, ("r2", "s2"), false), Seen::New);
        let taken = t.take();
        let a = &taken[0];
        assert_eq!(
            (a.last_used_at_ms, a.region.as_str()),
            (3, "r2"),
            "the uncounted use is still the last use"
        );
        let mut counts: Vec<(String, u64)> = a.fingerprints.iter().map(|f| (f.source_ip.clone(), f.count)).collect();
        counts.sort();
        assert_eq!(counts, [("a".into(), 1), ("b".into(), 1)]);
    }

    #[test]
    fn known_fingerprints_stay_bounded() {
        let t = ActivityTracker::new(2);
        t.load("AK", Vec::new());
        for i in 0..100 {
            t.notice("AK", &who(&format!("10.0.0.{i}"), "a"), i, ("r", "s"), false);
        }
        assert_eq!(
            t.notice("AK", &who("10.0.1.1", "a"), 100, ("r", "s"), false),
            Seen::New,
            "never first again"
        );
        let all = t.lock();
        assert!(all["AK"].known.as_ref().unwrap().len() <= 4);
        assert!(all["AK"].pending.len() <= 4);
    }
}
