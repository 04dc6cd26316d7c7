//! SigV4 credentials (the secret only as a sealed record) and their activity: last use and
//! the caller fingerprints they were used from.

use super::{FingerprintRecord, StoreResult};
use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::model::{Boundary, CredentialState, OnNewFingerprint};

/// A SigV4 credential as stored: the secret only as a sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub access_key_id: String,
    pub principal: String,
    /// The signer's groups for the policies (default `["service"]`); never changes.
    pub groups: Vec<String>,
    pub description: Option<String>,
    pub state: CredentialState,
    /// `None` follows the server's setting.
    pub on_new_fingerprint: Option<OnNewFingerprint>,
    /// Where the secret lives: sealed for this process, or only inside the HSM.
    pub boundary: Boundary,
    pub sealed: SealedRecord,
    pub(crate) created_at_ms: i64,
    pub(crate) updated_at_ms: i64,
    pub(crate) last_used_at_ms: Option<i64>,
    pub last_used_region: Option<String>,
    pub last_used_service: Option<String>,
    /// Bumped by every update; bound into the row's integrity tag.
    pub(crate) revision: i64,
}

/// Changes to a credential; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialPatch {
    pub state: Option<CredentialState>,
    /// `Some(None)` returns the credential to the server's default.
    pub on_new_fingerprint: Option<Option<OnNewFingerprint>>,
}

/// Use of one credential since the last flush: its last use and, per fingerprint, how often
/// (`count` is added to the stored count; first/last seen widen the stored range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialActivity {
    pub access_key_id: String,
    pub(crate) last_used_at_ms: i64,
    pub region: String,
    pub service: String,
    pub fingerprints: Vec<FingerprintRecord>,
}

/// SigV4 credentials. Every method is one atomic operation.
pub trait CredentialStore: Send + Sync {
    /// Inserts a credential unless its id is taken (`AlreadyExists`) or its principal already
    /// holds `max_per_principal` credentials (`LimitReached`): checked and inserted in one
    /// transaction.
    fn insert_credential<'a>(
        &'a self,
        credential: &'a CredentialRecord,
        max_per_principal: u32,
    ) -> BoxFuture<'a, StoreResult<()>>;

    fn get_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>>;

    /// Credentials ordered by access key id (bytes), of one principal or all, strictly after
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
}
