//! Persistence: key metadata and sealed records, behind the [`Store`] interface.
//!
//! A store holds nothing a dump could turn into a secret: sealed records
//! ([`SealedRecord`]), keyed hashes and metadata. It knows nothing of HTTP and performs no
//! cryptography. Every implementation passes the same test body ([`contract_tests`]).
//! Times are Unix milliseconds; the domain modules convert.

pub mod sqlite;

use crate::BoxFuture;
use crate::audit::event::AuditEvent;
use crate::envelope::SealedRecord;

/// An audit event as stored: the event and its chain MAC.
pub type StoredEvent = (AuditEvent, Vec<u8>);

/// Which audit events a query wants. Every present field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
}

/// A signing key's metadata row. Strings hold the domain's enum values (`keys::model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub algorithm: String,
    pub boundary: String,
    pub owner: String,
    /// A JSON object of string values.
    pub tags: String,
    pub state: String,
    pub latest_version: u32,
    pub min_verify_version: u32,
    pub exportable: bool,
    pub auto_rotate_period_s: Option<i64>,
    pub deletion_due_ms: Option<i64>,
    /// The state `restore` returns to while `pending_deletion`.
    pub state_before_deletion: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Bumped by every update; updates carry the revision they read.
    pub revision: i64,
}

/// One version of a key, without its sealed material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u32,
    pub created_at_ms: i64,
    pub sign_count: u64,
    pub verify_count: u64,
    pub last_used_at_ms: Option<i64>,
}

/// A new version to insert.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub version: u32,
    pub created_at_ms: i64,
    pub sealed: SealedRecord,
}

/// Usage to add to a version's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub key_id: String,
    pub version: u32,
    pub signs: u64,
    pub verifies: u64,
    pub last_used_at_ms: i64,
}

/// A named caller token as stored: never the token, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub hash: Vec<u8>,
    pub principal: String,
    /// A JSON array of group names.
    pub groups_json: String,
    pub description: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    /// The row changed since it was read (optimistic-locking conflict).
    #[error("the record changed concurrently")]
    Conflict,
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("cannot open the store at {path}: {message}")]
    Open { path: String, message: String },
    #[error("schema migration {version} failed: {source}")]
    Migration {
        version: u32,
        #[source]
        source: sqlx::Error,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage interface. All methods are single atomic operations.
pub trait Store: Send + Sync {
    /// Cheap liveness probe for health checks.
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// Inserts a key and its first version atomically. `AlreadyExists` if the name is taken.
    fn create_key<'a>(&'a self, key: &'a KeyRecord, first: &'a NewVersion) -> BoxFuture<'a, StoreResult<()>>;

    fn get_key<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<KeyRecord>>>;

    /// Keys ordered by name, strictly after `after`, at most `limit`.
    fn list_keys<'a>(&'a self, after: Option<&'a str>, limit: u32) -> BoxFuture<'a, StoreResult<Vec<KeyRecord>>>;

    /// Every version of a key, ascending.
    fn list_versions<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<VersionInfo>>>;

    fn get_sealed<'a>(&'a self, key_id: &'a str, version: u32) -> BoxFuture<'a, StoreResult<Option<SealedRecord>>>;

    /// Appends version `new.version` (= `key.latest_version + 1`) if the key is still at
    /// `key.revision`; bumps the revision. `Conflict` otherwise.
    fn add_version<'a>(&'a self, key: &'a KeyRecord, new: &'a NewVersion) -> BoxFuture<'a, StoreResult<KeyRecord>>;

    /// Writes the mutable settings of `key` (state, min_verify_version, exportable,
    /// auto-rotation, deletion date and prior state, updated_at) if the stored revision is still
    /// `key.revision`; returns the row with its new revision. `Conflict` otherwise.
    fn update_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, StoreResult<KeyRecord>>;

    /// Removes a key and every sealed version of it (crypto-shredding: the wrapped DEKs
    /// are gone), only if the row is still at `key.revision` — a restore that committed
    /// after `key` was read wins. Returns whether it was destroyed.
    fn destroy_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, StoreResult<bool>>;

    /// Keys in `pending_deletion` whose waiting period ended at or before `now_ms`.
    fn keys_due_for_deletion(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>>;

    /// Enabled keys with an auto-rotation period, with the creation time of their latest
    /// version.
    fn auto_rotating_keys(&self) -> BoxFuture<'_, StoreResult<Vec<(KeyRecord, i64)>>>;

    /// Adds usage counters; unknown versions (deleted keys) are ignored.
    fn add_usage<'a>(&'a self, deltas: &'a [UsageDelta]) -> BoxFuture<'a, StoreResult<()>>;

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

    /// Stores a new caller token. `AlreadyExists` if its id or hash is taken.
    fn insert_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, StoreResult<()>>;

    fn get_token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>>;

    /// The token whose keyed hash is `hash` (revoked and expired ones included).
    fn find_token<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>>;

    /// Marks a token revoked at `now_ms` (once: a second revoke keeps the first time);
    /// returns the row afterwards, `None` when there is no such token.
    fn revoke_token<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>>;

    /// Appends a batch of audit events in one transaction (group commit).
    fn append_audit<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, StoreResult<()>>;

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

    /// Every node that has events.
    fn audit_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<String>>>;

    /// Events matching `filter`, ordered by (node, seq), strictly after the cursor
    /// `(node, seq)`, at most `limit`.
    fn query_audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
        after: Option<(&'a str, u64)>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>>;

    /// How many events match `filter`: what paging through [`Store::query_audit`] would
    /// return, counted without reading them (the total of an export's progress bar).
    fn count_audit<'a>(&'a self, filter: &'a AuditFilter) -> BoxFuture<'a, StoreResult<u64>>;

    /// Number of events per principal (for the compliance report).
    fn audit_counts_by_principal(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>>;
}
#[cfg(test)]
mod contract_tests;
