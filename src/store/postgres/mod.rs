//! The PostgreSQL store: one database that several sigvault nodes share. Where SQLite has
//! one writer connection that serialises every write of its one node, here any number of
//! connections of any number of nodes write at once, so each operation is safe by itself
//! against all of them (PostgreSQL's default READ COMMITTED isolation):
//!
//! - a read-modify-write reads the stored row with `SELECT … FOR UPDATE` inside its
//!   transaction, so a second writer waits and then sees the first one's row (a key's
//!   revision has moved on: `Conflict`);
//! - credits are taken by one `UPDATE … SET remaining = remaining - 1 WHERE remaining > 0`,
//!   which PostgreSQL re-checks against the latest row;
//! - names, ids and hashes are unique by constraint (a unique violation is `AlreadyExists`);
//! - a limit per owner (credentials per principal) is counted under a transaction-scoped
//!   advisory lock on that owner, so two inserts cannot both see room for one;
//! - each node appends to its own audit chain, keyed by (node, first sequence number) and
//!   serialised per node by an advisory lock, so nodes never wait for each other;
//! - writes that touch several rows (usage, activity) take them in one order (ids sorted),
//!   so two nodes flushing at once cannot deadlock;
//! - a write that changes a row nodes cache (keys, caller tokens, credentials, API keys,
//!   system values) announces it in its own transaction with `pg_notify`, heard by every
//!   node's listener ([`changes`]).
//!
//! The schema is one migration holding the final shape of SQLite's eleven, including the
//! row-integrity columns, applied under an advisory lock (nodes starting together on a new
//! database apply it once) and recorded in `schema_migrations` for later ones. Sealed records,
//! hashes and tags are `bytea`, times and counts `bigint`, and every text a listing sorts by
//! is `COLLATE "C"` (byte order, as the contract wants). SQLite's housekeeping has no
//! counterpart here except [`SystemStore::checkpoint`](super::SystemStore::checkpoint),
//! which vacuums the tables that hold sealed records (see [`system`]).
//!
//! One file per concern, as in SQLite; records are decoded from rows, and the rows a write
//! makes are built, by [`crate::store::rows`], and whole rows are written by the statements
//! of [`crate::store::statements`], which both backends share. The pool is bounded
//! and waits a few seconds at most for a connection, so a database that is down answers
//! `Unavailable` quickly instead of holding requests.

mod api_keys;
mod approvals;
mod audit;
mod changes;
mod credentials;
mod fingerprints;
mod kek;
mod keys;
mod system;
mod tokens;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::integrity::installed;
use super::{RowSealer, StoreError, StoreResult, redacted_url};

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_key_origin.sql")),
    (3, include_str!("../migrations/postgres/0003_approvals.sql")),
    (4, include_str!("../migrations/postgres/0004_credential_boundary.sql")),
    (5, include_str!("../migrations/postgres/0005_key_use_settings.sql")),
    (6, include_str!("../migrations/postgres/0006_credential_groups.sql")),
];

/// Connections per node: enough for the request path, the audit indexer and the flushers
/// at once, few enough that a dozen nodes stay inside a default `max_connections` (100).
const MAX_CONNECTIONS: u32 = 16;

/// How long an operation waits for a connection (or for a new one to open) before the
/// store answers `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The first key of this store's transaction-scoped advisory locks (`pg_advisory_xact_lock(
/// class, hashtext(name))`): "sv" and what is locked, apart from any other user's locks.
#[derive(Clone, Copy)]
#[repr(i32)]
pub(super) enum LockClass {
    Migrations = 0x7376_0001,
    CredentialsOf = 0x7376_0002,
    AuditNode = 0x7376_0003,
}

pub(crate) struct PgStore {
    pool: PgPool,
    /// How to connect: the change listener opens a connection of its own with them.
    options: PgConnectOptions,
    /// This opened store's id in the change announcements ([`changes`]).
    instance: String,
    /// Set while the store does not answer its probe ([`changes::probe`]).
    down: Arc<std::sync::atomic::AtomicBool>,
    /// Tags and checks protected rows; set once at startup.
    sealer: OnceLock<Arc<dyn RowSealer>>,
}

/// The longest one store operation may take, waiting for a connection included, before it
/// answers `Unavailable`: a database that went silent (a network partition drops packets
/// instead of resetting connections) never holds a request longer. The operation is dropped
/// with its transaction, which PostgreSQL rolls back when the connection goes. Vacuuming
/// (`checkpoint`, `close`) is exempt: it may legitimately take longer on a large store.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one store operation under [`CALL_TIMEOUT`].
pub(super) async fn timed<T>(work: impl std::future::Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(CALL_TIMEOUT, work).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(
            "the database did not answer within 10 s".into(),
        ))
    })
}

/// A failed statement: a unique key taken is `AlreadyExists`, a value that does not decode
/// `Corrupt`, anything else (the server gone, the pool timed out, a deadlock) `Unavailable`.
pub(super) fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

/// Takes the transaction-scoped advisory lock of `name` in `class` (released at commit or
/// rollback). Two names may share a hash: they then only wait for each other.
pub(super) async fn lock(tx: &mut Transaction<'_, Postgres>, class: LockClass, name: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(class as i32)
        .bind(name)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

impl PgStore {
    /// Connects to the database `url` names and applies pending migrations. The URL appears
    /// in errors without its password.
    pub(crate) async fn open(url: &str) -> StoreResult<Self> {
        let open_err = |e: sqlx::Error| StoreError::Open {
            path: redacted_url(url),
            source: Box::new(e),
        };
        let instance = changes::instance_id().map_err(|e| StoreError::Open {
            path: redacted_url(url),
            source: Box::new(e),
        })?;
        let options = PgConnectOptions::from_str(url)
            .map_err(open_err)?
            .options([("sigvault.instance", instance.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        let store = Self {
            pool,
            options,
            instance,
            down: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            sealer: OnceLock::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The sealer set at startup; protected rows neither read nor write without it.
    fn sealer(&self) -> StoreResult<&dyn RowSealer> {
        installed(&self.sealer)
    }

    /// Applies every pending migration in one transaction, under the migrations' advisory
    /// lock: nodes starting together on a new database wait for the first, then find its
    /// migrations recorded.
    async fn migrate(&self) -> StoreResult<()> {
        let mig = |version: u32| {
            move |e: sqlx::Error| StoreError::Migration {
                version,
                source: Box::new(e),
            }
        };
        let mut tx = self.pool.begin().await.map_err(mig(0))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
            .bind(LockClass::Migrations as i32)
            .execute(&mut *tx)
            .await
            .map_err(mig(0))?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, applied_at_ms bigint NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(mig(0))?;
        for (version, sql) in MIGRATIONS {
            let version = *version;
            let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(i64::from(version))
                .fetch_optional(&mut *tx)
                .await
                .map_err(mig(version))?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .map_err(mig(version))?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)")
                .bind(i64::from(version))
                .bind(crate::clock::unix_ms(time::OffsetDateTime::now_utc()))
                .execute(&mut *tx)
                .await
                .map_err(mig(version))?;
        }
        tx.commit().await.map_err(mig(0))
    }
}

#[cfg(test)]
mod tests;
