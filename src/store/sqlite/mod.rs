//! The embedded SQLite store: WAL journal, `synchronous = FULL` (a commit survives power
//! loss), `secure_delete` (a destroyed record's bytes are overwritten, not left in free
//! pages), foreign keys on. One writer connection serialises writes in process — SQLite
//! allows one writer at a time anyway — and a small pool serves reads concurrently.
//!
//! One file per concern implements that concern's interface ([`keys`], [`tokens`],
//! [`credentials`], [`api_keys`], [`audit`], [`system`]; [`fingerprints`] is the activity
//! table shape credentials and API keys share). Records are decoded from rows, and the
//! rows a write makes are built, by [`crate::store::rows`]; whole rows are written by the
//! statements of [`crate::store::statements`]: both are shared by every backend, and
//! neither those encodings nor sqlx's types and errors leave the store.

mod api_keys;
mod approvals;
mod audit;
mod credentials;
mod fingerprints;
mod integrity;
mod kek;
mod keys;
mod sealing;
mod system;
mod tokens;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::SqlSafeStr;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{RowSealer, StoreError, StoreResult};

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_audit.sql")),
    (3, include_str!("../migrations/sqlite/0003_caller_tokens.sql")),
    (4, include_str!("../migrations/sqlite/0004_credentials.sql")),
    (5, include_str!("../migrations/sqlite/0005_api_keys.sql")),
    (6, include_str!("../migrations/sqlite/0006_audit_batches.sql")),
    (7, include_str!("../migrations/sqlite/0007_audit_index.sql")),
    (
        8,
        include_str!("../migrations/sqlite/0008_audit_no_principal_index.sql"),
    ),
    (9, include_str!("../migrations/sqlite/0009_audit_lines.sql")),
    // Applied at open, so on a new database before 10 (row integrity, which needs the
    // sealer): it only adds a nullable column and a table, and binds nothing 10 tags.
    (11, include_str!("../migrations/sqlite/0011_api_key_fingerprints.sql")),
    (12, include_str!("../migrations/sqlite/0012_key_origin.sql")),
    (13, include_str!("../migrations/sqlite/0013_approvals.sql")),
    (14, include_str!("../migrations/sqlite/0014_credential_boundary.sql")),
    (15, include_str!("../migrations/sqlite/0015_key_use_settings.sql")),
    (16, include_str!("../migrations/sqlite/0016_credential_groups.sql")),
];

/// The migration that adds the row-integrity columns. It is applied by
/// [`SqliteStore::enable_row_integrity`](super::SystemStore::enable_row_integrity), in one
/// transaction with the tagging of the rows already stored, never by `open` (which has no
/// sealer): so a row is tagged without its tag being checked only in the start that adds
/// the columns, and a database writer cannot have an edited row tagged by clearing its tag.
const ROW_INTEGRITY_MIGRATION: (u32, &str) = (10, include_str!("../migrations/sqlite/0010_row_integrity.sql"));

pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Appends audit events (the indexer's large batches, a few a second), so they never wait
    /// behind key writes. `synchronous = FULL` like the rest: the indexer anchors a batch
    /// only after its commit, so an anchor never names events a power loss took from the
    /// store. Key data never goes through this connection.
    audit_writer: SqlitePool,
    /// Tags and checks protected rows; set once at startup.
    sealer: OnceLock<Arc<dyn RowSealer>>,
}

/// A failed statement: a unique key taken is `AlreadyExists`, anything else `Unavailable`.
pub(super) fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

/// Begins a write transaction holding SQLite's write lock from its first statement, so it
/// waits (`busy_timeout`) for another writer instead of failing at once when a read inside it
/// would have to become a write after that writer committed (SQLITE_BUSY_SNAPSHOT: the audit
/// indexer commits on its own connection at any moment).
pub(super) async fn begin_write(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and applies pending migrations.
    pub(crate) async fn open(path: &Path) -> StoreResult<Self> {
        let open_err = |e: sqlx::Error| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "ON");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        let store_reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        let audit_writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        let store = Self {
            writer,
            reader: store_reader,
            audit_writer,
            sealer: OnceLock::new(),
        };
        store.migrate().await?;
        audit::move_legacy_events(&store.audit_writer).await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)",
        )
        .execute(&self.writer)
        .await
        .map_err(|e| StoreError::Migration {
            version: 0,
            source: Box::new(e),
        })?;
        for (version, sql) in MIGRATIONS {
            let version = *version;
            let mig = |e: sqlx::Error| StoreError::Migration {
                version,
                source: Box::new(e),
            };
            let mut tx = self.writer.begin().await.map_err(mig)?;
            if apply_migration(&mut tx, version, sql).await.map_err(mig)? {
                tx.commit().await.map_err(mig)?;
            }
        }
        Ok(())
    }
}

/// Applies migration `version` inside `tx` unless it already was; returns whether it ran.
async fn apply_migration(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    version: u32,
    sql: &'static str,
) -> Result<bool, sqlx::Error> {
    let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
        .bind(i64::from(version))
        .fetch_optional(&mut **tx)
        .await?;
    if applied.is_some() {
        return Ok(false);
    }
    sqlx::raw_sql(sql.into_sql_str()).execute(&mut **tx).await?;
    sqlx::query("INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?, ?)")
        .bind(i64::from(version))
        .bind(crate::clock::unix_ms(time::OffsetDateTime::now_utc()))
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

impl SqliteStore {
    /// Forces the WAL into the main file and truncates it, so destroyed records do not
    /// linger in old WAL frames.
    async fn wal_checkpoint(&self) -> StoreResult<()> {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.writer)
            .await
            .map_err(unavailable)?;
        if busy != 0 {
            return Err(StoreError::Unavailable(
                "WAL checkpoint blocked by a reader; retried at the next checkpoint".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
