//! Dual control's approval requests (`[custodian] quorum`): who asked to do what, why, who
//! approved, until when, and whether it was used. A request is used once: its use is a
//! conditional update on the row's revision, so two nodes cannot both spend it.

use super::StoreResult;
use crate::BoxFuture;

/// An approval request as stored (every field bound into the row's integrity tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub id: String,
    /// The action it allows (`ExportKey`, …).
    pub action: String,
    /// The resource it allows the action on (`key:<name>`, `kek:<kek_id>`, …).
    pub resource: String,
    pub reason: String,
    pub requested_by: String,
    /// Whether the requester belongs to the custodian group (its request then counts as one
    /// approval).
    pub requester_counts: bool,
    /// The principals who approved, in order (never the requester).
    pub approvers: Vec<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// When the operation ran with it (it runs once).
    pub used_at_ms: Option<i64>,
    /// Bumped by every update; bound into the tag and checked by every update.
    pub revision: i64,
}

/// Approval requests. Every method is one atomic operation.
pub trait ApprovalStore: Send + Sync {
    /// Stores a new request. `AlreadyExists` if its id is taken.
    fn insert_approval<'a>(&'a self, approval: &'a ApprovalRecord) -> BoxFuture<'a, StoreResult<()>>;

    fn get_approval<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<ApprovalRecord>>>;

    /// Requests created at or after `since_ms`, newest first, at most `limit`.
    fn list_approvals(&self, since_ms: i64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ApprovalRecord>>>;

    /// Writes `next` over the stored row when that row's revision is still
    /// `next.revision - 1`; `false` (nothing written) when another writer got there first.
    fn update_approval<'a>(&'a self, next: &'a ApprovalRecord) -> BoxFuture<'a, StoreResult<bool>>;
}
