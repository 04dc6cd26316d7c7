//! System secrets and values in SQLite (`system_secrets`, `system_values`), and the
//! backend's housekeeping: ping, WAL checkpoint, close.

use std::sync::Arc;

use super::{SqliteStore, begin_write, unavailable};
use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::store::{RowSealer, StoreResult, SystemStore, rows, statements};

impl SystemStore for SqliteStore {
    fn pools(&self) -> Vec<crate::store::PoolState> {
        [
            ("writer", &self.writer),
            ("reader", &self.reader),
            ("audit_writer", &self.audit_writer),
        ]
        .into_iter()
        .map(|(name, pool)| crate::store::PoolState {
            name,
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        })
        .collect()
    }

    fn enable_row_integrity(&self, sealer: Arc<dyn RowSealer>) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.enable(sealer))
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.reader)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn get_system_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<SealedRecord>>> {
        Box::pin(async move {
            let row = sqlx::query(statements::SELECT_SYSTEM_SECRET)
                .bind(name)
                .fetch_optional(&self.reader)
                .await
                .map_err(unavailable)?;
            row.as_ref().map(rows::sealed).transpose()
        })
    }

    fn insert_system_secret<'a>(
        &'a self,
        name: &'a str,
        sealed: &'a SealedRecord,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<SealedRecord>> {
        Box::pin(async move {
            let mut tx = begin_write(&self.writer).await.map_err(unavailable)?;
            statements::insert_system_secret(name, sealed, now_ms)
                .query()
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            let row = sqlx::query(statements::SELECT_SYSTEM_SECRET)
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
            let stored = rows::sealed(&row)?;
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

    fn put_value<'a>(&'a self, name: &'a str, value: &'a [u8], now_ms: i64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            statements::put_value(name, value, now_ms)
                .query()
                .execute(&self.writer)
                .await
                .map_err(unavailable)?;
            Ok(())
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
}
