//! The audit events in SQLite (`audit_events`), written through the store's own audit
//! connection (see [`SqliteStore`]'s `audit_writer`).

use sqlx::sqlite::SqliteRow;

use super::row::column;
use super::{SqliteStore, begin_write, unavailable};
use crate::BoxFuture;
use crate::model::audit::{AuditEvent, Decision, time_text};
use crate::store::{AuditFilter, AuditStore, StoreError, StoreResult, StoredEvent};

/// The conditions of an [`AuditFilter`]; bind [`filter_values`] in order.
const AUDIT_FILTER: &str = "(? IS NULL OR time >= ?) AND (? IS NULL OR time < ?) AND (? IS NULL OR principal = ?) \
     AND (? IS NULL OR action = ?) AND (? IS NULL OR resource = ?)";

/// The bind values of [`AUDIT_FILTER`], each twice (tested for NULL, then compared).
fn filter_values(filter: &AuditFilter) -> [Option<String>; 10] {
    let since = filter.since_ms.map(time_text);
    let until = filter.until_ms.map(time_text);
    [
        since.clone(),
        since,
        until.clone(),
        until,
        filter.principal.clone(),
        filter.principal.clone(),
        filter.action.clone(),
        filter.action.clone(),
        filter.resource.clone(),
        filter.resource.clone(),
    ]
}

/// Most audit rows per INSERT statement (15 parameters each; SQLite allows 32766).
const AUDIT_ROWS_PER_INSERT: usize = 256;

/// Splits `n` rows into INSERT sizes that are powers of two, largest first: a batch of any
/// length uses at most nine statement texts, all kept prepared in the connection's cache
/// (an INSERT of a new length would be parsed and planned again).
fn insert_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= AUDIT_ROWS_PER_INSERT {
            AUDIT_ROWS_PER_INSERT
        } else {
            1 << n.ilog2()
        };
        n -= size;
        Some(size)
    })
}

/// Bind values per row (`batch_end` is written into the text).
const ROW_BINDS: usize = 15;

/// The INSERT of `rows` rows (a power of two up to [`AUDIT_ROWS_PER_INSERT`]), its last row
/// marked `batch_end` when `ends_batch`. The texts are made once: formatting 3840
/// placeholders for every batch cost more than binding them. (Anonymous placeholders:
/// sqlx looks a numbered one up by name, which SQLite finds by a walk of every name.)
fn insert_sql(rows: usize, ends_batch: bool) -> &'static str {
    static TEXTS: std::sync::OnceLock<Vec<[String; 2]>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..=AUDIT_ROWS_PER_INSERT.ilog2())
            .map(|log| [insert_text(1 << log, false), insert_text(1 << log, true)])
            .collect()
    });
    texts
        .get(rows.max(1).ilog2() as usize)
        .and_then(|pair| pair.get(usize::from(ends_batch)))
        .map_or("", String::as_str)
}

/// Prepares every INSERT text on the audit connection, into its statement cache: parsing
/// the larger ones costs milliseconds, which would otherwise fall on the first batches of
/// each size.
pub(super) async fn prepare_inserts(pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
    use sqlx::{Executor as _, SqlSafeStr as _};
    let mut connection = pool.acquire().await?;
    for log in 0..=AUDIT_ROWS_PER_INSERT.ilog2() {
        for ends_batch in [false, true] {
            connection
                .prepare(insert_sql(1 << log, ends_batch).into_sql_str())
                .await?;
        }
    }
    Ok(())
}

fn insert_text(rows: usize, ends_batch: bool) -> String {
    let mut sql = String::from(
        "INSERT INTO audit_events (node, seq, time, request_id, principal, action, resource, \
         key_version, decision, policy, outcome, source_ip, user_agent, secret_hmac, mac, batch_end) VALUES ",
    );
    for row in 0..rows {
        sql.push_str(if row == 0 { "(?" } else { ", (?" });
        sql.push_str(&", ?".repeat(ROW_BINDS - 1));
        sql.push_str(if ends_batch && row + 1 == rows { ", 1)" } else { ", 0)" });
    }
    sql
}

const AUDIT_COLUMNS: &str = "node, seq, time, request_id, principal, action, resource, key_version, decision, \
     policy, outcome, source_ip, user_agent, secret_hmac, mac";

/// One INSERT of `chunk` (a length [`insert_sql`] has a text for).
async fn insert_chunk(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    chunk: &[StoredEvent],
    ends_batch: bool,
) -> StoreResult<()> {
    let mut insert = sqlx::query(insert_sql(chunk.len(), ends_batch));
    for (e, mac) in chunk {
        insert = insert
            .bind(&e.node)
            .bind(i64::try_from(e.seq).unwrap_or(i64::MAX))
            .bind(&e.time)
            .bind(&e.request_id)
            .bind(&e.principal)
            .bind(&e.action)
            .bind(&e.resource)
            .bind(e.key_version.map(i64::from))
            .bind(e.decision.as_str())
            .bind(&e.policy)
            .bind(&e.outcome)
            .bind(&e.source_ip)
            .bind(&e.user_agent)
            .bind(&e.secret_hmac)
            .bind(mac);
    }
    insert.execute(&mut **tx).await.map_err(unavailable)?;
    Ok(())
}

impl AuditStore for SqliteStore {
    fn append_audit<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut tx = begin_write(&self.audit_writer).await.map_err(unavailable)?;
            // One multi-row INSERT per chunk: a batch costs a few statements, not one round
            // trip to SQLite's worker per event.
            let mut first = 0;
            for size in insert_sizes(events.len()) {
                let chunk = events.get(first..first + size).unwrap_or_default();
                first += size;
                insert_chunk(&mut tx, chunk, first == events.len()).await?;
            }
            tx.commit().await.map_err(unavailable)
        })
    }

    fn audit_batch_ends<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<Vec<u64>>> {
        Box::pin(async move {
            let ends: Vec<i64> = sqlx::query_scalar(
                "SELECT seq FROM audit_events WHERE node = ? AND seq > ? AND batch_end <> 0 ORDER BY seq",
            )
            .bind(node)
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
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
            sqlx::query("DELETE FROM audit_events WHERE node = ? AND seq > ?")
                .bind(node)
                .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
                .execute(&self.audit_writer)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn audit_range<'a>(
        &'a self,
        node: &'a str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE node = ? AND seq > ? ORDER BY seq LIMIT ?"
            )))
            .bind(node)
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
            rows.iter().map(event_from_row).collect()
        })
    }

    fn audit_head<'a>(&'a self, node: &'a str) -> BoxFuture<'a, StoreResult<Option<StoredEvent>>> {
        Box::pin(async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE node = ? ORDER BY seq DESC LIMIT 1"
            )))
            .bind(node)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(event_from_row).transpose()
        })
    }

    fn audit_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT DISTINCT node FROM audit_events ORDER BY node")
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
        Box::pin(async move {
            let (after_node, after_seq) = after.unwrap_or(("", 0));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE (node > ? OR (node = ? AND seq > ?)) AND {AUDIT_FILTER} \
                 ORDER BY node, seq LIMIT ?"
            )))
            .bind(after_node)
            .bind(after_node)
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX));
            for value in filter_values(filter) {
                query = query.bind(value);
            }
            let rows = query
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await
                .map_err(unavailable)?;
            rows.iter().map(event_from_row).collect()
        })
    }

    fn count_audit<'a>(&'a self, filter: &'a AuditFilter) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move {
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM audit_events WHERE {AUDIT_FILTER}"
            )));
            for value in filter_values(filter) {
                query = query.bind(value);
            }
            let count: i64 = query.fetch_one(&self.reader).await.map_err(unavailable)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn audit_counts_by_principal(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(async move {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT principal, COUNT(*) FROM audit_events GROUP BY principal ORDER BY principal")
                    .fetch_all(&self.reader)
                    .await
                    .map_err(unavailable)?;
            Ok(rows
                .into_iter()
                .map(|(p, n)| (p, u64::try_from(n).unwrap_or(0)))
                .collect())
        })
    }
}

fn event_from_row(row: &SqliteRow) -> StoreResult<StoredEvent> {
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
    };
    let mac: Vec<u8> = column(row, "mac")?;
    Ok((event, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sizes_are_powers_of_two_up_to_the_cap_that_add_up_to_the_batch() {
        for n in [0, 1, 2, 3, 7, 255, 256, 257, 1000, 8192] {
            let sizes: Vec<usize> = insert_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}");
            assert!(
                sizes.iter().all(|s| s.is_power_of_two() && *s <= AUDIT_ROWS_PER_INSERT),
                "{n}: {sizes:?}"
            );
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "largest first: {sizes:?}");
        }
        assert_eq!(insert_sizes(1000).collect::<Vec<_>>(), [256, 256, 256, 128, 64, 32, 8]);
    }

    #[test]
    fn insert_texts_hold_a_placeholder_per_value_and_mark_only_a_batch_end() {
        assert_eq!(
            insert_text(2, true).split_once("VALUES ").map(|(_, v)| v),
            Some(
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0), \
                 (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
            )
        );
        assert!(insert_text(1, false).ends_with("?, 0)"));
        for log in 0..=AUDIT_ROWS_PER_INSERT.ilog2() {
            let rows = 1 << log;
            assert_eq!(insert_sql(rows, true), insert_text(rows, true));
            assert_eq!(insert_sql(rows, false), insert_text(rows, false));
            assert_eq!(insert_sql(rows, false).matches('?').count(), rows * ROW_BINDS, "{rows}");
        }
    }
}
