//! Sealed records by KEK, and rewraps (`store::kek`): the shared statements, run here.

use super::changes::announce;
use super::{PgStore, timed, unavailable};
use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::store::kek::{self, KekStore, Lead, LeadOf, SealedPlace, SealedRow};
use crate::store::{Change, StoreResult};

/// The advisory lock keys of the leads (fixed numbers no other lock uses).
const REWRAP_LOCK: i64 = 0x7369_6776_6b65_6b31; // "sigvkek1"
const ROTATION_LOCK: i64 = 0x7369_6776_6b65_6b32; // "sigvkek2"

/// A connection holding the lead's session lock. Dropped, the connection is closed (not
/// returned to the pool with the lock still held), which releases the lock.
struct PgLead(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl Drop for PgLead {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

impl KekStore for PgStore {
    fn announce_kek_change(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(timed(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            announce(&mut tx, Change::Kek).await?;
            tx.commit().await.map_err(unavailable)
        }))
    }

    fn try_lead(&self, what: LeadOf) -> BoxFuture<'_, StoreResult<Option<Lead>>> {
        let key = match what {
            LeadOf::Rewrap => REWRAP_LOCK,
            LeadOf::Rotation => ROTATION_LOCK,
        };
        Box::pin(timed(async move {
            let mut conn = self.pool.acquire().await.map_err(unavailable)?;
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .map_err(unavailable)?;
            if got {
                Ok(Some(Box::new(PgLead(Some(conn))) as Lead))
            } else {
                Ok(None)
            }
        }))
    }

    fn kek_usage(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(timed(async move {
            let rows = sqlx::query(kek::KEK_USAGE)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            rows.iter().map(kek::usage_row).collect()
        }))
    }

    fn sealed_not_under<'a>(&'a self, kek_id: &'a str, limit: u32) -> BoxFuture<'a, StoreResult<Vec<SealedRow>>> {
        Box::pin(timed(async move {
            let rows = sqlx::query(kek::SEALED_NOT_UNDER)
                .bind(kek_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            rows.iter().map(kek::sealed_row).collect()
        }))
    }

    fn replace_wrap<'a>(
        &'a self,
        place: &'a SealedPlace,
        old: &'a SealedRecord,
        new_kek_id: &'a str,
        new_wrapped: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(timed(async move {
            let query = sqlx::query(kek::replace_wrap_statement(place))
                .bind(new_kek_id)
                .bind(new_wrapped)
                .bind(&old.kek_id)
                .bind(&old.wrapped_dek);
            let query = match place {
                SealedPlace::KeyVersion { key_id, version, .. } => query.bind(key_id).bind(i64::from(*version)),
                SealedPlace::Credential { access_key_id, .. } => query.bind(access_key_id),
                SealedPlace::SystemSecret { name } => query.bind(name),
            };
            let done = query.execute(&self.pool).await.map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        }))
    }
}
