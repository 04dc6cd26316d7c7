//! The caller fingerprints of credentials and API keys in PostgreSQL: one table shape per
//! owner (`credential_fingerprints` by access key id, `api_key_fingerprints` by key id),
//! counted up and pruned to each owner's most recently seen, in the caller's transaction.
//! The caller has locked the owner's row first, so two nodes adding fingerprints of one
//! owner take turns. Fingerprints carry no integrity tag: they decide no right.

use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};

use super::unavailable;
use crate::store::rows::{self, as_i64};
use crate::store::statements::FingerprintTable;
use crate::store::{FingerprintRecord, StoreResult};

/// Adds `seen` to `owner_id`'s fingerprints (counts add up, first and last seen widen)
/// and keeps its `max_fingerprints` most recently seen (ties: the latest stored).
pub(super) async fn add(
    fingerprints: &FingerprintTable,
    tx: &mut Transaction<'_, Postgres>,
    owner_id: &str,
    seen: &[FingerprintRecord],
    max_fingerprints: u32,
) -> StoreResult<()> {
    let FingerprintTable { table, owner } = fingerprints;
    if seen.is_empty() {
        return Ok(());
    }
    let upsert = format!(
        "INSERT INTO {table} AS f ({owner}, source_ip, user_agent, first_seen_ms, last_seen_ms, count) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT ({owner}, source_ip, user_agent) DO UPDATE SET \
         first_seen_ms = LEAST(f.first_seen_ms, excluded.first_seen_ms), \
         last_seen_ms = GREATEST(f.last_seen_ms, excluded.last_seen_ms), count = f.count + excluded.count"
    );
    for f in seen {
        sqlx::query(sqlx::AssertSqlSafe(upsert.as_str()))
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
        "DELETE FROM {table} WHERE {owner} = $1 AND seq NOT IN \
         (SELECT seq FROM {table} WHERE {owner} = $1 ORDER BY last_seen_ms DESC, seq DESC LIMIT $2)"
    )))
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
    pool: &PgPool,
    owner_id: &str,
) -> StoreResult<Vec<FingerprintRecord>> {
    let FingerprintTable { table, owner } = fingerprints;
    let found = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT source_ip, user_agent, first_seen_ms, last_seen_ms, count FROM {table} \
         WHERE {owner} = $1 ORDER BY last_seen_ms DESC, seq DESC"
    )))
    .bind(owner_id)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    found.iter().map(rows::fingerprint).collect()
}
