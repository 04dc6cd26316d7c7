//! Reading the trail for callers: the events a query selects (cursor paging over the
//! store), the number of events per principal, and verification of this node's chain.
//!
//! The audit key stays inside: verification uses it, nothing here hands it out. This
//! module never writes — appending is the writer's alone ([`super::writer`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::AuditSettings;
use super::verify::{Report, VerifyError, verify_trail};
use super::witness;
use crate::kek::KekProvider;
use crate::secret::SecretBytes;
use crate::store::{AuditFilter, AuditStore, StoreResult, StoredEvent};

/// The read side of this node's audit trail.
pub struct AuditTrail {
    store: Arc<dyn AuditStore>,
    key: Arc<SecretBytes>,
    settings: AuditSettings,
    /// The KEK provider that keeps the HSM witness of the chain head, if any.
    witness: Option<Arc<dyn KekProvider>>,
}

impl AuditTrail {
    pub fn new(
        store: Arc<dyn AuditStore>,
        key: Arc<SecretBytes>,
        settings: AuditSettings,
        witness: Option<Arc<dyn KekProvider>>,
    ) -> Self {
        Self {
            store,
            key,
            settings,
            witness,
        }
    }

    /// At most `limit` events matching `filter`, every node's merged by time: each node's
    /// events come in its sequence order, past `after`'s position for that node (the last
    /// sequence number already listed; a node `after` does not name starts at its first
    /// event), and of the nodes' next events the earliest (time, then node, then sequence)
    /// comes first. Paging with the positions of the events returned lists every event
    /// exactly once. One store read per node per page (nodes are few: one per server).
    pub async fn events(
        &self,
        filter: &AuditFilter,
        after: &BTreeMap<String, u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        let mut streams = Vec::new();
        for node in self.store.audit_nodes().await? {
            let from = after.get(&node).copied().unwrap_or(0);
            // The store walks (node, seq) order: what it returns past this node's events
            // belongs to the next nodes, and means this node has no more that match.
            let mut page = self.store.query_audit(filter, Some((&node, from)), limit).await?;
            page.retain(|(event, _)| event.node == node);
            if !page.is_empty() {
                streams.push(VecDeque::from(page));
            }
        }
        let mut merged = Vec::with_capacity(limit as usize);
        while merged.len() < limit as usize {
            let next = streams
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.front().map(|(e, _)| (i, (e.time.as_str(), e.node.as_str(), e.seq))))
                .min_by(|a, b| a.1.cmp(&b.1))
                .map(|(i, _)| i);
            let Some(event) = next.and_then(|i| streams.get_mut(i)).and_then(VecDeque::pop_front) else {
                break;
            };
            merged.push(event);
        }
        Ok(merged)
    }

    /// Events per principal, for the compliance report.
    pub(crate) async fn counts_by_principal(&self) -> StoreResult<Vec<(String, u64)>> {
        self.store.audit_counts_by_principal().await
    }

    /// Verifies this node's chain in the store, the event file and the anchor file (see
    /// [`verify_trail`]).
    pub async fn verify(&self) -> Result<Report, VerifyError> {
        let witnessed = match &self.witness {
            Some(hsm) => witness::read(hsm.as_ref(), &self.settings.node).await?,
            None => None,
        };
        // The audit key checks the chain; it is not otherwise exposed.
        verify_trail(
            self.store.as_ref(),
            self.key.expose_secret(),
            &self.settings.node,
            &self.settings.file,
            &self.settings.anchor_file,
            witnessed,
            &mut |_| {},
        )
        .await
    }
}
