//! The store as an index of the event file: a task that moves synced events into the store
//! in large batches, off the request path, and anchors the head of each batch it indexed.
//!
//! Order of the three sinks, always: the event file (written, then fdatasync'ed), then the
//! store (one transaction per batch, only events already durable in the file), then the
//! anchor line for the batch's last event (synced). So at any moment the file is at or ahead
//! of the store, and the store at or ahead of the last anchor — what verification of a live
//! vault relies on, and why a power loss can never leave the anchor past the file.
//!
//! The store failing does not refuse requests (the file is the record); the events wait in
//! memory, bounded ([`super::log::MAX_UNINDEXED`]). The anchor file failing refuses every
//! append until an anchor line is written again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Shared, append_anchor};
use crate::audit::chain::Head;
use crate::audit::sink::AppendFile;
use crate::audit::witness::Witness;

/// Most events in one store transaction.
const MAX_INDEX_BATCH: usize = 8192;

/// How often the indexer runs: a quarter of the allowed lag, within bounds.
fn tick(index_lag: Duration) -> Duration {
    (index_lag / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// The indexer's own state: the anchor file, the last head it anchored, and the HSM witness
/// of that head.
pub(super) struct Indexer {
    shared: Arc<Shared>,
    anchor: AppendFile,
    anchored: Head,
    /// The last head the store took but the anchor file has not.
    to_anchor: Option<Head>,
    witness: Witness,
}

impl Indexer {
    pub(super) fn new(shared: Arc<Shared>, anchor: AppendFile, anchored: Head, witness: Witness) -> Self {
        Self {
            shared,
            anchor,
            anchored,
            to_anchor: None,
            witness,
        }
    }

    /// Runs until the auditor stops; then indexes and anchors what is left.
    pub(super) async fn run(mut self) {
        let every = tick(self.shared.settings.index_lag);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.shared.index_wake.notified() => {}
            }
            let stopping = self.shared.stopping.load(Ordering::Acquire);
            self.shared.flush_deferred();
            self.index_synced().await;
            self.witness_anchored(stopping).await;
            if stopping {
                break;
            }
        }
    }

    /// Gives the HSM the last anchored head, at most once per `audit.hsm_anchor_interval`
    /// (and at once when stopping, so a stopped vault's witness names its last event). A
    /// failure is logged and tried again after an interval: the event file and the anchor
    /// are the record; the witness only bounds what a wipe of both can hide.
    async fn witness_anchored(&mut self, now: bool) {
        let at = std::time::Instant::now();
        let result = if now && !self.witness.holds(&self.anchored) {
            self.witness.write_forced(&self.anchored, at).await
        } else {
            self.witness.write_if_due(&self.anchored, at).await.map(|_| ())
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, seq = self.anchored.seq, "the HSM did not take the audit chain head");
        }
    }

    /// Moves every synced event into the store, batch by batch, anchoring each batch.
    async fn index_synced(&mut self) {
        loop {
            if !self.anchor_pending().await {
                return;
            }
            let synced = self.shared.synced.borrow().seq;
            let Some((batch, head)) = self.shared.log().indexable(synced, MAX_INDEX_BATCH) else {
                return;
            };
            if let Err(e) = self.shared.store.append_audit(&batch).await {
                tracing::error!(error = %e, events = batch.len(), "audit events could not be indexed; retrying");
                self.shared
                    .metrics
                    .index_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            self.shared.metrics.index_batch_events.observe(batch.len() as f64);
            self.shared.log().indexed(head.seq);
            self.to_anchor = Some(head);
        }
    }

    /// Writes the anchor line of the last indexed head if it is not written yet, and then
    /// publishes the head as indexed. Returns whether the anchor is up to date (indexing may
    /// go on).
    async fn anchor_pending(&mut self) -> bool {
        let Some(head) = self.to_anchor.take() else {
            return true;
        };
        if head.seq <= self.anchored.seq {
            return true;
        }
        match append_anchor(&mut self.anchor, &self.shared.settings.node, &head).await {
            Ok(_) => {
                // Published once anchored: a reader that caught up sees the three sinks agree.
                self.shared.indexed.send_replace(head.seq);
                self.anchored = head;
                self.shared.log().set_anchor_refusal(None);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "audit anchor file write failed; events refused until it recovers");
                self.shared.log().set_anchor_refusal(Some(format!("anchor file: {e}")));
                self.to_anchor = Some(head);
                false
            }
        }
    }
}
