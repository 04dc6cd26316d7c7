//! The statements every SQL backend runs word for word: the writes of whole rows (inserts,
//! and the updates that write a checked row back with its new revision and tag), with the
//! values they bind, and the column lists rows are read with. They use `$N` parameters,
//! which PostgreSQL and SQLite both read, so one text serves both; a backend only runs
//! [`Stmt::query`] on its own connection. What differs between backends (locking reads,
//! `GREATEST` against `MAX`, advisory locks) stays in the backend.

use crate::envelope::SealedRecord;
use crate::model::{KeyState, OnNewFingerprint};
use crate::store::audit::BatchRow;
use crate::store::rows::{as_i64, json_text};
use crate::store::{
    ApiKeyHashRow, ApiKeyRecord, ApprovalRecord, CredentialRecord, KeyRecord, NewVersion, StoreResult, TokenRecord,
};

pub(crate) const KEY_COLUMNS: &str = "id, name, tenant, algorithm, boundary, owner, tags, state, latest_version, \
     min_verify_version, exportable, auto_rotate_period_s, deletion_due_ms, state_before_deletion, created_at_ms, \
     updated_at_ms, revision, mac, origin, min_encryption_version, deletion_allowed";

pub(crate) const TOKEN_COLUMNS: &str =
    "id, hash, principal, groups_json, description, created_at_ms, expires_at_ms, revoked_at_ms, revision, mac";

pub(crate) const APPROVAL_COLUMNS: &str = "id, action, resource, reason, requested_by, requester_counts, approvers_json, \
     created_at_ms, expires_at_ms, used_at_ms, revision, mac";

pub(crate) const CREDENTIAL_COLUMNS: &str = "access_key_id, principal, description, state, on_new_fingerprint, \
     boundary, format, kek_id, wrapped_dek, nonce, ciphertext, created_at_ms, updated_at_ms, last_used_at_ms, last_used_region, \
     last_used_service, revision, mac, groups_json";

/// Of `api_keys k` (the lookup by hash joins `api_key_hashes h`).
pub(crate) const API_KEY_COLUMNS: &str = "k.id, k.prefix, k.principal, k.state, k.meta, k.permissions, \
     k.expires_at_ms, k.remaining, k.ratelimit_limit, k.ratelimit_period_ms, k.on_new_fingerprint, k.created_at_ms, \
     k.updated_at_ms, k.last_used_at_ms, k.revoked_at_ms, k.revision, k.mac";

/// A system secret's sealed record, by name.
pub(crate) const SELECT_SYSTEM_SECRET: &str =
    "SELECT format, kek_id, wrapped_dek, nonce, ciphertext FROM system_secrets WHERE name = $1";

/// A key version's sealed record, by key id and version.
pub(crate) const SELECT_SEALED_VERSION: &str =
    "SELECT format, kek_id, wrapped_dek, nonce, ciphertext FROM key_versions WHERE key_id = $1 AND version = $2";

/// A table of caller fingerprints: its name and the column naming the credential or API
/// key a row belongs to. Both are fixed texts, never input.
pub(crate) struct FingerprintTable {
    pub(crate) table: &'static str,
    pub(crate) owner: &'static str,
}

pub(crate) const CREDENTIAL_FINGERPRINTS: FingerprintTable = FingerprintTable {
    table: "credential_fingerprints",
    owner: "access_key_id",
};

pub(crate) const API_KEY_FINGERPRINTS: FingerprintTable = FingerprintTable {
    table: "api_key_fingerprints",
    owner: "key_id",
};

/// A value to bind, owned (a statement outlives nothing it was built from).
enum Value {
    Int(Option<i64>),
    Flag(bool),
    Text(Option<String>),
    Bytes(Vec<u8>),
}

fn int(v: i64) -> Value {
    Value::Int(Some(v))
}

fn text(v: &str) -> Value {
    Value::Text(Some(v.to_owned()))
}

fn opt_text(v: Option<&str>) -> Value {
    Value::Text(v.map(str::to_owned))
}

/// A statement and the values of its `$1`, `$2`, … in order.
pub(crate) struct Stmt {
    sql: &'static str,
    values: Vec<Value>,
}

impl Stmt {
    /// The statement with its values bound, for the backend's database.
    pub(crate) fn query<DB: sqlx::Database>(self) -> sqlx::query::Query<'static, DB, DB::Arguments>
    where
        for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> bool: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Vec<u8>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for value in self.values {
            query = match value {
                Value::Int(v) => query.bind(v),
                Value::Flag(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Bytes(v) => query.bind(v),
            };
        }
        query
    }
}

pub(crate) fn insert_key(key: &KeyRecord, tag: Vec<u8>) -> StoreResult<Stmt> {
    Ok(Stmt {
        sql: "INSERT INTO keys (id, name, tenant, algorithm, boundary, owner, tags, state, latest_version, \
              min_verify_version, exportable, auto_rotate_period_s, deletion_due_ms, state_before_deletion, \
              created_at_ms, updated_at_ms, revision, mac, origin, min_encryption_version, deletion_allowed) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
        values: vec![
            text(&key.id),
            text(&key.name),
            text(&key.tenant),
            text(key.algorithm.as_str()),
            text(key.boundary.as_str()),
            text(&key.owner),
            Value::Text(Some(json_text(&key.tags)?)),
            text(key.state.as_str()),
            int(i64::from(key.latest_version)),
            int(i64::from(key.min_verify_version)),
            Value::Flag(key.exportable),
            Value::Int(key.auto_rotate_period_s),
            Value::Int(key.deletion_due_ms),
            opt_text(key.state_before_deletion.map(KeyState::as_str)),
            int(key.created_at_ms),
            int(key.updated_at_ms),
            int(key.revision),
            Value::Bytes(tag),
            text(key.origin.as_str()),
            int(i64::from(key.min_encryption_version)),
            Value::Flag(key.deletion_allowed),
        ],
    })
}

pub(crate) fn insert_version(key_id: &str, v: &NewVersion) -> Stmt {
    Stmt {
        sql: "INSERT INTO key_versions (key_id, version, created_at_ms, format, kek_id, wrapped_dek, nonce, ciphertext) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        values: [text(key_id), int(i64::from(v.version)), int(v.created_at_ms)]
            .into_iter()
            .chain(sealed(&v.sealed))
            .collect(),
    }
}

/// A sealed record's five columns, in their stored order.
fn sealed(s: &SealedRecord) -> [Value; 5] {
    [
        int(i64::from(s.format)),
        text(&s.kek_id),
        Value::Bytes(s.wrapped_dek.clone()),
        Value::Bytes(s.nonce.clone()),
        Value::Bytes(s.ciphertext.clone()),
    ]
}

/// Writes back the row `add_version` made.
pub(crate) fn update_key_version(next: &KeyRecord, tag: Vec<u8>) -> Stmt {
    Stmt {
        sql: "UPDATE keys SET latest_version = $1, updated_at_ms = $2, revision = $3, mac = $4 WHERE id = $5",
        values: vec![
            int(i64::from(next.latest_version)),
            int(next.updated_at_ms),
            int(next.revision),
            Value::Bytes(tag),
            text(&next.id),
        ],
    }
}

/// Writes back the row `update_key` made.
pub(crate) fn update_key_settings(next: &KeyRecord, tag: Vec<u8>) -> Stmt {
    Stmt {
        sql: "UPDATE keys SET state = $1, min_verify_version = $2, exportable = $3, auto_rotate_period_s = $4, \
              deletion_due_ms = $5, state_before_deletion = $6, updated_at_ms = $7, revision = $8, mac = $9, \
              min_encryption_version = $10, deletion_allowed = $11 WHERE id = $12",
        values: vec![
            text(next.state.as_str()),
            int(i64::from(next.min_verify_version)),
            Value::Flag(next.exportable),
            Value::Int(next.auto_rotate_period_s),
            Value::Int(next.deletion_due_ms),
            opt_text(next.state_before_deletion.map(KeyState::as_str)),
            int(next.updated_at_ms),
            int(next.revision),
            Value::Bytes(tag),
            int(i64::from(next.min_encryption_version)),
            Value::Flag(next.deletion_allowed),
            text(&next.id),
        ],
    }
}

pub(crate) fn insert_token(token: &TokenRecord, tag: Vec<u8>) -> StoreResult<Stmt> {
    Ok(Stmt {
        sql: "INSERT INTO caller_tokens (id, hash, principal, groups_json, description, created_at_ms, \
              expires_at_ms, revoked_at_ms, revision, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        values: vec![
            text(&token.id),
            Value::Bytes(token.hash.clone()),
            text(&token.principal),
            Value::Text(Some(json_text(&token.groups)?)),
            opt_text(token.description.as_deref()),
            int(token.created_at_ms),
            Value::Int(token.expires_at_ms),
            Value::Int(token.revoked_at_ms),
            int(token.revision),
            Value::Bytes(tag),
        ],
    })
}

pub(crate) fn insert_approval(a: &ApprovalRecord, tag: Vec<u8>) -> StoreResult<Stmt> {
    Ok(Stmt {
        sql: "INSERT INTO approvals (id, action, resource, reason, requested_by, requester_counts, approvers_json, \
              created_at_ms, expires_at_ms, used_at_ms, revision, mac) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        values: vec![
            text(&a.id),
            text(&a.action),
            text(&a.resource),
            text(&a.reason),
            text(&a.requested_by),
            Value::Flag(a.requester_counts),
            Value::Text(Some(json_text(&a.approvers)?)),
            int(a.created_at_ms),
            int(a.expires_at_ms),
            Value::Int(a.used_at_ms),
            int(a.revision),
            Value::Bytes(tag),
        ],
    })
}

/// Writes `next` over the row whose revision is still `next.revision - 1` (the caller counts
/// the rows it changed: none means another writer came first).
pub(crate) fn update_approval(next: &ApprovalRecord, tag: Vec<u8>) -> StoreResult<Stmt> {
    Ok(Stmt {
        sql: "UPDATE approvals SET approvers_json = $1, used_at_ms = $2, revision = $3, mac = $4 \
              WHERE id = $5 AND revision = $6",
        values: vec![
            Value::Text(Some(json_text(&next.approvers)?)),
            Value::Int(next.used_at_ms),
            int(next.revision),
            Value::Bytes(tag),
            text(&next.id),
            int(next.revision.saturating_sub(1)),
        ],
    })
}

/// Writes back a revoked token.
pub(crate) fn update_token_revoked(revoked: &TokenRecord, tag: Vec<u8>) -> Stmt {
    Stmt {
        sql: "UPDATE caller_tokens SET revoked_at_ms = $1, revision = $2, mac = $3 WHERE id = $4",
        values: vec![
            Value::Int(revoked.revoked_at_ms),
            int(revoked.revision),
            Value::Bytes(tag),
            text(&revoked.id),
        ],
    }
}

pub(crate) fn insert_credential(c: &CredentialRecord, tag: Vec<u8>) -> StoreResult<Stmt> {
    let head = [
        text(&c.access_key_id),
        text(&c.principal),
        opt_text(c.description.as_deref()),
        text(c.state.as_str()),
        opt_text(c.on_new_fingerprint.map(OnNewFingerprint::as_str)),
        text(c.boundary.as_str()),
    ];
    let tail = [
        int(c.created_at_ms),
        int(c.updated_at_ms),
        int(c.revision),
        Value::Bytes(tag),
        Value::Text(Some(json_text(&c.groups)?)),
    ];
    Ok(Stmt {
        sql: "INSERT INTO credentials (access_key_id, principal, description, state, on_new_fingerprint, boundary, \
              format, kek_id, wrapped_dek, nonce, ciphertext, created_at_ms, updated_at_ms, revision, mac, groups_json) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        values: head.into_iter().chain(sealed(&c.sealed)).chain(tail).collect(),
    })
}

/// Writes back the row `update_credential` made.
pub(crate) fn update_credential(next: &CredentialRecord, tag: Vec<u8>) -> Stmt {
    Stmt {
        sql: "UPDATE credentials SET state = $1, on_new_fingerprint = $2, updated_at_ms = $3, revision = $4, mac = $5 \
              WHERE access_key_id = $6",
        values: vec![
            text(next.state.as_str()),
            opt_text(next.on_new_fingerprint.map(OnNewFingerprint::as_str)),
            int(next.updated_at_ms),
            int(next.revision),
            Value::Bytes(tag),
            text(&next.access_key_id),
        ],
    }
}

pub(crate) fn insert_api_key(k: &ApiKeyRecord, tag: Vec<u8>) -> StoreResult<Stmt> {
    Ok(Stmt {
        sql: "INSERT INTO api_keys (id, prefix, principal, state, meta, permissions, expires_at_ms, remaining, \
              ratelimit_limit, ratelimit_period_ms, on_new_fingerprint, created_at_ms, updated_at_ms, \
              last_used_at_ms, revoked_at_ms, revision, mac) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        values: vec![
            text(&k.id),
            text(&k.prefix),
            text(&k.principal),
            text(k.state.as_str()),
            Value::Text(Some(json_text(&k.meta)?)),
            Value::Text(Some(json_text(&k.permissions)?)),
            Value::Int(k.expires_at_ms),
            Value::Int(k.remaining.map(as_i64)),
            Value::Int(k.ratelimit.map(|(l, _)| i64::from(l))),
            Value::Int(k.ratelimit.map(|(_, p)| p)),
            opt_text(k.on_new_fingerprint.map(OnNewFingerprint::as_str)),
            int(k.created_at_ms),
            int(k.updated_at_ms),
            Value::Int(k.last_used_at_ms),
            Value::Int(k.revoked_at_ms),
            int(k.revision),
            Value::Bytes(tag),
        ],
    })
}

/// Writes back a key's tagged columns, its credits, a new revision and its tag.
pub(crate) fn update_api_key(k: &ApiKeyRecord, tag: Vec<u8>) -> StoreResult<Stmt> {
    Ok(Stmt {
        sql: "UPDATE api_keys SET state = $1, meta = $2, remaining = $3, on_new_fingerprint = $4, \
              updated_at_ms = $5, revoked_at_ms = $6, revision = $7, mac = $8 WHERE id = $9",
        values: vec![
            text(k.state.as_str()),
            Value::Text(Some(json_text(&k.meta)?)),
            Value::Int(k.remaining.map(as_i64)),
            opt_text(k.on_new_fingerprint.map(OnNewFingerprint::as_str)),
            int(k.updated_at_ms),
            Value::Int(k.revoked_at_ms),
            int(k.revision),
            Value::Bytes(tag),
            text(&k.id),
        ],
    })
}

pub(crate) fn insert_api_key_hash(h: &ApiKeyHashRow, tag: Vec<u8>) -> Stmt {
    Stmt {
        sql: "INSERT INTO api_key_hashes (hash, key_id, valid_until_ms, mac) VALUES ($1, $2, $3, $4)",
        values: vec![
            Value::Bytes(h.hash.clone()),
            text(&h.key_id),
            Value::Int(h.valid_until_ms),
            Value::Bytes(tag),
        ],
    }
}

/// Inserts a system secret unless one of that name exists.
pub(crate) fn insert_system_secret(name: &str, s: &SealedRecord, now_ms: i64) -> Stmt {
    Stmt {
        sql: "INSERT INTO system_secrets (name, format, kek_id, wrapped_dek, nonce, ciphertext, created_at_ms) \
              VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
        values: std::iter::once(text(name))
            .chain(sealed(s))
            .chain([int(now_ms)])
            .collect(),
    }
}

pub(crate) fn put_value(name: &str, value: &[u8], now_ms: i64) -> Stmt {
    Stmt {
        sql: "INSERT INTO system_values (name, value, updated_at_ms) VALUES ($1, $2, $3) \
              ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
        values: vec![text(name), Value::Bytes(value.to_vec()), int(now_ms)],
    }
}

/// One row of an audit batch; `ends_append` on the last row of an append.
pub(crate) fn insert_audit_row(node: &str, row: &BatchRow, lines: &[u8], ends_append: bool) -> Stmt {
    Stmt {
        sql: "INSERT INTO audit_batches (node, first_seq, last_seq, time_min, time_max, ends_append, lines) \
              VALUES ($1, $2, $3, $4, $5, $6, $7)",
        values: vec![
            text(node),
            int(as_i64(row.first_seq)),
            int(as_i64(row.last_seq)),
            text(&row.time_min),
            text(&row.time_max),
            Value::Flag(ends_append),
            Value::Bytes(lines.to_vec()),
        ],
    }
}
