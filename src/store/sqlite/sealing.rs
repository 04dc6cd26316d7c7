//! The row-integrity migration: adds the `mac` (and `revision`) columns and tags every
//! protected row already stored, in one transaction, when the vault hands the store its
//! sealer. Tagging without a check happens only here, and only in the start that applies the
//! migration.

use std::sync::Arc;

use sqlx::sqlite::SqliteRow;

use super::{ROW_INTEGRITY_MIGRATION, SqliteStore, api_keys, apply_migration, begin_write, credentials, keys, tokens};
use crate::store::integrity::tag_of;
use crate::store::{Protected, RowSealer, StoreError, StoreResult, rows};

impl SqliteStore {
    pub(super) async fn enable(&self, sealer: Arc<dyn RowSealer>) -> StoreResult<()> {
        let sealer = Arc::clone(self.sealer.get_or_init(|| sealer));
        let (version, sql) = ROW_INTEGRITY_MIGRATION;
        let mig = |e: sqlx::Error| StoreError::Migration {
            version,
            source: Box::new(e),
        };
        let mut tx = begin_write(&self.writer).await.map_err(mig)?;
        if !apply_migration(&mut tx, version, sql).await.map_err(mig)? {
            return Ok(());
        }
        tag_existing_rows(&mut tx, sealer.as_ref()).await?;
        tx.commit().await.map_err(mig)
    }
}

/// Tags every protected row, inside the migration's transaction.
async fn tag_existing_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    sealer: &dyn RowSealer,
) -> StoreResult<()> {
    tag_table(tx, sealer, tokens::select_all(), rows::token, "caller_tokens", "id").await?;
    tag_table(tx, sealer, keys::select_all(), rows::key, "keys", "id").await?;
    tag_table(
        tx,
        sealer,
        credentials::select_all(),
        rows::credential,
        "credentials",
        "access_key_id",
    )
    .await?;
    tag_table(tx, sealer, api_keys::select_all(), rows::api_key, "api_keys", "id").await?;
    let hashes = sqlx::AssertSqlSafe("SELECT hash, key_id, valid_until_ms FROM api_key_hashes".to_owned());
    // A hash row's id is the hex of its hash.
    tag_table(
        tx,
        sealer,
        hashes,
        rows::api_key_hash,
        "api_key_hashes",
        "lower(hex(hash))",
    )
    .await
}

/// Tags each row `select` reads from `table`, found again by `id_sql` = its row id.
async fn tag_table<R: Protected>(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    sealer: &dyn RowSealer,
    select: sqlx::AssertSqlSafe<String>,
    decode: fn(&SqliteRow) -> StoreResult<R>,
    table: &'static str,
    id_sql: &'static str,
) -> StoreResult<()> {
    let found = sqlx::query(select)
        .fetch_all(&mut **tx)
        .await
        .map_err(super::unavailable)?;
    let update = format!("UPDATE {table} SET mac = ? WHERE {id_sql} = ?");
    for row in &found {
        let record = decode(row)?;
        sqlx::query(sqlx::AssertSqlSafe(update.as_str()))
            .bind(tag_of(sealer, &record))
            .bind(record.row_id())
            .execute(&mut **tx)
            .await
            .map_err(super::unavailable)?;
    }
    Ok(())
}
