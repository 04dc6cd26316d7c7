//! The caller fingerprints of credentials and API keys in SQLite: one table shape per owner
//! (`credential_fingerprints` by access key id, `api_key_fingerprints` by key id), counted up
//! and pruned to each owner's most recently seen, in the caller's transaction. Fingerprint
//! rows carry no integrity tag: they decide no right (see [`crate::store::integrity`]).

use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};

use super::unavailable;
use crate::store::rows::{self, as_i64};
use crate::store::statements::FingerprintTable;
use crate::store::{FingerprintRecord, StoreResult};

/// Adds `seen` to `owner_id`'s fingerprints (counts add up, first and last seen widen)
/// and keeps its `max_fingerprints` most recently seen. The owner must exist.
pub(super) async fn add(
    fingerprints: &FingerprintTable,
    tx: &mut Transaction<'_, Sqlite>,
    owner_id: &str,
    seen: &[FingerprintRecord],
    max_fingerprints: u32,
) -> StoreResult<()> {
    let FingerprintTable { table, owner } = fingerprints;
    if seen.is_empty() {
        return Ok(());
    }
    let upsert = format!(
        "INSERT INTO {table} ({owner}, source_ip, user_agent, first_seen_ms, last_seen_ms, count) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT ({owner}, source_ip, user_agent) DO UPDATE SET \
         first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms), \
         last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), count = count + excluded.count"
    );
    for f in seen {
        sqlx::query(sqlx::AssertSqlSafe(upsert.clone()))
            .bind(owner_id)
            .bind(&f.source_ip)
            .bind(&f.user_agent)
            .bind(f.first_seen_ms)
            .bind(f.last_seen_ms)
            .bind(as_i64(f.count))
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE {owner} = ? AND rowid NOT IN \
         (SELECT rowid FROM {table} WHERE {owner} = ? ORDER BY last_seen_ms DESC, rowid DESC LIMIT ?)"
    )))
    .bind(owner_id)
    .bind(owner_id)
    .bind(i64::from(max_fingerprints))
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// `owner_id`'s fingerprints, most recently seen first.
pub(super) async fn list(
    fingerprints: &FingerprintTable,
    reader: &SqlitePool,
    owner_id: &str,
) -> StoreResult<Vec<FingerprintRecord>> {
    let FingerprintTable { table, owner } = fingerprints;
    let found = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT source_ip, user_agent, first_seen_ms, last_seen_ms, count FROM {table} \
         WHERE {owner} = ? ORDER BY last_seen_ms DESC, rowid DESC"
    )))
    .bind(owner_id)
    .fetch_all(reader)
    .await
    .map_err(unavailable)?;
    found.iter().map(rows::fingerprint).collect()
}
