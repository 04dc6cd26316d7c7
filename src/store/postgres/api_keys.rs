//! Bearer API keys, their keyed hashes and their activity in PostgreSQL (`api_keys`,
//! `api_key_hashes`, `api_key_fingerprints`). Key and hash rows are tagged
//! ([`crate::store::integrity`]): a hash row binds the key it opens. Credits (`remaining`),
//! last use and fingerprints are not.
//!
//! Every change of a key or its hashes starts by locking the key's row (`FOR UPDATE`), so
//! nodes changing one key take turns; a credit is taken by one conditional `UPDATE`, which
//! PostgreSQL re-checks against the latest row, so concurrent takers never go below zero.

use super::changes::announce;
use crate::store::Change;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};

use super::fingerprints;
use super::{PgStore, timed, unavailable};
use crate::BoxFuture;
use crate::model::ApiKeyState;
use crate::store::integrity::{all_checked, checked, tag_of};
use crate::store::rows::{self, column};
use crate::store::statements::{self, API_KEY_COLUMNS, API_KEY_FINGERPRINTS};
use crate::store::{
    ApiKeyActivity, ApiKeyHashRow, ApiKeyPatch, ApiKeyRecord, ApiKeyStore, FingerprintRecord, FoundApiKey, Protected,
    RowSealer, StoreError, StoreResult,
};

fn select(tail: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {API_KEY_COLUMNS} FROM api_keys k {tail}"))
}

impl ApiKeyStore for PgStore {
    fn insert_api_key<'a>(&'a self, key: &'a ApiKeyRecord, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(
            async move { insert(&self.pool, self.sealer()?, key, hash).await },
        ))
    }

    fn find_api_key<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<FoundApiKey>>> {
        Box::pin(timed(async move { find(&self.pool, self.sealer()?, hash).await }))
    }

    fn get_api_key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            sqlx::query(select("WHERE k.id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?
                .map(|row| checked(sealer, rows::api_key(&row)?, &row))
                .transpose()
        }))
    }

    fn list_api_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<ApiKeyRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let found = sqlx::query(select("WHERE k.id > $1 ORDER BY k.id LIMIT $2"))
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            all_checked(sealer, &found, rows::api_key)
        }))
    }

    fn update_api_key<'a>(
        &'a self,
        id: &'a str,
        patch: &'a ApiKeyPatch,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let Some(current) = locked(&mut tx, sealer, id).await? else {
                return Ok(None);
            };
            if current.state == ApiKeyState::Revoked {
                return Ok(Some(current));
            }
            let next = rows::api_key_patched(current, patch, now_ms);
            write_back(&mut tx, sealer, &next).await?;
            announce(&mut tx, Change::ApiKeys).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(Some(next))
        }))
    }

    fn revoke_api_key<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let Some(current) = locked(&mut tx, sealer, id).await? else {
                return Ok(None);
            };
            let next = rows::api_key_revoked(current, now_ms);
            write_back(&mut tx, sealer, &next).await?;
            sqlx::query("DELETE FROM api_key_hashes WHERE key_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            announce(&mut tx, Change::ApiKeys).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(Some(next))
        }))
    }

    fn reroll_api_key<'a>(
        &'a self,
        id: &'a str,
        new_hash: &'a [u8],
        grace_until_ms: i64,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<ApiKeyRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            reroll(&self.pool, sealer, id, new_hash, grace_until_ms, now_ms).await
        }))
    }

    fn consume_api_key_credit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>> {
        Box::pin(timed(async move {
            let left: Option<i64> = sqlx::query_scalar(
                "UPDATE api_keys SET remaining = remaining - 1 WHERE id = $1 AND remaining > 0 RETURNING remaining",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
            left.map(|l| u64::try_from(l).map_err(|_| StoreError::Corrupt("api_keys.remaining below zero".into())))
                .transpose()
        }))
    }

    fn add_api_key_activity<'a>(
        &'a self,
        activity: &'a [ApiKeyActivity],
        max_fingerprints: u32,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(async move {
            // Keys in one order, so two nodes flushing at once cannot deadlock.
            let mut sorted: Vec<&ApiKeyActivity> = activity.iter().collect();
            sorted.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            for a in sorted {
                add_one(&mut tx, a, max_fingerprints).await?;
            }
            tx.commit().await.map_err(unavailable)
        }))
    }

    fn list_api_key_fingerprints<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Vec<FingerprintRecord>>> {
        Box::pin(timed(fingerprints::list(&API_KEY_FINGERPRINTS, &self.pool, id)))
    }
}

async fn insert(pool: &PgPool, sealer: &dyn RowSealer, k: &ApiKeyRecord, hash: &[u8]) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    statements::insert_api_key(k, tag_of(sealer, k))?
        .query()
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    insert_hash(&mut tx, sealer, &ApiKeyHashRow::new(hash, &k.id, None)).await?;
    tx.commit().await.map_err(unavailable)
}

async fn insert_hash(tx: &mut Transaction<'_, Postgres>, sealer: &dyn RowSealer, h: &ApiKeyHashRow) -> StoreResult<()> {
    statements::insert_api_key_hash(h, tag_of(sealer, h))
        .query()
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// The key a hash opens: the hash row (which key, until when) and the key row are each
/// checked, so neither a hash pointed at another key nor an edited key is used.
async fn find(pool: &PgPool, sealer: &dyn RowSealer, hash: &[u8]) -> StoreResult<Option<FoundApiKey>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {API_KEY_COLUMNS}, h.hash, h.key_id, h.valid_until_ms, h.mac AS hash_mac \
         FROM api_key_hashes h JOIN api_keys k ON h.key_id = k.id WHERE h.hash = $1"
    )))
    .bind(hash)
    .fetch_optional(pool)
    .await
    .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    let hash_tag: Option<Vec<u8>> = column(&row, "hash_mac")?;
    let hash_row = rows::api_key_hash(&row)?.verified(sealer, hash_tag.as_deref())?;
    let record = checked(sealer, rows::api_key(&row)?, &row)?;
    Ok(Some((record, hash_row.valid_until_ms)))
}

/// The key's row, locked for this transaction and checked: every change starts here.
async fn locked(
    tx: &mut Transaction<'_, Postgres>,
    sealer: &dyn RowSealer,
    id: &str,
) -> StoreResult<Option<ApiKeyRecord>> {
    sqlx::query(select("WHERE k.id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(unavailable)?
        .map(|row| checked(sealer, rows::api_key(&row)?, &row))
        .transpose()
}

/// Writes back a key's tagged columns, its credits, a new revision and its tag.
async fn write_back(tx: &mut Transaction<'_, Postgres>, sealer: &dyn RowSealer, k: &ApiKeyRecord) -> StoreResult<()> {
    statements::update_api_key(k, tag_of(sealer, k))?
        .query()
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

async fn reroll(
    pool: &PgPool,
    sealer: &dyn RowSealer,
    id: &str,
    new_hash: &[u8],
    grace_until_ms: i64,
    now_ms: i64,
) -> StoreResult<Option<ApiKeyRecord>> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let current = match locked(&mut tx, sealer, id).await? {
        Some(k) if k.state != ApiKeyState::Revoked => k,
        _ => return Ok(None),
    };
    // The current hash keeps opening this key until the grace period ends; earlier grace
    // hashes go now. (The hash rows of a key change only under its row's lock.)
    let current_hashes =
        sqlx::query("DELETE FROM api_key_hashes WHERE key_id = $1 RETURNING hash, key_id, valid_until_ms, mac")
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
    if grace_until_ms > now_ms {
        for row in &current_hashes {
            let h = checked(sealer, rows::api_key_hash(row)?, row)?;
            if h.valid_until_ms.is_none() {
                insert_hash(&mut tx, sealer, &ApiKeyHashRow::new(&h.hash, id, Some(grace_until_ms))).await?;
            }
        }
    }
    insert_hash(&mut tx, sealer, &ApiKeyHashRow::new(new_hash, id, None)).await?;
    let next = rows::api_key_rerolled(current, now_ms);
    write_back(&mut tx, sealer, &next).await?;
    announce(&mut tx, Change::ApiKeys).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(Some(next))
}

/// Last use moves forward only; the statement locks the key's row and says whether the key
/// exists (fingerprints of a key that does not are dropped).
async fn add_one(tx: &mut Transaction<'_, Postgres>, a: &ApiKeyActivity, max_fingerprints: u32) -> StoreResult<()> {
    let exists: Option<i32> = sqlx::query_scalar(
        "UPDATE api_keys SET last_used_at_ms = GREATEST(COALESCE(last_used_at_ms, $1), $1) WHERE id = $2 RETURNING 1",
    )
    .bind(a.last_used_at_ms)
    .bind(&a.id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(unavailable)?;
    if exists.is_none() {
        return Ok(());
    }
    fingerprints::add(&API_KEY_FINGERPRINTS, tx, &a.id, &a.fingerprints, max_fingerprints).await
}
