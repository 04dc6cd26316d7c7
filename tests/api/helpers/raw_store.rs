//! The store as an attacker with access to the database sees it, bypassing sigvault, on
//! whichever backend the suite runs on ([`super::store`]): [`RawStore::open`] opens the
//! app's SQLite file or its PostgreSQL database, and runs statements on it with
//! [`RawValue`] arguments, returning [`RawRow`]s.
//!
//! Tests write their SQL once for both: `$1`-style placeholders (SQLite reads them too) and
//! what both dialects mean alike. What differs is here, once per backend: the list of
//! tables ([`RawStore::tables`]) and a checkpoint ([`RawStore::checkpoint`]). Values read
//! back alike: a PostgreSQL `boolean` as the integer 0 or 1 SQLite stores, `bytea` and
//! blobs as bytes (SQLite may hold a blob column's value as text: [`RawRow::bytes`] takes
//! either).

use sigvault::store::StoreSettings;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{Column, Row};

use super::store::TestStore;

/// An open connection pool on the app's database, outside sigvault.
pub enum RawStore {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A value read from or bound into a statement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RawValue {
    /// SQL NULL (read only: a statement that writes NULL says so in its text).
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl RawValue {
    /// The value as bytes, as a dump would show it: text as UTF-8, an integer in decimal,
    /// NULL as nothing.
    pub fn as_bytes(&self) -> Vec<u8> {
        match self {
            Self::Null => Vec::new(),
            Self::Int(n) => n.to_string().into_bytes(),
            Self::Text(text) => text.clone().into_bytes(),
            Self::Bytes(bytes) => bytes.clone(),
        }
    }
}

impl From<i64> for RawValue {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<&str> for RawValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<&String> for RawValue {
    fn from(text: &String) -> Self {
        Self::Text(text.clone())
    }
}

impl From<Vec<u8>> for RawValue {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes)
    }
}

/// One row read: its columns' names and values, in the statement's order.
#[derive(Debug, Clone)]
pub struct RawRow(Vec<(String, RawValue)>);

impl RawRow {
    /// The value of `column`; panics when the row has no such column.
    pub fn get(&self, column: &str) -> &RawValue {
        self.0
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no column {column} in {self:?}"))
    }

    /// The integer in `column` (a PostgreSQL boolean reads as 0 or 1).
    pub fn int(&self, column: &str) -> i64 {
        match self.get(column) {
            RawValue::Int(n) => *n,
            other => panic!("{column} is not an integer: {other:?}"),
        }
    }

    /// The text in `column`.
    pub fn text(&self, column: &str) -> String {
        match self.get(column) {
            RawValue::Text(text) => text.clone(),
            other => panic!("{column} is not text: {other:?}"),
        }
    }

    /// The bytes in `column`, which may hold them as a blob or (SQLite) as text.
    pub fn bytes(&self, column: &str) -> Vec<u8> {
        match self.get(column) {
            RawValue::Bytes(bytes) => bytes.clone(),
            RawValue::Text(text) => text.clone().into_bytes(),
            other => panic!("{column} holds no bytes: {other:?}"),
        }
    }

    /// Every value, in column order.
    pub fn values(&self) -> impl Iterator<Item = &RawValue> {
        self.0.iter().map(|(_, value)| value)
    }
}

/// `sql` as a query of database `$db` with `args` bound in order.
macro_rules! bound {
    ($db:ty, $sql:expr, $args:expr) => {{
        let mut query = sqlx::query::<$db>(sqlx::AssertSqlSafe($sql.to_string()));
        for arg in $args {
            query = match arg {
                RawValue::Null => panic!("bind no NULL: write it in the statement ({})", $sql),
                RawValue::Int(n) => query.bind(*n),
                RawValue::Text(text) => query.bind(text.clone()),
                RawValue::Bytes(bytes) => query.bind(bytes.clone()),
            };
        }
        query
    }};
}

/// A row of either backend as a [`RawRow`]: each value decoded as the first of integer,
/// boolean (as 0 or 1), text and bytes its type allows.
macro_rules! decoded {
    ($row:expr) => {{
        let row = $row;
        let values = row.columns().iter().enumerate().map(|(i, column)| {
            let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                v.map(RawValue::Int)
            } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
                v.map(|n| RawValue::Int(n.into()))
            } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                v.map(|b| RawValue::Int(b.into()))
            } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                v.map(RawValue::Text)
            } else {
                row.try_get::<Option<Vec<u8>>, _>(i)
                    .unwrap_or_else(|e| panic!("column {}: {e}", column.name()))
                    .map(RawValue::Bytes)
            };
            (column.name().to_owned(), value.unwrap_or(RawValue::Null))
        });
        RawRow(values.collect())
    }};
}

impl RawStore {
    /// Opens the database `store` names (an app's `AppHome::store()`).
    pub async fn open(store: &StoreSettings) -> Self {
        match store {
            StoreSettings::Sqlite { path } => Self::Sqlite(
                SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
                    .await
                    .unwrap_or_else(|e| panic!("open the database file {}: {e}", path.display())),
            ),
            StoreSettings::Postgres { url } => Self::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await
                    .unwrap_or_else(|e| panic!("open the PostgreSQL database: {e}")),
            ),
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> TestStore {
        match self {
            Self::Sqlite(_) => TestStore::Sqlite,
            Self::Postgres(_) => TestStore::Postgres,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub async fn execute(&self, sql: &str, args: &[RawValue]) -> u64 {
        let done = match self {
            Self::Sqlite(pool) => bound!(sqlx::Sqlite, sql, args)
                .execute(pool)
                .await
                .map(|d| d.rows_affected()),
            Self::Postgres(pool) => bound!(sqlx::Postgres, sql, args)
                .execute(pool)
                .await
                .map(|d| d.rows_affected()),
        };
        done.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs the statements in one transaction, committed when all succeeded; returns the rows
    /// each changed.
    pub async fn in_transaction(&self, statements: &[(&str, Vec<RawValue>)]) -> Vec<u64> {
        let mut changed = Vec::new();
        match self {
            Self::Sqlite(pool) => {
                let mut tx = pool.begin().await.expect("begin a transaction");
                for (sql, args) in statements {
                    let done = bound!(sqlx::Sqlite, sql, args).execute(&mut *tx).await;
                    changed.push(done.unwrap_or_else(|e| panic!("{sql}: {e}")).rows_affected());
                }
                tx.commit().await.expect("commit");
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("begin a transaction");
                for (sql, args) in statements {
                    let done = bound!(sqlx::Postgres, sql, args).execute(&mut *tx).await;
                    changed.push(done.unwrap_or_else(|e| panic!("{sql}: {e}")).rows_affected());
                }
                tx.commit().await.expect("commit");
            }
        }
        changed
    }

    /// Every row a query returns.
    pub async fn fetch_all(&self, sql: &str, args: &[RawValue]) -> Vec<RawRow> {
        match self {
            Self::Sqlite(pool) => bound!(sqlx::Sqlite, sql, args)
                .fetch_all(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|row| decoded!(row))
                .collect(),
            Self::Postgres(pool) => bound!(sqlx::Postgres, sql, args)
                .fetch_all(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|row| decoded!(row))
                .collect(),
        }
    }

    /// The one row a query returns (panics on none or more).
    pub async fn fetch_one(&self, sql: &str, args: &[RawValue]) -> RawRow {
        let mut rows = self.fetch_all(sql, args).await;
        assert_eq!(rows.len(), 1, "{sql}: one row");
        rows.remove(0)
    }

    /// The first column of the one row a query returns.
    pub async fn scalar(&self, sql: &str, args: &[RawValue]) -> RawValue {
        let row = self.fetch_one(sql, args).await;
        row.values()
            .next()
            .cloned()
            .unwrap_or_else(|| panic!("{sql}: no column"))
    }

    /// The names of the database's own tables, sorted (SQLite's internal ones aside).
    pub async fn tables(&self) -> Vec<String> {
        let sql = match self.backend() {
            TestStore::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            TestStore::Postgres => {
                "SELECT table_name::text AS name FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY name"
            }
        };
        let rows = self.fetch_all(sql, &[]).await;
        rows.iter().map(|row| row.text("name")).collect()
    }

    /// Moves what the log holds into the main data files: SQLite's WAL into the database
    /// file, PostgreSQL's `CHECKPOINT`.
    pub async fn checkpoint(&self) {
        let sql = match self.backend() {
            TestStore::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
            TestStore::Postgres => "CHECKPOINT",
        };
        self.execute(sql, &[]).await;
    }

    /// What an attacker with write access to the database but not the HSM or KMS can do:
    /// copies every sealed column of key `from`'s version 1 over key `onto`'s. Returns the
    /// `kek_id` copied.
    pub async fn copy_sealed_version(&self, from: &str, onto: &str) -> String {
        let row = self
            .fetch_one(
                "SELECT v.format, v.kek_id, v.wrapped_dek, v.nonce, v.ciphertext FROM key_versions v \
                 JOIN keys k ON k.id = v.key_id WHERE k.name = $1 AND v.version = 1",
                &[from.into()],
            )
            .await;
        let kek_id = row.text("kek_id");
        let copied = self
            .execute(
                "UPDATE key_versions SET format = $1, kek_id = $2, wrapped_dek = $3, nonce = $4, ciphertext = $5 \
                 WHERE version = 1 AND key_id = (SELECT id FROM keys WHERE name = $6)",
                &[
                    row.int("format").into(),
                    kek_id.as_str().into(),
                    row.bytes("wrapped_dek").into(),
                    row.bytes("nonce").into(),
                    row.bytes("ciphertext").into(),
                    onto.into(),
                ],
            )
            .await;
        assert_eq!(copied, 1, "one row copied over");
        kek_id
    }

    /// Closes every connection (a PostgreSQL database with none left can be copied).
    pub async fn close(self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}
