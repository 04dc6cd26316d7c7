//! Persistence: key metadata and sealed records, behind the [`Store`] interface.
//!
//! A store holds nothing a dump could turn into a secret: sealed records
//! ([`SealedRecord`]), keyed hashes and metadata. It knows nothing of HTTP and performs no
//! cryptography. Every implementation passes the same test body ([`contract_tests`]).
//! Times are Unix milliseconds; the domain modules convert.

pub mod sqlite;

use std::collections::BTreeMap;

use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::model::{Algorithm, ApiKeyState, AuditEvent, Boundary, CredentialState, KeyState, OnNewFingerprint};

/// The cause of a failure inside a backend, kept whole (the interface names no backend's
/// error type).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

/// A signing key's metadata row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub algorithm: Algorithm,
    pub boundary: Boundary,
    pub owner: String,
    pub tags: BTreeMap<String, String>,
    pub state: KeyState,
    pub latest_version: u32,
    pub min_verify_version: u32,
    pub exportable: bool,
    pub auto_rotate_period_s: Option<i64>,
    pub deletion_due_ms: Option<i64>,
    /// The state `restore` returns to while `pending_deletion`.
    pub state_before_deletion: Option<KeyState>,
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
    pub groups: Vec<String>,
    pub description: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// A SigV4 credential as stored: the secret only as a sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub access_key_id: String,
    pub principal: String,
    pub description: Option<String>,
    pub state: CredentialState,
    /// `None` follows the server's setting.
    pub on_new_fingerprint: Option<OnNewFingerprint>,
    pub sealed: SealedRecord,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub last_used_region: Option<String>,
    pub last_used_service: Option<String>,
}

/// Changes to a credential; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialPatch {
    pub state: Option<CredentialState>,
    /// `Some(None)` returns the credential to the server's default.
    pub on_new_fingerprint: Option<Option<OnNewFingerprint>>,
}

/// Where a credential was used from: the caller's address and user agent as the verifying
/// service reported them (`""` when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintRecord {
    pub source_ip: String,
    pub user_agent: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub count: u64,
}

/// Use of one credential since the last flush: its last use and, per fingerprint, how often
/// (`count` is added to the stored count; first/last seen widen the stored range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialActivity {
    pub access_key_id: String,
    pub last_used_at_ms: i64,
    pub region: String,
    pub service: String,
    pub fingerprints: Vec<FingerprintRecord>,
}

/// A bearer API key as stored: never the key, only metadata (its keyed hashes live beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub prefix: String,
    pub principal: String,
    pub state: ApiKeyState,
    /// The caller's own data, returned with a valid verification.
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// In the order they were stored (the domain stores them sorted and unique).
    pub permissions: Vec<String>,
    pub expires_at_ms: Option<i64>,
    /// Verifications left; `None` = no limit.
    pub remaining: Option<u64>,
    /// `(limit, period_ms)`.
    pub ratelimit: Option<(u32, i64)>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// An API key found by one of its hashes, and the end of that hash's grace period (`None`
/// for the key's current hash).
pub type FoundApiKey = (ApiKeyRecord, Option<i64>);

/// Changes of `PATCH /v1/apikeys/{id}`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyPatch {
    pub state: Option<ApiKeyState>,
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// `Some(None)` removes the credit limit.
    pub remaining: Option<Option<u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    /// A per-owner limit (e.g. credentials per principal) is reached.
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// The row changed since it was read (optimistic-locking conflict).
    #[error("the record changed concurrently")]
    Conflict,
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: BoxError,
    },
    #[error("schema migration {version} failed: {source}")]
    Migration {
        version: u32,
        #[source]
        source: BoxError,
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

    /// Inserts a credential unless its id is taken (`AlreadyExists`) or its principal already
    /// holds `max_per_principal` credentials (`LimitReached`): checked and inserted in one
    /// transaction.
    fn insert_credential<'a>(
        &'a self,
        credential: &'a CredentialRecord,
        max_per_principal: u32,
    ) -> BoxFuture<'a, StoreResult<()>>;

    fn get_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>>;

    /// Credentials ordered by access key id, of one principal or all, strictly after
    /// `after`, at most `limit`.
    fn list_credentials<'a>(
        &'a self,
        principal: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<CredentialRecord>>>;

    /// Applies `patch` and sets `updated_at_ms`; returns the row afterwards, `None` when there
    /// is no such credential.
    fn update_credential<'a>(
        &'a self,
        access_key_id: &'a str,
        patch: &'a CredentialPatch,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>>;

    /// Removes a credential, its sealed secret and its fingerprints. Returns whether it existed.
    fn delete_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<bool>>;

    /// Adds activity in one transaction: last use moves forward only, fingerprint counts
    /// add up, and each credential keeps its `max_fingerprints` most recently seen.
    /// Activity of credentials that no longer exist is ignored.
    fn add_credential_activity<'a>(
        &'a self,
        activity: &'a [CredentialActivity],
        max_fingerprints: u32,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// A credential's fingerprints, most recently seen first.
    fn list_fingerprints<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<FingerprintRecord>>>;

    /// Stores a new API key and its current keyed hash. `AlreadyExists` if either is taken.
    fn insert_api_key<'a>(&'a self, key: &'a ApiKeyRecord, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>>;

    /// The key whose current or grace-period hash is `hash`, with the end of that hash's
    /// grace period (`None` for the current hash).
    fn find_api_key<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<FoundApiKey>>>;

    fn get_api_key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>>;

    /// Keys ordered by id, strictly after `after`, at most `limit`.
    fn list_api_keys<'a>(&'a self, after: Option<&'a str>, limit: u32)
    -> BoxFuture<'a, StoreResult<Vec<ApiKeyRecord>>>;

    /// Applies `patch` to a key that is not revoked; returns the row afterwards (`None` when
    /// there is no such key; a revoked key is returned unchanged).
    fn update_api_key<'a>(
        &'a self,
        id: &'a str,
        patch: &'a ApiKeyPatch,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>>;

    /// Marks a key revoked and deletes its hashes (nothing verifies any more).
    fn revoke_api_key<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>>;

    /// Replaces a (not revoked) key's current hash by `new_hash`; the old one stays valid
    /// until `grace_until_ms` (dropped at once when that is not after `now_ms`), and earlier
    /// grace hashes go. `None` when there is no such key or it is revoked.
    fn reroll_api_key<'a>(
        &'a self,
        id: &'a str,
        new_hash: &'a [u8],
        grace_until_ms: i64,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>>;

    /// Takes one credit atomically: `Some(left)` when `remaining` was above zero, `None`
    /// when it was zero (or the key has no credit limit or does not exist).
    fn consume_api_key_credit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>>;

    /// Moves last-use times forward (one transaction).
    fn touch_api_keys<'a>(&'a self, used: &'a [(String, i64)]) -> BoxFuture<'a, StoreResult<()>>;

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
