//! SigV4 credentials and their activity in SQLite (`credentials`,
//! `credential_fingerprints`). Credential rows are tagged ([`super::integrity`]); activity
//! columns and fingerprints are not (they change with every use, and decide no right).

use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};

use super::fingerprints;
use super::{SqliteStore, begin_write, unavailable};
use crate::BoxFuture;
use crate::store::integrity::{all_checked, checked, tag_of};
use crate::store::rows;
use crate::store::statements::{self, CREDENTIAL_COLUMNS, CREDENTIAL_FINGERPRINTS};
use crate::store::{
    CredentialActivity, CredentialPatch, CredentialRecord, CredentialStore, FingerprintRecord, RowSealer, StoreError,
    StoreResult,
};

fn select(tail: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials {tail}"))
}

pub(super) fn select_all() -> sqlx::AssertSqlSafe<String> {
    select("")
}

impl CredentialStore for SqliteStore {
    fn insert_credential<'a>(
        &'a self,
        credential: &'a CredentialRecord,
        max_per_principal: u32,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move { insert(&self.writer, self.sealer()?, credential, max_per_principal).await })
    }

    fn get_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>> {
        Box::pin(async move { get(&self.reader, self.sealer()?, access_key_id).await })
    }

    fn list_credentials<'a>(
        &'a self,
        principal: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<CredentialRecord>>> {
        Box::pin(async move { list(&self.reader, self.sealer()?, principal, after, limit).await })
    }

    fn update_credential<'a>(
        &'a self,
        access_key_id: &'a str,
        patch: &'a CredentialPatch,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>> {
        Box::pin(async move { update(&self.writer, self.sealer()?, access_key_id, patch, now_ms).await })
    }

    fn delete_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(delete(&self.writer, access_key_id))
    }

    fn add_credential_activity<'a>(
        &'a self,
        activity: &'a [CredentialActivity],
        max_fingerprints: u32,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(add_activity(&self.writer, activity, max_fingerprints))
    }

    fn list_fingerprints<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<FingerprintRecord>>> {
        Box::pin(fingerprints::list(
            &CREDENTIAL_FINGERPRINTS,
            &self.reader,
            access_key_id,
        ))
    }
}

async fn insert(
    writer: &SqlitePool,
    sealer: &dyn RowSealer,
    c: &CredentialRecord,
    max_per_principal: u32,
) -> StoreResult<()> {
    let mut tx = begin_write(writer).await.map_err(unavailable)?;
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE principal = ?")
        .bind(&c.principal)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
    if held >= i64::from(max_per_principal) {
        return Err(StoreError::LimitReached(format!(
            "principal already holds {held} credentials (at most {max_per_principal})"
        )));
    }
    statements::insert_credential(c, tag_of(sealer, c))?
        .query()
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}

async fn get(reader: &SqlitePool, sealer: &dyn RowSealer, id: &str) -> StoreResult<Option<CredentialRecord>> {
    sqlx::query(select("WHERE access_key_id = ?"))
        .bind(id)
        .fetch_optional(reader)
        .await
        .map_err(unavailable)?
        .map(|row| checked(sealer, rows::credential(&row)?, &row))
        .transpose()
}

async fn list(
    reader: &SqlitePool,
    sealer: &dyn RowSealer,
    principal: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<CredentialRecord>> {
    sqlx::query(select(
        "WHERE (? IS NULL OR principal = ?) AND access_key_id > ? ORDER BY access_key_id LIMIT ?",
    ))
    .bind(principal)
    .bind(principal)
    .bind(after.unwrap_or(""))
    .bind(i64::from(limit))
    .fetch_all(reader)
    .await
    .map_err(unavailable)
    .and_then(|found| all_checked(sealer, &found, rows::credential))
}

/// Checks the stored row, applies `patch` to it and writes it back with a new revision and
/// tag (an edited row is refused, never re-tagged).
async fn update(
    writer: &SqlitePool,
    sealer: &dyn RowSealer,
    id: &str,
    patch: &CredentialPatch,
    now_ms: i64,
) -> StoreResult<Option<CredentialRecord>> {
    let mut tx = begin_write(writer).await.map_err(unavailable)?;
    let row = sqlx::query(select("WHERE access_key_id = ?"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
    let Some(current) = row
        .map(|row| checked(sealer, rows::credential(&row)?, &row))
        .transpose()?
    else {
        return Ok(None);
    };
    let next = rows::credential_patched(current, patch, now_ms);
    statements::update_credential(&next, tag_of(sealer, &next))
        .query()
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(Some(next))
}

async fn delete(writer: &SqlitePool, id: &str) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM credentials WHERE access_key_id = ?")
        .bind(id)
        .execute(writer)
        .await
        .map_err(unavailable)?;
    Ok(done.rows_affected() > 0)
}

async fn add_activity(writer: &SqlitePool, activity: &[CredentialActivity], max_fingerprints: u32) -> StoreResult<()> {
    let mut tx = begin_write(writer).await.map_err(unavailable)?;
    for a in activity {
        add_one(&mut tx, a, max_fingerprints).await?;
    }
    tx.commit().await.map_err(unavailable)
}

async fn add_one(tx: &mut Transaction<'_, Sqlite>, a: &CredentialActivity, max_fingerprints: u32) -> StoreResult<()> {
    let updated = sqlx::query(
        "UPDATE credentials SET last_used_at_ms = ?, last_used_region = ?, last_used_service = ? \
         WHERE access_key_id = ? AND (last_used_at_ms IS NULL OR last_used_at_ms <= ?)",
    )
    .bind(a.last_used_at_ms)
    .bind(&a.region)
    .bind(&a.service)
    .bind(&a.access_key_id)
    .bind(a.last_used_at_ms)
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    let exists = updated.rows_affected() > 0
        || sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM credentials WHERE access_key_id = ?")
            .bind(&a.access_key_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(unavailable)?
            > 0;
    if !exists {
        return Ok(());
    }
    fingerprints::add(
        &CREDENTIAL_FINGERPRINTS,
        tx,
        &a.access_key_id,
        &a.fingerprints,
        max_fingerprints,
    )
    .await
}
