//! Which store the black-box suite runs on: `SIGVAULT_TEST_STORE=postgres` runs every test
//! body on PostgreSQL (a fresh database per app, on the server `SIGVAULT_TEST_POSTGRES_URL`
//! names, which `scripts/postgres.sh` provides), anything else (the default, `sqlite`) on a
//! SQLite file in the app's data dir. `scripts/test.sh` runs the suite once on each.
//!
//! Databases are named `svt_<pid>_<n>`; the first database a test process makes drops those
//! of processes that are gone, so a suite that was killed leaves nothing behind for long.
//!
//! Also here: [`copy_postgres_database`] (what copying a stopped vault's data dir is on
//! SQLite), [`pg_dump`] (what copying a PostgreSQL database's contents gives), [`store_url`]
//! (the `store.url` of a config file) and [`on_sqlite`], which a test body about SQLite's
//! files alone calls first (or [`sqlite_only!`]), so it says on PostgreSQL why it does not
//! run there.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use sigvault::store::StoreSettings;

/// The backend the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Sqlite,
    Postgres,
}

/// The store the suite runs on, read from `SIGVAULT_TEST_STORE`.
pub fn test_store() -> TestStore {
    match std::env::var("SIGVAULT_TEST_STORE").as_deref() {
        Ok("postgres") => TestStore::Postgres,
        Ok("sqlite") | Err(_) => TestStore::Sqlite,
        Ok(other) => panic!("SIGVAULT_TEST_STORE must be sqlite or postgres, not {other:?}"),
    }
}

/// The PostgreSQL server's admin URL (its `postgres` database).
pub fn postgres_admin_url() -> String {
    std::env::var("SIGVAULT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// True on SQLite; on PostgreSQL prints why the calling test does not run there and
/// returns false (the test then returns): for test bodies about SQLite's files alone.
pub fn on_sqlite(reason: &str) -> bool {
    let sqlite = test_store() == TestStore::Sqlite;
    if !sqlite {
        println!("SQLite only, not run on PostgreSQL: {reason}");
    }
    sqlite
}

/// `sqlite_only!("reason")` at the top of a test body: on PostgreSQL the test says why it
/// does not run there ([`on_sqlite`]) and returns.
macro_rules! sqlite_only {
    ($reason:expr) => {
        if !$crate::helpers::on_sqlite($reason) {
            return;
        }
    };
}
pub(crate) use sqlite_only;

/// Creates an empty database on the test server and returns its URL.
pub fn fresh_postgres_database() -> String {
    let (admin, name) = (postgres_admin_url(), next_database_name());
    admin_sql(&admin, &[format!("CREATE DATABASE {name}")]);
    database_url(&admin, &name)
}

/// A new database on the test server holding what the database at `url` holds (`CREATE
/// DATABASE … TEMPLATE`); returns its URL. The source must be unused: connections still open
/// on it (a pool a stopped test app left) are ended first.
pub fn copy_postgres_database(url: &str) -> String {
    let (admin, name) = (postgres_admin_url(), next_database_name());
    let source = database_name(url);
    admin_sql(
        &admin,
        &[
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{source}' AND pid <> pg_backend_pid()"
            ),
            format!("CREATE DATABASE {name} TEMPLATE {source}"),
        ],
    );
    database_url(&admin, &name)
}

/// What `pg_dump` of the database at `url` writes in `format` (`plain`, or `custom` left
/// uncompressed so its contents read as they are stored).
pub fn pg_dump(url: &str, format: &str) -> Vec<u8> {
    let mut command = std::process::Command::new(pg_dump_binary());
    command.args([
        "--no-password",
        &format!("--format={format}"),
        &format!("--dbname={url}"),
    ]);
    if format == "custom" {
        command.arg("--compress=0");
    }
    let out = command.output().expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump --format={format} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty(), "pg_dump --format={format} wrote nothing");
    out.stdout
}

/// The newest installed server's `pg_dump` (Debian keeps it out of PATH, as
/// `scripts/postgres.sh` finds it), else the one on PATH.
fn pg_dump_binary() -> PathBuf {
    let version = |dir: &Path| -> Vec<u32> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.split('.').filter_map(|part| part.parse().ok()).collect()
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.sort_by_key(|dir| version(dir));
    dirs.into_iter()
        .rev()
        .map(|dir| dir.join("bin/pg_dump"))
        .find(|binary| binary.exists())
        .unwrap_or_else(|| PathBuf::from("pg_dump"))
}

/// The `store.url` of a config file for `store`.
pub fn store_url(store: &StoreSettings) -> String {
    match store {
        StoreSettings::Sqlite { path } => format!("sqlite://{}", path.display()),
        StoreSettings::Postgres { url } => url.clone(),
    }
}

/// `svt_<pid>_<n>`, the next unused; the first call drops the databases of test processes
/// that are gone.
fn next_database_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| admin_sql(&postgres_admin_url(), &leftover_databases_sql()));
    format!("svt_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The URL of database `name` on the server of `admin`.
fn database_url(admin: &str, name: &str) -> String {
    match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("SIGVAULT_TEST_POSTGRES_URL has no database part: {admin}"),
    }
}

/// The database a URL names (one of [`fresh_postgres_database`]'s, so a plain identifier).
fn database_name(url: &str) -> String {
    let name = url.rsplit_once('/').map(|(_, db)| db).unwrap_or_default();
    let name = name.split('?').next().unwrap_or_default();
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "not a test database URL: {url}"
    );
    name.to_owned()
}

/// `DROP DATABASE` statements for the databases of test processes that no longer run
/// (listed first, on their own connection).
fn leftover_databases_sql() -> Vec<String> {
    let admin = postgres_admin_url();
    let names = on_own_runtime(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
        let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'svt\\_%'")
            .fetch_all(&mut conn)
            .await
            .expect("list databases");
        names
    });
    names
        .into_iter()
        .filter(|name| {
            let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
            pid.is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(|name| format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .collect()
}

/// Runs each statement on one admin connection (CREATE/DROP DATABASE cannot run inside a
/// transaction, so each is sent alone).
fn admin_sql(admin: &str, statements: &[String]) {
    if statements.is_empty() {
        return;
    }
    let admin = admin.to_owned();
    let statements = statements.to_vec();
    on_own_runtime(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
        for statement in &statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    })
}

/// Runs `work` to completion on a runtime of its own, on a thread of its own: callers are
/// plain functions, often called from inside a test's runtime (which cannot block).
fn on_own_runtime<T: Send + 'static>(work: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work)
    })
    .join()
    .expect("database setup thread")
}
