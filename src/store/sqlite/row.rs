//! Reading typed values out of SQLite rows, and the encodings only this backend knows:
//! enums as their model texts, tags / groups / permissions / meta as JSON text, sealed
//! records as five columns. Nothing outside the backend sees these encodings.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::envelope::SealedRecord;
use crate::store::{StoreError, StoreResult};

/// A column of a fetched row as its Rust type. The row is already read, so a failure here
/// is a value this store did not write (wrong type, NULL where none belongs): corrupt.
pub(super) fn column<'r, T>(row: &'r SqliteRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(col).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// A text column holding one of an enum's stored texts; any other text is corrupt, never a
/// default.
pub(super) fn enum_column<T>(row: &SqliteRow, col: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let text: String = column(row, col)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{col}: unknown value `{text}`")))
}

/// As [`enum_column`], for a column where NULL means "not set".
pub(super) fn optional_enum_column<T>(
    row: &SqliteRow,
    col: &str,
    parse: fn(&str) -> Option<T>,
) -> StoreResult<Option<T>> {
    let text: Option<String> = column(row, col)?;
    text.map(|t| parse(&t).ok_or_else(|| StoreError::Corrupt(format!("{col}: unknown value `{t}`"))))
        .transpose()
}

/// A text column holding JSON (tags, groups, permissions, meta): encoded and decoded only
/// here, so the interface carries typed values.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let text: String = column(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// The JSON text of a value bound into a JSON column.
pub(super) fn json_text<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode as JSON: {e}")))
}

pub(super) fn get_u32(row: &SqliteRow, col: &str) -> StoreResult<u32> {
    let v: i64 = column(row, col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} out of range")))
}

pub(super) fn get_u64(row: &SqliteRow, col: &str) -> StoreResult<u64> {
    let v: i64 = column(row, col)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} out of range")))
}

pub(super) fn sealed_from_row(row: &SqliteRow) -> StoreResult<SealedRecord> {
    let format: i64 = column(row, "format")?;
    Ok(SealedRecord {
        format: u16::try_from(format).map_err(|_| StoreError::Corrupt("format out of range".into()))?,
        kek_id: column(row, "kek_id")?,
        wrapped_dek: column(row, "wrapped_dek")?,
        nonce: column(row, "nonce")?,
        ciphertext: column(row, "ciphertext")?,
    })
}

/// A count or credit as SQLite's signed integer (saturating: no count reaches it).
pub(super) fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
