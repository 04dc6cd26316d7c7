//! Reading the trail for callers: the events a query selects (cursor paging over the
//! store), the number of events per principal, and verification of this node's chain.
//!
//! The audit key stays inside: verification uses it, nothing here hands it out. This
//! module never writes — appending is the writer's alone ([`super::writer`]).

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

    /// Events matching `filter` in (node, seq) order, strictly after the cursor `after`,
    /// at most `limit`.
    pub async fn events(
        &self,
        filter: &AuditFilter,
        after: Option<(&str, u64)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.store.query_audit(filter, after, limit).await
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
