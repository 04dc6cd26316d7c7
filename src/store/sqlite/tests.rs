//! The SQLite harness of the store contract ([`crate::store::contract_tests`]), and the
//! checks only an embedded file allows: reopening it, its journal mode and per-connection
//! pragmas, and rows written behind the store's back (which must read as corrupt, never as
//! a default).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::SqliteStore;
use crate::store::contract_tests::{
    Fixture, T0, api_key, create, credential, hash, key_record, sealed, store_contract_tests, test_sealer, token,
    unused,
};
use crate::store::{ApiKeyStore, CredentialStore, KeyStore, StoreError, StoreSettings, SystemStore, TokenStore};

/// A directory of its own under the system temp dir, removed on drop (also when a test
/// panics). Unique per process and per call, so parallel tests never share a file.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sigvault-store-{}-{n}", std::process::id()));
        // A crashed run with a recycled process id may have left one behind.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn db(&self) -> PathBuf {
        self.0.join("sigvault.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn fresh_sqlite_store() -> Fixture {
    let home = TempDir::new();
    // Through `store::open`, as the vault opens it.
    let store = crate::store::open(&StoreSettings::Sqlite { path: home.db() })
        .await
        .unwrap();
    store.enable_row_integrity(test_sealer()).await.unwrap();
    Fixture::new(store, home)
}

/// The store in `home`, opened and with row integrity on, as the vault starts it.
async fn open(home: &TempDir) -> SqliteStore {
    let store = SqliteStore::open(&home.db()).await.unwrap();
    store.enable_row_integrity(test_sealer()).await.unwrap();
    store
}

store_contract_tests!(sqlite, fresh_sqlite_store);

const KEY: &str = "ak_000000000000000000000aaa";
const OTHER: &str = "ak_000000000000000000000bbb";

/// A connection of the test's own that sets no pragmas, so it sees what the file holds.
async fn inspect(home: &TempDir) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(home.db())
        .create_if_missing(false);
    sqlx::SqliteConnection::connect_with(&options).await.unwrap()
}

async fn applied_migrations(home: &TempDir) -> Vec<(i64, i64)> {
    sqlx::query_as("SELECT version, applied_at_ms FROM schema_migrations ORDER BY version")
        .fetch_all(&mut inspect(home).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reopened_sqlite_file_keeps_its_data_and_applies_each_migration_once() {
    let home = TempDir::new();
    let key = key_record("durable");
    {
        let store = open(&home).await;
        create(&store, &key, 27).await;
        store.put_value("root_token_hash", b"hash-v1", T0).await.unwrap();
        store
            .insert_system_secret("token_pepper", &sealed(28), T0)
            .await
            .unwrap();
    }
    let applied = applied_migrations(&home).await;
    assert_eq!(applied.first().map(|m| m.0), Some(1));

    let store = open(&home).await;

    assert_eq!(applied_migrations(&home).await, applied);
    assert_eq!(store.get_key("durable").await.unwrap(), Some(key.clone()));
    assert_eq!(store.list_versions(&key.id).await.unwrap(), vec![unused(1, T0)]);
    assert_eq!(store.get_sealed(&key.id, 1).await.unwrap(), Some(sealed(27)));
    assert_eq!(
        store.get_value("root_token_hash").await.unwrap(),
        Some(b"hash-v1".to_vec())
    );
    assert_eq!(store.get_system_secret("token_pepper").await.unwrap(), Some(sealed(28)));
}

/// A data dir of an earlier version keeps its audit events: the table of one row per event
/// is moved into rows of lines at open — every event, every append's end — and dropped.
#[tokio::test]
async fn audit_events_of_the_earlier_table_are_moved_into_rows_of_lines_at_open() {
    use crate::model::{AuditEvent, EventData};
    use crate::store::{AuditFilter, AuditStore};
    let home = TempDir::new();
    drop(open(&home).await);
    let mut conn = inspect(&home).await;
    sqlx::raw_sql(
        "CREATE TABLE audit_events (node TEXT NOT NULL, seq INTEGER NOT NULL, time TEXT NOT NULL, \
         request_id TEXT NOT NULL, principal TEXT NOT NULL, action TEXT NOT NULL, resource TEXT NOT NULL, \
         key_version INTEGER, decision TEXT NOT NULL, policy TEXT, outcome TEXT NOT NULL, source_ip TEXT, \
         user_agent TEXT, secret_hmac TEXT, mac BLOB NOT NULL, batch_end INTEGER NOT NULL DEFAULT 1, \
         PRIMARY KEY (node, seq)) WITHOUT ROWID",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // node-a: appends ending at 3, 4100 and 5000 (the move takes 4096 a transaction); node-b: 2.
    let mut expected = Vec::new();
    for (node, count) in [("node-a", 5000u64), ("node-b", 2)] {
        for seq in 1..=count {
            let data = EventData {
                time_ms: T0 + seq as i64,
                request_id: format!("r-{seq}"),
                principal: if seq % 2 == 0 { "alice" } else { "bob" }.into(),
                action: "Sign".into(),
                resource: "key:k".into(),
                key_version: Some(1),
                outcome: "ok".into(),
                user_agent: Some("ua \"quoted\"".into()),
                ..Default::default()
            };
            let event = AuditEvent::new(seq, node, data);
            let mac = vec![seq as u8; 32];
            let ends = if node == "node-b" {
                seq == count
            } else {
                [3, 4100, 5000].contains(&seq)
            };
            sqlx::query(
                "INSERT INTO audit_events (node, seq, time, request_id, principal, action, resource, key_version, \
                 decision, policy, outcome, source_ip, user_agent, secret_hmac, mac, batch_end) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&event.node)
            .bind(seq as i64)
            .bind(&event.time)
            .bind(&event.request_id)
            .bind(&event.principal)
            .bind(&event.action)
            .bind(&event.resource)
            .bind(event.key_version.map(i64::from))
            .bind(event.decision.as_str())
            .bind(&event.policy)
            .bind(&event.outcome)
            .bind(&event.source_ip)
            .bind(&event.user_agent)
            .bind(&event.secret_hmac)
            .bind(&mac)
            .bind(i64::from(ends))
            .execute(&mut conn)
            .await
            .unwrap();
            expected.push((event, mac));
        }
    }
    drop(conn);

    let store = open(&home).await;

    let (a, b) = expected.split_at(5000);
    assert_eq!(store.audit_range("node-a", 0, 10_000).await.unwrap(), a);
    assert_eq!(store.audit_range("node-b", 0, 10).await.unwrap(), b);
    assert_eq!(store.audit_batch_ends("node-a", 0).await.unwrap(), vec![3, 4100, 5000]);
    assert_eq!(store.audit_batch_ends("node-b", 0).await.unwrap(), vec![2]);
    assert_eq!(store.count_audit(&AuditFilter::default()).await.unwrap(), 5002);
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = 'audit_events'")
        .fetch_all(&mut inspect(&home).await)
        .await
        .unwrap();
    assert_eq!(tables, Vec::<String>::new(), "the earlier table is gone");
}

/// A row whose key says it starts at or before a cut but whose lines all lie after it (an
/// edit behind the store's back) is removed whole by the cut, never left without a line.
#[tokio::test]
async fn a_cut_before_every_line_of_a_row_removes_the_row() {
    use crate::model::{AuditEvent, EventData};
    use crate::store::{AuditBatch, AuditStore};
    let home = TempDir::new();
    let store = open(&home).await;
    let events: Vec<_> = (1..=5u64)
        .map(|seq| {
            (
                AuditEvent::new(seq, "node-a", EventData::default()),
                vec![seq as u8; 32],
            )
        })
        .collect();
    store.append_audit(&AuditBatch::of("node-a", &events)).await.unwrap();
    sqlx::query("UPDATE audit_batches SET first_seq = 0")
        .execute(&mut inspect(&home).await)
        .await
        .unwrap();

    store.truncate_audit("node-a", 0).await.unwrap();

    assert_eq!(store.audit_head("node-a").await.unwrap(), None);
    assert_eq!(store.audit_nodes().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn the_sqlite_file_is_in_wal_journal_mode() {
    let home = TempDir::new();
    let _store = open(&home).await;

    // WAL is recorded in the file itself, so a connection that asks for no journal mode
    // reports it. (`synchronous` is per connection and cannot be seen from here.)
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut inspect(&home).await)
        .await
        .unwrap();

    assert_eq!(mode, "wal");
}

/// `synchronous`, `secure_delete` and `foreign_keys` are per connection: check them on
/// the store's own pools, where a crash-safety regression would hide.
#[tokio::test]
async fn every_connection_is_full_sync_secure_delete_with_foreign_keys() {
    let home = TempDir::new();
    let store = open(&home).await;
    for pool in [&store.writer, &store.reader] {
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
        assert_eq!(sync, 2, "synchronous = FULL");
        let secure: i64 = sqlx::query_scalar("PRAGMA secure_delete")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(secure, 1);
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(pool).await.unwrap();
        assert_eq!(fk, 1);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
        assert_eq!(mode, "wal");
    }
    // The audit connection syncs its commits too: the indexer anchors a batch only after its
    // commit, and the anchor must not name events a power loss took from the store.
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&store.audit_writer)
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous = FULL on the audit connection as well");
}

/// Runs SQL on the store's file behind its back, as a tool or an attacker with the file
/// could.
async fn write_behind(home: &TempDir, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut inspect(home).await)
        .await
        .unwrap();
}

#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(read: Result<T, StoreError>, what: &str) {
    assert!(matches!(read, Err(StoreError::Corrupt(_))), "{what}: {read:?}");
}

/// A stored text none of an enum's values has (a newer build's state, an edit) is
/// `Corrupt` wherever the row is read — never a default, never a panic.
#[tokio::test]
async fn a_row_naming_an_enum_value_this_build_does_not_know_reads_as_corrupt() {
    let home = TempDir::new();
    let store = open(&home).await;
    for name in ["state", "algorithm", "boundary", "prior", "case"] {
        create(&store, &key_record(name), 1).await;
    }
    for (id, principal) in [("SVAKSTATE", "p1"), ("SVAKRULE", "p2")] {
        store.insert_credential(&credential(id, principal), 2).await.unwrap();
    }
    store.insert_api_key(&api_key(KEY, "payments"), &hash(1)).await.unwrap();

    write_behind(
        &home,
        "UPDATE keys SET state = 'archived' WHERE name = 'state'; \
         UPDATE keys SET algorithm = 'hmac-md5' WHERE name = 'algorithm'; \
         UPDATE keys SET boundary = 'enclave' WHERE name = 'boundary'; \
         UPDATE keys SET state = 'pending_deletion', state_before_deletion = 'gone', deletion_due_ms = 0 \
         WHERE name = 'prior'; \
         UPDATE keys SET state = 'Enabled' WHERE name = 'case'; \
         UPDATE credentials SET state = 'suspended' WHERE access_key_id = 'SVAKSTATE'; \
         UPDATE credentials SET on_new_fingerprint = 'ignore' WHERE access_key_id = 'SVAKRULE'; \
         UPDATE api_keys SET state = 'paused';",
    )
    .await;

    for name in ["state", "algorithm", "boundary", "prior", "case"] {
        assert_corrupt(store.get_key(name).await, name);
    }
    assert_corrupt(store.list_keys(None, 100).await, "a listing that meets such a row");
    assert_corrupt(store.keys_due_for_deletion(i64::MAX).await, "keys due for deletion");
    assert_corrupt(store.get_credential("SVAKSTATE").await, "credential state");
    assert_corrupt(store.get_credential("SVAKRULE").await, "credential rule");
    assert_corrupt(store.get_api_key(KEY).await, "API key state");
    assert_corrupt(store.find_api_key(&hash(1)).await, "API key found by hash");
}

/// A JSON column that does not hold its type's shape is `Corrupt` too.
#[tokio::test]
async fn a_json_column_of_the_wrong_shape_reads_as_corrupt() {
    let home = TempDir::new();
    let store = open(&home).await;
    for name in ["text", "number-tag"] {
        create(&store, &key_record(name), 1).await;
    }
    store.insert_token(&token("tok_groups", 7, &["service"])).await.unwrap();
    store.insert_api_key(&api_key(KEY, "payments"), &hash(1)).await.unwrap();
    store
        .insert_api_key(&api_key(OTHER, "payments"), &hash(2))
        .await
        .unwrap();

    write_behind(
        &home,
        &format!(
            "UPDATE keys SET tags = 'not json' WHERE name = 'text'; \
             UPDATE keys SET tags = '{{\"team\":1}}' WHERE name = 'number-tag'; \
             UPDATE caller_tokens SET groups_json = '\"admin\"'; \
             UPDATE api_keys SET meta = '[1,2]' WHERE id = '{KEY}'; \
             UPDATE api_keys SET permissions = '{{\"orders.read\":true}}' WHERE id = '{OTHER}';"
        ),
    )
    .await;

    assert_corrupt(store.get_key("text").await, "tags that are not JSON");
    assert_corrupt(store.get_key("number-tag").await, "a tag value that is not a string");
    assert_corrupt(store.get_token("tok_groups").await, "groups that are not a list");
    assert_corrupt(store.find_token(&[7; 32]).await, "groups, found by hash");
    assert_corrupt(store.get_api_key(KEY).await, "meta that is not an object");
    assert_corrupt(store.get_api_key(OTHER).await, "permissions that are not a list");
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(read: Result<T, StoreError>, table: &str, id: &str) {
    match read {
        Err(StoreError::Integrity { table: t, id: i }) if t == table && i == id => {}
        other => panic!("{table}/{id}: expected an integrity failure, got {other:?}"),
    }
}

/// Each edit a database writer could make to gain a right — groups, revocation, a key's
/// owner, state or algorithm, an API key's permissions, a hash pointed at another key, a
/// credential's state — leaves a row whose tag no longer checks: it is refused where it is
/// read, a write that starts from it is refused too (so it is never re-tagged), and the
/// untouched rows still serve.
#[tokio::test]
async fn a_protected_row_edited_behind_the_store_is_refused_wherever_it_is_read() {
    use crate::store::{ApiKeyPatch, CredentialPatch};
    let home = TempDir::new();
    let store = open(&home).await;
    store.insert_token(&token("tok_svc", 1, &["services"])).await.unwrap();
    store.insert_token(&token("tok_gone", 2, &["services"])).await.unwrap();
    store.revoke_token("tok_gone", T0 + 1).await.unwrap();
    for name in ["owned", "disabled", "sha256", "intact"] {
        create(&store, &key_record(name), 1).await;
    }
    let disabled = store.get_key("disabled").await.unwrap().unwrap();
    store
        .update_key(&crate::store::KeyRecord {
            state: crate::model::KeyState::Disabled,
            ..disabled
        })
        .await
        .unwrap();
    store.insert_api_key(&api_key(KEY, "payments"), &hash(1)).await.unwrap();
    store
        .insert_api_key(&api_key(OTHER, "intruder"), &hash(2))
        .await
        .unwrap();
    store
        .insert_credential(&credential("SVAKEDITED", "ci"), 2)
        .await
        .unwrap();
    store
        .update_credential(
            "SVAKEDITED",
            &CredentialPatch {
                state: Some(crate::model::CredentialState::Inactive),
                ..CredentialPatch::default()
            },
            T0 + 2,
        )
        .await
        .unwrap();

    write_behind(
        &home,
        &format!(
            "UPDATE caller_tokens SET groups_json = '[\"admin\"]' WHERE id = 'tok_svc'; \
             UPDATE caller_tokens SET revoked_at_ms = NULL WHERE id = 'tok_gone'; \
             UPDATE keys SET owner = 'svc:intruder' WHERE name = 'owned'; \
             UPDATE keys SET state = 'enabled' WHERE name = 'disabled'; \
             UPDATE keys SET algorithm = 'hmac-sha512' WHERE name = 'sha256'; \
             UPDATE api_keys SET permissions = '[\"admin.all\"]' WHERE id = '{KEY}'; \
             UPDATE api_key_hashes SET key_id = '{KEY}' WHERE key_id = '{OTHER}'; \
             UPDATE credentials SET state = 'active' WHERE access_key_id = 'SVAKEDITED';"
        ),
    )
    .await;

    assert_refused(store.get_token("tok_svc").await, "caller_tokens", "tok_svc");
    assert_refused(store.find_token(&[1; 32]).await, "caller_tokens", "tok_svc");
    assert_refused(store.find_token(&[2; 32]).await, "caller_tokens", "tok_gone");
    assert_refused(store.revoke_token("tok_svc", T0 + 3).await, "caller_tokens", "tok_svc");
    assert_refused(store.get_token("tok_svc").await, "caller_tokens", "tok_svc");
    for name in ["owned", "disabled", "sha256"] {
        assert_refused(store.get_key(name).await, "keys", &format!("kid-{name}"));
    }
    let owned = key_record("owned");
    assert_refused(store.update_key(&owned).await, "keys", "kid-owned");
    assert_refused(store.list_keys(None, 10).await, "keys", "kid-disabled");
    assert_eq!(
        store.get_key("intact").await.unwrap().map(|k| k.name),
        Some("intact".into())
    );
    assert_refused(store.get_api_key(KEY).await, "api_keys", KEY);
    assert_refused(
        store.update_api_key(KEY, &ApiKeyPatch::default(), T0 + 3).await,
        "api_keys",
        KEY,
    );
    let pointed = crate::store::ApiKeyHashRow::new(&hash(2), KEY, None).hash_hex;
    assert_refused(store.find_api_key(&hash(2)).await, "api_key_hashes", &pointed);
    assert_refused(store.get_credential("SVAKEDITED").await, "credentials", "SVAKEDITED");
    assert_refused(
        store
            .update_credential("SVAKEDITED", &CredentialPatch::default(), T0 + 3)
            .await,
        "credentials",
        "SVAKEDITED",
    );
}

/// A store from before row integrity is migrated by the start that enables it, its rows
/// tagged in the same transaction; after that, a row without a tag (cleared to have an
/// edit re-tagged) is refused, and reopening does not tag it again.
#[tokio::test]
async fn rows_from_before_row_integrity_are_tagged_once_by_the_start_that_adds_it() {
    let home = TempDir::new();
    drop(SqliteStore::open(&home.db()).await.unwrap());
    write_behind(
        &home,
        &format!(
            "INSERT INTO caller_tokens (id, hash, principal, groups_json, description, created_at_ms) \
             VALUES ('tok_old', x'{}', 'payments', '[\"services\"]', NULL, {T0}); \
             INSERT INTO keys (id, name, tenant, algorithm, boundary, owner, tags, state, latest_version, \
             min_verify_version, exportable, created_at_ms, updated_at_ms, revision) VALUES ('kid-old', 'old', \
             'default', 'hmac-sha256', 'process', 'svc:payments', '{{}}', 'enabled', 1, 1, 0, {T0}, {T0}, 0); \
             INSERT INTO api_keys (id, prefix, principal, state, meta, permissions, created_at_ms, updated_at_ms) \
             VALUES ('{KEY}', 'sk', 'payments', 'enabled', '{{\"plan\":0.1}}', '[\"orders.read\"]', {T0}, {T0}); \
             INSERT INTO api_key_hashes (hash, key_id, valid_until_ms) VALUES (x'{}', '{KEY}', NULL);",
            "01".repeat(32),
            "ab".repeat(32)
        ),
    )
    .await;

    let store = open(&home).await;
    let old = store.get_token("tok_old").await.unwrap().unwrap();
    assert_eq!(
        (old.principal.as_str(), old.groups.clone()),
        ("payments", vec!["services".to_owned()])
    );
    assert_eq!(
        store.get_key("old").await.unwrap().map(|k| k.owner),
        Some("svc:payments".into())
    );
    let (found, _) = store.find_api_key(&[0xab; 32]).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.permissions.clone()),
        (KEY, vec!["orders.read".to_owned()])
    );
    let applied = applied_migrations(&home).await;
    assert!(applied.iter().any(|m| m.0 == 10), "{applied:?}");
    drop(store);

    write_behind(
        &home,
        "UPDATE caller_tokens SET groups_json = '[\"admin\"]', mac = NULL; UPDATE keys SET mac = NULL;",
    )
    .await;
    let store = open(&home).await;
    assert_refused(store.get_token("tok_old").await, "caller_tokens", "tok_old");
    assert_refused(store.get_key("old").await, "keys", "kid-old");
    assert_eq!(applied_migrations(&home).await, applied, "no migration ran again");
}

/// A data dir from before API keys had fingerprint rules (migration 11): its API keys, tagged
/// without a rule, still read, are found by their hash and take a rule — re-tagged — after
/// the migration, which runs once; their fingerprints start empty.
#[tokio::test]
async fn api_keys_from_before_fingerprint_rules_still_serve_and_take_one_after_the_migration() {
    use crate::model::OnNewFingerprint;
    use crate::store::ApiKeyPatch;
    let home = TempDir::new();
    let old = api_key(KEY, "payments");
    {
        let store = open(&home).await;
        store.insert_api_key(&old, &hash(1)).await.unwrap();
    }
    // What the build before migration 11 left: no rule column, no fingerprint table, the
    // migration not applied; the row's tag is the one that build wrote (a key without a rule
    // encodes as before rules existed, pinned in `store::integrity`'s tests).
    write_behind(
        &home,
        "ALTER TABLE api_keys DROP COLUMN on_new_fingerprint; DROP TABLE api_key_fingerprints;          DELETE FROM schema_migrations WHERE version = 11;",
    )
    .await;
    assert!(!applied_migrations(&home).await.iter().any(|m| m.0 == 11));

    let store = open(&home).await;
    assert_eq!(store.get_api_key(KEY).await.unwrap().as_ref(), Some(&old));
    assert_eq!(store.find_api_key(&hash(1)).await.unwrap(), Some((old.clone(), None)));
    assert!(store.list_api_key_fingerprints(KEY).await.unwrap().is_empty());
    let watched = ApiKeyPatch {
        on_new_fingerprint: Some(Some(OnNewFingerprint::Deactivate)),
        ..ApiKeyPatch::default()
    };
    let after = store.update_api_key(KEY, &watched, T0 + 1).await.unwrap().unwrap();
    assert_eq!(after.on_new_fingerprint, Some(OnNewFingerprint::Deactivate));
    let applied = applied_migrations(&home).await;
    assert_eq!(applied.iter().filter(|m| m.0 == 11).count(), 1);
    drop(store);

    let store = open(&home).await;
    assert_eq!(store.get_api_key(KEY).await.unwrap(), Some(after));
    assert_eq!(applied_migrations(&home).await, applied, "no migration ran again");
}

/// An API key's fingerprint rule is bound into its tag both ways: clearing a `deactivate`
/// rule (so a leaked key keeps working from anywhere) or giving a key a rule behind the
/// store leaves a row that is refused; a rule this build does not know reads as corrupt.
#[tokio::test]
async fn an_api_key_fingerprint_rule_edited_behind_the_store_is_refused() {
    use crate::model::OnNewFingerprint;
    let home = TempDir::new();
    let store = open(&home).await;
    let watched = crate::store::ApiKeyRecord {
        on_new_fingerprint: Some(OnNewFingerprint::Deactivate),
        ..api_key(KEY, "payments")
    };
    store.insert_api_key(&watched, &hash(1)).await.unwrap();
    store
        .insert_api_key(&api_key(OTHER, "payments"), &hash(2))
        .await
        .unwrap();
    const THIRD: &str = "ak_000000000000000000000ccc";
    store
        .insert_api_key(&api_key(THIRD, "payments"), &hash(3))
        .await
        .unwrap();

    write_behind(
        &home,
        &format!(
            "UPDATE api_keys SET on_new_fingerprint = NULL WHERE id = '{KEY}';              UPDATE api_keys SET on_new_fingerprint = 'record' WHERE id = '{OTHER}';              UPDATE api_keys SET on_new_fingerprint = 'ignore' WHERE id = '{THIRD}';"
        ),
    )
    .await;

    assert_refused(store.get_api_key(KEY).await, "api_keys", KEY);
    assert_refused(store.find_api_key(&hash(1)).await, "api_keys", KEY);
    assert_refused(store.get_api_key(OTHER).await, "api_keys", OTHER);
    assert_corrupt(store.get_api_key(THIRD).await, "a rule this build does not know");
}

/// Without a sealer, protected rows neither read nor write (the vault always hands one
/// over before serving; a tool that forgot would otherwise skip every check).
#[tokio::test]
async fn a_store_without_a_sealer_reads_and_writes_no_protected_row() {
    let home = TempDir::new();
    let store = SqliteStore::open(&home.db()).await.unwrap();
    assert!(matches!(
        store.insert_token(&token("tok_x", 1, &[])).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(store.get_key("k").await, Err(StoreError::Unavailable(_))));
}

/// A data dir from before keys had an origin (migration 12): its keys, tagged without one,
/// still read — as generated, the reading under which nothing can be imported into them —
/// and the migration runs once.
#[tokio::test]
async fn keys_from_before_origins_read_as_generated_with_their_tags_valid() {
    use crate::model::KeyOrigin;
    let home = TempDir::new();
    let old = key_record("before-origins");
    {
        let store = open(&home).await;
        create(&store, &old, 1).await;
    }
    write_behind(
        &home,
        "ALTER TABLE keys DROP COLUMN origin; DELETE FROM schema_migrations WHERE version = 12;",
    )
    .await;
    assert!(!applied_migrations(&home).await.iter().any(|m| m.0 == 12));

    let store = open(&home).await;
    let read = store.get_key("before-origins").await.unwrap().unwrap();
    assert_eq!(read.origin, KeyOrigin::Generated);
    assert_eq!(read, old);
    assert_eq!(applied_migrations(&home).await.iter().filter(|m| m.0 == 12).count(), 1);
}

/// A key's origin is bound into its tag both ways: a generated key made `imported` behind
/// the store (so known material could be imported into it) is refused, and so is an
/// imported key made `generated`.
#[tokio::test]
async fn a_key_origin_edited_behind_the_store_is_refused() {
    use crate::model::KeyOrigin;
    let home = TempDir::new();
    let store = open(&home).await;
    create(&store, &key_record("generated"), 1).await;
    let imported = crate::store::KeyRecord {
        origin: KeyOrigin::Imported,
        ..key_record("imported")
    };
    create(&store, &imported, 2).await;
    write_behind(
        &home,
        "UPDATE keys SET origin = 'imported' WHERE name = 'generated';          UPDATE keys SET origin = 'generated' WHERE name = 'imported';",
    )
    .await;
    assert_refused(store.get_key("generated").await, "keys", "kid-generated");
    assert_refused(store.get_key("imported").await, "keys", "kid-imported");
}

/// A data dir from before keys had `min_encryption_version` and `deletion_allowed`
/// (migration 15): its keys, tagged without them, still read — every version usable,
/// deletion allowed, as they were — and the migration runs once.
#[tokio::test]
async fn keys_from_before_use_settings_read_as_they_were_with_their_tags_valid() {
    let home = TempDir::new();
    let old = key_record("before-use-settings");
    {
        let store = open(&home).await;
        create(&store, &old, 1).await;
    }
    write_behind(
        &home,
        "ALTER TABLE keys DROP COLUMN min_encryption_version; ALTER TABLE keys DROP COLUMN deletion_allowed; \
         DELETE FROM schema_migrations WHERE version = 15;",
    )
    .await;
    assert!(!applied_migrations(&home).await.iter().any(|m| m.0 == 15));

    let store = open(&home).await;
    let read = store.get_key("before-use-settings").await.unwrap().unwrap();
    assert_eq!((read.min_encryption_version, read.deletion_allowed), (0, true));
    assert_eq!(read, old);
    assert_eq!(applied_migrations(&home).await.iter().filter(|m| m.0 == 15).count(), 1);
}

/// The settings are bound into the row's tag: a key whose deletion was forbidden, allowed
/// behind the store (so it could be destroyed), is refused, and so is a floor lowered.
#[tokio::test]
async fn a_key_use_setting_edited_behind_the_store_is_refused() {
    let home = TempDir::new();
    let store = open(&home).await;
    let guarded = crate::store::KeyRecord {
        deletion_allowed: false,
        ..key_record("guarded")
    };
    create(&store, &guarded, 1).await;
    let floored = crate::store::KeyRecord {
        min_encryption_version: 1,
        ..key_record("floored")
    };
    create(&store, &floored, 2).await;
    write_behind(
        &home,
        "UPDATE keys SET deletion_allowed = 1 WHERE name = 'guarded'; \
         UPDATE keys SET min_encryption_version = 0 WHERE name = 'floored';",
    )
    .await;
    assert_refused(store.get_key("guarded").await, "keys", "kid-guarded");
    assert_refused(store.get_key("floored").await, "keys", "kid-floored");
}
