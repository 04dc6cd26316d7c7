//! Sealed records by KEK, and rewraps (`store::kek`): the shared statements, run here.

use super::{SqliteStore, unavailable};
use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::store::StoreResult;
use crate::store::kek::{self, KekStore, Lead, LeadOf, SealedPlace, SealedRow};

impl KekStore for SqliteStore {
    fn announce_kek_change(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async { Ok(()) })
    }

    /// One process holds a SQLite store (the data dir lock), so it always leads.
    fn try_lead(&self, _what: LeadOf) -> BoxFuture<'_, StoreResult<Option<Lead>>> {
        Box::pin(async { Ok(Some(Box::new(()) as Lead)) })
    }

    fn kek_usage(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(async move {
            let rows = sqlx::query(kek::KEK_USAGE)
                .fetch_all(&self.reader)
                .await
                .map_err(unavailable)?;
            rows.iter().map(kek::usage_row).collect()
        })
    }

    fn sealed_not_under<'a>(&'a self, kek_id: &'a str, limit: u32) -> BoxFuture<'a, StoreResult<Vec<SealedRow>>> {
        Box::pin(async move {
            let rows = sqlx::query(kek::SEALED_NOT_UNDER)
                .bind(kek_id)
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await
                .map_err(unavailable)?;
            rows.iter().map(kek::sealed_row).collect()
        })
    }

    fn replace_wrap<'a>(
        &'a self,
        place: &'a SealedPlace,
        old: &'a SealedRecord,
        new_kek_id: &'a str,
        new_wrapped: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
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
            let done = query.execute(&self.writer).await.map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        })
    }
}
