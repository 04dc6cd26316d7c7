//! SigV4 credentials and their activity in PostgreSQL (`credentials`,
//! `credential_fingerprints`). Credential rows are tagged ([`crate::store::integrity`]);
//! activity columns and fingerprints are not (they change with every use, and decide no
//! right). The limit per principal is counted under an advisory lock on the principal, so
//! two nodes inserting for one principal at once cannot both take its last place.

use super::changes::announce;
use crate::store::Change;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};

use super::fingerprints;
use super::{LockClass, PgStore, lock, timed, unavailable};
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

impl CredentialStore for PgStore {
    fn insert_credential<'a>(
        &'a self,
        credential: &'a CredentialRecord,
        max_per_principal: u32,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(async move {
            insert(&self.pool, self.sealer()?, credential, max_per_principal).await
        }))
    }

    fn get_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            sqlx::query(select("WHERE access_key_id = $1"))
                .bind(access_key_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?
                .map(|row| checked(sealer, rows::credential(&row)?, &row))
                .transpose()
        }))
    }

    fn list_credentials<'a>(
        &'a self,
        principal: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<CredentialRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let found = sqlx::query(select(
                "WHERE ($1::text IS NULL OR principal = $1) AND access_key_id > $2 ORDER BY access_key_id LIMIT $3",
            ))
            .bind(principal)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            all_checked(sealer, &found, rows::credential)
        }))
    }

    fn update_credential<'a>(
        &'a self,
        access_key_id: &'a str,
        patch: &'a CredentialPatch,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<Option<CredentialRecord>>> {
        Box::pin(timed(async move {
            update(&self.pool, self.sealer()?, access_key_id, patch, now_ms).await
        }))
    }

    fn delete_credential<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(timed(async move {
            // Its fingerprints go with it (`ON DELETE CASCADE`).
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let done = sqlx::query("DELETE FROM credentials WHERE access_key_id = $1")
                .bind(access_key_id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            announce(&mut tx, credential_change(access_key_id)).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(true)
        }))
    }

    fn add_credential_activity<'a>(
        &'a self,
        activity: &'a [CredentialActivity],
        max_fingerprints: u32,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(async move {
            // Owners in one order, so two nodes flushing at once cannot deadlock.
            let mut sorted: Vec<&CredentialActivity> = activity.iter().collect();
            sorted.sort_by(|a, b| a.access_key_id.as_bytes().cmp(b.access_key_id.as_bytes()));
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            for a in sorted {
                add_one(&mut tx, a, max_fingerprints).await?;
            }
            tx.commit().await.map_err(unavailable)
        }))
    }

    fn list_fingerprints<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<FingerprintRecord>>> {
        Box::pin(timed(fingerprints::list(
            &CREDENTIAL_FINGERPRINTS,
            &self.pool,
            access_key_id,
        )))
    }
}

async fn insert(
    pool: &PgPool,
    sealer: &dyn RowSealer,
    c: &CredentialRecord,
    max_per_principal: u32,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    lock(&mut tx, LockClass::CredentialsOf, &c.principal).await?;
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE principal = $1")
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

/// Locks and checks the stored row, applies `patch` to it and writes it back with a new
/// revision and tag (an edited row is refused, never re-tagged).
/// What other nodes drop when a credential changes.
fn credential_change(access_key_id: &str) -> Change {
    Change::Credential {
        access_key_id: access_key_id.to_owned(),
    }
}

async fn update(
    pool: &PgPool,
    sealer: &dyn RowSealer,
    id: &str,
    patch: &CredentialPatch,
    now_ms: i64,
) -> StoreResult<Option<CredentialRecord>> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let row = sqlx::query(select("WHERE access_key_id = $1 FOR UPDATE"))
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
    announce(&mut tx, credential_change(id)).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(Some(next))
}

/// Last use (with its region and service) moves forward only; the statement locks the
/// credential's row whether or not it moves, and says whether the credential exists
/// (activity of a deleted one is dropped).
async fn add_one(tx: &mut Transaction<'_, Postgres>, a: &CredentialActivity, max_fingerprints: u32) -> StoreResult<()> {
    let exists: Option<i32> = sqlx::query_scalar(
        "UPDATE credentials SET \
           last_used_region = CASE WHEN last_used_at_ms IS NULL OR last_used_at_ms <= $1 THEN $2 ELSE last_used_region END, \
           last_used_service = CASE WHEN last_used_at_ms IS NULL OR last_used_at_ms <= $1 THEN $3 ELSE last_used_service END, \
           last_used_at_ms = GREATEST(COALESCE(last_used_at_ms, $1), $1) \
         WHERE access_key_id = $4 RETURNING 1",
    )
    .bind(a.last_used_at_ms)
    .bind(&a.region)
    .bind(&a.service)
    .bind(&a.access_key_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(unavailable)?;
    if exists.is_none() {
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
