//! The one test body every [`Store`] backend must pass, and its SQLite harness.
//!
//! Each `pub(crate) async fn` below checks one behaviour of the trait through `&dyn Store`
//! on a fresh, empty store, so a backend cannot pass by being special-cased. A backend runs
//! all of them with [`store_contract_tests!`]; SQLite does so at the bottom of this module,
//! next to the checks only an embedded file has (reopening, WAL).
//!
//! The checks pin what the trait leaves implicit, so every backend agrees on it: names sort
//! by bytes (a PostgreSQL store needs `COLLATE "C"`), and `add_version` stamps
//! `updated_at_ms` with the new version's creation time.
//!
//! Nothing here may hold real key material: the sealed records are made-up bytes.

mod api_keys;
mod credentials;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sqlite::SqliteStore;
use super::{
    AuditFilter, KeyRecord, KeyStore, NewVersion, Store, StoreError, SystemStore, TokenRecord, UsageDelta, VersionInfo,
};
use crate::envelope::SealedRecord;
use crate::model::{Algorithm, AuditEvent, Boundary, EventData, KeyState};

/// 2026-01-01T00:00:00Z in Unix milliseconds.
const T0: i64 = 1_767_225_600_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Runs every contract check as its own `#[tokio::test]` in a module named `$backend`.
/// `$fresh` names an `async fn() -> Fixture` that returns an empty store; it is resolved in
/// the invoking module.
macro_rules! store_contract_tests {
    ($backend:ident, $fresh:path) => {
        $crate::store::contract_tests::store_contract_tests!(@each $backend, $fresh,
            a_fresh_store_is_empty,
            create_then_get_returns_the_same_record,
            a_duplicate_name_is_already_exists,
            list_keys_pages_in_name_order_after_a_cursor,
            add_version_bumps_latest_and_revision_and_refuses_a_stale_revision,
            update_key_writes_only_mutable_settings_and_refuses_a_stale_revision,
            update_key_clears_the_deletion_settings_on_restore,
            destroy_key_removes_every_version_unless_the_row_changed,
            keys_due_for_deletion_returns_only_pending_keys_past_their_date,
            auto_rotating_keys_reports_latest_version_creation_time,
            add_usage_accumulates_and_keeps_the_latest_last_used,
            add_usage_ignores_unknown_versions,
            insert_system_secret_keeps_the_first_one,
            put_value_overwrites,
            get_sealed_returns_the_exact_record,
            count_audit_counts_what_query_audit_returns,
            tokens_are_found_by_id_and_by_hash_and_revoked_once,
            credentials_are_limited_per_principal_and_listed_in_id_order,
            update_credential_changes_only_what_the_patch_names,
            credential_activity_adds_up_keeps_the_latest_and_the_most_recent_fingerprints,
            api_keys_are_found_by_hash_read_by_id_and_listed_in_id_order,
            update_api_key_changes_only_what_the_patch_names_and_leaves_a_revoked_key_unchanged,
            revoke_api_key_deletes_every_hash_and_keeps_the_first_revocation_time,
            reroll_api_key_keeps_the_old_hash_until_its_grace_end_and_replaces_an_earlier_one,
            consume_api_key_credit_counts_down_to_zero_and_never_below,
            touch_api_keys_moves_last_use_forward_only,
        );
    };
    (@each $backend:ident, $fresh:path, $($check:ident),+ $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let fixture = $fresh().await;
                    $crate::store::contract_tests::$check(&*fixture.store).await;
                }
            )+
        }
    };
}
pub(crate) use store_contract_tests;

pub(crate) use api_keys::*;
pub(crate) use credentials::*;

/// An empty store for one test and whatever it lives in. `store` is declared first so it
/// is dropped (its connections closed) before `_home` is torn down.
pub(crate) struct Fixture {
    pub(crate) store: Box<dyn Store>,
    _home: Box<dyn std::any::Any>,
}

impl Fixture {
    pub(crate) fn new(store: Box<dyn Store>, home: impl std::any::Any) -> Self {
        Self {
            store,
            _home: Box::new(home),
        }
    }
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn key_record(name: &str) -> KeyRecord {
    KeyRecord {
        id: format!("kid-{name}"),
        name: name.to_owned(),
        tenant: "default".into(),
        algorithm: Algorithm::HmacSha256,
        boundary: Boundary::Process,
        owner: "svc:payments-api".into(),
        tags: BTreeMap::new(),
        state: KeyState::Enabled,
        latest_version: 1,
        min_verify_version: 1,
        exportable: false,
        auto_rotate_period_s: None,
        deletion_due_ms: None,
        state_before_deletion: None,
        created_at_ms: T0,
        updated_at_ms: T0,
        revision: 0,
    }
}

/// A plausible sealed record: an RFC 5649-wrapped 32-byte DEK (40 bytes), a 12-byte nonce
/// and a 32-byte secret plus its 16-byte tag. `seed` makes each record distinct; seed 0
/// starts with NUL bytes, which a text column would mangle.
fn sealed(seed: u8) -> SealedRecord {
    let bytes = |len: u8, step: u8| (0..len).map(|i| seed.wrapping_add(i.wrapping_mul(step))).collect();
    SealedRecord {
        format: 1,
        kek_id: format!("pkcs11:sigvault-kek:{}", 1 + seed % 3),
        wrapped_dek: bytes(40, 7),
        nonce: bytes(12, 13),
        ciphertext: bytes(48, 29),
    }
}

fn version(version: u32, created_at_ms: i64, seed: u8) -> NewVersion {
    NewVersion {
        version,
        created_at_ms,
        sealed: sealed(seed),
    }
}

fn unused(version: u32, created_at_ms: i64) -> VersionInfo {
    VersionInfo {
        version,
        created_at_ms,
        sign_count: 0,
        verify_count: 0,
        last_used_at_ms: None,
    }
}

fn usage(key: &KeyRecord, version: u32, signs: u64, verifies: u64, last_used_at_ms: i64) -> UsageDelta {
    UsageDelta {
        key_id: key.id.clone(),
        version,
        signs,
        verifies,
        last_used_at_ms,
    }
}

/// Creates `key` with a first version made from `seed` at `key.created_at_ms`.
async fn create(store: &dyn Store, key: &KeyRecord, seed: u8) {
    store
        .create_key(key, &version(1, key.created_at_ms, seed))
        .await
        .unwrap();
}

fn names(keys: &[KeyRecord]) -> Vec<&str> {
    keys.iter().map(|k| k.name.as_str()).collect()
}

pub(crate) async fn a_fresh_store_is_empty(store: &dyn Store) {
    store.ping().await.unwrap();
    assert_eq!(store.list_keys(None, 100).await.unwrap(), vec![]);
    assert_eq!(store.get_key("payments-webhook").await.unwrap(), None);
    assert_eq!(store.get_system_secret("token_pepper").await.unwrap(), None);
    assert_eq!(store.get_value("root_token_hash").await.unwrap(), None);
    assert_eq!(store.keys_due_for_deletion(i64::MAX).await.unwrap(), vec![]);
    assert_eq!(store.auto_rotating_keys().await.unwrap(), vec![]);
}

pub(crate) async fn create_then_get_returns_the_same_record(store: &dyn Store) {
    // Every optional field set, so a dropped column cannot hide behind a default. (The
    // domain never creates a key pending deletion; the store must not care.)
    let key = KeyRecord {
        tags: tags(&[("team", "payments"), ("env", "prod")]),
        state: KeyState::PendingDeletion,
        exportable: true,
        auto_rotate_period_s: Some(90 * 86_400),
        deletion_due_ms: Some(T0 + 7 * DAY_MS),
        state_before_deletion: Some(KeyState::Disabled),
        updated_at_ms: T0 + 1,
        ..key_record("payments.webhook-key_1")
    };
    let first = version(1, T0, 0);
    store.create_key(&key, &first).await.unwrap();

    assert_eq!(
        store.get_key("payments.webhook-key_1").await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.list_versions(&key.id).await.unwrap(), vec![unused(1, T0)]);
    assert_eq!(store.get_sealed(&key.id, 1).await.unwrap(), Some(first.sealed));
    assert_eq!(store.get_key("payments.webhook-key_2").await.unwrap(), None);
}

pub(crate) async fn a_duplicate_name_is_already_exists(store: &dyn Store) {
    let original = key_record("billing");
    create(store, &original, 1).await;
    let impostor = KeyRecord {
        id: "kid-other".into(),
        owner: "svc:intruder".into(),
        ..original.clone()
    };

    let refused = store.create_key(&impostor, &version(1, T0, 2)).await;

    assert!(matches!(refused, Err(StoreError::AlreadyExists)), "{refused:?}");
    assert_eq!(store.get_key("billing").await.unwrap(), Some(original.clone()));
    // The refused key's first version must not have been written either.
    assert_eq!(store.list_versions("kid-other").await.unwrap(), vec![]);
    assert_eq!(store.get_sealed(&original.id, 1).await.unwrap(), Some(sealed(1)));
}

pub(crate) async fn list_keys_pages_in_name_order_after_a_cursor(store: &dyn Store) {
    // Inserted out of order. Byte order: '-' < '.' < digits < upper case < '_' < lower case.
    for name in ["pay_a", "paya", "pay.a", "Zulu", "pay-b", "payA", "pay9"] {
        create(store, &key_record(name), 3).await;
    }

    let first = store.list_keys(None, 3).await.unwrap();
    assert_eq!(names(&first), ["Zulu", "pay-b", "pay.a"]);
    assert_eq!(first[0], key_record("Zulu"));
    let second = store.list_keys(Some("pay.a"), 3).await.unwrap();
    assert_eq!(names(&second), ["pay9", "payA", "pay_a"]);
    let last = store.list_keys(Some("pay_a"), 3).await.unwrap();
    assert_eq!(names(&last), ["paya"]);
    assert_eq!(store.list_keys(Some("paya"), 3).await.unwrap(), vec![]);
    // A cursor need not name an existing key.
    assert_eq!(
        names(&store.list_keys(Some("pay0"), 2).await.unwrap()),
        ["pay9", "payA"]
    );
    assert_eq!(store.list_keys(None, 0).await.unwrap(), vec![]);
}

pub(crate) async fn add_version_bumps_latest_and_revision_and_refuses_a_stale_revision(store: &dyn Store) {
    let key = key_record("rotating");
    create(store, &key, 4).await;

    let rotated = store.add_version(&key, &version(2, T0 + DAY_MS, 5)).await.unwrap();

    let expected = KeyRecord {
        latest_version: 2,
        revision: 1,
        updated_at_ms: T0 + DAY_MS,
        ..key.clone()
    };
    assert_eq!(rotated, expected);
    assert_eq!(store.get_key("rotating").await.unwrap(), Some(expected.clone()));
    assert_eq!(
        store.list_versions(&key.id).await.unwrap(),
        vec![unused(1, T0), unused(2, T0 + DAY_MS)]
    );
    assert_eq!(store.get_sealed(&key.id, 2).await.unwrap(), Some(sealed(5)));

    // A node that still holds the revision-0 record loses the race.
    let stale = store.add_version(&key, &version(2, T0 + 2 * DAY_MS, 6)).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    // So does one that read the right version but missed a settings update.
    store
        .update_key(&KeyRecord {
            exportable: true,
            ..rotated.clone()
        })
        .await
        .unwrap();
    let stale = store.add_version(&rotated, &version(3, T0 + 2 * DAY_MS, 6)).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");

    let after = KeyRecord {
        exportable: true,
        revision: 2,
        ..expected
    };
    assert_eq!(store.get_key("rotating").await.unwrap(), Some(after));
    assert_eq!(
        store.list_versions(&key.id).await.unwrap(),
        vec![unused(1, T0), unused(2, T0 + DAY_MS)]
    );
    assert_eq!(store.get_sealed(&key.id, 2).await.unwrap(), Some(sealed(5)));
    assert_eq!(store.get_sealed(&key.id, 3).await.unwrap(), None);

    let ghost = key_record("ghost");
    let missing = store.add_version(&ghost, &version(2, T0, 7)).await;
    assert!(matches!(missing, Err(StoreError::Conflict)), "{missing:?}");
    assert_eq!(store.list_versions(&ghost.id).await.unwrap(), vec![]);
}

pub(crate) async fn update_key_writes_only_mutable_settings_and_refuses_a_stale_revision(store: &dyn Store) {
    let key = KeyRecord {
        auto_rotate_period_s: Some(86_400),
        ..key_record("settings")
    };
    create(store, &key, 8).await;
    let key = store.add_version(&key, &version(2, T0 + HOUR_MS, 9)).await.unwrap();

    // Every field changed; only the mutable settings may land.
    let requested = KeyRecord {
        id: key.id.clone(),
        name: "renamed".into(),
        tenant: "other-tenant".into(),
        algorithm: Algorithm::HmacSha512,
        boundary: Boundary::Process,
        owner: "svc:someone-else".into(),
        tags: tags(&[("moved", "yes")]),
        state: KeyState::PendingDeletion,
        latest_version: 9,
        min_verify_version: 2,
        exportable: true,
        auto_rotate_period_s: None,
        deletion_due_ms: Some(T0 + 30 * DAY_MS),
        state_before_deletion: Some(KeyState::Enabled),
        created_at_ms: T0 - DAY_MS,
        updated_at_ms: T0 + 2 * HOUR_MS,
        revision: key.revision,
    };
    let updated = store.update_key(&requested).await.unwrap();

    let expected = KeyRecord {
        state: KeyState::PendingDeletion,
        min_verify_version: 2,
        exportable: true,
        auto_rotate_period_s: None,
        deletion_due_ms: Some(T0 + 30 * DAY_MS),
        state_before_deletion: Some(KeyState::Enabled),
        updated_at_ms: T0 + 2 * HOUR_MS,
        revision: key.revision + 1,
        ..key.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(store.get_key("settings").await.unwrap(), Some(expected.clone()));
    assert_eq!(store.get_key("renamed").await.unwrap(), None);

    let stale = store
        .update_key(&KeyRecord {
            state: KeyState::Disabled,
            ..key.clone()
        })
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    assert_eq!(store.get_key("settings").await.unwrap(), Some(expected));
}

/// Restoring a key pending deletion must write `None` over the date and the prior state.
pub(crate) async fn update_key_clears_the_deletion_settings_on_restore(store: &dyn Store) {
    let pending = KeyRecord {
        state: KeyState::PendingDeletion,
        deletion_due_ms: Some(T0 + 7 * DAY_MS),
        state_before_deletion: Some(KeyState::Disabled),
        ..key_record("restored")
    };
    create(store, &pending, 29).await;

    let restore = KeyRecord {
        state: KeyState::Disabled,
        deletion_due_ms: None,
        state_before_deletion: None,
        updated_at_ms: T0 + HOUR_MS,
        ..pending.clone()
    };
    let restored = store.update_key(&restore).await.unwrap();

    let expected = KeyRecord { revision: 1, ..restore };
    assert_eq!(restored, expected);
    assert_eq!(store.get_key("restored").await.unwrap(), Some(expected));
    assert_eq!(store.keys_due_for_deletion(i64::MAX).await.unwrap(), vec![]);
}

pub(crate) async fn destroy_key_removes_every_version_unless_the_row_changed(store: &dyn Store) {
    let doomed = key_record("doomed");
    create(store, &doomed, 10).await;
    let doomed = store.add_version(&doomed, &version(2, T0 + DAY_MS, 11)).await.unwrap();
    let doomed = store
        .add_version(&doomed, &version(3, T0 + 2 * DAY_MS, 12))
        .await
        .unwrap();
    let survivor = key_record("survivor");
    create(store, &survivor, 13).await;

    let stale = doomed.clone();
    let doomed = store.update_key(&doomed).await.unwrap();
    assert!(
        !store.destroy_key(&stale).await.unwrap(),
        "a stale revision destroys nothing"
    );
    assert_eq!(store.list_versions(&doomed.id).await.unwrap().len(), 3);
    assert!(store.destroy_key(&doomed).await.unwrap());

    assert_eq!(store.get_key("doomed").await.unwrap(), None);
    assert_eq!(store.list_versions(&doomed.id).await.unwrap(), vec![]);
    for v in 1..=3 {
        assert_eq!(store.get_sealed(&doomed.id, v).await.unwrap(), None, "version {v}");
    }
    assert!(!store.destroy_key(&doomed).await.unwrap());
    assert!(!store.destroy_key(&key_record("never-existed")).await.unwrap());
    assert_eq!(store.get_key("survivor").await.unwrap(), Some(survivor.clone()));
    assert_eq!(store.list_versions(&survivor.id).await.unwrap(), vec![unused(1, T0)]);
    assert_eq!(store.get_sealed(&survivor.id, 1).await.unwrap(), Some(sealed(13)));
}

pub(crate) async fn keys_due_for_deletion_returns_only_pending_keys_past_their_date(store: &dyn Store) {
    let now = T0 + 30 * DAY_MS;
    let pending = |name: &str, due: Option<i64>| KeyRecord {
        state: KeyState::PendingDeletion,
        deletion_due_ms: due,
        ..key_record(name)
    };
    let overdue = pending("overdue", Some(now - 1));
    let due_now = pending("due-now", Some(now));
    let keys = [
        overdue.clone(),
        due_now.clone(),
        pending("due-later", Some(now + 1)),
        pending("no-date", None),
        KeyRecord {
            state: KeyState::Disabled,
            deletion_due_ms: Some(now - DAY_MS),
            ..key_record("disabled")
        },
        key_record("enabled"),
    ];
    for key in &keys {
        create(store, key, 14).await;
    }

    let mut due = store.keys_due_for_deletion(now).await.unwrap();
    due.sort_by(|a, b| a.name.cmp(&b.name));

    assert_eq!(due, vec![due_now, overdue.clone()]);
    assert_eq!(store.keys_due_for_deletion(now - 1).await.unwrap(), vec![overdue]);
    assert_eq!(store.keys_due_for_deletion(now - 2).await.unwrap(), vec![]);
}

pub(crate) async fn auto_rotating_keys_reports_latest_version_creation_time(store: &dyn Store) {
    let rotating = |name: &str, state: KeyState, period: Option<i64>| KeyRecord {
        state,
        auto_rotate_period_s: period,
        ..key_record(name)
    };
    let daily = rotating("daily", KeyState::Enabled, Some(86_400));
    create(store, &daily, 15).await;
    let daily = store.add_version(&daily, &version(2, T0 + DAY_MS, 16)).await.unwrap();
    let daily = store
        .add_version(&daily, &version(3, T0 + 2 * DAY_MS, 17))
        .await
        .unwrap();
    let hourly = KeyRecord {
        created_at_ms: T0 + 5,
        ..rotating("hourly", KeyState::Enabled, Some(3_600))
    };
    create(store, &hourly, 18).await;
    for key in [
        rotating("disabled", KeyState::Disabled, Some(86_400)),
        rotating("pending", KeyState::PendingDeletion, Some(86_400)),
        rotating("manual", KeyState::Enabled, None),
    ] {
        create(store, &key, 19).await;
    }

    let mut due = store.auto_rotating_keys().await.unwrap();
    due.sort_by(|a, b| a.0.name.cmp(&b.0.name));

    assert_eq!(due, vec![(daily, T0 + 2 * DAY_MS), (hourly, T0 + 5)]);
}

pub(crate) async fn add_usage_accumulates_and_keeps_the_latest_last_used(store: &dyn Store) {
    let key = key_record("busy");
    create(store, &key, 20).await;
    store.add_version(&key, &version(2, T0 + DAY_MS, 21)).await.unwrap();

    store
        .add_usage(&[usage(&key, 1, 3, 2, T0 + 1_000), usage(&key, 2, 1, 0, T0 + 1_500)])
        .await
        .unwrap();
    // A flush that arrives late carries an older last-used time; it must not win.
    store.add_usage(&[usage(&key, 1, 4, 1, T0 + 900)]).await.unwrap();
    // The same version twice in one batch.
    store
        .add_usage(&[usage(&key, 2, 1, 1, T0 + 2_000), usage(&key, 2, 2, 0, T0 + 1_800)])
        .await
        .unwrap();

    let used = |version, created_at_ms, sign_count, verify_count, last| VersionInfo {
        version,
        created_at_ms,
        sign_count,
        verify_count,
        last_used_at_ms: Some(last),
    };
    assert_eq!(
        store.list_versions(&key.id).await.unwrap(),
        vec![used(1, T0, 7, 3, T0 + 1_000), used(2, T0 + DAY_MS, 4, 1, T0 + 2_000)]
    );
}

pub(crate) async fn add_usage_ignores_unknown_versions(store: &dyn Store) {
    let key = key_record("counted");
    create(store, &key, 22).await;
    let destroyed = key_record("destroyed");
    create(store, &destroyed, 23).await;
    assert!(store.destroy_key(&destroyed).await.unwrap());

    store
        .add_usage(&[
            usage(&key, 7, 5, 5, T0 + 10),
            usage(&destroyed, 1, 9, 9, T0 + 20),
            usage(&key, 1, 2, 1, T0 + 30),
        ])
        .await
        .unwrap();

    let counted = VersionInfo {
        sign_count: 2,
        verify_count: 1,
        last_used_at_ms: Some(T0 + 30),
        ..unused(1, T0)
    };
    assert_eq!(store.list_versions(&key.id).await.unwrap(), vec![counted]);
    assert_eq!(store.get_sealed(&key.id, 7).await.unwrap(), None);
    assert_eq!(store.list_versions(&destroyed.id).await.unwrap(), vec![]);
    assert_eq!(store.get_key("destroyed").await.unwrap(), None);
}

pub(crate) async fn insert_system_secret_keeps_the_first_one(store: &dyn Store) {
    let first = sealed(24);
    let second = SealedRecord {
        kek_id: "pkcs11:sigvault-kek:9".into(),
        ..sealed(25)
    };

    assert_eq!(
        store.insert_system_secret("token_pepper", &first, T0).await.unwrap(),
        first
    );
    // A second node racing at first start gets the winner back, not its own.
    assert_eq!(
        store
            .insert_system_secret("token_pepper", &second, T0 + 1)
            .await
            .unwrap(),
        first
    );
    assert_eq!(store.get_system_secret("token_pepper").await.unwrap(), Some(first));
    assert_eq!(
        store.insert_system_secret("audit_key", &second, T0 + 2).await.unwrap(),
        second
    );
    assert_eq!(store.get_system_secret("audit_key").await.unwrap(), Some(second));
}

pub(crate) async fn put_value_overwrites(store: &dyn Store) {
    let old: Vec<u8> = (0..32).collect();
    let new = [0xff, 0x00, 0x7f];

    store.put_value("root_token_hash", &old, T0).await.unwrap();
    store.put_value("cluster_id", b"node-set-a", T0).await.unwrap();
    assert_eq!(store.get_value("root_token_hash").await.unwrap(), Some(old));
    store.put_value("root_token_hash", &new, T0 + 1).await.unwrap();

    assert_eq!(store.get_value("root_token_hash").await.unwrap(), Some(new.to_vec()));
    assert_eq!(
        store.get_value("cluster_id").await.unwrap(),
        Some(b"node-set-a".to_vec())
    );
    assert_eq!(store.get_value("missing").await.unwrap(), None);
}

pub(crate) async fn get_sealed_returns_the_exact_record(store: &dyn Store) {
    let key = key_record("exact");
    // Every byte value, NUL and 0xff included, in the ciphertext.
    let first = NewVersion {
        sealed: SealedRecord {
            ciphertext: (0..=255).chain(0..16).collect(),
            ..sealed(0)
        },
        ..version(1, T0, 0)
    };
    store.create_key(&key, &first).await.unwrap();
    let second = version(2, T0 + DAY_MS, 26);
    store.add_version(&key, &second).await.unwrap();

    assert_eq!(store.get_sealed(&key.id, 1).await.unwrap(), Some(first.sealed));
    assert_eq!(store.get_sealed(&key.id, 2).await.unwrap(), Some(second.sealed));
    assert_eq!(store.get_sealed(&key.id, 3).await.unwrap(), None);
    assert_eq!(store.get_sealed(&key.id, 0).await.unwrap(), None);
    assert_eq!(store.get_sealed("kid-other", 1).await.unwrap(), None);
}

pub(crate) async fn count_audit_counts_what_query_audit_returns(store: &dyn Store) {
    // Two nodes, an event an hour, alternating principals; the MACs are made-up bytes.
    for node in ["node-a", "node-b"] {
        let events: Vec<_> = (1..=6u64)
            .map(|seq| {
                let data = EventData {
                    time_ms: T0 + (seq as i64) * HOUR_MS,
                    principal: if seq % 2 == 0 { "alice" } else { "bob" }.into(),
                    action: "Sign".into(),
                    resource: "key:k".into(),
                    outcome: "ok".into(),
                    ..Default::default()
                };
                (AuditEvent::new(seq, node, data), vec![seq as u8; 32])
            })
            .collect();
        store.append_audit(&events).await.unwrap();
    }
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            since_ms: Some(T0 + 2 * HOUR_MS),
            until_ms: Some(T0 + 5 * HOUR_MS),
            ..Default::default()
        },
        AuditFilter {
            principal: Some("alice".into()),
            since_ms: Some(T0 + 3 * HOUR_MS),
            ..Default::default()
        },
        AuditFilter {
            action: Some("Rotate".into()),
            ..Default::default()
        },
    ];

    let counts: Vec<u64> = {
        let mut out = Vec::new();
        for filter in &filters {
            out.push(store.count_audit(filter).await.unwrap());
        }
        out
    };

    // `since` is inclusive, `until` exclusive: hours 2, 3 and 4 of each node.
    assert_eq!(counts, vec![12, 6, 4, 0]);
    for (filter, count) in filters.iter().zip(&counts) {
        let listed = store.query_audit(filter, None, 1000).await.unwrap();
        assert_eq!(listed.len() as u64, *count, "{filter:?}");
    }
}

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
    let store = SqliteStore::open(&home.db()).await.unwrap();
    Fixture::new(Box::new(store), home)
}

pub(crate) async fn tokens_are_found_by_id_and_by_hash_and_revoked_once(store: &dyn Store) {
    let token = TokenRecord {
        id: "tok_0123456789abcdef".into(),
        hash: vec![7; 32],
        principal: "payments".into(),
        groups: vec!["service".into()],
        description: Some("payments API".into()),
        created_at_ms: T0,
        expires_at_ms: Some(T0 + DAY_MS),
        revoked_at_ms: None,
    };
    assert_eq!(store.get_token(&token.id).await.unwrap(), None);
    store.insert_token(&token).await.unwrap();
    assert_eq!(store.get_token(&token.id).await.unwrap().as_ref(), Some(&token));
    assert_eq!(store.find_token(&[7; 32]).await.unwrap().as_ref(), Some(&token));
    assert_eq!(store.find_token(&[8; 32]).await.unwrap(), None);
    let same_hash = TokenRecord {
        id: "tok_other".into(),
        ..token.clone()
    };
    assert!(matches!(
        store.insert_token(&same_hash).await,
        Err(StoreError::AlreadyExists)
    ));
    let no_expiry = TokenRecord {
        id: "tok_forever".into(),
        hash: vec![9; 32],
        description: None,
        expires_at_ms: None,
        ..token.clone()
    };
    store.insert_token(&no_expiry).await.unwrap();
    assert_eq!(store.get_token("tok_forever").await.unwrap().as_ref(), Some(&no_expiry));

    let revoked = store.revoke_token(&token.id, T0 + HOUR_MS).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(T0 + HOUR_MS));
    let again = store.revoke_token(&token.id, T0 + 2 * HOUR_MS).await.unwrap().unwrap();
    assert_eq!(
        again.revoked_at_ms,
        Some(T0 + HOUR_MS),
        "the first revocation time stays"
    );
    assert_eq!(
        store.find_token(&[7; 32]).await.unwrap().unwrap().revoked_at_ms,
        Some(T0 + HOUR_MS)
    );
    assert_eq!(store.revoke_token("tok_missing", T0).await.unwrap(), None);
    assert_eq!(
        store.get_token("tok_forever").await.unwrap().unwrap().revoked_at_ms,
        None
    );
}

store_contract_tests!(sqlite, fresh_sqlite_store);

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
        let store = SqliteStore::open(&home.db()).await.unwrap();
        create(&store, &key, 27).await;
        store.put_value("root_token_hash", b"hash-v1", T0).await.unwrap();
        store
            .insert_system_secret("token_pepper", &sealed(28), T0)
            .await
            .unwrap();
    }
    let applied = applied_migrations(&home).await;
    assert_eq!(applied.first().map(|m| m.0), Some(1));

    let store = SqliteStore::open(&home.db()).await.unwrap();

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

#[tokio::test]
async fn the_sqlite_file_is_in_wal_journal_mode() {
    let home = TempDir::new();
    let _store = SqliteStore::open(&home.db()).await.unwrap();

    // WAL is recorded in the file itself, so a connection that asks for no journal mode
    // reports it. (`synchronous` is per connection and cannot be seen from here.)
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut inspect(&home).await)
        .await
        .unwrap();

    assert_eq!(mode, "wal");
}
