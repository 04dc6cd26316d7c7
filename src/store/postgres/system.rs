//! System secrets and values in PostgreSQL (`system_secrets`, `system_values`), and the
//! backend's housekeeping.
//!
//! Row integrity: the tag columns exist from the first migration and no row is ever
//! written without its tag, so [`SystemStore::enable_row_integrity`] only installs the
//! sealer — there are no untagged rows of an earlier version to tag (SQLite's migration 10).
//! A row without a valid tag is refused like any edited row.
//!
//! Checkpoint: PostgreSQL keeps its own write-ahead log, which the server recycles and
//! which only its administrator can force (`CHECKPOINT` needs superuser or
//! `pg_checkpoint`). The nearest thing this store can do is `VACUUM` the tables that hold
//! sealed records and keyed hashes, so the dead row versions a destruction left behind are
//! pruned from their pages rather than waiting for autovacuum. Old WAL segments and
//! archives, and page free space, are the operator's to manage (docs/ARCHITECTURE.md); a
//! destroyed key's wrapped DEK is useless without the KEK in the HSM in any case.

use std::sync::Arc;

use super::changes::{self, announce};
use super::{PgStore, timed, unavailable};
use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::store::{Change, ChangeReceiver, RowSealer, StoreResult, SystemStore, rows, statements};

impl SystemStore for PgStore {
    fn pools(&self) -> Vec<crate::store::PoolState> {
        vec![crate::store::PoolState {
            name: "postgres",
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }]
    }

    fn enable_row_integrity(&self, sealer: Arc<dyn RowSealer>) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(timed(async move {
            // Set once: a second call keeps the first sealer, as in SQLite.
            self.sealer.get_or_init(|| sealer);
            Ok(())
        }))
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(timed(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await.map_err(unavailable)?;
            Ok(())
        }))
    }

    fn get_system_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<SealedRecord>>> {
        Box::pin(timed(async move {
            let row = sqlx::query(statements::SELECT_SYSTEM_SECRET)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            row.as_ref().map(rows::sealed).transpose()
        }))
    }

    /// `ON CONFLICT DO NOTHING` waits for a node inserting the same name at once; the
    /// `SELECT` after it (a new snapshot) then reads the winner's record.
    fn insert_system_secret<'a>(
        &'a self,
        name: &'a str,
        sealed: &'a SealedRecord,
        now_ms: i64,
    ) -> BoxFuture<'a, StoreResult<SealedRecord>> {
        Box::pin(timed(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        }))
    }

    fn get_value<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(timed(async move {
            sqlx::query_scalar("SELECT value FROM system_values WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)
        }))
    }

    fn put_value<'a>(&'a self, name: &'a str, value: &'a [u8], now_ms: i64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            statements::put_value(name, value, now_ms)
                .query()
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            // The root token's hash is a system value: other nodes re-read it.
            announce(&mut tx, Change::RootToken).await?;
            tx.commit().await.map_err(unavailable)
        }))
    }

    fn checkpoint(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.vacuum())
    }

    /// Vacuums (as `checkpoint`, like SQLite's final WAL checkpoint) and closes the pool.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.vacuum().await {
                tracing::warn!(error = %e, "final vacuum failed");
            }
            self.pool.close().await;
        })
    }

    fn watch_changes(&self) -> Option<ChangeReceiver> {
        Some(changes::watch(
            &self.options,
            &self.instance,
            self.pool.clone(),
            Arc::clone(&self.down),
        ))
    }

    fn available(&self) -> bool {
        !self.down.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PgStore {
    async fn vacuum(&self) -> StoreResult<()> {
        // Outside a transaction (VACUUM refuses one): the simple protocol, one statement.
        sqlx::raw_sql("VACUUM keys, key_versions, credentials, api_keys, api_key_hashes, caller_tokens")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
