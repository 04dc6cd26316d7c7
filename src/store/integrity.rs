//! Row integrity: the rows whose fields decide who may do what, or what a key does, carry
//! a tag over their canonical bytes, so a database writer who edits one (an admin group
//! added to a token, a revocation cleared, a key's owner, state or algorithm changed, an API
//! key's permissions raised) makes it unusable instead of gaining a right.
//!
//! This module owns which fields each protected row binds and their one unambiguous
//! encoding ([`Protected`]); the tag itself is computed by a [`RowSealer`] the vault hands
//! the store at startup (`crate::integrity`, HMAC-SHA256 under a KEK-sealed key), so backends
//! still perform no cryptography. A backend tags every protected row it writes and checks
//! every one it reads, and on a write that changes a row it checks the stored row first, so
//! an edit is never laundered into a fresh tag by a later legitimate update.
//!
//! What the tags cannot stop is said in docs/ARCHITECTURE.md: putting back an older row
//! whole, with its own valid tag (each row binds a revision, but nothing outside the store
//! remembers the latest one), and the columns left out on purpose (usage counters, last
//! use, API-key credits), which change on the hot path.

use std::sync::{Arc, OnceLock};

use super::rows::Columns;
use super::{ApiKeyRecord, ApprovalRecord, CredentialRecord, KeyRecord, StoreError, StoreResult, TokenRecord};
use crate::model::{Boundary, KeyOrigin};

/// Computes and checks row tags. Implemented above the store (the store holds no key).
pub trait RowSealer: Send + Sync {
    /// The tag of a row's canonical bytes.
    fn tag(&self, row: &[u8]) -> Vec<u8>;
    /// Whether `tag` is the tag of `row`, in constant time.
    fn check(&self, row: &[u8], tag: &[u8]) -> bool;
    /// A row of `table` failed its check: it is refused, and the sealer's owner reports it
    /// (audit event, health).
    fn refused(&self, table: &'static str, id: &str);
}

/// A row a tag protects: its table, its id, and the fields the tag binds.
pub trait Protected {
    const TABLE: &'static str;
    fn row_id(&self) -> &str;
    fn encode(&self, row: &mut RowBytes);

    /// How a refused row is named in the log and the audit trail (its id, unless a name
    /// helps an operator find it).
    fn row_label(&self) -> String {
        self.row_id().to_owned()
    }

    /// The canonical bytes the tag is computed over.
    fn canonical(&self) -> Vec<u8> {
        let mut row = RowBytes::new(Self::TABLE, self.row_id());
        self.encode(&mut row);
        row.0
    }

    /// Checks `tag` (the stored tag column; `None` for a row written by no sealer) against
    /// this row. A failure is reported to the sealer and becomes [`StoreError::Integrity`].
    fn verified(self, sealer: &dyn RowSealer, tag: Option<&[u8]>) -> Result<Self, StoreError>
    where
        Self: Sized,
    {
        match tag {
            Some(tag) if sealer.check(&self.canonical(), tag) => Ok(self),
            _ => {
                sealer.refused(Self::TABLE, &self.row_label());
                Err(StoreError::Integrity {
                    table: Self::TABLE,
                    id: self.row_id().to_owned(),
                })
            }
        }
    }
}

// How a backend tags and checks rows: the same for every backend, which says only how its
// rows' columns read ([`Columns`]). The stored tag is the row's `mac` column.

/// The sealer a backend was handed at startup (in `cell`); protected rows neither read nor
/// write without it.
pub(crate) fn installed(cell: &OnceLock<Arc<dyn RowSealer>>) -> StoreResult<&dyn RowSealer> {
    cell.get()
        .map(|s| s.as_ref())
        .ok_or_else(|| StoreError::Unavailable("row integrity is not enabled on this store".into()))
}

/// `record`, decoded from `row`, if the row's tag (`mac`; NULL: written by no sealer) checks.
pub(crate) fn checked<R: Protected>(sealer: &dyn RowSealer, record: R, row: &impl Columns) -> StoreResult<R> {
    let tag = row.opt_bytes("mac")?;
    record.verified(sealer, tag.as_deref())
}

/// Decodes and checks every row, failing on the first that does not check (an API listing:
/// the caller learns the listing is not trustworthy).
pub(crate) fn all_checked<C: Columns, R: Protected>(
    sealer: &dyn RowSealer,
    rows: &[C],
    decode: fn(&C) -> StoreResult<R>,
) -> StoreResult<Vec<R>> {
    rows.iter().map(|row| checked(sealer, decode(row)?, row)).collect()
}

/// Decodes and checks every row, leaving out those that do not check (a background scan:
/// one edited row must not stop the deletions and rotations of every other key; the sealer
/// has reported it).
pub(crate) fn passing<C: Columns, R: Protected>(
    sealer: &dyn RowSealer,
    rows: &[C],
    decode: fn(&C) -> StoreResult<R>,
) -> StoreResult<Vec<R>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(record) = passed(checked(sealer, decode(row)?, row))? {
            out.push(record);
        }
    }
    Ok(out)
}

/// A scan's view of one check: a refused row is left out (`None`), any other error stops it.
pub(crate) fn passed<R>(checked: StoreResult<R>) -> StoreResult<Option<R>> {
    match checked {
        Ok(record) => Ok(Some(record)),
        Err(StoreError::Integrity { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The tag to store with `record`.
pub(crate) fn tag_of<R: Protected>(sealer: &dyn RowSealer, record: &R) -> Vec<u8> {
    sealer.tag(&record.canonical())
}

/// A row's canonical bytes: a version label, the table and the id, then each field as a
/// kind byte and a fixed-size or length-prefixed value, so no two different rows encode
/// alike.
pub struct RowBytes(Vec<u8>);

impl RowBytes {
    fn new(table: &str, id: &str) -> Self {
        let mut row = Self(b"sigvault.row.v1".to_vec());
        row.text(table);
        row.text(id);
        row
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.0.push(1);
        self.0.extend_from_slice(&(value.len() as u64).to_be_bytes());
        self.0.extend_from_slice(value);
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.0.push(2);
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    fn none(&mut self) -> &mut Self {
        self.0.push(0);
        self
    }

    pub fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.int(v),
            None => self.none(),
        }
    }

    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => self.none(),
        }
    }

    /// A list: its length, then each item.
    pub fn texts<'a>(&mut self, values: impl ExactSizeIterator<Item = &'a str>) -> &mut Self {
        self.int(i64::try_from(values.len()).unwrap_or(i64::MAX));
        for v in values {
            self.text(v);
        }
        self
    }
}

impl Protected for TokenRecord {
    const TABLE: &'static str = "caller_tokens";

    fn row_id(&self) -> &str {
        &self.id
    }

    fn encode(&self, row: &mut RowBytes) {
        row.bytes(&self.hash)
            .text(&self.principal)
            .texts(self.groups.iter().map(String::as_str))
            .opt_text(self.description.as_deref())
            .int(self.created_at_ms)
            .opt_int(self.expires_at_ms)
            .opt_int(self.revoked_at_ms)
            .int(self.revision);
    }
}

impl Protected for ApprovalRecord {
    const TABLE: &'static str = "approvals";

    fn row_id(&self) -> &str {
        &self.id
    }

    fn encode(&self, row: &mut RowBytes) {
        row.text(&self.action)
            .text(&self.resource)
            .text(&self.reason)
            .text(&self.requested_by)
            .int(i64::from(self.requester_counts))
            .texts(self.approvers.iter().map(String::as_str))
            .int(self.created_at_ms)
            .int(self.expires_at_ms)
            .opt_int(self.used_at_ms)
            .int(self.revision);
    }
}

impl Protected for KeyRecord {
    const TABLE: &'static str = "keys";

    fn row_id(&self) -> &str {
        &self.id
    }

    /// The id, and the name as stored (which the edit may have changed).
    fn row_label(&self) -> String {
        format!("{} ({})", self.id, self.name)
    }

    fn encode(&self, row: &mut RowBytes) {
        row.text(&self.name)
            .text(&self.tenant)
            .text(self.algorithm.as_str())
            .text(self.boundary.as_str())
            .text(&self.owner)
            .int(i64::try_from(self.tags.len()).unwrap_or(i64::MAX));
        for (k, v) in &self.tags {
            row.text(k).text(v);
        }
        row.text(self.state.as_str())
            .int(i64::from(self.latest_version))
            .int(i64::from(self.min_verify_version))
            .int(i64::from(self.exportable))
            .opt_int(self.auto_rotate_period_s)
            .opt_int(self.deletion_due_ms)
            .opt_text(self.state_before_deletion.map(|s| s.as_str()))
            .int(self.created_at_ms)
            .int(self.updated_at_ms)
            .int(self.revision);
        // Appended only for imported keys, so the tags of rows stored before keys had an
        // origin (all generated) stay valid; a row whose origin a database writer flips
        // either way then fails its check.
        if self.origin == KeyOrigin::Imported {
            row.text(self.origin.as_str());
        }
        // Likewise only when they differ from what every key had before them (migration 15),
        // behind a marker text no origin can equal.
        if self.min_encryption_version != 0 || !self.deletion_allowed {
            row.text("use-settings")
                .int(i64::from(self.min_encryption_version))
                .int(i64::from(self.deletion_allowed));
        }
    }
}

impl Protected for CredentialRecord {
    const TABLE: &'static str = "credentials";

    fn row_id(&self) -> &str {
        &self.access_key_id
    }

    /// The sealed secret is not repeated: its AAD already binds the access key id and the
    /// principal, and a swapped record fails to open.
    fn encode(&self, row: &mut RowBytes) {
        row.text(&self.principal)
            .opt_text(self.description.as_deref())
            .text(self.state.as_str())
            .opt_text(self.on_new_fingerprint.map(|r| r.as_str()))
            .int(self.created_at_ms)
            .int(self.updated_at_ms)
            .int(self.revision);
        // Bound only when `hsm`, so rows stored before the boundary existed (all `process`)
        // keep their tags; a database writer flipping it either way breaks the tag.
        if self.boundary == Boundary::Hsm {
            row.text(self.boundary.as_str());
        }
        // Likewise the groups only when there are any (older rows have none), behind a marker
        // text no boundary can equal.
        if !self.groups.is_empty() {
            row.text("groups").texts(self.groups.iter().map(String::as_str));
        }
    }
}

impl Protected for ApiKeyRecord {
    const TABLE: &'static str = "api_keys";

    fn row_id(&self) -> &str {
        &self.id
    }

    /// Credits (`remaining`) and last use are left out: they change on every verification,
    /// by a single atomic statement. The key's own `on_new_fingerprint` rule (it decides
    /// whether a use from a new caller disables the key) is the last field, present only
    /// when set: rows tagged before keys had a rule hold none and keep their tags, and no
    /// row with a rule encodes like one without (every field before it is self-delimiting,
    /// so the trailing field is seen, not guessed).
    fn encode(&self, row: &mut RowBytes) {
        let meta = serde_json::Value::Object(self.meta.clone()).to_string();
        row.text(&self.prefix)
            .text(&self.principal)
            .text(self.state.as_str())
            .text(&meta)
            .texts(self.permissions.iter().map(String::as_str))
            .opt_int(self.expires_at_ms)
            .opt_int(self.ratelimit.map(|(limit, _)| i64::from(limit)))
            .opt_int(self.ratelimit.map(|(_, period)| period))
            .int(self.created_at_ms)
            .int(self.updated_at_ms)
            .opt_int(self.revoked_at_ms)
            .int(self.revision);
        if let Some(rule) = self.on_new_fingerprint {
            row.text(rule.as_str());
        }
    }
}

/// One keyed hash an API key is found by: which key it opens, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyHashRow {
    /// The hex of the hash (the row id in reports; a keyed hash, not a secret).
    pub hash_hex: String,
    pub hash: Vec<u8>,
    pub key_id: String,
    pub valid_until_ms: Option<i64>,
}

impl ApiKeyHashRow {
    pub fn new(hash: &[u8], key_id: &str, valid_until_ms: Option<i64>) -> Self {
        Self {
            hash_hex: base16ct::lower::encode_string(hash),
            hash: hash.to_vec(),
            key_id: key_id.to_owned(),
            valid_until_ms,
        }
    }
}

impl Protected for ApiKeyHashRow {
    const TABLE: &'static str = "api_key_hashes";

    fn row_id(&self) -> &str {
        &self.hash_hex
    }

    fn encode(&self, row: &mut RowBytes) {
        row.bytes(&self.hash).text(&self.key_id).opt_int(self.valid_until_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenRecord {
        TokenRecord {
            id: "t1".into(),
            hash: vec![1, 2, 3],
            principal: "svc".into(),
            groups: vec!["services".into()],
            description: None,
            created_at_ms: 1,
            expires_at_ms: None,
            revoked_at_ms: None,
            revision: 0,
        }
    }

    #[test]
    fn every_bound_field_of_a_token_changes_its_bytes() {
        let base = token().canonical();
        let edits: [fn(&mut TokenRecord); 8] = [
            |t| t.id = "t2".into(),
            |t| t.hash = vec![1, 2, 4],
            |t| t.principal = "admin".into(),
            |t| t.groups = vec!["admin".into()],
            |t| t.groups.push("admin".into()),
            |t| t.expires_at_ms = Some(5),
            |t| t.revoked_at_ms = Some(0),
            |t| t.revision = 1,
        ];
        for edit in edits {
            let mut t = token();
            edit(&mut t);
            assert_ne!(t.canonical(), base);
        }
    }

    fn api_key(rule: Option<crate::model::OnNewFingerprint>) -> ApiKeyRecord {
        let mut meta = serde_json::Map::new();
        meta.insert("plan".into(), serde_json::json!("pro"));
        ApiKeyRecord {
            id: "ak_0123456789abcdef01234567".into(),
            prefix: "sk".into(),
            principal: "acme-ci".into(),
            state: crate::model::ApiKeyState::Enabled,
            meta,
            permissions: vec!["orders:read".into(), "orders:write".into()],
            expires_at_ms: Some(1_767_225_600_000),
            remaining: Some(5),
            ratelimit: Some((10, 1000)),
            on_new_fingerprint: rule,
            created_at_ms: 1_767_225_600_000,
            updated_at_ms: 1_767_225_600_001,
            last_used_at_ms: None,
            revoked_at_ms: None,
            revision: 3,
        }
    }

    /// Rows tagged before API keys had a fingerprint rule must keep checking: the SHA-256 of
    /// this key's canonical bytes, computed by the build before the rule existed (4d16e58).
    #[test]
    fn an_api_key_without_its_own_fingerprint_rule_encodes_as_before_the_rule_existed() {
        use sha2::{Digest, Sha256};
        assert_eq!(
            base16ct::lower::encode_string(&Sha256::digest(api_key(None).canonical())),
            "a76228d3eb0fd9d8e8ae07b538ec8f61cec28077f0828637da940302ab8ff972"
        );
    }

    #[test]
    fn every_fingerprint_rule_of_an_api_key_encodes_apart_from_the_others_and_from_none() {
        use crate::model::OnNewFingerprint;
        let mut all: Vec<Vec<u8>> = std::iter::once(None)
            .chain(OnNewFingerprint::ALL.iter().copied().map(Some))
            .map(|rule| api_key(rule).canonical())
            .collect();
        let encodings = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), encodings, "two rules share their bytes");
    }

    #[test]
    fn a_value_cannot_slide_into_its_neighbour() {
        // Two groups "ab" vs one group "a" then principal-like shifts: lengths are bound.
        let mut a = token();
        a.groups = vec!["a".into(), "b".into()];
        let mut b = token();
        b.groups = vec!["ab".into()];
        assert_ne!(a.canonical(), b.canonical());
        let mut none = token();
        none.expires_at_ms = None;
        let mut zero = token();
        zero.expires_at_ms = Some(0);
        assert_ne!(none.canonical(), zero.canonical());
    }
}
