//! The audit events in SQLite (`audit_batches`): rows of up to a few hundred consecutive
//! events of one node, held as the event file's lines, with the range of their sequence
//! numbers and times. Written through the store's own audit connection (see
//! [`SqliteStore`]'s `audit_writer`).
//!
//! A row rather than a row per event: the indexer hands over the bytes the writer already
//! wrote, and SQLite stores one record per few hundred events instead of encoding, binding
//! and inserting fifteen columns for each — which was most of the audit's cost. Reads parse
//! the lines back; queries skip rows by their time range, and rows that cannot hold a
//! filtered value by a byte search for it, before parsing.

use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, begin_write, unavailable};
use crate::BoxFuture;
use crate::model::audit::AuditEvent;
use crate::store::audit_rows::{self, AuditPages, ROW_PAGE, RowParts, kept_through, last_event};
use crate::store::rows::as_i64 as int;
use crate::store::rows::column;
use crate::store::statements;
use crate::store::{AuditBatch, AuditFilter, AuditStore, StoreError, StoreResult, StoredEvent};

/// Events moved per transaction from the table of earlier versions (one row per event).
const LEGACY_MOVE: i64 = 4096;

/// Inserts the batch's rows; the last one marks an append's end when `ends_append`.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    batch: &AuditBatch,
    ends_append: bool,
) -> StoreResult<()> {
    let count = batch.rows().count();
    for (i, (row, lines)) in batch.rows().enumerate() {
        statements::insert_audit_row(batch.node(), row, lines, ends_append && i + 1 == count)
            .query()
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// A fetched row's parts.
fn row_parts(row: &SqliteRow) -> StoreResult<RowParts> {
    Ok((column(row, "node")?, column(row, "first_seq")?, column(row, "lines")?))
}

impl AuditPages for SqliteStore {
    fn rows_page<'a>(
        &'a self,
        after: (&'a str, u64),
        cursor: (&'a str, i64),
        since: Option<&'a str>,
        until: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Vec<RowParts>>> {
        Box::pin(async move {
            sqlx::query(
                "SELECT node, first_seq, lines FROM audit_batches \
                 WHERE (node > ?1 OR (node = ?1 AND last_seq > ?2)) AND (node > ?3 OR (node = ?3 AND first_seq > ?4)) \
                 AND (?5 IS NULL OR time_max >= ?5) AND (?6 IS NULL OR time_min < ?6) \
                 ORDER BY node, first_seq LIMIT ?7",
            )
            .bind(after.0)
            .bind(int(after.1))
            .bind(cursor.0)
            .bind(cursor.1)
            .bind(since)
            .bind(until)
            .bind(ROW_PAGE)
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?
            .iter()
            .map(row_parts)
            .collect()
        })
    }

    fn node_page<'a>(&'a self, node: &'a str, from_seq: u64, cursor: i64) -> BoxFuture<'a, StoreResult<Vec<RowParts>>> {
        Box::pin(async move {
            sqlx::query(
                "SELECT node, first_seq, lines FROM audit_batches WHERE node = ?1 AND first_seq >= COALESCE(\
                   (SELECT max(first_seq) FROM audit_batches WHERE node = ?1 AND first_seq <= ?2), first_seq) \
                 AND first_seq > ?3 ORDER BY first_seq LIMIT ?4",
            )
            .bind(node)
            .bind(int(from_seq))
            .bind(cursor)
            .bind(ROW_PAGE)
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?
            .iter()
            .map(row_parts)
            .collect()
        })
    }
}

impl AuditStore for SqliteStore {
    fn append_audit<'a>(&'a self, batch: &'a AuditBatch) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let Some((first, last)) = batch.seq_range() else {
                return Ok(());
            };
            let mut tx = begin_write(&self.audit_writer).await.map_err(unavailable)?;
            // Rows never overlap, so the one starting last at or before the batch's end is
            // the only one that can hold one of its sequence numbers.
            let before: Option<i64> = sqlx::query_scalar(
                "SELECT last_seq FROM audit_batches WHERE node = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1",
            )
            .bind(batch.node())
            .bind(int(last))
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            if before.is_some_and(|end| end >= int(first)) {
                return Err(StoreError::AlreadyExists);
            }
            insert_rows(&mut tx, batch, true).await?;
            tx.commit().await.map_err(unavailable)
        })
    }

    fn audit_batch_ends<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<Vec<u64>>> {
        Box::pin(async move {
            let ends: Vec<i64> = sqlx::query_scalar(
                "SELECT last_seq FROM audit_batches WHERE node = ? AND last_seq > ? AND ends_append <> 0 \
                 ORDER BY first_seq",
            )
            .bind(node)
            .bind(int(after_seq))
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
            ends.into_iter()
                .map(|seq| u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("audit seq {seq}"))))
                .collect()
        })
    }

    fn truncate_audit<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut tx = begin_write(&self.audit_writer).await.map_err(unavailable)?;
            // A row holding both kept and removed events keeps its first lines.
            let split = sqlx::query(
                "SELECT first_seq, lines FROM audit_batches WHERE node = ? AND first_seq <= ? AND last_seq > ?",
            )
            .bind(node)
            .bind(int(after_seq))
            .bind(int(after_seq))
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            if let Some(row) = split {
                let first_seq: i64 = column(&row, "first_seq")?;
                let blob: Vec<u8> = column(&row, "lines")?;
                let kept = kept_through(&blob, after_seq)?;
                // (A row whose lines all lie past the cut — edited behind the store's back
                // — goes whole: a row never holds no line.)
                let cut = if kept.is_empty() {
                    sqlx::query("DELETE FROM audit_batches WHERE node = ? AND first_seq = ?")
                        .bind(node)
                        .bind(first_seq)
                } else {
                    sqlx::query(
                        "UPDATE audit_batches SET last_seq = ?, ends_append = 0, lines = ? WHERE node = ? AND first_seq = ?",
                    )
                    .bind(int(after_seq))
                    .bind(kept)
                    .bind(node)
                    .bind(first_seq)
                };
                cut.execute(&mut *tx).await.map_err(unavailable)?;
            }
            sqlx::query("DELETE FROM audit_batches WHERE node = ? AND first_seq > ?")
                .bind(node)
                .bind(int(after_seq))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)
        })
    }

    fn audit_range<'a>(
        &'a self,
        node: &'a str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(audit_rows::range(self, node, after_seq, limit))
    }

    fn audit_head<'a>(&'a self, node: &'a str) -> BoxFuture<'a, StoreResult<Option<StoredEvent>>> {
        Box::pin(async move {
            let blob: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT lines FROM audit_batches WHERE node = ? ORDER BY first_seq DESC LIMIT 1")
                    .bind(node)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(unavailable)?;
            blob.as_deref().map(last_event).transpose()
        })
    }

    fn audit_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT DISTINCT node FROM audit_batches ORDER BY node")
                .fetch_all(&self.reader)
                .await
                .map_err(unavailable)
        })
    }

    fn query_audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
        after: Option<(&'a str, u64)>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(audit_rows::query(self, filter, after, limit))
    }

    fn count_audit<'a>(&'a self, filter: &'a AuditFilter) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(audit_rows::count(self, filter))
    }

    fn audit_counts_by_principal(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(audit_rows::counts_by_principal(self))
    }
}

/// Moves the events of an earlier version's table (`audit_events`, one row per event with
/// its fields as columns) into `audit_batches`, a few thousand per transaction (a crash in
/// between leaves every event in exactly one of the two tables), keeping which event ended
/// each append; then drops that table. Runs at every open; does nothing once it is gone.
pub(super) async fn move_legacy_events(pool: &sqlx::SqlitePool) -> StoreResult<()> {
    let legacy: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'")
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?;
    if legacy.is_none() {
        return Ok(());
    }
    loop {
        let mut tx = begin_write(pool).await.map_err(unavailable)?;
        let rows = sqlx::query(
            "SELECT node, seq, time, request_id, principal, action, resource, key_version, decision, policy, \
             outcome, source_ip, user_agent, secret_hmac, mac, batch_end FROM audit_events ORDER BY node, seq LIMIT ?",
        )
        .bind(LEGACY_MOVE)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        if rows.is_empty() {
            sqlx::query("DROP TABLE audit_events")
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            return tx.commit().await.map_err(unavailable);
        }
        // Cut where an append ended (`batch_end`) and where the node changes; a batch this
        // transaction does not finish goes on in the next one's first events.
        let mut batch: Option<AuditBatch> = None;
        for row in &rows {
            let (event, mac) = legacy_event(row)?;
            let ends: i64 = column(row, "batch_end")?;
            let mut current = match batch.take() {
                Some(b) if b.node() == event.node => b,
                Some(other) => {
                    insert_rows(&mut tx, &other, false).await?;
                    AuditBatch::new(&event.node)
                }
                None => AuditBatch::new(&event.node),
            };
            current.push_event(&event, &mac);
            if ends != 0 {
                insert_rows(&mut tx, &current, true).await?;
            } else {
                batch = Some(current);
            }
        }
        if let Some(rest) = batch {
            insert_rows(&mut tx, &rest, false).await?;
        }
        sqlx::query(
            "DELETE FROM audit_events WHERE (node, seq) IN \
             (SELECT node, seq FROM audit_events ORDER BY node, seq LIMIT ?)",
        )
        .bind(LEGACY_MOVE)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
    }
}

/// An event of the earlier table, its columns as they were stored.
fn legacy_event(row: &SqliteRow) -> StoreResult<StoredEvent> {
    use crate::model::audit::Decision;
    let decision: String = column(row, "decision")?;
    let seq: i64 = column(row, "seq")?;
    let key_version: Option<i64> = column(row, "key_version")?;
    let event = AuditEvent {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt("audit seq out of range".into()))?,
        node: column(row, "node")?,
        time: column(row, "time")?,
        request_id: column(row, "request_id")?,
        principal: column(row, "principal")?,
        action: column(row, "action")?,
        resource: column(row, "resource")?,
        key_version: key_version
            .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt("audit key_version out of range".into())))
            .transpose()?,
        // An unknown decision cannot be represented; it is mapped to `deny` and the MAC
        // check then reports the altered event.
        decision: Decision::parse(&decision).unwrap_or(Decision::Deny),
        policy: column(row, "policy")?,
        outcome: column(row, "outcome")?,
        source_ip: column(row, "source_ip")?,
        user_agent: column(row, "user_agent")?,
        secret_hmac: column(row, "secret_hmac")?,
        api: None,
    };
    let mac: Vec<u8> = row
        .try_get("mac")
        .map_err(|e| StoreError::Corrupt(format!("mac: {e}")))?;
    Ok((event, mac))
}
