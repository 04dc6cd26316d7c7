//! Row integrity in SQLite: the `mac` column of the protected tables, checked on every read
//! and written with every change, and the migration that adds it (tagging the rows already
//! there, in the same transaction).

use std::sync::Arc;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{ROW_INTEGRITY_MIGRATION, SqliteStore, api_keys, apply_migration, begin_write, credentials, keys, tokens};
use crate::store::{ApiKeyHashRow, Protected, RowSealer, StoreError, StoreResult};

impl SqliteStore {
    /// The sealer set at startup; protected rows neither read nor write without it.
    pub(super) fn sealer(&self) -> StoreResult<&dyn RowSealer> {
        self.sealer
            .get()
            .map(|s| s.as_ref())
            .ok_or_else(|| StoreError::Unavailable("row integrity is not enabled on this store".into()))
    }

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

/// The stored tag of a fetched row (`None`: written by no sealer).
fn stored_tag(row: &SqliteRow) -> StoreResult<Option<Vec<u8>>> {
    row.try_get("mac").map_err(|e| StoreError::Corrupt(format!("mac: {e}")))
}

/// `record`, decoded from `row`, if the row's tag checks.
pub(super) fn checked<R: Protected>(sealer: &dyn RowSealer, record: R, row: &SqliteRow) -> StoreResult<R> {
    let tag = stored_tag(row)?;
    record.verified(sealer, tag.as_deref())
}

/// Decodes and checks every row, failing on the first that does not check (an API listing:
/// the caller learns the listing is not trustworthy).
pub(super) fn all_checked<R: Protected>(
    sealer: &dyn RowSealer,
    rows: &[SqliteRow],
    decode: fn(&SqliteRow) -> StoreResult<R>,
) -> StoreResult<Vec<R>> {
    rows.iter().map(|row| checked(sealer, decode(row)?, row)).collect()
}

/// Decodes and checks every row, leaving out those that do not check (a background scan:
/// one edited row must not stop the deletions and rotations of every other key; the sealer
/// has reported it).
pub(super) fn passing<R: Protected>(
    sealer: &dyn RowSealer,
    rows: &[SqliteRow],
    decode: fn(&SqliteRow) -> StoreResult<R>,
) -> StoreResult<Vec<R>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match checked(sealer, decode(row)?, row) {
            Ok(record) => out.push(record),
            Err(StoreError::Integrity { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The tag to store with `record`.
pub(super) fn tag_of<R: Protected>(sealer: &dyn RowSealer, record: &R) -> Vec<u8> {
    sealer.tag(&record.canonical())
}

pub(super) fn api_key_hash_from_row(row: &SqliteRow) -> StoreResult<ApiKeyHashRow> {
    let get = |col: &str| StoreError::Corrupt(format!("api_key_hashes.{col}"));
    let hash: Vec<u8> = row.try_get("hash").map_err(|_| get("hash"))?;
    let key_id: String = row.try_get("key_id").map_err(|_| get("key_id"))?;
    let valid_until_ms: Option<i64> = row.try_get("valid_until_ms").map_err(|_| get("valid_until_ms"))?;
    Ok(ApiKeyHashRow::new(&hash, &key_id, valid_until_ms))
}

/// Tags every protected row, inside the migration's transaction.
async fn tag_existing_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    sealer: &dyn RowSealer,
) -> StoreResult<()> {
    tag_table(
        tx,
        sealer,
        tokens::select_all(),
        tokens::token_from_row,
        "caller_tokens",
        "id",
    )
    .await?;
    tag_table(tx, sealer, keys::select_all(), keys::key_from_row, "keys", "id").await?;
    tag_table(
        tx,
        sealer,
        credentials::select_all(),
        credentials::from_row,
        "credentials",
        "access_key_id",
    )
    .await?;
    tag_table(tx, sealer, api_keys::select_all(), api_keys::from_row, "api_keys", "id").await?;
    let hashes = sqlx::AssertSqlSafe("SELECT hash, key_id, valid_until_ms FROM api_key_hashes".to_owned());
    // A hash row's id is the hex of its hash.
    tag_table(
        tx,
        sealer,
        hashes,
        api_key_hash_from_row,
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
    let rows = sqlx::query(select)
        .fetch_all(&mut **tx)
        .await
        .map_err(super::unavailable)?;
    let update = format!("UPDATE {table} SET mac = ? WHERE {id_sql} = ?");
    for row in &rows {
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
