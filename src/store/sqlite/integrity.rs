//! Row integrity in SQLite: the `mac` column of the protected tables, checked on every read
//! and written with every change (the tables' files call these helpers; the migration that
//! adds the column is [`super::sealing`]).

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::store::{ApiKeyHashRow, Protected, RowSealer, StoreError, StoreResult};

impl SqliteStore {
    /// The sealer set at startup; protected rows neither read nor write without it.
    pub(super) fn sealer(&self) -> StoreResult<&dyn RowSealer> {
        self.sealer
            .get()
            .map(|s| s.as_ref())
            .ok_or_else(|| StoreError::Unavailable("row integrity is not enabled on this store".into()))
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
