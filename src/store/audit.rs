//! The audit trail's queryable copy: each node's chained events with their MACs, appended
//! in group commits and read back in sequence order. The store never checks a MAC; the
//! audit module does.

use super::StoreResult;
use crate::BoxFuture;
use crate::model::AuditEvent;

/// An audit event as stored: the event and its chain MAC.
pub type StoredEvent = (AuditEvent, Vec<u8>);

/// Which audit events a query wants. Every present field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub(crate) since_ms: Option<i64>,
    pub(crate) until_ms: Option<i64>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
}

/// The audit events. Every method is one atomic operation.
pub trait AuditStore: Send + Sync {
    /// Appends a batch of audit events in one transaction (group commit). The last event of
    /// the batch is remembered as a batch end ([`AuditStore::audit_batch_ends`]).
    fn append_audit<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, StoreResult<()>>;

    /// The sequence numbers of a node's batch ends (the last event of each
    /// [`AuditStore::append_audit`] call) with `seq > after_seq`, ascending.
    fn audit_batch_ends<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<Vec<u64>>>;

    /// Removes a node's events after `seq` (undoing a batch that failed in another sink).
    fn truncate_audit<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<()>>;

    /// A node's events with `seq > after_seq`, ascending, at most `limit`.
    fn audit_range<'a>(
        &'a self,
        node: &'a str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>>;

    /// A node's last event.
    fn audit_head<'a>(&'a self, node: &'a str) -> BoxFuture<'a, StoreResult<Option<StoredEvent>>>;

    /// Every node that has events, in byte order.
    fn audit_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<String>>>;

    /// Events matching `filter`, ordered by (node bytes, seq), strictly after the cursor
    /// `(node, seq)`, at most `limit`.
    fn query_audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
        after: Option<(&'a str, u64)>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>>;

    /// How many events match `filter`: what paging through [`AuditStore::query_audit`] would
    /// return, counted without reading them (the total of an export's progress bar).
    fn count_audit<'a>(&'a self, filter: &'a AuditFilter) -> BoxFuture<'a, StoreResult<u64>>;

    /// Number of events per principal, in principal byte order (for the compliance report).
    fn audit_counts_by_principal(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>>;
}
