//! The PostgreSQL harness of the store contract ([`crate::store::contract_tests`]), and the
//! checks only a shared server database calls for: two nodes (two pools) racing on one
//! row, a database that cannot be reached, and the column types of the schema.
//!
//! Every test gets a database of its own on the server `SIGVAULT_TEST_POSTGRES_URL` names
//! (default `postgres://postgres@127.0.0.1:5432/postgres`; PostgreSQL 13 or later, a role
//! allowed to create databases), dropped when the test ends. Without a reachable server these tests
//! fail: they never skip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::{ACQUIRE_TIMEOUT, PgStore};
use crate::store::contract_tests::{
    Fixture, api_key, create, credential, events, key_record, store_contract_tests, test_sealer, token, version,
};
use crate::store::{
    ApiKeyStore, AuditBatch, AuditStore, CredentialStore, KeyStore, StoreError, StoreSettings, SystemStore, TokenStore,
};

/// The server the tests create their databases on.
fn server_url() -> String {
    std::env::var("SIGVAULT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` naming database `name` instead of its own (the path after the host; any query is
/// kept).
fn url_of_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base
        .get(host_start..)
        .and_then(|rest| rest.find('/'))
        .map_or(base.len(), |i| host_start + i);
    let mut out = format!("{}/{name}", base.get(..host_end).unwrap_or(base));
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn admin() -> PgConnection {
    PgConnection::connect(&server_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at SIGVAULT_TEST_POSTGRES_URL is unreachable: {e}"))
}

/// A database of its own on the test server, dropped (with its connections) on drop, also
/// when a test panics. Unique per process and per call; a leftover of a crashed run with a
/// recycled process id is dropped first.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sigvault_t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = admin().await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        Self { name }
    }

    fn url(&self) -> String {
        url_of_database(&server_url(), &self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The test's runtime cannot block here; a thread of its own can.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&server_url()).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

async fn fresh_postgres_store() -> Fixture {
    let db = TestDb::new().await;
    // Through `store::open`, as the vault opens it.
    let store = crate::store::open(&StoreSettings::Postgres { url: db.url() })
        .await
        .unwrap();
    store.enable_row_integrity(test_sealer()).await.unwrap();
    Fixture::new(store, db)
}

store_contract_tests!(postgres, fresh_postgres_store);

/// Another node on the same database: a pool of its own, row integrity on.
async fn node(db: &TestDb) -> PgStore {
    let store = PgStore::open(&db.url()).await.unwrap();
    store.enable_row_integrity(test_sealer()).await.unwrap();
    store
}

#[tokio::test]
async fn two_nodes_adding_the_same_version_one_wins_and_the_other_conflicts() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let key = key_record("raced");
    create(&a, &key, 1).await;
    let mut current = key;
    for round in 2..12u32 {
        let new = version(round, 1_767_225_600_000 + i64::from(round), 2);
        let (ra, rb) = tokio::join!(a.add_version(&current, &new), b.add_version(&current, &new));
        let (won, lost) = match (ra, rb) {
            (Ok(won), lost) | (lost, Ok(won)) => (won, lost),
            other => panic!("round {round}: neither won: {other:?}"),
        };
        assert!(matches!(lost, Err(StoreError::Conflict)), "round {round}: {lost:?}");
        assert_eq!(won.latest_version, round);
        assert_eq!(a.get_key("raced").await.unwrap(), Some(won.clone()));
        current = won;
    }
    assert_eq!(b.list_versions(&current.id).await.unwrap().len(), 11);
}

#[tokio::test]
async fn concurrent_credit_takers_on_two_nodes_take_exactly_the_credits_there_are() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let id = "ak_000000000000000000000ccc";
    let key = crate::store::ApiKeyRecord {
        remaining: Some(10),
        ..api_key(id, "payments")
    };
    a.insert_api_key(&key, &[9; 32]).await.unwrap();
    let takers = (0..20).map(|i| {
        let store = if i % 2 == 0 { &a } else { &b };
        store.consume_api_key_credit(id)
    });
    let taken = futures_util::future::join_all(takers).await;
    let mut left: Vec<u64> = taken.into_iter().filter_map(|r| r.unwrap()).collect();
    left.sort_unstable();
    assert_eq!(left, (0..10).collect::<Vec<u64>>(), "each credit taken once");
    assert_eq!(b.get_api_key(id).await.unwrap().and_then(|k| k.remaining), Some(0));
}

#[tokio::test]
async fn concurrent_inserts_for_one_principal_on_two_nodes_stop_at_its_limit() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let ids: Vec<String> = (0..12).map(|i| format!("SVAKRACE{i:02}")).collect();
    let inserts = ids.iter().enumerate().map(|(i, id)| {
        let store = if i % 2 == 0 { &a } else { &b };
        async move { store.insert_credential(&credential(id, "ci"), 3).await }
    });
    let results = futures_util::future::join_all(inserts).await;
    let stored = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(stored, 3, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(StoreError::LimitReached(_))))
    );
    assert_eq!(a.list_credentials(Some("ci"), None, 100).await.unwrap().len(), 3);
}

/// Each node appends to its own chain: two nodes appending at once never wait on or refuse
/// each other, and one batch appended twice at once is taken once.
#[tokio::test]
async fn nodes_appending_audit_events_at_once_do_not_conflict() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let (of_a, of_b) = (events("node-a", 100), events("node-b", 100));
    async fn append_all(store: &PgStore, list: &[crate::store::StoredEvent]) {
        for chunk in list.chunks(5) {
            let node = chunk.first().map_or("", |(e, _)| e.node.as_str());
            store.append_audit(&AuditBatch::of(node, chunk)).await.unwrap();
        }
    }
    tokio::join!(append_all(&a, &of_a), append_all(&b, &of_b));
    assert_eq!(b.audit_range("node-a", 0, 1000).await.unwrap(), of_a);
    assert_eq!(a.audit_range("node-b", 0, 1000).await.unwrap(), of_b);

    let more = events("node-a", 105);
    let twice = AuditBatch::of("node-a", more.get(100..).unwrap());
    let (ra, rb) = tokio::join!(a.append_audit(&twice), b.append_audit(&twice));
    assert!(
        matches!(
            (&ra, &rb),
            (Ok(()), Err(StoreError::AlreadyExists)) | (Err(StoreError::AlreadyExists), Ok(()))
        ),
        "{ra:?} {rb:?}"
    );
    assert_eq!(a.audit_range("node-a", 0, 1000).await.unwrap(), more);
    assert_eq!(a.audit_batch_ends("node-a", 100).await.unwrap(), vec![105]);
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_within_the_acquire_timeout() {
    let started = Instant::now();
    let opened = crate::store::open(&StoreSettings::Postgres {
        url: "postgres://sigvault:hunter2@127.0.0.1:1/sigvault".into(),
    })
    .await;
    let took = started.elapsed();
    match opened {
        Err(StoreError::Open { path, .. }) => assert_eq!(path, "postgres://sigvault:***@127.0.0.1:1/sigvault"),
        other => panic!("expected Open, got {:?}", other.map(|_| "a store")),
    }
    assert!(took < ACQUIRE_TIMEOUT + Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn a_reopened_database_keeps_its_data_and_applies_each_migration_once() {
    let db = TestDb::new().await;
    let key = key_record("durable");
    create(&node(&db).await, &key, 3).await;
    let again = node(&db).await;
    assert_eq!(again.get_key("durable").await.unwrap(), Some(key));
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&again.pool)
        .await
        .unwrap();
    assert_eq!(applied, vec![1, 2, 3, 4, 5, 6]);
}

/// Sealed records, hashes and tags are `bytea` (never text a driver could re-encode), and
/// every id a listing sorts by compares by bytes (`COLLATE "C"`), read from the catalog.
#[tokio::test]
async fn sealed_columns_are_bytea_and_sorted_ids_collate_as_bytes() {
    let db = TestDb::new().await;
    let store = Arc::new(node(&db).await);
    let types: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, collation_name::text \
         FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&store.pool)
    .await
    .unwrap();
    let of = |table: &str, col: &str| {
        types
            .iter()
            .find(|(t, c, _, _)| t == table && c == col)
            .map(|(_, _, ty, coll)| (ty.as_str(), coll.as_deref()))
            .unwrap_or_else(|| panic!("no column {table}.{col}"))
    };
    for table in ["key_versions", "system_secrets", "credentials"] {
        for col in ["wrapped_dek", "nonce", "ciphertext"] {
            assert_eq!(of(table, col).0, "bytea", "{table}.{col}");
        }
    }
    for (table, col) in [
        ("keys", "mac"),
        ("caller_tokens", "hash"),
        ("caller_tokens", "mac"),
        ("credentials", "mac"),
        ("api_keys", "mac"),
        ("api_key_hashes", "hash"),
        ("api_key_hashes", "mac"),
        ("system_values", "value"),
        ("audit_batches", "lines"),
    ] {
        assert_eq!(of(table, col).0, "bytea", "{table}.{col}");
    }
    for (table, col) in [
        ("keys", "name"),
        ("keys", "id"),
        ("caller_tokens", "id"),
        ("credentials", "access_key_id"),
        ("credentials", "principal"),
        ("api_keys", "id"),
        ("audit_batches", "node"),
    ] {
        assert_eq!(of(table, col), ("text", Some("C")), "{table}.{col}");
    }
}

/// A protected row edited behind the store (here: with the store's own connections, as any
/// database writer could) is refused where it is read and where a write starts from it, as
/// in SQLite; and a store with no sealer reads no protected row.
#[tokio::test]
async fn a_protected_row_edited_behind_the_store_is_refused() {
    let db = TestDb::new().await;
    let store = node(&db).await;
    let key = key_record("edited");
    create(&store, &key, 5).await;
    store.insert_token(&token("tok_edited", 6, &["service"])).await.unwrap();
    sqlx::raw_sql(
        "UPDATE keys SET owner = 'svc:attacker' WHERE name = 'edited'; \
         UPDATE caller_tokens SET groups_json = '[\"admin\"]' WHERE id = 'tok_edited';",
    )
    .execute(&store.pool)
    .await
    .unwrap();

    let refused = |r: &Result<_, StoreError>, table: &str| matches!(r, Err(StoreError::Integrity { table: t, .. }) if *t == table);
    assert!(refused(&store.get_key("edited").await.map(|_| ()), "keys"));
    assert!(refused(&store.update_key(&key).await.map(|_| ()), "keys"));
    assert!(refused(
        &store.get_token("tok_edited").await.map(|_| ()),
        "caller_tokens"
    ));
    assert!(refused(
        &store.revoke_token("tok_edited", 1).await.map(|_| ()),
        "caller_tokens"
    ));

    let unsealed = PgStore::open(&db.url()).await.unwrap();
    assert!(matches!(
        unsealed.get_token("tok_edited").await,
        Err(StoreError::Unavailable(_))
    ));
}

/// `url` with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[tokio::test]
async fn sslmode_require_encrypts_every_connection_and_verify_full_refuses_an_untrusted_certificate() {
    let db = TestDb::new().await;
    let server_has_tls: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut admin().await)
        .await
        .unwrap();
    let required = with_param(&db.url(), "sslmode=require");
    if server_has_tls != "on" {
        // A server without TLS: a store that asks for it must not fall back to plain text.
        assert!(
            PgStore::open(&required).await.is_err(),
            "sslmode=require over a plain server"
        );
        return;
    }
    let store = PgStore::open(&required).await.expect("open over TLS");
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert!(encrypted, "the store's connection is encrypted");
    store.pool.close().await;
    // The test server's certificate is self-signed: checked against the public roots this
    // build bundles, it is refused.
    let strict = with_param(&db.url(), "sslmode=verify-full");
    assert!(
        PgStore::open(&strict).await.is_err(),
        "an untrusted certificate under verify-full"
    );
}

#[tokio::test]
async fn one_node_at_a_time_leads_each_kind_and_a_dead_or_done_lead_frees_it() {
    use crate::store::KekStore;
    use crate::store::kek::LeadOf;
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let rewrap = a.try_lead(LeadOf::Rewrap).await.unwrap();
    assert!(rewrap.is_some(), "the first node leads the rewrap");
    assert!(b.try_lead(LeadOf::Rewrap).await.unwrap().is_none(), "not two at once");
    assert!(
        a.try_lead(LeadOf::Rewrap).await.unwrap().is_none(),
        "not twice on one node either"
    );
    // A rotation has a lead of its own: never refused because a rewrap runs.
    let rotation = b.try_lead(LeadOf::Rotation).await.unwrap();
    assert!(rotation.is_some());
    assert!(a.try_lead(LeadOf::Rotation).await.unwrap().is_none());
    drop(rewrap);
    drop(rotation);
    // The connection that held a lead is closed, so the server frees it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if b.try_lead(LeadOf::Rewrap).await.unwrap().is_some() && a.try_lead(LeadOf::Rotation).await.unwrap().is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "a dropped lead was not freed within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
