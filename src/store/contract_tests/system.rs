//! Contract checks of the system concern: system secrets, values, liveness and checkpoints
//! (see the parent module).

use super::keys::{create, key_record, unused, version};
use super::{T0, sealed};
use crate::envelope::SealedRecord;
use crate::store::{Store, SystemStore};

pub(crate) async fn insert_system_secret_keeps_the_first_one(store: &dyn SystemStore) {
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

pub(crate) async fn put_value_overwrites(store: &dyn SystemStore) {
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

/// The revoked root token is stored as an empty value: it must read back as present and
/// empty, never as missing (which would let a restart generate a new root token).
pub(crate) async fn an_empty_value_is_stored_and_is_not_a_missing_one(store: &dyn SystemStore) {
    store.put_value("root_token_hash", &[], T0).await.unwrap();
    assert_eq!(store.get_value("root_token_hash").await.unwrap(), Some(Vec::new()));
    store.put_value("root_token_hash", &[0, 0, 0], T0 + 1).await.unwrap();
    assert_eq!(store.get_value("root_token_hash").await.unwrap(), Some(vec![0, 0, 0]));
    store.put_value("root_token_hash", &[], T0 + 2).await.unwrap();
    assert_eq!(store.get_value("root_token_hash").await.unwrap(), Some(Vec::new()));
    assert_eq!(store.get_value("root_token_hash_2").await.unwrap(), None);
}

/// Ping and checkpoint work on a live store with data in it, a checkpoint after a
/// destruction keeps what survived, and the destroyed key does not come back.
pub(crate) async fn ping_and_checkpoint_succeed_and_a_destroyed_key_stays_gone(store: &dyn Store) {
    store.ping().await.unwrap();
    store.checkpoint().await.unwrap();
    let doomed = key_record("doomed");
    create(store, &doomed, 40).await;
    let survivor = key_record("survivor");
    create(store, &survivor, 41).await;
    assert!(store.destroy_key(&doomed).await.unwrap());

    store.checkpoint().await.unwrap();
    store.checkpoint().await.unwrap();
    store.ping().await.unwrap();

    assert_eq!(store.get_key("doomed").await.unwrap(), None);
    assert_eq!(store.get_sealed(&doomed.id, 1).await.unwrap(), None);
    assert_eq!(store.get_key("survivor").await.unwrap(), Some(survivor.clone()));
    assert_eq!(store.list_versions(&survivor.id).await.unwrap(), vec![unused(1, T0)]);
    assert_eq!(
        store.get_sealed(&survivor.id, 1).await.unwrap(),
        Some(version(1, T0, 41).sealed)
    );
}
