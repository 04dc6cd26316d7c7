//! Contract checks of signing keys: rows, versions and sealed records, revisions, and every
//! typed value reading back as written (see the parent module).

use std::collections::BTreeMap;

use super::{DAY_MS, HOUR_MS, T0, sealed};
use crate::envelope::SealedRecord;
use crate::model::{Algorithm, Boundary, KeyOrigin, KeyState};
use crate::store::{KeyRecord, KeyStore, NewVersion, StoreError, UsageDelta, VersionInfo};

pub(crate) fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub(crate) fn key_record(name: &str) -> KeyRecord {
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
        origin: KeyOrigin::Generated,
        min_encryption_version: 0,
        deletion_allowed: true,
        auto_rotate_period_s: None,
        deletion_due_ms: None,
        state_before_deletion: None,
        created_at_ms: T0,
        updated_at_ms: T0,
        revision: 0,
    }
}

pub(crate) fn version(version: u32, created_at_ms: i64, seed: u8) -> NewVersion {
    NewVersion {
        version,
        created_at_ms,
        sealed: sealed(seed),
    }
}

pub(crate) fn unused(version: u32, created_at_ms: i64) -> VersionInfo {
    VersionInfo {
        version,
        created_at_ms,
        sign_count: 0,
        verify_count: 0,
        last_used_at_ms: None,
    }
}

pub(crate) fn usage(key: &KeyRecord, version: u32, signs: u64, verifies: u64, last_used_at_ms: i64) -> UsageDelta {
    UsageDelta {
        key_id: key.id.clone(),
        version,
        signs,
        verifies,
        last_used_at_ms,
    }
}

/// Creates `key` with a first version made from `seed` at `key.created_at_ms`.
pub(crate) async fn create(store: &dyn KeyStore, key: &KeyRecord, seed: u8) {
    store
        .create_key(key, &version(1, key.created_at_ms, seed))
        .await
        .unwrap();
}

pub(crate) fn names(keys: &[KeyRecord]) -> Vec<&str> {
    keys.iter().map(|k| k.name.as_str()).collect()
}

pub(crate) async fn create_then_get_returns_the_same_record(store: &dyn KeyStore) {
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

pub(crate) async fn a_duplicate_name_is_already_exists(store: &dyn KeyStore) {
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

pub(crate) async fn list_keys_pages_in_name_order_after_a_cursor(store: &dyn KeyStore) {
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

pub(crate) async fn add_version_bumps_latest_and_revision_and_refuses_a_stale_revision(store: &dyn KeyStore) {
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

pub(crate) async fn update_key_writes_only_mutable_settings_and_refuses_a_stale_revision(store: &dyn KeyStore) {
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
        origin: KeyOrigin::Imported,
        min_encryption_version: 2,
        deletion_allowed: false,
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
        min_encryption_version: 2,
        deletion_allowed: false,
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
pub(crate) async fn update_key_clears_the_deletion_settings_on_restore(store: &dyn KeyStore) {
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

pub(crate) async fn get_sealed_returns_the_exact_record(store: &dyn KeyStore) {
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

/// Every algorithm, every state and every prior state a row can hold, and tags with
/// characters a careless encoding would mangle, read back as written.
pub(crate) async fn every_algorithm_state_and_prior_state_reads_back_as_written(store: &dyn KeyStore) {
    let mut written = Vec::new();
    for (i, algorithm) in Algorithm::ALL.iter().enumerate() {
        for (j, state) in KeyState::ALL.iter().enumerate() {
            let prior = KeyState::ALL.get((i + j) % KeyState::ALL.len()).copied();
            let key = KeyRecord {
                algorithm: *algorithm,
                state: *state,
                // Both origins, across the algorithms and states.
                origin: *KeyOrigin::ALL
                    .get((i + j) % KeyOrigin::ALL.len())
                    .unwrap_or(&KeyOrigin::Generated),
                state_before_deletion: (*state == KeyState::PendingDeletion).then_some(prior).flatten(),
                tags: tags(&[
                    ("team", "päyments \"core\""),
                    ("empty", ""),
                    ("path/like:key", "a\\b"),
                    ("emoji", "🔑"),
                ]),
                ..key_record(&format!("typed-{}-{}", algorithm.as_str(), state.as_str()))
            };
            create(store, &key, 31).await;
            written.push(key);
        }
    }
    for key in &written {
        assert_eq!(
            store.get_key(&key.name).await.unwrap().as_ref(),
            Some(key),
            "{}",
            key.name
        );
    }
    let mut listed = store.list_keys(None, 100).await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    written.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(listed, written);

    // Every prior state survives an update too, and `None` clears it.
    let key = written.first().unwrap().clone();
    let mut revision = key.revision;
    for prior in KeyState::ALL.iter().map(|s| Some(*s)).chain([None]) {
        let updated = store
            .update_key(&KeyRecord {
                state_before_deletion: prior,
                revision,
                ..key.clone()
            })
            .await
            .unwrap();
        assert_eq!(updated.state_before_deletion, prior);
        assert_eq!(
            store.get_key(&key.name).await.unwrap().unwrap().state_before_deletion,
            prior
        );
        revision = updated.revision;
    }
}
