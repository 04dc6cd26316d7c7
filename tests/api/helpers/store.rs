//! Which store the black-box suite runs on: `SIGVAULT_TEST_STORE=postgres` runs every test
//! body on PostgreSQL (a fresh database per app, on the server `SIGVAULT_TEST_POSTGRES_URL`
//! names, which `scripts/postgres.sh` provides), anything else (the default, `sqlite`) on a
//! SQLite file in the app's data dir. `scripts/test.sh` runs the suite once on each.
//!
//! Databases are named `svt_<pid>_<n>`; the first database a test process makes drops those
//! of processes that are gone, so a suite that was killed leaves nothing behind for long.

use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// The backend the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Sqlite,
    Postgres,
}

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

/// Creates an empty database on the test server and returns its URL.
pub fn fresh_postgres_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SWEEP: Once = Once::new();
    let admin = postgres_admin_url();
    SWEEP.call_once(|| admin_sql(&admin, &leftover_databases_sql()));
    let name = format!("svt_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    admin_sql(&admin, &[format!("CREATE DATABASE {name}")]);
    match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("SIGVAULT_TEST_POSTGRES_URL has no database part: {admin}"),
    }
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
