//! The embedded SQLite store: WAL journal, `synchronous = FULL` (a commit survives power
//! loss), `secure_delete` (a destroyed record's bytes are overwritten, not left in free
//! pages), foreign keys on. One writer connection serialises writes in process — SQLite
//! allows one writer at a time anyway — and a small pool serves reads concurrently.

mod api_keys;
mod credentials;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr};

use super::{
    ApiKeyPatch, ApiKeyRecord, AuditFilter, CredentialActivity, CredentialPatch, CredentialRecord, FingerprintRecord,
    FoundApiKey, KeyRecord, NewVersion, Store, StoreError, StoreResult, StoredEvent, TokenRecord, UsageDelta,
    VersionInfo,
};
use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::model::audit::{AuditEvent, Decision, time_text};
use crate::model::{Algorithm, Boundary, KeyState};

const TOKEN_COLUMNS: &str =
    "id, hash, principal, groups_json, description, created_at_ms, expires_at_ms, revoked_at_ms";

fn token_from_row(row: &SqliteRow) -> StoreResult<TokenRecord> {
    Ok(TokenRecord {
        id: column(row, "id")?,
        hash: column(row, "hash")?,
        principal: column(row, "principal")?,
        groups: json_column(row, "groups_json")?,
        description: column(row, "description")?,
        created_at_ms: column(row, "created_at_ms")?,
        expires_at_ms: column(row, "expires_at_ms")?,
        revoked_at_ms: column(row, "revoked_at_ms")?,
    })
}

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_init.sql")),
    (2, include_str!("migrations/sqlite/0002_audit.sql")),
    (3, include_str!("migrations/sqlite/0003_caller_tokens.sql")),
    (4, include_str!("migrations/sqlite/0004_credentials.sql")),
    (5, include_str!("migrations/sqlite/0005_api_keys.sql")),
];

/// The conditions of an [`AuditFilter`]; bind [`filter_values`] in order.
const AUDIT_FILTER: &str = "(? IS NULL OR time >= ?) AND (? IS NULL OR time < ?) AND (? IS NULL OR principal = ?) \
     AND (? IS NULL OR action = ?) AND (? IS NULL OR resource = ?)";

/// The bind values of [`AUDIT_FILTER`], each twice (tested for NULL, then compared).
fn filter_values(filter: &AuditFilter) -> [Option<String>; 10] {
    let since = filter.since_ms.map(time_text);
    let until = filter.until_ms.map(time_text);
    [
        since.clone(),
        since,
        until.clone(),
        until,
        filter.principal.clone(),
        filter.principal.clone(),
        filter.action.clone(),
        filter.action.clone(),
        filter.resource.clone(),
        filter.resource.clone(),
    ]
}

/// Audit rows per INSERT statement (16 parameters each; SQLite allows 32766).
const AUDIT_ROWS_PER_INSERT: usize = 512;

const AUDIT_COLUMNS: &str = "node, seq, time, request_id, principal, action, resource, key_version, decision, \
     policy, outcome, source_ip, user_agent, secret_hmac, mac";

const KEY_COLUMNS: &str = "id, name, tenant, algorithm, boundary, owner, tags, state, latest_version, \
     min_verify_version, exportable, auto_rotate_period_s, deletion_due_ms, state_before_deletion, created_at_ms, updated_at_ms, revision";

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Appends audit events with `synchronous = NORMAL`: the audit writer makes each batch
    /// durable in its event file first, and a power loss that costs the store its last
    /// commits is repaired from that file at the next start (`audit::writer`). Saves one
    /// fsync per group commit. Key data never goes through this connection.
    audit_writer: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

/// A column of a fetched row as its Rust type. The row is already read, so a failure here
/// is a value this store did not write (wrong type, NULL where none belongs): corrupt.
fn column<'r, T>(row: &'r SqliteRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(col).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// A text column holding one of an enum's stored texts; any other text is corrupt, never a
/// default.
fn enum_column<T>(row: &SqliteRow, col: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let text: String = column(row, col)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{col}: unknown value `{text}`")))
}

/// As [`enum_column`], for a column where NULL means "not set".
fn optional_enum_column<T>(row: &SqliteRow, col: &str, parse: fn(&str) -> Option<T>) -> StoreResult<Option<T>> {
    let text: Option<String> = column(row, col)?;
    text.map(|t| parse(&t).ok_or_else(|| StoreError::Corrupt(format!("{col}: unknown value `{t}`"))))
        .transpose()
}

/// A text column holding JSON (tags, groups, permissions, meta): encoded and decoded only
/// here, so the interface carries typed values.
fn json_column<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let text: String = column(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// The JSON text of a value bound into a JSON column.
fn json_text<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode as JSON: {e}")))
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let open_err = |e: sqlx::Error| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "ON");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        let store_reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        let audit_writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(open_err)?;
        let store = Self {
            writer,
            reader: store_reader,
            audit_writer,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)",
        )
        .execute(&self.writer)
        .await
        .map_err(|e| StoreError::Migration {
            version: 0,
            source: Box::new(e),
        })?;
        for (version, sql) in MIGRATIONS {
            let version = *version;
            let mig = |e: sqlx::Error| StoreError::Migration {
                version,
                source: Box::new(e),
            };
            let mut tx = self.writer.begin().await.map_err(mig)?;
            let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(i64::from(version))
                .fetch_optional(&mut *tx)
                .await
                .map_err(mig)?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(sql.into_sql_str()).execute(&mut *tx).await.map_err(mig)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?, ?)")
                .bind(i64::from(version))
                .bind(crate::clock::unix_ms(time::OffsetDateTime::now_utc()))
                .execute(&mut *tx)
                .await
                .map_err(mig)?;
            tx.commit().await.map_err(mig)?;
        }
        Ok(())
    }
}

fn get_u32(row: &SqliteRow, col: &str) -> StoreResult<u32> {
    let v: i64 = column(row, col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} out of range")))
}

fn get_u64(row: &SqliteRow, col: &str) -> StoreResult<u64> {
    let v: i64 = column(row, col)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} out of range")))
}

fn key_from_row(row: &SqliteRow) -> StoreResult<KeyRecord> {
    Ok(KeyRecord {
        id: column(row, "id")?,
        name: column(row, "name")?,
        tenant: column(row, "tenant")?,
        algorithm: enum_column(row, "algorithm", Algorithm::parse)?,
        boundary: enum_column(row, "boundary", Boundary::parse)?,
        owner: column(row, "owner")?,
        tags: json_column(row, "tags")?,
        state: enum_column(row, "state", KeyState::parse)?,
        latest_version: get_u32(row, "latest_version")?,
        min_verify_version: get_u32(row, "min_verify_version")?,
        exportable: column(row, "exportable")?,
        auto_rotate_period_s: column(row, "auto_rotate_period_s")?,
        deletion_due_ms: column(row, "deletion_due_ms")?,
        state_before_deletion: optional_enum_column(row, "state_before_deletion", KeyState::parse)?,
        created_at_ms: column(row, "created_at_ms")?,
        updated_at_ms: column(row, "updated_at_ms")?,
        revision: column(row, "revision")?,
    })
}

fn sealed_from_row(row: &SqliteRow) -> StoreResult<SealedRecord> {
    let format: i64 = column(row, "format")?;
    Ok(SealedRecord {
        format: u16::try_from(format).map_err(|_| StoreError::Corrupt("format out of range".into()))?,
        kek_id: column(row, "kek_id")?,
        wrapped_dek: column(row, "wrapped_dek")?,
        nonce: column(row, "nonce")?,
        ciphertext: column(row, "ciphertext")?,
    })
}

/// `SELECT <KEY_COLUMNS> FROM keys <tail>`, built once per call site from static parts.
fn key_query(tail: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM keys {tail}"))
}

impl Store for SqliteStore {
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.reader)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn create_key<'a>(&'a self, key: &'a KeyRecord, first: &'a NewVersion) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await.map_err(unavailable)?;
            sqlx::query(
                "INSERT INTO keys (id, name, tenant, algorithm, boundary, owner, tags, state, latest_version, \
                 min_verify_version, exportable, auto_rotate_period_s, deletion_due_ms, state_before_deletion, \
                 created_at_ms, updated_at_ms, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&key.id)
            .bind(&key.name)
            .bind(&key.tenant)
            .bind(key.algorithm.as_str())
            .bind(key.boundary.as_str())
            .bind(&key.owner)
            .bind(json_text(&key.tags)?)
            .bind(key.state.as_str())
            .bind(i64::from(key.latest_version))
            .bind(i64::from(key.min_verify_version))
            .bind(key.exportable)
            .bind(key.auto_rotate_period_s)
            .bind(key.deletion_due_ms)
            .bind(key.state_before_deletion.map(KeyState::as_str))
            .bind(key.created_at_ms)
            .bind(key.updated_at_ms)
            .bind(key.revision)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            insert_version(&mut tx, &key.id, first).await?;
            tx.commit().await.map_err(unavailable)
        })
    }

    fn get_key<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<KeyRecord>>> {
        Box::pin(async move {
            let row = sqlx::query(key_query("WHERE name = ?"))
                .bind(name)
                .fetch_optional(&self.reader)
                .await
                .map_err(unavailable)?;
            row.as_ref().map(key_from_row).transpose()
        })
    }

    fn list_keys<'a>(&'a self, after: Option<&'a str>, limit: u32) -> BoxFuture<'a, StoreResult<Vec<KeyRecord>>> {
        Box::pin(async move {
            let rows = sqlx::query(key_query("WHERE name > ? ORDER BY name LIMIT ?"))
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await
                .map_err(unavailable)?;
            rows.iter().map(key_from_row).collect()
        })
    }

    fn list_versions<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<VersionInfo>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT version, created_at_ms, sign_count, verify_count, last_used_at_ms \
                 FROM key_versions WHERE key_id = ? ORDER BY version",
            )
            .bind(key_id)
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
            rows.iter()
                .map(|row| {
                    Ok(VersionInfo {
                        version: get_u32(row, "version")?,
                        created_at_ms: column(row, "created_at_ms")?,
                        sign_count: get_u64(row, "sign_count")?,
                        verify_count: get_u64(row, "verify_count")?,
                        last_used_at_ms: column(row, "last_used_at_ms")?,
                    })
                })
                .collect()
        })
    }

    fn get_sealed<'a>(&'a self, key_id: &'a str, version: u32) -> BoxFuture<'a, StoreResult<Option<SealedRecord>>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT format, kek_id, wrapped_dek, nonce, ciphertext FROM key_versions WHERE key_id = ? AND version = ?",
            )
            .bind(key_id)
            .bind(i64::from(version))
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(sealed_from_row).transpose()
        })
    }

    fn add_version<'a>(&'a self, key: &'a KeyRecord, new: &'a NewVersion) -> BoxFuture<'a, StoreResult<KeyRecord>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await.map_err(unavailable)?;
            let updated = sqlx::query(
                "UPDATE keys SET latest_version = ?, updated_at_ms = ?, revision = revision + 1 \
                 WHERE id = ? AND revision = ? AND latest_version = ?",
            )
            .bind(i64::from(new.version))
            .bind(new.created_at_ms)
            .bind(&key.id)
            .bind(key.revision)
            .bind(i64::from(key.latest_version))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
            insert_version(&mut tx, &key.id, new).await?;
            commit_and_reread(tx, &key.id).await
        })
    }

    fn update_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, StoreResult<KeyRecord>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await.map_err(unavailable)?;
            let updated = sqlx::query(
                "UPDATE keys SET state = ?, min_verify_version = ?, exportable = ?, auto_rotate_period_s = ?, \
                 deletion_due_ms = ?, state_before_deletion = ?, updated_at_ms = ?, revision = revision + 1 \
                 WHERE id = ? AND revision = ?",
            )
            .bind(key.state.as_str())
            .bind(i64::from(key.min_verify_version))
            .bind(key.exportable)
            .bind(key.auto_rotate_period_s)
            .bind(key.deletion_due_ms)
            .bind(key.state_before_deletion.map(KeyState::as_str))
            .bind(key.updated_at_ms)
            .bind(&key.id)
            .bind(key.revision)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
            commit_and_reread(tx, &key.id).await
        })
    }

    fn destroy_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await.map_err(unavailable)?;
            let deleted = sqlx::query("DELETE FROM keys WHERE id = ? AND revision = ?")
                .bind(&key.id)
                .bind(key.revision)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            if deleted.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM key_versions WHERE key_id = ?")
                .bind(&key.id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(true)
        })
    }

    fn keys_due_for_deletion(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        Box::pin(async move {
            let rows = sqlx::query(key_query(
                "WHERE state = 'pending_deletion' AND deletion_due_ms IS NOT NULL AND deletion_due_ms <= ?",
            ))
            .bind(now_ms)
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
            rows.iter().map(key_from_row).collect()
        })
    }

    fn auto_rotating_keys(&self) -> BoxFuture<'_, StoreResult<Vec<(KeyRecord, i64)>>> {
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS}, (SELECT v.created_at_ms FROM key_versions v \
                   WHERE v.key_id = keys.id AND v.version = keys.latest_version) AS latest_created_at_ms \
                 FROM keys WHERE state = 'enabled' AND auto_rotate_period_s IS NOT NULL"
            )))
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
            rows.iter()
                .map(|row| {
                    let at: Option<i64> = column(row, "latest_created_at_ms")?;
                    Ok((key_from_row(row)?, at.unwrap_or(0)))
                })
                .collect()
        })
    }

    fn add_usage<'a>(&'a self, deltas: &'a [UsageDelta]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await.map_err(unavailable)?;
            for d in deltas {
                sqlx::query(
                    "UPDATE key_versions SET sign_count = sign_count + ?, verify_count = verify_count + ?, \
                     last_used_at_ms = MAX(COALESCE(last_used_at_ms, 0), ?) WHERE key_id = ? AND version = ?",
                )
                .bind(i64::try_from(d.signs).unwrap_or(i64::MAX))
                .bind(i64::try_from(d.verifies).unwrap_or(i64::MAX))
                .bind(d.last_used_at_ms)
                .bind(&d.key_id)
                .bind(i64::from(d.version))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        })
    }

    fn get_system_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<SealedRecord>>> {
        Box::pin(async move {
            let row =
                sqlx::query("SELECT format, kek_id, wrapped_dek, nonce, ciphertext FROM system_secrets WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(unavailable)?;
            row.as_ref().map(sealed_from_row).transpose()
        })
    }

    fn insert_system_secret<'a>(
        &'a self,
        name: &'a str,
        sealed: &'a SealedRecord,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<SealedRecord>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await.map_err(unavailable)?;
            sqlx::query(
                "INSERT INTO system_secrets (name, format, kek_id, wrapped_dek, nonce, ciphertext, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(i64::from(sealed.format))
            .bind(&sealed.kek_id)
            .bind(&sealed.wrapped_dek)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            let row =
                sqlx::query("SELECT format, kek_id, wrapped_dek, nonce, ciphertext FROM system_secrets WHERE name = ?")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            let stored = sealed_from_row(&row)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(stored)
        })
    }

    fn get_value<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT value FROM system_values WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.reader)
                .await
                .map_err(unavailable)
        })
    }

    fn checkpoint(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.wal_checkpoint())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.reader.close().await;
            self.audit_writer.close().await;
            if let Err(e) = self.wal_checkpoint().await {
                tracing::warn!(error = %e, "final WAL checkpoint failed");
            }
            self.writer.close().await;
        })
    }

    fn put_value<'a>(&'a self, name: &'a str, value: &'a [u8], now_ms: i64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO system_values (name, value, updated_at_ms) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(name)
            .bind(value)
            .bind(now_ms)
            .execute(&self.writer)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn insert_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO caller_tokens (id, hash, principal, groups_json, description, created_at_ms, \
                 expires_at_ms, revoked_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&token.id)
            .bind(&token.hash)
            .bind(&token.principal)
            .bind(json_text(&token.groups)?)
            .bind(&token.description)
            .bind(token.created_at_ms)
            .bind(token.expires_at_ms)
            .bind(token.revoked_at_ms)
            .execute(&self.writer)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn get_token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM caller_tokens WHERE id = ?"
            )))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(token_from_row)
            .transpose()
        })
    }

    fn find_token<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM caller_tokens WHERE hash = ?"
            )))
            .bind(hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(token_from_row)
            .transpose()
        })
    }

    fn revoke_token<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(async move {
            sqlx::query("UPDATE caller_tokens SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.writer)
                .await
                .map_err(unavailable)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM caller_tokens WHERE id = ?"
            )))
            .bind(id)
            .fetch_optional(&self.writer)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(token_from_row)
            .transpose()
        })
    }

    fn insert_credential<'a>(
        &'a self,
        credential: &'a CredentialRecord,
        max_per_principal: u32,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(credentials::insert(&self.writer, credential, max_per_principal))
    }

    fn get_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>> {
        Box::pin(credentials::get(&self.reader, access_key_id))
    }

    fn list_credentials<'a>(
        &'a self,
        principal: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<CredentialRecord>>> {
        Box::pin(credentials::list(&self.reader, principal, after, limit))
    }

    fn update_credential<'a>(
        &'a self,
        access_key_id: &'a str,
        patch: &'a CredentialPatch,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>> {
        Box::pin(credentials::update(&self.writer, access_key_id, patch, now_ms))
    }

    fn delete_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(credentials::delete(&self.writer, access_key_id))
    }

    fn add_credential_activity<'a>(
        &'a self,
        activity: &'a [CredentialActivity],
        max_fingerprints: u32,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(credentials::add_activity(&self.writer, activity, max_fingerprints))
    }

    fn list_fingerprints<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<FingerprintRecord>>> {
        Box::pin(credentials::fingerprints(&self.reader, access_key_id))
    }

    fn insert_api_key<'a>(&'a self, key: &'a ApiKeyRecord, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(api_keys::insert(&self.writer, key, hash))
    }

    fn find_api_key<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<FoundApiKey>>> {
        Box::pin(api_keys::find(&self.reader, hash))
    }

    fn get_api_key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(api_keys::get(&self.reader, id))
    }

    fn list_api_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<ApiKeyRecord>>> {
        Box::pin(api_keys::list(&self.reader, after, limit))
    }

    fn update_api_key<'a>(
        &'a self,
        id: &'a str,
        patch: &'a ApiKeyPatch,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(api_keys::update(&self.writer, id, patch, now_ms))
    }

    fn revoke_api_key<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(api_keys::revoke(&self.writer, id, now_ms))
    }

    fn reroll_api_key<'a>(
        &'a self,
        id: &'a str,
        new_hash: &'a [u8],
        grace_until_ms: i64,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(api_keys::reroll(&self.writer, id, new_hash, grace_until_ms, now_ms))
    }

    fn consume_api_key_credit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>> {
        Box::pin(api_keys::consume_credit(&self.writer, id))
    }

    fn touch_api_keys<'a>(&'a self, used: &'a [(String, i64)]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(api_keys::touch(&self.writer, used))
    }

    fn append_audit<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut tx = self.audit_writer.begin().await.map_err(unavailable)?;
            // One multi-row INSERT per chunk: a group commit costs one statement, not one
            // round trip to SQLite's worker per event (16 binds a row, under SQLite's limit).
            for chunk in events.chunks(AUDIT_ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO audit_events (node, seq, time, request_id, principal, action, resource, \
                     key_version, decision, policy, outcome, source_ip, user_agent, secret_hmac, mac) ",
                );
                insert.push_values(chunk, |mut row, (e, mac)| {
                    row.push_bind(&e.node)
                        .push_bind(i64::try_from(e.seq).unwrap_or(i64::MAX))
                        .push_bind(&e.time)
                        .push_bind(&e.request_id)
                        .push_bind(&e.principal)
                        .push_bind(&e.action)
                        .push_bind(&e.resource)
                        .push_bind(e.key_version.map(i64::from))
                        .push_bind(e.decision.as_str())
                        .push_bind(&e.policy)
                        .push_bind(&e.outcome)
                        .push_bind(&e.source_ip)
                        .push_bind(&e.user_agent)
                        .push_bind(&e.secret_hmac)
                        .push_bind(mac);
                });
                insert.build().execute(&mut *tx).await.map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        })
    }

    fn truncate_audit<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM audit_events WHERE node = ? AND seq > ?")
                .bind(node)
                .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
                .execute(&self.audit_writer)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn audit_range<'a>(
        &'a self,
        node: &'a str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE node = ? AND seq > ? ORDER BY seq LIMIT ?"
            )))
            .bind(node)
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
            rows.iter().map(event_from_row).collect()
        })
    }

    fn audit_head<'a>(&'a self, node: &'a str) -> BoxFuture<'a, StoreResult<Option<StoredEvent>>> {
        Box::pin(async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE node = ? ORDER BY seq DESC LIMIT 1"
            )))
            .bind(node)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(event_from_row).transpose()
        })
    }

    fn audit_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT DISTINCT node FROM audit_events ORDER BY node")
                .fetch_all(&self.reader)
                .await
                .map_err(unavailable)
        })
    }

    fn query_audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
        after: Option<(&'a str, u64)>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(async move {
            let (after_node, after_seq) = after.unwrap_or(("", 0));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE (node > ? OR (node = ? AND seq > ?)) AND {AUDIT_FILTER} \
                 ORDER BY node, seq LIMIT ?"
            )))
            .bind(after_node)
            .bind(after_node)
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX));
            for value in filter_values(filter) {
                query = query.bind(value);
            }
            let rows = query
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await
                .map_err(unavailable)?;
            rows.iter().map(event_from_row).collect()
        })
    }

    fn count_audit<'a>(&'a self, filter: &'a AuditFilter) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move {
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM audit_events WHERE {AUDIT_FILTER}"
            )));
            for value in filter_values(filter) {
                query = query.bind(value);
            }
            let count: i64 = query.fetch_one(&self.reader).await.map_err(unavailable)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn audit_counts_by_principal(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(async move {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT principal, COUNT(*) FROM audit_events GROUP BY principal ORDER BY principal")
                    .fetch_all(&self.reader)
                    .await
                    .map_err(unavailable)?;
            Ok(rows
                .into_iter()
                .map(|(p, n)| (p, u64::try_from(n).unwrap_or(0)))
                .collect())
        })
    }
}

impl SqliteStore {
    /// Forces the WAL into the main file and truncates it, so destroyed records do not
    /// linger in old WAL frames.
    async fn wal_checkpoint(&self) -> StoreResult<()> {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.writer)
            .await
            .map_err(unavailable)?;
        if busy != 0 {
            return Err(StoreError::Unavailable(
                "WAL checkpoint blocked by a reader; retried at the next checkpoint".into(),
            ));
        }
        Ok(())
    }
}

fn event_from_row(row: &SqliteRow) -> StoreResult<StoredEvent> {
    let decision: String = column(row, "decision")?;
    let seq: i64 = column(row, "seq")?;
    let key_version: Option<i64> = column(row, "key_version")?;
    let event = AuditEvent {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt("audit seq out of range".into()))?,
        node: column(row, "node")?,
        time: column(row, "time")?,
        request_id: column(row, "request_id")?,
        principal: column(row, "principal")?,
        action: column(row, "action")?,
        resource: column(row, "resource")?,
        key_version: key_version
            .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt("audit key_version out of range".into())))
            .transpose()?,
        // An unknown decision cannot be represented; it is mapped to `deny` and the MAC
        // check then reports the altered event.
        decision: Decision::parse(&decision).unwrap_or(Decision::Deny),
        policy: column(row, "policy")?,
        outcome: column(row, "outcome")?,
        source_ip: column(row, "source_ip")?,
        user_agent: column(row, "user_agent")?,
        secret_hmac: column(row, "secret_hmac")?,
    };
    let mac: Vec<u8> = column(row, "mac")?;
    Ok((event, mac))
}

/// Reads a key row back inside the transaction that changed it, then commits.
async fn commit_and_reread(mut tx: sqlx::Transaction<'_, sqlx::Sqlite>, id: &str) -> StoreResult<KeyRecord> {
    let row = sqlx::query(key_query("WHERE id = ?"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
    let record = key_from_row(&row)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(record)
}

async fn insert_version(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, key_id: &str, v: &NewVersion) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO key_versions (key_id, version, created_at_ms, format, kek_id, wrapped_dek, nonce, ciphertext) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(key_id)
    .bind(i64::from(v.version))
    .bind(v.created_at_ms)
    .bind(i64::from(v.sealed.format))
    .bind(&v.sealed.kek_id)
    .bind(&v.sealed.wrapped_dek)
    .bind(&v.sealed.nonce)
    .bind(&v.sealed.ciphertext)
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `synchronous`, `secure_delete` and `foreign_keys` are per connection: check them on
    /// the store's own pools, where a crash-safety regression would hide.
    #[tokio::test]
    async fn every_connection_is_full_sync_secure_delete_with_foreign_keys() {
        let dir = std::env::temp_dir().join(format!("sv-sqlite-pragmas-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("s.db")).await.unwrap();
        for pool in [&store.writer, &store.reader] {
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
            assert_eq!(sync, 2, "synchronous = FULL");
            let secure: i64 = sqlx::query_scalar("PRAGMA secure_delete")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(secure, 1);
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(pool).await.unwrap();
            assert_eq!(fk, 1);
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
            assert_eq!(mode, "wal");
        }
        // The audit connection alone skips the commit fsync (the event file is the durable
        // copy of the trail; see audit::writer).
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.audit_writer)
            .await
            .unwrap();
        assert_eq!(sync, 1, "synchronous = NORMAL on the audit connection only");
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
