//! Signing keys and their versions: metadata rows (with a revision every update checks)
//! and one sealed record per version, plus the usage counters of each version.

use std::collections::BTreeMap;

use super::StoreResult;
use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::model::{Algorithm, Boundary, KeyOrigin, KeyState};

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
    /// Generated inside the vault or imported; never changes.
    pub origin: KeyOrigin,
    /// The oldest version a caller may name to sign or encrypt with (Vault's
    /// `min_encryption_version`); 0, the default: any from `min_verify_version`. A caller
    /// that names none signs and encrypts with the latest either way.
    pub min_encryption_version: u32,
    /// Whether the key may be scheduled for deletion (Vault's `deletion_allowed`).
    pub deletion_allowed: bool,
    pub(crate) auto_rotate_period_s: Option<i64>,
    pub(crate) deletion_due_ms: Option<i64>,
    /// The state `restore` returns to while `pending_deletion`.
    pub(crate) state_before_deletion: Option<KeyState>,
    pub(crate) created_at_ms: i64,
    pub(crate) updated_at_ms: i64,
    /// Bumped by every update; updates carry the revision they read.
    pub(crate) revision: i64,
}

/// One version of a key, without its sealed material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u32,
    pub(crate) created_at_ms: i64,
    pub sign_count: u64,
    pub verify_count: u64,
    pub(crate) last_used_at_ms: Option<i64>,
}

/// A new version to insert.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub version: u32,
    pub(crate) created_at_ms: i64,
    pub sealed: SealedRecord,
}

/// Usage to add to a version's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub key_id: String,
    pub version: u32,
    pub signs: u64,
    pub verifies: u64,
    pub(crate) last_used_at_ms: i64,
}

/// Signing keys. Every method is one atomic operation.
pub trait KeyStore: Send + Sync {
    /// Inserts a key and its first version atomically. `AlreadyExists` if the name is taken.
    /// Creates `key` with every version of `versions` (at least one), in one transaction: a
    /// key restored from a backup arrives whole or not at all. `AlreadyExists` when the
    /// name or id is taken.
    fn create_key_with_versions<'a>(
        &'a self,
        key: &'a KeyRecord,
        versions: &'a [NewVersion],
    ) -> BoxFuture<'a, StoreResult<()>>;

    fn create_key<'a>(&'a self, key: &'a KeyRecord, first: &'a NewVersion) -> BoxFuture<'a, StoreResult<()>>;

    fn get_key<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<KeyRecord>>>;

    /// Keys ordered by name (bytes), strictly after `after`, at most `limit`.
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
}
