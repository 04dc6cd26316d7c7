//! The store's side of `GET /v1/sys/health`: one cheap round trip to the backend, and the
//! rows the store refused for failing their integrity tag. The API reaches the store only
//! through here and the domain services; this probe reads and writes nothing.

use std::sync::Arc;

use crate::integrity::{RefusedRow, RowIntegrity};
use crate::store::{StoreError, SystemStore};

/// Answers whether the store is reachable and whether it refused rows.
pub(crate) struct StoreHealth {
    store: Arc<dyn SystemStore>,
    integrity: Arc<RowIntegrity>,
}

impl StoreHealth {
    pub(crate) fn new(store: Arc<dyn SystemStore>, integrity: Arc<RowIntegrity>) -> Self {
        Self { store, integrity }
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Refusals since start, repeats counted.
    pub(crate) fn refusals(&self) -> u64 {
        self.integrity.refusals()
    }

    /// The refused rows not yet in the audit trail (see [`RowIntegrity::take_unreported`]).
    pub(crate) fn take_unreported(&self) -> Vec<RefusedRow> {
        self.integrity.take_unreported()
    }

    pub(crate) async fn refusal_pending(&self) {
        self.integrity.refusal_pending().await
    }

    pub(crate) fn unreport(&self, rows: Vec<RefusedRow>) {
        self.integrity.unreport(rows)
    }
}
