//! What the vault keeps about itself — system secrets (sealed like any key) and small
//! non-secret values — and the backend's own housekeeping: liveness, journal checkpoints
//! and shutdown.

use std::sync::Arc;

use super::{ChangeReceiver, RowSealer, StoreResult};
use crate::BoxFuture;
use crate::envelope::SealedRecord;

/// System secrets and values, and the backend's housekeeping.
pub trait SystemStore: Send + Sync {
    /// Cheap liveness probe for health checks.
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// Hands the store the sealer that tags every protected row it writes and checks every
    /// one it reads ([`super::integrity`]). A store from before row integrity is migrated
    /// here, with its existing rows tagged in the same transaction (so they are tagged only
    /// by the start that adds the tag columns). Until this is called, protected rows do not
    /// read.
    fn enable_row_integrity(&self, sealer: Arc<dyn RowSealer>) -> BoxFuture<'_, StoreResult<()>>;

    fn get_system_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<SealedRecord>>>;

    /// Inserts a system secret unless one exists; returns the one stored afterwards (so
    /// two nodes racing at first start agree on one).
    fn insert_system_secret<'a>(
        &'a self,
        name: &'a str,
        sealed: &'a SealedRecord,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<SealedRecord>>;

    fn get_value<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>>;

    fn put_value<'a>(&'a self, name: &'a str, value: &'a [u8], now_ms: i64) -> BoxFuture<'a, StoreResult<()>>;

    /// Moves committed data out of any journal the backend keeps beside its files, so a
    /// destroyed record cannot be recovered from old journal pages. Run after destroying
    /// keys and at shutdown.
    fn checkpoint(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// Checkpoints and closes every connection (clean shutdown). The store is unusable after.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Starts hearing the changes other nodes sharing this store make ([`super::changes`]),
    /// and watching whether the store answers ([`SystemStore::available`]). `None` for a
    /// store only one node opens (an embedded file): nobody else changes it.
    fn watch_changes(&self) -> Option<ChangeReceiver> {
        None
    }

    /// Whether the store answered its last probe. A server database that stopped answering
    /// is noticed within a few seconds of it (once [`SystemStore::watch_changes`] started the
    /// probe); an embedded file is always available (its failures are the disk's, and show
    /// on the operations themselves).
    fn available(&self) -> bool {
        true
    }

    /// The connection pools, for `/metrics`: each pool's name, its open connections and how
    /// many of them are idle.
    fn pools(&self) -> Vec<PoolState> {
        Vec::new()
    }
}

/// One connection pool's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub name: &'static str,
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}
