//! The audit events in PostgreSQL (`audit_batches`): rows of up to a few hundred
//! consecutive events of one node, held as the event file's lines, with the range of their
//! sequence numbers and times — the shape SQLite keeps, and what is done with a row's lines
//! is shared with it ([`crate::store::audit_rows`]).
//!
//! Each node writes only its own chain: an append or a truncation holds that node's advisory
//! lock for its transaction (its overlap check and its inserts are then one step, whatever
//! else writes), and nodes never share a lock or a row, so their appends do not conflict.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Transaction};

use super::{LockClass, PgStore, lock, timed, unavailable};
use crate::BoxFuture;
use crate::store::audit_rows::{self, AuditPages, ROW_PAGE, RowParts, kept_through, last_event};
use crate::store::rows::{as_i64 as int, column};
use crate::store::statements;
use crate::store::{AuditBatch, AuditFilter, AuditStore, StoreError, StoreResult, StoredEvent};

/// Inserts the batch's rows; the last one marks the append's end.
async fn insert_rows(tx: &mut Transaction<'_, Postgres>, batch: &AuditBatch) -> StoreResult<()> {
    let count = batch.rows().count();
    for (i, (row, lines)) in batch.rows().enumerate() {
        statements::insert_audit_row(batch.node(), row, lines, i + 1 == count)
            .query()
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// A fetched row's parts.
fn row_parts(row: &PgRow) -> StoreResult<RowParts> {
    Ok((column(row, "node")?, column(row, "first_seq")?, column(row, "lines")?))
}

impl AuditPages for PgStore {
    fn rows_page<'a>(
        &'a self,
        after: (&'a str, u64),
        cursor: (&'a str, i64),
        since: Option<&'a str>,
        until: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Vec<RowParts>>> {
        Box::pin(timed(async move {
            sqlx::query(
                "SELECT node, first_seq, lines FROM audit_batches \
                 WHERE (node > $1 OR (node = $1 AND last_seq > $2)) AND (node > $3 OR (node = $3 AND first_seq > $4)) \
                 AND ($5::text IS NULL OR time_max >= $5) AND ($6::text IS NULL OR time_min < $6) \
                 ORDER BY node, first_seq LIMIT $7",
            )
            .bind(after.0)
            .bind(int(after.1))
            .bind(cursor.0)
            .bind(cursor.1)
            .bind(since)
            .bind(until)
            .bind(ROW_PAGE)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(row_parts)
            .collect()
        }))
    }

    fn node_page<'a>(&'a self, node: &'a str, from_seq: u64, cursor: i64) -> BoxFuture<'a, StoreResult<Vec<RowParts>>> {
        Box::pin(timed(async move {
            sqlx::query(
                "SELECT node, first_seq, lines FROM audit_batches WHERE node = $1 AND first_seq >= COALESCE(\
                   (SELECT max(first_seq) FROM audit_batches WHERE node = $1 AND first_seq <= $2), first_seq) \
                 AND first_seq > $3 ORDER BY first_seq LIMIT $4",
            )
            .bind(node)
            .bind(int(from_seq))
            .bind(cursor)
            .bind(ROW_PAGE)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(row_parts)
            .collect()
        }))
    }
}

impl AuditStore for PgStore {
    fn append_audit<'a>(&'a self, batch: &'a AuditBatch) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(async move {
            let Some((first, last)) = batch.seq_range() else {
                return Ok(());
            };
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            lock(&mut tx, LockClass::AuditNode, batch.node()).await?;
            // Rows never overlap, so the one starting last at or before the batch's end is
            // the only one that can hold one of its sequence numbers.
            let before: Option<i64> = sqlx::query_scalar(
                "SELECT last_seq FROM audit_batches WHERE node = $1 AND first_seq <= $2 \
                 ORDER BY first_seq DESC LIMIT 1",
            )
            .bind(batch.node())
            .bind(int(last))
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            if before.is_some_and(|end| end >= int(first)) {
                return Err(StoreError::AlreadyExists);
            }
            insert_rows(&mut tx, batch).await?;
            tx.commit().await.map_err(unavailable)
        }))
    }

    fn audit_batch_ends<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<Vec<u64>>> {
        Box::pin(timed(async move {
            let ends: Vec<i64> = sqlx::query_scalar(
                "SELECT last_seq FROM audit_batches WHERE node = $1 AND last_seq > $2 AND ends_append \
                 ORDER BY first_seq",
            )
            .bind(node)
            .bind(int(after_seq))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            ends.into_iter()
                .map(|seq| u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("audit seq {seq}"))))
                .collect()
        }))
    }

    fn truncate_audit<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(timed(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            lock(&mut tx, LockClass::AuditNode, node).await?;
            // A row holding both kept and removed events keeps its first lines.
            let split = sqlx::query(
                "SELECT first_seq, lines FROM audit_batches WHERE node = $1 AND first_seq <= $2 AND last_seq > $2",
            )
            .bind(node)
            .bind(int(after_seq))
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            if let Some(row) = split {
                let first_seq: i64 = column(&row, "first_seq")?;
                let kept = kept_through(&column::<_, Vec<u8>>(&row, "lines")?, after_seq)?;
                // (A row whose lines all lie past the cut — edited behind the store's back
                // — goes whole: a row never holds no line.)
                let cut = if kept.is_empty() {
                    sqlx::query("DELETE FROM audit_batches WHERE node = $1 AND first_seq = $2")
                        .bind(node)
                        .bind(first_seq)
                } else {
                    sqlx::query(
                        "UPDATE audit_batches SET last_seq = $3, ends_append = false, lines = $4 \
                         WHERE node = $1 AND first_seq = $2",
                    )
                    .bind(node)
                    .bind(first_seq)
                    .bind(int(after_seq))
                    .bind(kept)
                };
                cut.execute(&mut *tx).await.map_err(unavailable)?;
            }
            sqlx::query("DELETE FROM audit_batches WHERE node = $1 AND first_seq > $2")
                .bind(node)
                .bind(int(after_seq))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)
        }))
    }

    fn audit_range<'a>(
        &'a self,
        node: &'a str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(timed(audit_rows::range(self, node, after_seq, limit)))
    }

    fn audit_head<'a>(&'a self, node: &'a str) -> BoxFuture<'a, StoreResult<Option<StoredEvent>>> {
        Box::pin(timed(async move {
            let blob: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT lines FROM audit_batches WHERE node = $1 ORDER BY first_seq DESC LIMIT 1")
                    .bind(node)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
            blob.as_deref().map(last_event).transpose()
        }))
    }

    fn audit_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        Box::pin(timed(async move {
            sqlx::query_scalar("SELECT DISTINCT node FROM audit_batches ORDER BY node")
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)
        }))
    }

    fn query_audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
        after: Option<(&'a str, u64)>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(timed(audit_rows::query(self, filter, after, limit)))
    }

    fn count_audit<'a>(&'a self, filter: &'a AuditFilter) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(timed(audit_rows::count(self, filter)))
    }

    fn audit_counts_by_principal(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(timed(audit_rows::counts_by_principal(self)))
    }
}
