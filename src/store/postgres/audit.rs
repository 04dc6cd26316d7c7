//! The audit events in PostgreSQL (`audit_batches`): rows of up to a few hundred
//! consecutive events of one node, held as the event file's lines, with the range of their
//! sequence numbers and times — the shape SQLite keeps, and what is done with a row's lines
//! is shared with it ([`crate::store::audit_rows`]).
//!
//! Each node writes only its own chain: an append or a truncation holds that node's advisory
//! lock for its transaction (its overlap check and its inserts are then one step, whatever
//! else writes), and nodes never share a lock or a row, so their appends do not conflict.

use std::collections::BTreeMap;

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Transaction};

use super::{LockClass, PgStore, lock, unavailable};
use crate::BoxFuture;
use crate::store::audit_rows::{Matcher, ROW_PAGE, kept_through, last_event, take_range};
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

/// A fetched row: its node, first sequence number and lines.
fn row_parts(row: &PgRow) -> StoreResult<(String, i64, Vec<u8>)> {
    Ok((column(row, "node")?, column(row, "first_seq")?, column(row, "lines")?))
}

impl PgStore {
    /// Walks the events in (node bytes, stored order) order, strictly after the cursor
    /// `after` and admitted by `filter`, calling `visit` until it returns `false`. Rows
    /// outside the filter's time window are not fetched.
    async fn walk(
        &self,
        filter: &AuditFilter,
        after: Option<(&str, u64)>,
        mut visit: impl FnMut(StoredEvent) -> bool + Send,
    ) -> StoreResult<()> {
        let matcher = Matcher::new(filter);
        let (after_node, after_seq) = after.unwrap_or(("", 0));
        let mut cursor = (after_node.to_owned(), i64::MIN);
        loop {
            let found = sqlx::query(
                "SELECT node, first_seq, lines FROM audit_batches \
                 WHERE (node > $1 OR (node = $1 AND last_seq > $2)) AND (node > $3 OR (node = $3 AND first_seq > $4)) \
                 AND ($5::text IS NULL OR time_max >= $5) AND ($6::text IS NULL OR time_min < $6) \
                 ORDER BY node, first_seq LIMIT $7",
            )
            .bind(after_node)
            .bind(int(after_seq))
            .bind(&cursor.0)
            .bind(cursor.1)
            .bind(&matcher.since)
            .bind(&matcher.until)
            .bind(ROW_PAGE)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            if found.is_empty() {
                return Ok(());
            }
            for row in &found {
                let (node, first_seq, blob) = row_parts(row)?;
                let goes_on = matcher.visit_row(&node, &blob, (after_node, after_seq), &mut visit)?;
                cursor = (node, first_seq);
                if !goes_on {
                    return Ok(());
                }
            }
        }
    }
}

impl AuditStore for PgStore {
    fn append_audit<'a>(&'a self, batch: &'a AuditBatch) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
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
        })
    }

    fn audit_batch_ends<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<Vec<u64>>> {
        Box::pin(async move {
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
        })
    }

    fn truncate_audit<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
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
        })
    }

    fn audit_range<'a>(
        &'a self,
        node: &'a str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(async move {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            // From the row that holds `after_seq + 1` (or the node's first), a page of rows at
            // a time.
            let mut cursor = i64::MIN;
            loop {
                let page = sqlx::query(
                    "SELECT node, first_seq, lines FROM audit_batches WHERE node = $1 AND first_seq >= COALESCE(\
                       (SELECT max(first_seq) FROM audit_batches WHERE node = $1 AND first_seq <= $2), first_seq) \
                     AND first_seq > $3 ORDER BY first_seq LIMIT $4",
                )
                .bind(node)
                .bind(int(after_seq.saturating_add(1)))
                .bind(cursor)
                .bind(ROW_PAGE)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                if page.is_empty() {
                    return Ok(out);
                }
                for row in &page {
                    let (_, first_seq, blob) = row_parts(row)?;
                    cursor = first_seq;
                    if take_range(&blob, node, after_seq, limit, &mut out)? {
                        return Ok(out);
                    }
                }
            }
        })
    }

    fn audit_head<'a>(&'a self, node: &'a str) -> BoxFuture<'a, StoreResult<Option<StoredEvent>>> {
        Box::pin(async move {
            let blob: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT lines FROM audit_batches WHERE node = $1 ORDER BY first_seq DESC LIMIT 1")
                    .bind(node)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
            blob.as_deref().map(last_event).transpose()
        })
    }

    fn audit_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT DISTINCT node FROM audit_batches ORDER BY node")
                .fetch_all(&self.pool)
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
        Box::pin(async move {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            self.walk(filter, after, |event| {
                out.push(event);
                out.len() < limit
            })
            .await?;
            Ok(out)
        })
    }

    fn count_audit<'a>(&'a self, filter: &'a AuditFilter) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move {
            let mut count = 0u64;
            self.walk(filter, None, |_| {
                count += 1;
                true
            })
            .await?;
            Ok(count)
        })
    }

    fn audit_counts_by_principal(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(async move {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            self.walk(&AuditFilter::default(), None, |(event, _)| {
                *counts.entry(event.principal).or_default() += 1;
                true
            })
            .await?;
            Ok(counts.into_iter().collect())
        })
    }
}
