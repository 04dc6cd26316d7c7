//! Bearer API keys and their keyed hashes in SQLite (`api_keys`, `api_key_hashes`).

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Sqlite, Transaction};

use super::row::{as_i64, column, enum_column, json_column, json_text};
use super::{SqliteStore, begin_write, unavailable};
use crate::BoxFuture;
use crate::model::ApiKeyState;
use crate::store::{ApiKeyPatch, ApiKeyRecord, ApiKeyStore, FoundApiKey, StoreError, StoreResult};

const COLUMNS: &str = "k.id, k.prefix, k.principal, k.state, k.meta, k.permissions, k.expires_at_ms, k.remaining, \
     k.ratelimit_limit, k.ratelimit_period_ms, k.created_at_ms, k.updated_at_ms, k.last_used_at_ms, k.revoked_at_ms";

fn select(tail: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM api_keys k {tail}"))
}

fn from_row(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("api_keys.{what} out of range"));
    let remaining: Option<i64> = column(row, "remaining")?;
    let limit: Option<i64> = column(row, "ratelimit_limit")?;
    let period: Option<i64> = column(row, "ratelimit_period_ms")?;
    let ratelimit = match (limit, period) {
        (Some(l), Some(p)) => Some((u32::try_from(l).map_err(|_| corrupt("ratelimit_limit"))?, p)),
        _ => None,
    };
    Ok(ApiKeyRecord {
        id: column(row, "id")?,
        prefix: column(row, "prefix")?,
        principal: column(row, "principal")?,
        state: enum_column(row, "state", ApiKeyState::parse)?,
        meta: json_column(row, "meta")?,
        permissions: json_column(row, "permissions")?,
        expires_at_ms: column(row, "expires_at_ms")?,
        remaining: remaining
            .map(|r| u64::try_from(r).map_err(|_| corrupt("remaining")))
            .transpose()?,
        ratelimit,
        created_at_ms: column(row, "created_at_ms")?,
        updated_at_ms: column(row, "updated_at_ms")?,
        last_used_at_ms: column(row, "last_used_at_ms")?,
        revoked_at_ms: column(row, "revoked_at_ms")?,
    })
}

impl ApiKeyStore for SqliteStore {
    fn insert_api_key<'a>(&'a self, key: &'a ApiKeyRecord, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(insert(&self.writer, key, hash))
    }

    fn find_api_key<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<FoundApiKey>>> {
        Box::pin(find(&self.reader, hash))
    }

    fn get_api_key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(get(&self.reader, id))
    }

    fn list_api_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<ApiKeyRecord>>> {
        Box::pin(list(&self.reader, after, limit))
    }

    fn update_api_key<'a>(
        &'a self,
        id: &'a str,
        patch: &'a ApiKeyPatch,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(update(&self.writer, id, patch, now_ms))
    }

    fn revoke_api_key<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(revoke(&self.writer, id, now_ms))
    }

    fn reroll_api_key<'a>(
        &'a self,
        id: &'a str,
        new_hash: &'a [u8],
        grace_until_ms: i64,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(reroll(&self.writer, id, new_hash, grace_until_ms, now_ms))
    }

    fn consume_api_key_credit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>> {
        Box::pin(consume_credit(&self.writer, id))
    }

    fn touch_api_keys<'a>(&'a self, used: &'a [(String, i64)]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(touch(&self.writer, used))
    }
}

async fn insert(writer: &SqlitePool, k: &ApiKeyRecord, hash: &[u8]) -> StoreResult<()> {
    let mut tx = begin_write(writer).await.map_err(unavailable)?;
    sqlx::query(
        "INSERT INTO api_keys (id, prefix, principal, state, meta, permissions, expires_at_ms, remaining, \
         ratelimit_limit, ratelimit_period_ms, created_at_ms, updated_at_ms, last_used_at_ms, revoked_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&k.id)
    .bind(&k.prefix)
    .bind(&k.principal)
    .bind(k.state.as_str())
    .bind(json_text(&k.meta)?)
    .bind(json_text(&k.permissions)?)
    .bind(k.expires_at_ms)
    .bind(k.remaining.map(as_i64))
    .bind(k.ratelimit.map(|(l, _)| i64::from(l)))
    .bind(k.ratelimit.map(|(_, p)| p))
    .bind(k.created_at_ms)
    .bind(k.updated_at_ms)
    .bind(k.last_used_at_ms)
    .bind(k.revoked_at_ms)
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?;
    sqlx::query("INSERT INTO api_key_hashes (hash, key_id, valid_until_ms) VALUES (?, ?, NULL)")
        .bind(hash)
        .bind(&k.id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}

async fn find(reader: &SqlitePool, hash: &[u8]) -> StoreResult<Option<FoundApiKey>> {
    let row = sqlx::query(select("JOIN api_key_hashes h ON h.key_id = k.id WHERE h.hash = ?"))
        .bind(hash)
        .fetch_optional(reader)
        .await
        .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    let record = from_row(&row)?;
    let until: Option<i64> = sqlx::query_scalar("SELECT valid_until_ms FROM api_key_hashes WHERE hash = ?")
        .bind(hash)
        .fetch_optional(reader)
        .await
        .map_err(unavailable)?
        .flatten();
    Ok(Some((record, until)))
}

async fn get_in(tx: &mut Transaction<'_, Sqlite>, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
    sqlx::query(select("WHERE k.id = ?"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(from_row)
        .transpose()
}

async fn get(reader: &SqlitePool, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
    sqlx::query(select("WHERE k.id = ?"))
        .bind(id)
        .fetch_optional(reader)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(from_row)
        .transpose()
}

async fn list(reader: &SqlitePool, after: Option<&str>, limit: u32) -> StoreResult<Vec<ApiKeyRecord>> {
    sqlx::query(select("WHERE k.id > ? ORDER BY k.id LIMIT ?"))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(reader)
        .await
        .map_err(unavailable)?
        .iter()
        .map(from_row)
        .collect()
}

async fn update(writer: &SqlitePool, id: &str, patch: &ApiKeyPatch, now_ms: i64) -> StoreResult<Option<ApiKeyRecord>> {
    let mut tx = begin_write(writer).await.map_err(unavailable)?;
    let Some(current) = get_in(&mut tx, id).await? else {
        return Ok(None);
    };
    if current.state == ApiKeyState::Revoked {
        return Ok(Some(current));
    }
    sqlx::query("UPDATE api_keys SET state = ?, meta = ?, remaining = ?, updated_at_ms = ? WHERE id = ?")
        .bind(patch.state.unwrap_or(current.state).as_str())
        .bind(json_text(patch.meta.as_ref().unwrap_or(&current.meta))?)
        .bind(patch.remaining.unwrap_or(current.remaining).map(as_i64))
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let after = get_in(&mut tx, id).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(after)
}

async fn revoke(writer: &SqlitePool, id: &str, now_ms: i64) -> StoreResult<Option<ApiKeyRecord>> {
    let mut tx = begin_write(writer).await.map_err(unavailable)?;
    sqlx::query(
        "UPDATE api_keys SET state = 'revoked', revoked_at_ms = COALESCE(revoked_at_ms, ?), updated_at_ms = ? \
         WHERE id = ?",
    )
    .bind(now_ms)
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?;
    sqlx::query("DELETE FROM api_key_hashes WHERE key_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let after = get_in(&mut tx, id).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(after)
}

async fn reroll(
    writer: &SqlitePool,
    id: &str,
    new_hash: &[u8],
    grace_until_ms: i64,
    now_ms: i64,
) -> StoreResult<Option<ApiKeyRecord>> {
    let mut tx = begin_write(writer).await.map_err(unavailable)?;
    match get_in(&mut tx, id).await? {
        Some(k) if k.state != ApiKeyState::Revoked => {}
        _ => return Ok(None),
    }
    sqlx::query("DELETE FROM api_key_hashes WHERE key_id = ? AND valid_until_ms IS NOT NULL")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    if grace_until_ms > now_ms {
        sqlx::query("UPDATE api_key_hashes SET valid_until_ms = ? WHERE key_id = ? AND valid_until_ms IS NULL")
            .bind(grace_until_ms)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
    } else {
        sqlx::query("DELETE FROM api_key_hashes WHERE key_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
    }
    sqlx::query("INSERT INTO api_key_hashes (hash, key_id, valid_until_ms) VALUES (?, ?, NULL)")
        .bind(new_hash)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    sqlx::query("UPDATE api_keys SET updated_at_ms = ? WHERE id = ?")
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let after = get_in(&mut tx, id).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(after)
}

async fn consume_credit(writer: &SqlitePool, id: &str) -> StoreResult<Option<u64>> {
    let left: Option<i64> = sqlx::query_scalar(
        "UPDATE api_keys SET remaining = remaining - 1 WHERE id = ? AND remaining > 0 RETURNING remaining",
    )
    .bind(id)
    .fetch_optional(writer)
    .await
    .map_err(unavailable)?;
    left.map(|l| u64::try_from(l).map_err(|_| StoreError::Corrupt("api_keys.remaining below zero".into())))
        .transpose()
}

async fn touch(writer: &SqlitePool, used: &[(String, i64)]) -> StoreResult<()> {
    let mut tx = begin_write(writer).await.map_err(unavailable)?;
    for (id, at) in used {
        sqlx::query(
            "UPDATE api_keys SET last_used_at_ms = ? WHERE id = ? AND (last_used_at_ms IS NULL OR last_used_at_ms < ?)",
        )
        .bind(at)
        .bind(id)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)
}
