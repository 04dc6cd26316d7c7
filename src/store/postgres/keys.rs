//! Signing keys and their versions in PostgreSQL (`keys`, `key_versions`); key rows are
//! tagged ([`crate::store::integrity`]). An update locks the key row (`FOR UPDATE`) and
//! checks its revision there, so of two nodes updating the same key one wins and the other
//! gets `Conflict`.

use super::changes::announce;
use crate::store::Change;
use sqlx::{Postgres, Transaction};

use super::{PgStore, timed, unavailable};
use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::store::integrity::{all_checked, checked, passed, passing, tag_of};
use crate::store::rows::{self, as_i64, column};
use crate::store::statements::{self, KEY_COLUMNS};
use crate::store::{KeyRecord, KeyStore, NewVersion, RowSealer, StoreError, StoreResult, UsageDelta, VersionInfo};

/// `SELECT <KEY_COLUMNS> FROM keys <tail>`, built once per call site from static parts.
fn key_query(tail: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM keys {tail}"))
}

impl KeyStore for PgStore {
    fn create_key<'a>(&'a self, key: &'a KeyRecord, first: &'a NewVersion) -> BoxFuture<'a, StoreResult<()>> {
        self.create_key_with_versions(key, std::slice::from_ref(first))
    }

    fn create_key_with_versions<'a>(
        &'a self,
        key: &'a KeyRecord,
        versions: &'a [NewVersion],
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(async move {
            let tag = tag_of(self.sealer()?, key);
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            statements::insert_key(key, tag)?
                .query()
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            for version in versions {
                insert_version(&mut tx, &key.id, version).await?;
            }
            announce(&mut tx, key_change(key)).await?;
            tx.commit().await.map_err(unavailable)
        }))
    }

    fn get_key<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<KeyRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let row = sqlx::query(key_query("WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            row.map(|row| checked(sealer, rows::key(&row)?, &row)).transpose()
        }))
    }

    fn list_keys<'a>(&'a self, after: Option<&'a str>, limit: u32) -> BoxFuture<'a, StoreResult<Vec<KeyRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let found = sqlx::query(key_query("WHERE name > $1 ORDER BY name LIMIT $2"))
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            all_checked(sealer, &found, rows::key)
        }))
    }

    fn list_versions<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<VersionInfo>>> {
        Box::pin(timed(async move {
            let found = sqlx::query(
                "SELECT version, created_at_ms, sign_count, verify_count, last_used_at_ms \
                 FROM key_versions WHERE key_id = $1 ORDER BY version",
            )
            .bind(key_id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            found.iter().map(rows::version_info).collect()
        }))
    }

    fn get_sealed<'a>(&'a self, key_id: &'a str, version: u32) -> BoxFuture<'a, StoreResult<Option<SealedRecord>>> {
        Box::pin(timed(async move {
            let row = sqlx::query(statements::SELECT_SEALED_VERSION)
                .bind(key_id)
                .bind(i64::from(version))
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            row.as_ref().map(rows::sealed).transpose()
        }))
    }

    fn add_version<'a>(&'a self, key: &'a KeyRecord, new: &'a NewVersion) -> BoxFuture<'a, StoreResult<KeyRecord>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let current = current_row(&mut tx, sealer, key).await?;
            if current.latest_version != key.latest_version {
                return Err(StoreError::Conflict);
            }
            let next = rows::with_version(current, new);
            statements::update_key_version(&next, tag_of(sealer, &next))
                .query()
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            insert_version(&mut tx, &key.id, new).await?;
            announce(&mut tx, key_change(&next)).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(next)
        }))
    }

    fn update_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, StoreResult<KeyRecord>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let current = current_row(&mut tx, sealer, key).await?;
            // Only the mutable settings come from the caller's record; the rest stays as
            // stored (and checked).
            let next = rows::with_settings(current, key);
            statements::update_key_settings(&next, tag_of(sealer, &next))
                .query()
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            announce(&mut tx, key_change(&next)).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(next)
        }))
    }

    fn destroy_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(timed(async move {
            // The row goes only if it is still at the revision read, and its versions go
            // with it (`ON DELETE CASCADE`, in the same statement).
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let deleted = sqlx::query("DELETE FROM keys WHERE id = $1 AND revision = $2")
                .bind(&key.id)
                .bind(key.revision)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            if deleted.rows_affected() != 1 {
                return Ok(false);
            }
            announce(&mut tx, key_change(key)).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(true)
        }))
    }

    fn keys_due_for_deletion(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let found = sqlx::query(key_query(
                "WHERE state = 'pending_deletion' AND deletion_due_ms IS NOT NULL AND deletion_due_ms <= $1",
            ))
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            passing(sealer, &found, rows::key)
        }))
    }

    fn auto_rotating_keys(&self) -> BoxFuture<'_, StoreResult<Vec<(KeyRecord, i64)>>> {
        Box::pin(timed(async move {
            let sealer = self.sealer()?;
            let found = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS}, (SELECT v.created_at_ms FROM key_versions v \
                   WHERE v.key_id = keys.id AND v.version = keys.latest_version) AS latest_created_at_ms \
                 FROM keys WHERE state = 'enabled' AND auto_rotate_period_s IS NOT NULL"
            )))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            let mut due = Vec::with_capacity(found.len());
            for row in &found {
                // As in `passing`: an edited row is left out (and reported), the rest rotate.
                if let Some(key) = passed(checked(sealer, rows::key(row)?, row))? {
                    let at: Option<i64> = column(row, "latest_created_at_ms")?;
                    due.push((key, at.unwrap_or(0)));
                }
            }
            Ok(due)
        }))
    }

    fn add_usage<'a>(&'a self, deltas: &'a [UsageDelta]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(async move {
            // In one order, so two nodes flushing usage of the same versions cannot deadlock.
            let mut sorted: Vec<&UsageDelta> = deltas.iter().collect();
            sorted.sort_by(|a, b| (a.key_id.as_bytes(), a.version).cmp(&(b.key_id.as_bytes(), b.version)));
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            for d in sorted {
                sqlx::query(
                    "UPDATE key_versions SET sign_count = sign_count + $1, verify_count = verify_count + $2, \
                     last_used_at_ms = GREATEST(COALESCE(last_used_at_ms, 0), $3) WHERE key_id = $4 AND version = $5",
                )
                .bind(as_i64(d.signs))
                .bind(as_i64(d.verifies))
                .bind(d.last_used_at_ms)
                .bind(&d.key_id)
                .bind(i64::from(d.version))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        }))
    }
}

/// The stored row of `key`, locked for this transaction and checked, if it is still at the
/// revision `key` was read at (`Conflict` otherwise, or when it is gone). A write starts
/// from this row, never from an unchecked one: an edited row is refused, not re-tagged.
/// What other nodes drop when `key` changes.
fn key_change(key: &KeyRecord) -> Change {
    Change::Key {
        id: key.id.clone(),
        name: key.name.clone(),
    }
}

async fn current_row(
    tx: &mut Transaction<'_, Postgres>,
    sealer: &dyn RowSealer,
    key: &KeyRecord,
) -> StoreResult<KeyRecord> {
    let row = sqlx::query(key_query("WHERE id = $1 FOR UPDATE"))
        .bind(&key.id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(unavailable)?
        .ok_or(StoreError::Conflict)?;
    let current = checked(sealer, rows::key(&row)?, &row)?;
    if current.revision != key.revision {
        return Err(StoreError::Conflict);
    }
    Ok(current)
}

async fn insert_version(tx: &mut Transaction<'_, Postgres>, key_id: &str, v: &NewVersion) -> StoreResult<()> {
    statements::insert_version(key_id, v)
        .query()
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}
