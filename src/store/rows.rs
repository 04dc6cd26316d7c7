//! What every SQL backend reads and writes alike: the records decoded from their columns
//! (the column names are the same in every backend's schema), and the new row a write
//! makes from the stored one. A backend says only how a column of its fetched rows reads
//! ([`Columns`]); which texts an enum is stored as, which columns hold JSON and how a
//! sealed record spans five columns is decided here, once, so two backends cannot drift
//! apart on it. None of this leaves the store.
//!
//! Both backends' rows are sqlx rows, and read through one implementation of [`Columns`].

use crate::envelope::SealedRecord;
use crate::model::{Algorithm, ApiKeyState, Boundary, CredentialState, KeyOrigin, KeyState, OnNewFingerprint};
use crate::store::{
    ApiKeyHashRow, ApiKeyPatch, ApiKeyRecord, ApprovalRecord, CredentialPatch, CredentialRecord, FingerprintRecord,
    KeyRecord, NewVersion, StoreError, StoreResult, TokenRecord, VersionInfo,
};

/// The columns of one fetched row, read as the few types the schemas use. The row is already
/// read, so a failure is a value the store did not write (wrong type, NULL where none
/// belongs): [`StoreError::Corrupt`].
pub(crate) trait Columns {
    fn int(&self, col: &str) -> StoreResult<i64>;
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>>;
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn bytes(&self, col: &str) -> StoreResult<Vec<u8>>;
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>>;
    fn flag(&self, col: &str) -> StoreResult<bool>;
}

/// A column of a fetched sqlx row as its Rust type; a failure is a value the store did not
/// write (wrong type, NULL where none belongs): corrupt.
#[cfg(any(feature = "store-sqlite", feature = "store-postgres"))]
pub(crate) fn column<'r, R, T>(row: &'r R, col: &str) -> StoreResult<T>
where
    R: sqlx::Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    row.try_get(col).map_err(|e| corrupt(col, e))
}

/// Every backend's rows are sqlx rows; the types of their columns are the backend's own
/// (SQLite keeps booleans as integers 0 and 1, PostgreSQL as `boolean`, and checks types
/// strictly: a column of another type is corrupt, never converted).
#[cfg(any(feature = "store-sqlite", feature = "store-postgres"))]
impl<R> Columns for R
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn int(&self, col: &str) -> StoreResult<i64> {
        column(self, col)
    }

    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        column(self, col)
    }

    fn text(&self, col: &str) -> StoreResult<String> {
        column(self, col)
    }

    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        column(self, col)
    }

    fn bytes(&self, col: &str) -> StoreResult<Vec<u8>> {
        column(self, col)
    }

    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        column(self, col)
    }

    fn flag(&self, col: &str) -> StoreResult<bool> {
        column(self, col)
    }
}

/// A failed column read, named.
pub(crate) fn corrupt(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{col}: {e}"))
}

/// A text column holding one of an enum's stored texts; any other text is corrupt, never a
/// default.
fn enum_col<T>(row: &impl Columns, col: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let text = row.text(col)?;
    parse(&text).ok_or_else(|| corrupt(col, format!("unknown value `{text}`")))
}

/// As [`enum_col`], for a column where NULL means "not set".
fn opt_enum_col<T>(row: &impl Columns, col: &str, parse: fn(&str) -> Option<T>) -> StoreResult<Option<T>> {
    row.opt_text(col)?
        .map(|t| parse(&t).ok_or_else(|| corrupt(col, format!("unknown value `{t}`"))))
        .transpose()
}

/// A text column holding JSON (tags, groups, permissions, meta).
fn json_col<T: serde::de::DeserializeOwned>(row: &impl Columns, col: &str) -> StoreResult<T> {
    serde_json::from_str(&row.text(col)?).map_err(|e| corrupt(col, e))
}

/// The JSON text of a value bound into a JSON column.
pub(crate) fn json_text<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode as JSON: {e}")))
}

fn in_range<T: TryFrom<i64>>(col: &str, v: i64) -> StoreResult<T> {
    T::try_from(v).map_err(|_| corrupt(col, "out of range"))
}

pub(crate) fn u32_col(row: &impl Columns, col: &str) -> StoreResult<u32> {
    in_range(col, row.int(col)?)
}

pub(crate) fn u64_col(row: &impl Columns, col: &str) -> StoreResult<u64> {
    in_range(col, row.int(col)?)
}

/// A count or credit as the databases' signed integer (saturating: no count reaches it).
pub(crate) fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A sealed record's five columns (`format`, `kek_id`, `wrapped_dek`, `nonce`, `ciphertext`).
pub(crate) fn sealed(row: &impl Columns) -> StoreResult<SealedRecord> {
    Ok(SealedRecord {
        format: in_range("format", row.int("format")?)?,
        kek_id: row.text("kek_id")?,
        wrapped_dek: row.bytes("wrapped_dek")?,
        nonce: row.bytes("nonce")?,
        ciphertext: row.bytes("ciphertext")?,
    })
}

/// A `keys` row as stored, unchecked (see [`crate::store::integrity::checked`]).
pub(crate) fn key(row: &impl Columns) -> StoreResult<KeyRecord> {
    Ok(KeyRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        tenant: row.text("tenant")?,
        algorithm: enum_col(row, "algorithm", Algorithm::parse)?,
        boundary: enum_col(row, "boundary", Boundary::parse)?,
        owner: row.text("owner")?,
        tags: json_col(row, "tags")?,
        state: enum_col(row, "state", KeyState::parse)?,
        latest_version: u32_col(row, "latest_version")?,
        min_verify_version: u32_col(row, "min_verify_version")?,
        exportable: row.flag("exportable")?,
        origin: enum_col(row, "origin", KeyOrigin::parse)?,
        min_encryption_version: u32_col(row, "min_encryption_version")?,
        deletion_allowed: row.flag("deletion_allowed")?,
        auto_rotate_period_s: row.opt_int("auto_rotate_period_s")?,
        deletion_due_ms: row.opt_int("deletion_due_ms")?,
        state_before_deletion: opt_enum_col(row, "state_before_deletion", KeyState::parse)?,
        created_at_ms: row.int("created_at_ms")?,
        updated_at_ms: row.int("updated_at_ms")?,
        revision: row.int("revision")?,
    })
}

/// A `key_versions` row without its sealed record.
pub(crate) fn version_info(row: &impl Columns) -> StoreResult<VersionInfo> {
    Ok(VersionInfo {
        version: u32_col(row, "version")?,
        created_at_ms: row.int("created_at_ms")?,
        sign_count: u64_col(row, "sign_count")?,
        verify_count: u64_col(row, "verify_count")?,
        last_used_at_ms: row.opt_int("last_used_at_ms")?,
    })
}

/// A `caller_tokens` row as stored, unchecked.
pub(crate) fn token(row: &impl Columns) -> StoreResult<TokenRecord> {
    Ok(TokenRecord {
        id: row.text("id")?,
        hash: row.bytes("hash")?,
        principal: row.text("principal")?,
        groups: json_col(row, "groups_json")?,
        description: row.opt_text("description")?,
        created_at_ms: row.int("created_at_ms")?,
        expires_at_ms: row.opt_int("expires_at_ms")?,
        revoked_at_ms: row.opt_int("revoked_at_ms")?,
        revision: row.int("revision")?,
    })
}

/// An `approvals` row as stored, unchecked.
pub(crate) fn approval(row: &impl Columns) -> StoreResult<ApprovalRecord> {
    Ok(ApprovalRecord {
        id: row.text("id")?,
        action: row.text("action")?,
        resource: row.text("resource")?,
        reason: row.text("reason")?,
        requested_by: row.text("requested_by")?,
        requester_counts: row.flag("requester_counts")?,
        approvers: json_col(row, "approvers_json")?,
        created_at_ms: row.int("created_at_ms")?,
        expires_at_ms: row.int("expires_at_ms")?,
        used_at_ms: row.opt_int("used_at_ms")?,
        revision: row.int("revision")?,
    })
}

/// A `credentials` row as stored, unchecked.
pub(crate) fn credential(row: &impl Columns) -> StoreResult<CredentialRecord> {
    Ok(CredentialRecord {
        access_key_id: row.text("access_key_id")?,
        principal: row.text("principal")?,
        groups: json_col(row, "groups_json")?,
        description: row.opt_text("description")?,
        state: enum_col(row, "state", CredentialState::parse)?,
        on_new_fingerprint: opt_enum_col(row, "on_new_fingerprint", OnNewFingerprint::parse)?,
        boundary: enum_col(row, "boundary", Boundary::parse)?,
        sealed: sealed(row)?,
        created_at_ms: row.int("created_at_ms")?,
        updated_at_ms: row.int("updated_at_ms")?,
        last_used_at_ms: row.opt_int("last_used_at_ms")?,
        last_used_region: row.opt_text("last_used_region")?,
        last_used_service: row.opt_text("last_used_service")?,
        revision: row.int("revision")?,
    })
}

/// An `api_keys` row as stored, unchecked.
pub(crate) fn api_key(row: &impl Columns) -> StoreResult<ApiKeyRecord> {
    let ratelimit = match (row.opt_int("ratelimit_limit")?, row.opt_int("ratelimit_period_ms")?) {
        (Some(l), Some(p)) => Some((in_range("api_keys.ratelimit_limit", l)?, p)),
        _ => None,
    };
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        prefix: row.text("prefix")?,
        principal: row.text("principal")?,
        state: enum_col(row, "state", ApiKeyState::parse)?,
        meta: json_col(row, "meta")?,
        permissions: json_col(row, "permissions")?,
        expires_at_ms: row.opt_int("expires_at_ms")?,
        remaining: row
            .opt_int("remaining")?
            .map(|r| in_range("api_keys.remaining", r))
            .transpose()?,
        ratelimit,
        on_new_fingerprint: opt_enum_col(row, "on_new_fingerprint", OnNewFingerprint::parse)?,
        created_at_ms: row.int("created_at_ms")?,
        updated_at_ms: row.int("updated_at_ms")?,
        last_used_at_ms: row.opt_int("last_used_at_ms")?,
        revoked_at_ms: row.opt_int("revoked_at_ms")?,
        revision: row.int("revision")?,
    })
}

/// An `api_key_hashes` row as stored, unchecked.
pub(crate) fn api_key_hash(row: &impl Columns) -> StoreResult<ApiKeyHashRow> {
    Ok(ApiKeyHashRow::new(
        &row.bytes("hash")?,
        &row.text("key_id")?,
        row.opt_int("valid_until_ms")?,
    ))
}

/// A row of a fingerprint table.
pub(crate) fn fingerprint(row: &impl Columns) -> StoreResult<FingerprintRecord> {
    Ok(FingerprintRecord {
        source_ip: row.text("source_ip")?,
        user_agent: row.text("user_agent")?,
        first_seen_ms: row.int("first_seen_ms")?,
        last_seen_ms: row.int("last_seen_ms")?,
        count: u64_col(row, "count")?,
    })
}

// The rows a write makes from the stored (and checked) one. Every write bumps the revision;
// only the fields the operation names come from the caller.

/// `current` with version `new` appended (`add_version`); `updated_at_ms` is the version's
/// creation time.
pub(crate) fn with_version(current: KeyRecord, new: &NewVersion) -> KeyRecord {
    KeyRecord {
        latest_version: new.version,
        updated_at_ms: new.created_at_ms,
        revision: current.revision.saturating_add(1),
        ..current
    }
}

/// `current` with the mutable settings of `key` (`update_key`); the rest stays as stored.
pub(crate) fn with_settings(current: KeyRecord, key: &KeyRecord) -> KeyRecord {
    KeyRecord {
        state: key.state,
        min_verify_version: key.min_verify_version,
        exportable: key.exportable,
        min_encryption_version: key.min_encryption_version,
        deletion_allowed: key.deletion_allowed,
        auto_rotate_period_s: key.auto_rotate_period_s,
        deletion_due_ms: key.deletion_due_ms,
        state_before_deletion: key.state_before_deletion,
        updated_at_ms: key.updated_at_ms,
        revision: current.revision.saturating_add(1),
        ..current
    }
}

/// `current` revoked at `now_ms`.
pub(crate) fn token_revoked(current: TokenRecord, now_ms: i64) -> TokenRecord {
    TokenRecord {
        revoked_at_ms: Some(now_ms),
        revision: current.revision.saturating_add(1),
        ..current
    }
}

/// `current` with `patch` applied at `now_ms`.
pub(crate) fn credential_patched(current: CredentialRecord, patch: &CredentialPatch, now_ms: i64) -> CredentialRecord {
    CredentialRecord {
        state: patch.state.unwrap_or(current.state),
        on_new_fingerprint: patch.on_new_fingerprint.unwrap_or(current.on_new_fingerprint),
        updated_at_ms: now_ms,
        revision: current.revision.saturating_add(1),
        ..current
    }
}

/// `current` with `patch` applied at `now_ms` (the caller leaves a revoked key unchanged).
pub(crate) fn api_key_patched(current: ApiKeyRecord, patch: &ApiKeyPatch, now_ms: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        state: patch.state.unwrap_or(current.state),
        meta: patch.meta.clone().unwrap_or_else(|| current.meta.clone()),
        remaining: patch.remaining.unwrap_or(current.remaining),
        on_new_fingerprint: patch.on_new_fingerprint.unwrap_or(current.on_new_fingerprint),
        updated_at_ms: now_ms,
        revision: current.revision.saturating_add(1),
        ..current
    }
}

/// `current` revoked (keeping the first revocation time).
pub(crate) fn api_key_revoked(current: ApiKeyRecord, now_ms: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        state: ApiKeyState::Revoked,
        revoked_at_ms: current.revoked_at_ms.or(Some(now_ms)),
        updated_at_ms: now_ms,
        revision: current.revision.saturating_add(1),
        ..current
    }
}

/// `current` after a reroll at `now_ms` (its hashes change beside it).
pub(crate) fn api_key_rerolled(current: ApiKeyRecord, now_ms: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        updated_at_ms: now_ms,
        revision: current.revision.saturating_add(1),
        ..current
    }
}
