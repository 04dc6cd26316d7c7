//! The store's side of `GET /v1/sys/health`: one cheap round trip to the backend. The API
//! reaches the store only through here and the domain services; this probe reads and
//! writes nothing.

use std::sync::Arc;

use crate::store::{StoreError, SystemStore};

/// Answers whether the store is reachable.
pub(crate) struct StoreHealth {
    store: Arc<dyn SystemStore>,
}

impl StoreHealth {
    pub(crate) fn new(store: Arc<dyn SystemStore>) -> Self {
        Self { store }
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
