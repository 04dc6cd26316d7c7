//! Contract checks of the KEK concern: records counted by `kek_id`, listed when not under a
//! KEK, and their wraps replaced only while they hold the wrap they were read with (see the
//! parent module).

use super::credentials::credential;
use super::keys::{create, key_record, version};
use super::{T0, sealed};
use crate::envelope::SealedRecord;
use crate::store::{SealedPlace, Store};

fn under(kek_id: &str, seed: u8) -> SealedRecord {
    SealedRecord {
        kek_id: kek_id.to_owned(),
        ..sealed(seed)
    }
}

pub(crate) async fn sealed_records_are_counted_listed_and_moved_by_kek(store: &dyn Store) {
    assert!(store.kek_usage().await.unwrap().is_empty());
    // Two versions of one key, a credential and a system secret under "old"; one key under
    // "new".
    let mut key = key_record("rewrapped");
    let first = crate::store::NewVersion {
        sealed: under("old", 1),
        ..version(1, T0, 1)
    };
    store.create_key(&key, &first).await.unwrap();
    key = store.get_key("rewrapped").await.unwrap().unwrap();
    let second = crate::store::NewVersion {
        sealed: under("old", 2),
        ..version(2, T0 + 1, 2)
    };
    store.add_version(&key, &second).await.unwrap();
    let mut moved_key = key_record("already-new");
    moved_key.id = "kid-already-new".into();
    create(store, &moved_key, 3).await;
    let current = store.get_sealed("kid-already-new", 1).await.unwrap().unwrap();
    let credential = crate::store::CredentialRecord {
        sealed: under("old", 4),
        ..credential("AKIAREWRAP", "ci")
    };
    store.insert_credential(&credential, 10).await.unwrap();
    store
        .insert_system_secret("pepper", &under("old", 5), T0)
        .await
        .unwrap();

    let mut usage = store.kek_usage().await.unwrap();
    usage.sort();
    assert_eq!(usage.iter().map(|(_, n)| n).sum::<u64>(), 5);
    assert_eq!(usage.iter().find(|(id, _)| id == "old").map(|(_, n)| *n), Some(4));

    let rows = store.sealed_not_under(&current.kek_id, 100).await.unwrap();
    let places: Vec<&SealedPlace> = rows.iter().map(|r| &r.place).collect();
    assert_eq!(rows.len(), 4, "{places:?}");
    assert!(places.contains(&&SealedPlace::KeyVersion {
        key_id: key.id.clone(),
        name: "rewrapped".into(),
        tenant: "default".into(),
        version: 2,
    }));
    assert!(places.contains(&&SealedPlace::Credential {
        access_key_id: "AKIAREWRAP".into(),
        principal: "ci".into(),
    }));
    assert!(places.contains(&&SealedPlace::SystemSecret { name: "pepper".into() }));
    let version_two = rows
        .iter()
        .find(|r| matches!(r.place, SealedPlace::KeyVersion { version: 2, .. }))
        .unwrap();
    assert_eq!(version_two.sealed, under("old", 2), "the record as stored");
    assert_eq!(
        store.sealed_not_under(&current.kek_id, 2).await.unwrap().len(),
        2,
        "limit"
    );

    // Each moves once; a second try with the old wrap finds it changed.
    for row in &rows {
        let new_wrap = vec![0xA5; 40];
        assert!(
            store
                .replace_wrap(&row.place, &row.sealed, &current.kek_id, &new_wrap)
                .await
                .unwrap(),
            "{:?}",
            row.place
        );
        assert!(
            !store
                .replace_wrap(&row.place, &row.sealed, &current.kek_id, &new_wrap)
                .await
                .unwrap(),
            "a stale wrap is not replaced: {:?}",
            row.place
        );
    }
    assert!(store.sealed_not_under(&current.kek_id, 100).await.unwrap().is_empty());
    assert_eq!(store.kek_usage().await.unwrap(), vec![(current.kek_id.clone(), 5)]);
    // Only kek_id and the wrap changed: nonce and ciphertext are the row's own.
    let stored = store.get_sealed(&key.id, 2).await.unwrap().unwrap();
    assert_eq!(
        stored,
        SealedRecord {
            kek_id: current.kek_id.clone(),
            wrapped_dek: vec![0xA5; 40],
            ..under("old", 2)
        }
    );
    let stored = store.get_system_secret("pepper").await.unwrap().unwrap();
    assert_eq!(stored.ciphertext, under("old", 5).ciphertext);
    assert_eq!(
        store.get_credential("AKIAREWRAP").await.unwrap().unwrap().sealed.kek_id,
        current.kek_id
    );
    // A place that does not exist is not "replaced".
    let gone = SealedPlace::SystemSecret { name: "nothing".into() };
    assert!(!store.replace_wrap(&gone, &under("old", 5), "x", &[1]).await.unwrap());
}
