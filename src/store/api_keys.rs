//! Bearer API keys: metadata rows and the keyed hashes they are found by (never a key),
//! with credits taken atomically, and their activity: last use and the caller fingerprints
//! they were used from.

use super::{FingerprintRecord, StoreResult};
use crate::BoxFuture;
use crate::model::{ApiKeyState, OnNewFingerprint};

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
    pub(crate) expires_at_ms: Option<i64>,
    /// Verifications left; `None` = no limit.
    pub remaining: Option<u64>,
    /// `(limit, period_ms)`.
    pub ratelimit: Option<(u32, i64)>,
    /// `None` follows the server's setting.
    pub on_new_fingerprint: Option<OnNewFingerprint>,
    pub(crate) created_at_ms: i64,
    pub(crate) updated_at_ms: i64,
    pub(crate) last_used_at_ms: Option<i64>,
    pub(crate) revoked_at_ms: Option<i64>,
    /// Bumped by every update; bound into the row's integrity tag.
    pub(crate) revision: i64,
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
    /// `Some(None)` returns the key to the server's default.
    pub on_new_fingerprint: Option<Option<OnNewFingerprint>>,
}

/// Use of one API key since the last flush: its last use and, per fingerprint, how often
/// (`count` is added to the stored count; first/last seen widen the stored range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyActivity {
    pub id: String,
    pub(crate) last_used_at_ms: i64,
    pub fingerprints: Vec<FingerprintRecord>,
}

/// Bearer API keys. Every method is one atomic operation.
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new API key and its current keyed hash. `AlreadyExists` if either is taken.
    fn insert_api_key<'a>(&'a self, key: &'a ApiKeyRecord, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>>;

    /// The key whose current or grace-period hash is `hash`, with the end of that hash's
    /// grace period (`None` for the current hash).
    fn find_api_key<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<FoundApiKey>>>;

    fn get_api_key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>>;

    /// Keys ordered by id (bytes), strictly after `after`, at most `limit`.
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

    /// Adds activity in one transaction: last use moves forward only, fingerprint counts add
    /// up, and each key keeps its `max_fingerprints` most recently seen. Activity of keys that
    /// do not exist is ignored.
    fn add_api_key_activity<'a>(
        &'a self,
        activity: &'a [ApiKeyActivity],
        max_fingerprints: u32,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// A key's fingerprints, most recently seen first.
    fn list_api_key_fingerprints<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Vec<FingerprintRecord>>>;
}
