//! Contract checks of API key usage: credits taken atomically, and activity — last use moved
//! forward, caller fingerprints counted and bounded (see the parent module).

use super::api_keys::{A, B, MISSING, api_key, hash};
use super::credentials::fingerprint;
use super::{DAY_MS, HOUR_MS, T0};
use crate::store::{ApiKeyActivity, ApiKeyPatch, ApiKeyRecord, ApiKeyStore, FingerprintRecord};

pub(crate) async fn consume_api_key_credit_counts_down_to_zero_and_never_below(store: &dyn ApiKeyStore) {
    let counted = ApiKeyRecord {
        remaining: Some(2),
        ..api_key(A, "payments")
    };
    store.insert_api_key(&counted, &hash(1)).await.unwrap();
    store.insert_api_key(&api_key(B, "payments"), &hash(2)).await.unwrap();

    assert_eq!(store.consume_api_key_credit(A).await.unwrap(), Some(1));
    assert_eq!(store.consume_api_key_credit(A).await.unwrap(), Some(0));
    assert_eq!(store.consume_api_key_credit(A).await.unwrap(), None, "spent");
    assert_eq!(store.consume_api_key_credit(A).await.unwrap(), None, "still spent");
    assert_eq!(
        store.get_api_key(A).await.unwrap().unwrap().remaining,
        Some(0),
        "never below zero"
    );
    assert_eq!(
        store.consume_api_key_credit(B).await.unwrap(),
        None,
        "a key without a credit limit has no credit to take"
    );
    assert_eq!(
        store.get_api_key(B).await.unwrap().unwrap().remaining,
        None,
        "and keeps none"
    );
    assert_eq!(store.consume_api_key_credit(MISSING).await.unwrap(), None);

    let refill = ApiKeyPatch {
        remaining: Some(Some(1)),
        ..ApiKeyPatch::default()
    };
    store.update_api_key(A, &refill, T0 + HOUR_MS).await.unwrap().unwrap();
    assert_eq!(store.consume_api_key_credit(A).await.unwrap(), Some(0));
    assert_eq!(store.consume_api_key_credit(A).await.unwrap(), None);
}

fn activity(id: &str, last_used_at_ms: i64, fingerprints: Vec<FingerprintRecord>) -> ApiKeyActivity {
    ApiKeyActivity {
        id: id.into(),
        last_used_at_ms,
        fingerprints,
    }
}

pub(crate) async fn api_key_activity_moves_last_use_forward_and_keeps_the_most_recent_fingerprints(
    store: &dyn ApiKeyStore,
) {
    store.insert_api_key(&api_key(A, "payments"), &hash(1)).await.unwrap();
    store.insert_api_key(&api_key(B, "payments"), &hash(2)).await.unwrap();
    let last_use = |id: &'static str| async move { store.get_api_key(id).await.unwrap().unwrap().last_used_at_ms };

    let first = activity(
        A,
        T0 + 2 * HOUR_MS,
        vec![
            fingerprint("10.0.0.1", "curl/8", T0 + HOUR_MS, 3),
            fingerprint("10.0.0.2", "", T0 + 2 * HOUR_MS, 1),
        ],
    );
    let older = activity(A, T0, vec![fingerprint("10.0.0.1", "curl/8", T0 + 3 * HOUR_MS, 2)]);
    let gone = activity(MISSING, T0, vec![fingerprint("10.0.0.9", "", T0, 1)]);
    store.add_api_key_activity(&[first, older, gone], 2).await.unwrap();
    assert_eq!(
        last_use(A).await,
        Some(T0 + 2 * HOUR_MS),
        "an older use does not move it back"
    );
    assert_eq!(last_use(B).await, None, "only the keys named");
    assert_eq!(
        store.get_api_key(MISSING).await.unwrap(),
        None,
        "an unknown id makes no row"
    );
    assert!(store.list_api_key_fingerprints(MISSING).await.unwrap().is_empty());
    assert_eq!(
        store.list_api_key_fingerprints(A).await.unwrap(),
        [
            FingerprintRecord {
                first_seen_ms: T0 + HOUR_MS,
                ..fingerprint("10.0.0.1", "curl/8", T0 + 3 * HOUR_MS, 5)
            },
            fingerprint("10.0.0.2", "", T0 + 2 * HOUR_MS, 1),
        ],
        "counts add up, first and last seen widen, most recently seen first"
    );
    assert!(store.list_api_key_fingerprints(B).await.unwrap().is_empty());

    let third = activity(A, T0 + DAY_MS, vec![fingerprint("10.0.0.3", "sdk", T0 + DAY_MS, 1)]);
    let only_use = activity(B, T0 + HOUR_MS, Vec::new());
    store.add_api_key_activity(&[third, only_use], 2).await.unwrap();
    assert_eq!(last_use(A).await, Some(T0 + DAY_MS));
    assert_eq!(last_use(B).await, Some(T0 + HOUR_MS), "a use without fingerprints");
    let kept: Vec<String> = store
        .list_api_key_fingerprints(A)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.source_ip)
        .collect();
    assert_eq!(kept, ["10.0.0.3", "10.0.0.1"], "the least recently seen is dropped");

    store.add_api_key_activity(&[], 2).await.unwrap();
    assert_eq!(last_use(A).await, Some(T0 + DAY_MS), "nothing to write changes nothing");
    store.revoke_api_key(A, T0 + 2 * DAY_MS).await.unwrap().unwrap();
    assert_eq!(
        store.list_api_key_fingerprints(A).await.unwrap().len(),
        2,
        "a revoked key keeps where it was used from"
    );
}
