//! One node's memory of the caller fingerprints of one kind of secret (credentials, or API
//! keys), by the secret's id: the fingerprints each is known to have been used from, the uses
//! counted and the latest use since the last flush, and the block a `deactivate` rule puts
//! on it. A lock is held only for a notice's few map operations, never across a store call;
//! what the store holds is handed in and out by the owner (its load, its flush's write).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Fingerprint, Seen};
use crate::BoxFuture;
use crate::store::{FingerprintRecord, StoreResult};

/// A secret's latest use: its time, and what else the owning service keeps of it (a
/// credential's region and service; nothing for an API key).
pub(crate) trait LastUse: Clone {
    /// What a use says besides its time, borrowed from the request.
    type Note<'a>: Copy;
    fn at_ms(&self) -> i64;
    fn first(at_ms: i64, note: Self::Note<'_>) -> Self;
    /// Moves to a later use, keeping what it holds where the note says the same (no
    /// allocation on the steady path).
    fn renew(&mut self, at_ms: i64, note: Self::Note<'_>);
}

/// An API key's last use is its time alone.
impl LastUse for i64 {
    type Note<'a> = ();

    fn at_ms(&self) -> i64 {
        *self
    }

    fn first(at_ms: i64, _: ()) -> Self {
        at_ms
    }

    fn renew(&mut self, at_ms: i64, _: ()) {
        *self = at_ms;
    }
}

/// The use of one secret not yet written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending<U> {
    pub(crate) id: String,
    pub(crate) last_use: U,
    pub(crate) fingerprints: Vec<FingerprintRecord>,
}

/// How a flush's batch becomes the store's record type `R`, and a refused batch comes back.
pub(crate) type Conversion<U, R> = (fn(Pending<U>) -> R, fn(R) -> Pending<U>);

/// One secret's memory on this node.
struct Watched<U> {
    /// `None` until loaded from the store.
    known: Option<HashSet<Fingerprint>>,
    last_use: Option<U>,
    pending: HashMap<Fingerprint, FingerprintRecord>,
    /// Set, under the same lock as the noticing, when a new fingerprint deactivates the
    /// secret: a concurrent use from that fingerprint cannot slip through while the store is
    /// being updated.
    blocked: bool,
}

impl<U> Default for Watched<U> {
    fn default() -> Self {
        Self {
            known: None,
            last_use: None,
            pending: HashMap::new(),
            blocked: false,
        }
    }
}

impl<U: LastUse> Watched<U> {
    /// Classifies `who` against the known fingerprints and learns it. With `block_on_new`,
    /// a new one blocks the secret (under the caller's lock, so a concurrent use from it
    /// cannot slip through). Beyond `max_known`, one known fingerprint is dropped.
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
    fn note_last_use(&mut self, at_ms: i64, note: U::Note<'_>) {
        match &mut self.last_use {
            Some(held) if held.at_ms() <= at_ms => held.renew(at_ms, note),
            Some(_) => {}
            None => self.last_use = Some(U::first(at_ms, note)),
        }
    }

    /// Counts the use for `who` until the next flush. At most `max_known` fingerprints are
    /// pending between flushes; a use from one more is not counted (it is still noticed,
    /// and reported when new).
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

    fn pending(&self, id: &str) -> Option<Pending<U>> {
        Some(Pending {
            id: id.to_owned(),
            last_use: self.last_use.clone()?,
            fingerprints: self.pending.values().cloned().collect(),
        })
    }
}

/// The fingerprints of every watched secret of one kind, by the secret's id.
pub(crate) struct FingerprintTracker<U> {
    secrets: Mutex<HashMap<String, Watched<U>>>,
    /// Known fingerprints held per secret; beyond it the set is thinned (the store keeps the
    /// most recent ones), so memory stays bounded.
    max_known: usize,
}

impl<U: LastUse> FingerprintTracker<U> {
    pub(crate) fn new(max_fingerprints: u32) -> Self {
        Self {
            secrets: Mutex::new(HashMap::new()),
            max_known: usize::try_from(max_fingerprints)
                .unwrap_or(usize::MAX)
                .saturating_mul(2),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Watched<U>>> {
        self.secrets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The secret's entry, made on first sight. The steady state (a known secret) allocates
    /// no key: look up before inserting.
    fn entry<'a>(all: &'a mut HashMap<String, Watched<U>>, id: &str) -> Option<&'a mut Watched<U>> {
        if !all.contains_key(id) {
            all.insert(id.to_owned(), Watched::default());
        }
        all.get_mut(id)
    }

    /// Whether this node knows the secret's fingerprints yet (else the caller loads them
    /// with [`FingerprintTracker::load`] before [`FingerprintTracker::notice`]).
    pub(crate) fn is_loaded(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|c| c.known.is_some())
    }

    /// Sets the fingerprints the store holds for a secret (kept if another request loaded
    /// them meanwhile).
    pub(crate) fn load(&self, id: &str, stored: Vec<FingerprintRecord>) {
        let mut all = self.lock();
        let entry = all.entry(id.to_owned()).or_default();
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

    /// Loads the secret's stored fingerprints with `stored` the first time this node sees
    /// it (so "new" survives a restart), then notices the use ([`FingerprintTracker::notice`]).
    pub(crate) async fn notice_loaded<E, F: Future<Output = Result<Vec<FingerprintRecord>, E>>>(
        &self,
        id: &str,
        stored: impl FnOnce() -> F,
        who: &Fingerprint,
        (now_ms, note): (i64, U::Note<'_>),
        block_on_new: bool,
    ) -> Result<Seen, E> {
        if !self.is_loaded(id) {
            self.load(id, stored().await?);
        }
        Ok(self.notice(id, who, now_ms, note, block_on_new))
    }

    /// Counts one use and says whether its fingerprint is new to the secret. Call after
    /// [`FingerprintTracker::load`]; an unloaded secret counts as having no fingerprints.
    /// With `block_on_new`, a new fingerprint blocks the secret until
    /// [`FingerprintTracker::unblock`].
    pub(crate) fn notice(
        &self,
        id: &str,
        who: &Fingerprint,
        now_ms: i64,
        note: U::Note<'_>,
        block_on_new: bool,
    ) -> Seen {
        let mut all = self.lock();
        let Some(entry) = Self::entry(&mut all, id) else {
            return Seen::Known;
        };
        if entry.blocked {
            return Seen::Blocked;
        }
        let seen = entry.learn(who, block_on_new, self.max_known);
        entry.note_last_use(now_ms, note);
        entry.count_use(who, now_ms, self.max_known);
        seen
    }

    /// Records a use that noticed no fingerprint (a use the secret refused for another
    /// reason): its last use only.
    pub(crate) fn touch(&self, id: &str, now_ms: i64, note: U::Note<'_>) {
        let mut all = self.lock();
        if let Some(entry) = Self::entry(&mut all, id) {
            entry.note_last_use(now_ms, note);
        }
    }

    /// The use not yet flushed of one secret.
    pub(crate) fn pending_for(&self, id: &str) -> Option<Pending<U>> {
        self.lock().get(id)?.pending(id)
    }

    /// A secret's fingerprints as a reader sees them: `stored` (what the store holds) with
    /// this node's pending uses added, most recently seen first. The owner holds its flush
    /// lock around the store read and this, so no flush moves a use between the two.
    pub(crate) fn with_pending(&self, id: &str, stored: Vec<FingerprintRecord>) -> Vec<FingerprintRecord> {
        let pending = self.lock().get(id).map(|c| c.pending.values().cloned().collect());
        merged(stored, pending.unwrap_or_default())
    }

    /// Takes everything pending, for a flush.
    pub(crate) fn take(&self) -> Vec<Pending<U>> {
        let mut all = self.lock();
        let mut out = Vec::new();
        for (id, c) in all.iter_mut() {
            if let Some(p) = c.pending(id) {
                out.push(p);
            }
            c.last_use = None;
            c.pending.clear();
        }
        out
    }

    /// Hands everything pending to `write` (a method of `store` taking the batch, in its
    /// record type `R`, and the fingerprints to keep per secret); when the write fails, what
    /// it held is put back for the next flush. The owner holds its flush lock around this,
    /// so readers never see a use in neither place or in both.
    pub(crate) async fn flush<S: ?Sized, R>(
        &self,
        (to_record, from_record): Conversion<U, R>,
        store: &S,
        write: for<'x> fn(&'x S, &'x [R], u32) -> BoxFuture<'x, StoreResult<()>>,
        max_fingerprints: u32,
    ) -> StoreResult<()> {
        let batch: Vec<R> = self.take().into_iter().map(to_record).collect();
        if batch.is_empty() {
            return Ok(());
        }
        let written = write(store, &batch, max_fingerprints).await;
        if written.is_err() {
            self.restore(batch.into_iter().map(from_record).collect());
        }
        written
    }

    /// Puts back use whose flush failed (merged with what arrived meanwhile).
    fn restore(&self, pending: Vec<Pending<U>>) {
        let mut all = self.lock();
        for p in pending {
            let entry = all.entry(p.id).or_default();
            if entry
                .last_use
                .as_ref()
                .is_none_or(|held| held.at_ms() < p.last_use.at_ms())
            {
                entry.last_use = Some(p.last_use);
            }
            for f in p.fingerprints {
                let who = Fingerprint {
                    source_ip: f.source_ip.clone(),
                    user_agent: f.user_agent.clone(),
                };
                match entry.pending.get_mut(&who) {
                    Some(held) => add_up(held, &f),
                    None => {
                        entry.pending.insert(who, f);
                    }
                }
            }
        }
    }

    /// Lets a secret that was turned back on be used again.
    pub(crate) fn unblock(&self, id: &str) {
        if let Some(c) = self.lock().get_mut(id) {
            c.blocked = false;
        }
    }

    /// Drops everything about a deleted secret.
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// `more` counted into `into`: counts add up, first and last seen widen.
fn add_up(into: &mut FingerprintRecord, more: &FingerprintRecord) {
    into.count = into.count.saturating_add(more.count);
    into.first_seen_ms = into.first_seen_ms.min(more.first_seen_ms);
    into.last_seen_ms = into.last_seen_ms.max(more.last_seen_ms);
}

/// `stored` with `pending` counted in, most recently seen first.
fn merged(mut stored: Vec<FingerprintRecord>, pending: Vec<FingerprintRecord>) -> Vec<FingerprintRecord> {
    if pending.is_empty() {
        return stored;
    }
    for f in pending {
        match stored
            .iter_mut()
            .find(|s| s.source_ip == f.source_ip && s.user_agent == f.user_agent)
        {
            Some(s) => add_up(s, &f),
            None => stored.push(f),
        }
    }
    stored.sort_by_key(|f| std::cmp::Reverse(f.last_seen_ms));
    stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::who;

    /// A tracker of API-key-like secrets (last use: a time).
    fn tracker(max: u32) -> FingerprintTracker<i64> {
        FingerprintTracker::new(max)
    }

    #[test]
    fn the_first_fingerprint_is_learned_and_a_different_one_is_new_once() {
        let t = tracker(64);
        t.load("AK", Vec::new());
        assert_eq!(t.notice("AK", &who("10.0.0.1", "a"), 1, (), false), Seen::First);
        assert_eq!(t.notice("AK", &who("10.0.0.1", "a"), 2, (), false), Seen::Known);
        assert_eq!(t.notice("AK", &who("10.0.0.1", "b"), 3, (), false), Seen::New);
        assert_eq!(t.notice("AK", &who("10.0.0.1", "b"), 4, (), false), Seen::Known);
        assert_eq!(t.notice("AK", &who("10.0.0.2", "a"), 5, (), false), Seen::New);
    }

    #[test]
    fn secrets_are_watched_apart() {
        let t = tracker(64);
        t.load("A", Vec::new());
        t.load("B", Vec::new());
        assert_eq!(t.notice("A", &who("10.0.0.1", "a"), 1, (), true), Seen::First);
        assert_eq!(t.notice("B", &who("10.0.0.2", "a"), 1, (), true), Seen::First);
        assert_eq!(t.notice("A", &who("10.0.0.2", "a"), 2, (), true), Seen::New);
        assert_eq!(
            t.notice("B", &who("10.0.0.2", "a"), 2, (), true),
            Seen::Known,
            "A's block is A's"
        );
    }

    #[test]
    fn a_blocking_new_fingerprint_blocks_every_caller_until_unblocked() {
        let t = tracker(64);
        t.load("AK", Vec::new());
        assert_eq!(
            t.notice("AK", &who("a", "a"), 1, (), true),
            Seen::First,
            "the first is learned"
        );
        assert_eq!(t.notice("AK", &who("b", "b"), 2, (), true), Seen::New);
        assert_eq!(t.notice("AK", &who("b", "b"), 3, (), true), Seen::Blocked);
        assert_eq!(t.notice("AK", &who("a", "a"), 4, (), false), Seen::Blocked);
        t.unblock("AK");
        assert_eq!(t.notice("AK", &who("b", "b"), 5, (), true), Seen::Known);
    }

    #[test]
    fn stored_fingerprints_are_known_after_a_restart() {
        let t = tracker(64);
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
        assert_eq!(t.notice("AK", &who("10.0.0.1", "a"), 2, (), false), Seen::Known);
        assert_eq!(t.notice("AK", &who("10.0.0.9", "a"), 3, (), false), Seen::New);
    }

    #[test]
    fn take_hands_over_counts_and_the_latest_use_once_and_restore_merges_them_back() {
        let t = tracker(64);
        t.load("AK", Vec::new());
        t.notice("AK", &who("ip", "a"), 10, (), false);
        t.notice("AK", &who("ip", "a"), 5, (), false);
        t.notice("AK", &who("ip", "b"), 7, (), false);
        let taken = t.take();
        assert_eq!(taken.len(), 1);
        let a = &taken[0];
        assert_eq!(a.last_use, 10, "a use finishing late does not move last use back");
        let mut counts: Vec<(String, u64, i64, i64)> = a
            .fingerprints
            .iter()
            .map(|f| (f.user_agent.clone(), f.count, f.first_seen_ms, f.last_seen_ms))
            .collect();
        counts.sort();
        assert_eq!(counts, [("a".into(), 2, 5, 10), ("b".into(), 1, 7, 7)]);
        assert!(t.take().is_empty(), "taken once");

        t.notice("AK", &who("ip", "a"), 11, (), false);
        t.restore(taken);
        let again = t.take();
        let a = &again[0];
        assert_eq!(a.last_use, 11);
        let total: u64 = a.fingerprints.iter().map(|f| f.count).sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn a_touch_moves_the_last_use_without_noticing_a_fingerprint() {
        let t = tracker(64);
        t.touch("AK", 7, ());
        t.touch("AK", 3, ());
        let pending = t.pending_for("AK").expect("a use is pending");
        assert_eq!((pending.last_use, pending.fingerprints.len()), (7, 0));
        t.load("AK", Vec::new());
        assert_eq!(
            t.notice("AK", &who("a", "a"), 8, (), false),
            Seen::First,
            "a touch learns nothing"
        );
    }

    #[test]
    fn a_use_from_one_fingerprint_too_many_between_flushes_is_noticed_but_not_counted() {
        let t = tracker(1);
        t.load("AK", Vec::new());
        assert_eq!(t.notice("AK", &who("a", "a"), 1, (), false), Seen::First);
        assert_eq!(t.notice("AK", &who("b", "b"), 2, (), false), Seen::New);
        assert_eq!(t.notice("AK", &who("c", "c"), 3, (), false), Seen::New);
        let taken = t.take();
        let a = &taken[0];
        assert_eq!(a.last_use, 3, "the uncounted use is still the last use");
        let mut counts: Vec<(String, u64)> = a.fingerprints.iter().map(|f| (f.source_ip.clone(), f.count)).collect();
        counts.sort();
        assert_eq!(counts, [("a".into(), 1), ("b".into(), 1)]);
    }

    #[test]
    fn known_fingerprints_stay_bounded() {
        let t = tracker(2);
        t.load("AK", Vec::new());
        for i in 0..100 {
            t.notice("AK", &who(&format!("10.0.0.{i}"), "a"), i, (), false);
        }
        assert_eq!(
            t.notice("AK", &who("10.0.1.1", "a"), 100, (), false),
            Seen::New,
            "never first again"
        );
        let all = t.lock();
        assert!(all["AK"].known.as_ref().unwrap().len() <= 4);
        assert!(all["AK"].pending.len() <= 4);
    }

    #[test]
    fn a_reader_sees_stored_and_pending_uses_added_up_most_recent_first() {
        let print = |ip: &str, first, last, count| FingerprintRecord {
            source_ip: ip.into(),
            user_agent: "a".into(),
            first_seen_ms: first,
            last_seen_ms: last,
            count,
        };
        let stored = vec![print("10.0.0.2", 5, 6, 1), print("10.0.0.1", 1, 2, 3)];
        let pending = vec![print("10.0.0.1", 7, 9, 2), print("10.0.0.3", 8, 8, 1)];
        assert_eq!(
            merged(stored, pending),
            [
                print("10.0.0.1", 1, 9, 5),
                print("10.0.0.3", 8, 8, 1),
                print("10.0.0.2", 5, 6, 1)
            ]
        );
    }
}
