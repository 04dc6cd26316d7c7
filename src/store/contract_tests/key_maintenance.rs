//! Contract checks of key maintenance: destruction (crypto-shredding), keys due for
//! deletion or rotation, and usage counters (see the parent module).

use super::keys::{create, key_record, unused, usage, version};
use super::{DAY_MS, T0, sealed};
use crate::model::KeyState;
use crate::store::{KeyRecord, KeyStore, VersionInfo};

pub(crate) async fn destroy_key_removes_every_version_unless_the_row_changed(store: &dyn KeyStore) {
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

pub(crate) async fn keys_due_for_deletion_returns_only_pending_keys_past_their_date(store: &dyn KeyStore) {
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

pub(crate) async fn auto_rotating_keys_reports_latest_version_creation_time(store: &dyn KeyStore) {
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

pub(crate) async fn add_usage_accumulates_and_keeps_the_latest_last_used(store: &dyn KeyStore) {
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

pub(crate) async fn add_usage_ignores_unknown_versions(store: &dyn KeyStore) {
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
