//! Issuing, reading, changing, revoking and rerolling API keys, and their activity. A key
//! leaves this module only in the answer of [`ApiKeyService::create`] and
//! [`ApiKeyService::reroll`]; the store gets its keyed hash.

use std::collections::BTreeSet;

use time::Duration;
use zeroize::Zeroizing;

use super::format;
use super::{ApiKeyError, ApiKeyResult, ApiKeyService, HASH_DOMAIN};
use crate::model::{ApiKeyState, OnNewFingerprint};
use crate::store::{ApiKeyPatch, ApiKeyRecord, FingerprintRecord};

/// An API key's `meta`: the caller's own JSON object.
pub type Meta = serde_json::Map<String, serde_json::Value>;

const MAX_PERMISSIONS: usize = 64;
const MAX_PERMISSION_LEN: usize = 128;
const MAX_META_BYTES: usize = 4096;
/// Most credits a key can be given.
pub(super) const MAX_REMAINING: u64 = 1_000_000_000_000;
const MAX_RATE_LIMIT: u32 = 1_000_000;
const MAX_RATE_PERIOD: Duration = Duration::days(1);
/// Longest reroll grace period.
pub const MAX_GRACE: Duration = Duration::days(30);
/// What a change of state may ask for.
pub const STATE_RULE: &str = "state must be enabled or disabled (DELETE revokes)";

/// `POST /v1/apikeys`, checked.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    pub principal: String,
    pub prefix: Option<String>,
    pub(crate) expires_at_ms: Option<i64>,
    pub remaining: Option<u64>,
    /// `(limit, period)`.
    pub ratelimit: Option<(u32, Duration)>,
    pub permissions: Vec<String>,
    pub meta: Option<Meta>,
    /// `None` follows the server's setting.
    pub on_new_fingerprint: Option<OnNewFingerprint>,
}

/// `PATCH /v1/apikeys/{id}`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    /// `enabled` or `disabled` (revoking is [`ApiKeyService::revoke`]).
    pub state: Option<ApiKeyState>,
    pub meta: Option<Meta>,
    /// `Some(None)` removes the credit limit.
    pub remaining: Option<Option<u64>>,
    /// `Some(None)` returns to the server's default.
    pub on_new_fingerprint: Option<Option<OnNewFingerprint>>,
}

/// An API key's use: its last use and the caller fingerprints it was used from, what the
/// store holds merged with this node's pending activity.
#[derive(Debug, Clone)]
pub struct Activity {
    pub(crate) last_used_at_ms: Option<i64>,
    /// Most recently seen first.
    pub fingerprints: Vec<FingerprintRecord>,
}

fn invalid(message: impl Into<String>) -> ApiKeyError {
    ApiKeyError::Invalid(message.into())
}

fn check_permissions(permissions: &[String]) -> ApiKeyResult<()> {
    if permissions.len() > MAX_PERMISSIONS {
        return Err(invalid(format!("at most {MAX_PERMISSIONS} permissions")));
    }
    for p in permissions {
        let ok = (1..=MAX_PERMISSION_LEN).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-' | b'*' | b'/'));
        if !ok {
            return Err(invalid(format!(
                "permissions are 1 to {MAX_PERMISSION_LEN} characters of A-Z a-z 0-9 . _ : - * /"
            )));
        }
    }
    Ok(())
}

/// Checks the permissions a verification asks for (same rules, used by the API).
pub fn check_required(permissions: &[String]) -> ApiKeyResult<()> {
    check_permissions(permissions)
}

/// `meta` within its size bound, measured as the JSON it is stored as.
fn check_meta(meta: Meta) -> ApiKeyResult<Meta> {
    let text = serde_json::to_string(&meta).map_err(|e| ApiKeyError::Corrupt(format!("meta: {e}")))?;
    if text.len() > MAX_META_BYTES {
        return Err(invalid(format!("meta is limited to {MAX_META_BYTES} bytes of JSON")));
    }
    Ok(meta)
}

fn check_remaining(remaining: Option<u64>) -> ApiKeyResult<()> {
    if remaining.is_some_and(|r| r > MAX_REMAINING) {
        return Err(invalid(format!("remaining must be 0 to {MAX_REMAINING}")));
    }
    Ok(())
}

fn random_id() -> ApiKeyResult<String> {
    let mut raw = [0u8; 12];
    getrandom::fill(&mut raw).map_err(|_| ApiKeyError::Random)?;
    Ok(format!("ak_{}", base16ct::lower::encode_string(&raw)))
}

/// Ids are `ak_` + 24 lowercase hex digits.
pub fn valid_id(id: &str) -> bool {
    id.strip_prefix("ak_")
        .is_some_and(|hex| hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

impl ApiKeyService {
    /// Issues a key; the key is returned once.
    pub async fn create(&self, new: NewApiKey) -> ApiKeyResult<(ApiKeyRecord, Zeroizing<String>)> {
        crate::auth::validate_principal(&new.principal).map_err(ApiKeyError::Invalid)?;
        let prefix = new.prefix.unwrap_or_else(|| format::DEFAULT_PREFIX.to_owned());
        if !format::valid_prefix(&prefix) {
            return Err(invalid(format!(
                "prefix must be 1 to {} characters of a-z 0-9, starting with a letter",
                format::MAX_PREFIX_LEN
            )));
        }
        let now = self.now_ms();
        if new.expires_at_ms.is_some_and(|at| at <= now) {
            return Err(invalid("expires_at must be in the future"));
        }
        check_remaining(new.remaining)?;
        if let Some((limit, period)) = new.ratelimit
            && (!(1..=MAX_RATE_LIMIT).contains(&limit) || period < Duration::seconds(1) || period > MAX_RATE_PERIOD)
        {
            return Err(invalid(format!(
                "ratelimit: limit 1 to {MAX_RATE_LIMIT} per period of 1s to 1d"
            )));
        }
        check_permissions(&new.permissions)?;
        // Stored sorted and without repeats, whatever order the caller gave.
        let permissions: BTreeSet<String> = new.permissions.into_iter().collect();
        let record = ApiKeyRecord {
            id: random_id()?,
            prefix: prefix.clone(),
            principal: new.principal,
            state: ApiKeyState::Enabled,
            meta: check_meta(new.meta.unwrap_or_default())?,
            permissions: permissions.into_iter().collect(),
            expires_at_ms: new.expires_at_ms,
            remaining: new.remaining,
            ratelimit: new
                .ratelimit
                .map(|(limit, period)| (limit, i64::try_from(period.whole_milliseconds()).unwrap_or(i64::MAX))),
            on_new_fingerprint: new.on_new_fingerprint,
            created_at_ms: now,
            updated_at_ms: now,
            last_used_at_ms: None,
            revoked_at_ms: None,
            revision: 0,
        };
        let key = format::generate(&prefix).map_err(|_| ApiKeyError::Random)?;
        // Only the keyed hash of the key is stored.
        let hash = self.hasher.hash(HASH_DOMAIN, key.as_bytes());
        self.store.insert_api_key(&record, &hash).await?;
        Ok((record, key))
    }

    fn check_id(id: &str) -> ApiKeyResult<()> {
        if valid_id(id) {
            Ok(())
        } else {
            Err(ApiKeyError::NotFound(id.chars().take(64).collect()))
        }
    }

    /// A key's row, with this node's unwritten last use merged in.
    pub async fn get(&self, id: &str) -> ApiKeyResult<ApiKeyRecord> {
        Self::check_id(id)?;
        // Read and merged under the flush's lock: between a flush's drain and its store
        // write the last use is in neither place.
        let _no_flush = self.usage_flush.lock().await;
        let mut record = self
            .store
            .get_api_key(id)
            .await?
            .ok_or_else(|| ApiKeyError::NotFound(id.to_owned()))?;
        if let Some(at) = self.pending_use(id) {
            record.last_used_at_ms = Some(record.last_used_at_ms.unwrap_or(at).max(at));
        }
        Ok(record)
    }

    /// The principal of key `id` for a policy decision; `None` when there is none.
    pub async fn owner(&self, id: &str) -> ApiKeyResult<Option<String>> {
        if !valid_id(id) {
            return Ok(None);
        }
        Ok(self.store.get_api_key(id).await?.map(|r| r.principal))
    }

    pub async fn list(&self, after: Option<&str>, limit: u32) -> ApiKeyResult<Vec<ApiKeyRecord>> {
        let _no_flush = self.usage_flush.lock().await;
        let mut page = self.store.list_api_keys(after, limit).await?;
        for r in &mut page {
            if let Some(at) = self.pending_use(&r.id) {
                r.last_used_at_ms = Some(r.last_used_at_ms.unwrap_or(at).max(at));
            }
        }
        Ok(page)
    }

    pub async fn update(&self, id: &str, patch: Patch) -> ApiKeyResult<ApiKeyRecord> {
        Self::check_id(id)?;
        if patch.state == Some(ApiKeyState::Revoked) {
            return Err(invalid(STATE_RULE));
        }
        if let Some(remaining) = patch.remaining {
            check_remaining(remaining)?;
        }
        let stored = ApiKeyPatch {
            state: patch.state,
            meta: patch.meta.map(check_meta).transpose()?,
            remaining: patch.remaining,
            on_new_fingerprint: patch.on_new_fingerprint,
        };
        let record = self.store.update_api_key(id, &stored, self.now_ms()).await?;
        self.forget_lookups();
        let record = record.ok_or_else(|| ApiKeyError::NotFound(id.to_owned()))?;
        match record.state {
            ApiKeyState::Revoked => return Err(ApiKeyError::Invalid(format!("API key '{id}' is revoked"))),
            // Turned back on by someone who looked: the fingerprint that stopped it is known.
            ApiKeyState::Enabled => self.activity.unblock(id),
            ApiKeyState::Disabled => {}
        }
        Ok(record)
    }

    /// A key's last use and the fingerprints it was used from (this node's unwritten uses
    /// included).
    pub async fn activity(&self, id: &str) -> ApiKeyResult<Activity> {
        let record = self.get(id).await?;
        // The store and memory read as one: no flush moves activity between them meanwhile.
        let _no_flush = self.usage_flush.lock().await;
        let stored = self.store.list_api_key_fingerprints(id).await?;
        Ok(Activity {
            last_used_at_ms: record.last_used_at_ms,
            fingerprints: self.activity.with_pending(id, stored),
        })
    }

    /// Revokes a key at once: every hash of it is deleted.
    pub async fn revoke(&self, id: &str) -> ApiKeyResult<ApiKeyRecord> {
        Self::check_id(id)?;
        let record = self.store.revoke_api_key(id, self.now_ms()).await?;
        self.forget_lookups();
        self.limiter.forget(id);
        self.shared_limits.forget(id).await;
        record.ok_or_else(|| ApiKeyError::NotFound(id.to_owned()))
    }

    /// A new key for `id`; the old one keeps verifying for `grace`.
    pub async fn reroll(&self, id: &str, grace: Duration) -> ApiKeyResult<(ApiKeyRecord, Zeroizing<String>)> {
        Self::check_id(id)?;
        if grace < Duration::ZERO || grace > MAX_GRACE {
            return Err(invalid("grace_seconds must be 0 to 2592000 (30 days)"));
        }
        let current = self
            .store
            .get_api_key(id)
            .await?
            .ok_or_else(|| ApiKeyError::NotFound(id.to_owned()))?;
        let key = format::generate(&current.prefix).map_err(|_| ApiKeyError::Random)?;
        // Only the keyed hash of the new key is stored.
        let hash = self.hasher.hash(HASH_DOMAIN, key.as_bytes());
        let now = self.now_ms();
        let grace_ms = i64::try_from(grace.whole_milliseconds()).unwrap_or(i64::MAX);
        let record = self
            .store
            .reroll_api_key(id, &hash, now.saturating_add(grace_ms), now)
            .await?;
        self.forget_lookups();
        let record = record.ok_or_else(|| ApiKeyError::Invalid(format!("API key '{id}' is revoked")))?;
        Ok((record, key))
    }
}
