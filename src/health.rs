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
    /// `store.serve_cached_when_unavailable`.
    serve_cached: bool,
}

impl StoreHealth {
    pub(crate) fn new(store: Arc<dyn SystemStore>, integrity: Arc<RowIntegrity>, serve_cached: bool) -> Self {
        Self {
            store,
            integrity,
            serve_cached,
        }
    }

    /// Whether requests are served: always while the store answers its probe, and while it
    /// does not only with `store.serve_cached_when_unavailable` (then what memory holds
    /// still answers, and what needs the store gets 503 from the store itself). One atomic
    /// load: the hot path pays nothing else.
    pub(crate) fn serving(&self) -> bool {
        self.serve_cached || self.store.available()
    }

    /// Whether the store answers its probe (an embedded file always does).
    pub(crate) fn available(&self) -> bool {
        self.store.available()
    }

    /// The store's connection pools.
    pub(crate) fn pools(&self) -> Vec<crate::store::PoolState> {
        self.store.pools()
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
