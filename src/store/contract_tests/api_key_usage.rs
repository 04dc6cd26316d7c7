//! Contract checks of API key usage: credits taken atomically and last use moved forward
//! (see the parent module).

use super::api_keys::{A, B, MISSING, api_key, hash};
use super::{DAY_MS, HOUR_MS, T0};
use crate::store::{ApiKeyPatch, ApiKeyRecord, ApiKeyStore};

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

pub(crate) async fn touch_api_keys_moves_last_use_forward_only(store: &dyn ApiKeyStore) {
    store.insert_api_key(&api_key(A, "payments"), &hash(1)).await.unwrap();
    store.insert_api_key(&api_key(B, "payments"), &hash(2)).await.unwrap();
    let last_use = |id: &'static str| async move { store.get_api_key(id).await.unwrap().unwrap().last_used_at_ms };

    store
        .touch_api_keys(&[(A.to_owned(), T0 + 2 * HOUR_MS), (MISSING.to_owned(), T0)])
        .await
        .unwrap();
    assert_eq!(last_use(A).await, Some(T0 + 2 * HOUR_MS));
    assert_eq!(last_use(B).await, None, "only the keys named");
    assert_eq!(
        store.get_api_key(MISSING).await.unwrap(),
        None,
        "an unknown id makes no row"
    );

    store
        .touch_api_keys(&[(A.to_owned(), T0 + HOUR_MS), (B.to_owned(), T0 + HOUR_MS)])
        .await
        .unwrap();
    assert_eq!(
        last_use(A).await,
        Some(T0 + 2 * HOUR_MS),
        "an older use does not move it back"
    );
    assert_eq!(last_use(B).await, Some(T0 + HOUR_MS));

    store.touch_api_keys(&[(A.to_owned(), T0 + DAY_MS)]).await.unwrap();
    assert_eq!(last_use(A).await, Some(T0 + DAY_MS));
    store.touch_api_keys(&[]).await.unwrap();
    assert_eq!(last_use(A).await, Some(T0 + DAY_MS), "nothing to write changes nothing");
}
