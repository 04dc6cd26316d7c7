//! Contract checks of bearer API keys and their hashes (see the parent module). The hashes
//! are made-up bytes: a store only matches them, it never computes one.

use super::{DAY_MS, HOUR_MS, T0};
use crate::model::{ApiKeyState, OnNewFingerprint};
use crate::store::{ApiKeyPatch, ApiKeyRecord, ApiKeyStore, StoreError};

/// A JSON object from its text (test data is clearer written as JSON).
fn meta(text: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(text).unwrap()
}

fn permissions(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| (*p).to_owned()).collect()
}

pub(super) const A: &str = "ak_000000000000000000000aaa";
pub(super) const B: &str = "ak_000000000000000000000bbb";
const C: &str = "ak_000000000000000000000ccc";
pub(super) const MISSING: &str = "ak_000000000000000000000fff";

pub(crate) fn api_key(id: &str, principal: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        prefix: "sk".into(),
        principal: principal.into(),
        state: ApiKeyState::Enabled,
        meta: meta(r#"{"plan":"pro"}"#),
        permissions: permissions(&["orders.read", "orders.write"]),
        expires_at_ms: Some(T0 + DAY_MS),
        remaining: None,
        ratelimit: Some((5, 1000)),
        on_new_fingerprint: None,
        created_at_ms: T0,
        updated_at_ms: T0,
        last_used_at_ms: None,
        revoked_at_ms: None,
        revision: 0,
    }
}

/// A made-up 32-byte hash; `seed` 0 is all NUL bytes, which a text column would mangle.
pub(crate) fn hash(seed: u8) -> Vec<u8> {
    vec![seed; 32]
}

pub(crate) async fn api_keys_are_found_by_hash_read_by_id_and_listed_in_id_order(store: &dyn ApiKeyStore) {
    assert_eq!(store.get_api_key(B).await.unwrap(), None);
    assert_eq!(store.find_api_key(&hash(0)).await.unwrap(), None);
    let b = api_key(B, "payments");
    store.insert_api_key(&b, &hash(0)).await.unwrap();
    assert_eq!(store.get_api_key(B).await.unwrap().as_ref(), Some(&b));
    assert_eq!(
        store.find_api_key(&hash(0)).await.unwrap(),
        Some((b.clone(), None)),
        "the current hash has no grace end"
    );
    assert_eq!(store.find_api_key(&hash(1)).await.unwrap(), None);

    assert!(
        matches!(
            store.insert_api_key(&api_key(B, "other"), &hash(2)).await,
            Err(StoreError::AlreadyExists)
        ),
        "a taken id"
    );
    assert_eq!(
        store.find_api_key(&hash(2)).await.unwrap(),
        None,
        "the refused insert left no hash"
    );
    assert!(
        matches!(
            store.insert_api_key(&api_key(C, "other"), &hash(0)).await,
            Err(StoreError::AlreadyExists)
        ),
        "a taken hash"
    );
    assert_eq!(
        store.get_api_key(C).await.unwrap(),
        None,
        "the refused insert left no row"
    );

    let unlimited = ApiKeyRecord {
        id: C.into(),
        meta: meta("{}"),
        permissions: Vec::new(),
        expires_at_ms: None,
        remaining: Some(1_000_000_000_000),
        ratelimit: None,
        ..api_key(C, "billing")
    };
    store.insert_api_key(&unlimited, &hash(3)).await.unwrap();
    assert_eq!(store.get_api_key(C).await.unwrap().as_ref(), Some(&unlimited));
    store.insert_api_key(&api_key(A, "payments"), &hash(4)).await.unwrap();

    let ids = |list: Vec<ApiKeyRecord>| list.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_api_keys(None, 10).await.unwrap()), [A, B, C]);
    assert_eq!(ids(store.list_api_keys(None, 2).await.unwrap()), [A, B]);
    assert_eq!(ids(store.list_api_keys(Some(A), 1).await.unwrap()), [B]);
    assert_eq!(
        ids(store.list_api_keys(Some(C), 10).await.unwrap()),
        Vec::<String>::new()
    );
}

pub(crate) async fn update_api_key_changes_only_what_the_patch_names_and_leaves_a_revoked_key_unchanged(
    store: &dyn ApiKeyStore,
) {
    let original = ApiKeyRecord {
        remaining: Some(7),
        ..api_key(A, "payments")
    };
    store.insert_api_key(&original, &hash(1)).await.unwrap();
    let disable = ApiKeyPatch {
        state: Some(ApiKeyState::Disabled),
        ..ApiKeyPatch::default()
    };
    let after = store.update_api_key(A, &disable, T0 + HOUR_MS).await.unwrap().unwrap();
    assert_eq!(
        after,
        ApiKeyRecord {
            state: ApiKeyState::Disabled,
            updated_at_ms: T0 + HOUR_MS,
            revision: original.revision + 1,
            ..original.clone()
        }
    );

    let free = ApiKeyPatch {
        meta: Some(meta(r#"{"plan":"free"}"#)),
        remaining: Some(Some(3)),
        ..ApiKeyPatch::default()
    };
    let after = store.update_api_key(A, &free, T0 + 2 * HOUR_MS).await.unwrap().unwrap();
    assert_eq!(after.state, ApiKeyState::Disabled, "state kept");
    assert_eq!(after.meta, meta(r#"{"plan":"free"}"#));
    assert_eq!(after.remaining, Some(3));
    assert_eq!(after.permissions, original.permissions);
    assert_eq!(after.expires_at_ms, original.expires_at_ms);
    assert_eq!(after.ratelimit, original.ratelimit);

    let unlimited = ApiKeyPatch {
        remaining: Some(None),
        ..ApiKeyPatch::default()
    };
    let after = store
        .update_api_key(A, &unlimited, T0 + 3 * HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.remaining, None, "Some(None) removes the credit limit");
    assert_eq!(after.meta, meta(r#"{"plan":"free"}"#), "meta kept");
    let nothing = ApiKeyPatch::default();
    let after = store
        .update_api_key(A, &nothing, T0 + 4 * HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.remaining, None, "None leaves it as it is");
    assert_eq!(store.get_api_key(A).await.unwrap().as_ref(), Some(&after));

    let watched = ApiKeyPatch {
        on_new_fingerprint: Some(Some(OnNewFingerprint::Deactivate)),
        ..ApiKeyPatch::default()
    };
    let after = store
        .update_api_key(A, &watched, T0 + 4 * HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.on_new_fingerprint, Some(OnNewFingerprint::Deactivate));
    assert_eq!(
        (after.state, after.meta.clone()),
        (ApiKeyState::Disabled, meta(r#"{"plan":"free"}"#)),
        "the rest kept"
    );
    let after = store
        .update_api_key(A, &nothing, T0 + 4 * HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.on_new_fingerprint,
        Some(OnNewFingerprint::Deactivate),
        "None leaves the rule"
    );
    let default = ApiKeyPatch {
        on_new_fingerprint: Some(None),
        ..ApiKeyPatch::default()
    };
    let after = store
        .update_api_key(A, &default, T0 + 4 * HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.on_new_fingerprint, None,
        "Some(None) returns to the server's default"
    );
    assert_eq!(store.get_api_key(A).await.unwrap().as_ref(), Some(&after));

    assert_eq!(store.update_api_key(MISSING, &disable, T0).await.unwrap(), None);

    let revoked = store.revoke_api_key(A, T0 + 5 * HOUR_MS).await.unwrap().unwrap();
    let enable = ApiKeyPatch {
        state: Some(ApiKeyState::Enabled),
        meta: Some(meta("{}")),
        remaining: Some(Some(100)),
        on_new_fingerprint: Some(Some(OnNewFingerprint::Record)),
    };
    assert_eq!(
        store
            .update_api_key(A, &enable, T0 + 6 * HOUR_MS)
            .await
            .unwrap()
            .as_ref(),
        Some(&revoked),
        "a revoked key is returned as it is"
    );
    assert_eq!(
        store.get_api_key(A).await.unwrap().as_ref(),
        Some(&revoked),
        "and stays revoked"
    );
}

pub(crate) async fn revoke_api_key_deletes_every_hash_and_keeps_the_first_revocation_time(store: &dyn ApiKeyStore) {
    store.insert_api_key(&api_key(A, "payments"), &hash(1)).await.unwrap();
    store.insert_api_key(&api_key(B, "payments"), &hash(2)).await.unwrap();
    // A grace-period hash too: revocation must end it as well.
    store
        .reroll_api_key(A, &hash(3), T0 + DAY_MS, T0 + HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store.find_api_key(&hash(1)).await.unwrap().is_some(),
        "in its grace period"
    );

    let revoked = store.revoke_api_key(A, T0 + 2 * HOUR_MS).await.unwrap().unwrap();
    assert_eq!(revoked.state, ApiKeyState::Revoked);
    assert_eq!(revoked.revoked_at_ms, Some(T0 + 2 * HOUR_MS));
    assert_eq!(
        store.find_api_key(&hash(1)).await.unwrap(),
        None,
        "the old hash is gone"
    );
    assert_eq!(
        store.find_api_key(&hash(3)).await.unwrap(),
        None,
        "the current hash is gone"
    );
    assert_eq!(
        store.get_api_key(A).await.unwrap().as_ref(),
        Some(&revoked),
        "the row stays"
    );

    let again = store.revoke_api_key(A, T0 + 3 * HOUR_MS).await.unwrap().unwrap();
    assert_eq!(
        again.revoked_at_ms,
        Some(T0 + 2 * HOUR_MS),
        "the first revocation time stays"
    );
    assert_eq!(store.revoke_api_key(MISSING, T0).await.unwrap(), None);
    assert_eq!(
        store.find_api_key(&hash(2)).await.unwrap().map(|(k, _)| k.id),
        Some(B.to_owned()),
        "other keys are untouched"
    );
    assert_eq!(
        store
            .reroll_api_key(A, &hash(4), T0 + DAY_MS, T0 + 4 * HOUR_MS)
            .await
            .unwrap(),
        None,
        "a revoked key is not rerolled"
    );
    assert_eq!(store.find_api_key(&hash(4)).await.unwrap(), None, "and gets no hash");
}

pub(crate) async fn reroll_api_key_keeps_the_old_hash_until_its_grace_end_and_replaces_an_earlier_one(
    store: &dyn ApiKeyStore,
) {
    let original = api_key(A, "payments");
    store.insert_api_key(&original, &hash(1)).await.unwrap();
    let grace_end = T0 + HOUR_MS + 60_000;
    let after = store
        .reroll_api_key(A, &hash(2), grace_end, T0 + HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after,
        ApiKeyRecord {
            updated_at_ms: T0 + HOUR_MS,
            revision: original.revision + 1,
            ..original.clone()
        },
        "only the update time (and the revision) changes in the row"
    );
    let (old, until) = store.find_api_key(&hash(1)).await.unwrap().unwrap();
    assert_eq!(
        (old.id.as_str(), until),
        (A, Some(grace_end)),
        "the old hash ends with its grace"
    );
    let (new, until) = store.find_api_key(&hash(2)).await.unwrap().unwrap();
    assert_eq!((new.id.as_str(), until), (A, None), "the new hash is current");

    // A second reroll: the first old hash goes, the second takes its place.
    let second_end = T0 + 2 * HOUR_MS + 60_000;
    store
        .reroll_api_key(A, &hash(3), second_end, T0 + 2 * HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.find_api_key(&hash(1)).await.unwrap(),
        None,
        "the earlier grace hash is gone"
    );
    assert_eq!(
        store.find_api_key(&hash(2)).await.unwrap().map(|(_, until)| until),
        Some(Some(second_end))
    );
    assert_eq!(
        store.find_api_key(&hash(3)).await.unwrap().map(|(_, until)| until),
        Some(None)
    );

    // No grace (the end is not after now): the old hashes go at once.
    let now = T0 + 3 * HOUR_MS;
    store.reroll_api_key(A, &hash(4), now, now).await.unwrap().unwrap();
    assert_eq!(store.find_api_key(&hash(2)).await.unwrap(), None);
    assert_eq!(store.find_api_key(&hash(3)).await.unwrap(), None);
    assert_eq!(
        store
            .find_api_key(&hash(4))
            .await
            .unwrap()
            .map(|(k, until)| (k.id, until)),
        Some((A.to_owned(), None))
    );

    assert_eq!(
        store.reroll_api_key(MISSING, &hash(5), now + 1, now).await.unwrap(),
        None
    );
    assert_eq!(store.find_api_key(&hash(5)).await.unwrap(), None);
}

/// Every state, a nested `meta` with every JSON kind and text a careless encoding would
/// mangle, and permissions in the order written (not re-sorted) read back as written.
pub(crate) async fn every_api_key_state_meta_and_permission_list_reads_back_as_written(store: &dyn ApiKeyStore) {
    let nested = meta(
        r#"{"plan":"pro","limits":{"rps":5,"burst":[1,2.5,null,true,false]},"ünï":"ç\"\\\n","empty":{},"list":[]}"#,
    );
    let mut written = Vec::new();
    for (i, state) in ApiKeyState::ALL.iter().enumerate() {
        let id = format!("ak_00000000000000000000000{i}");
        let key = ApiKeyRecord {
            id: id.clone(),
            state: *state,
            meta: if i % 2 == 0 { nested.clone() } else { meta("{}") },
            permissions: if i % 2 == 0 {
                permissions(&["orders.write", "orders.read", "a:*", "x/y-z_1"])
            } else {
                Vec::new()
            },
            revoked_at_ms: (*state == ApiKeyState::Revoked).then_some(T0),
            ..api_key(&id, "payments")
        };
        store.insert_api_key(&key, &hash(10 + i as u8)).await.unwrap();
        written.push(key);
    }
    for (i, key) in written.iter().enumerate() {
        assert_eq!(store.get_api_key(&key.id).await.unwrap().as_ref(), Some(key));
        assert_eq!(
            store.find_api_key(&hash(10 + i as u8)).await.unwrap(),
            Some((key.clone(), None))
        );
    }
    assert_eq!(store.list_api_keys(None, 100).await.unwrap(), written);

    let changed = ApiKeyPatch {
        meta: Some(nested.clone()),
        ..ApiKeyPatch::default()
    };
    let after = store.update_api_key(C, &changed, T0 + HOUR_MS).await.unwrap();
    assert_eq!(after, None, "no key has that id");
    let first = written.first().unwrap();
    let patch = ApiKeyPatch {
        state: Some(ApiKeyState::Disabled),
        meta: Some(meta(r#"{"n":[{"deep":{"deeper":"yes"}}]}"#)),
        remaining: None,
        on_new_fingerprint: None,
    };
    let after = store
        .update_api_key(&first.id, &patch, T0 + HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.meta, meta(r#"{"n":[{"deep":{"deeper":"yes"}}]}"#));
    assert_eq!(store.get_api_key(&first.id).await.unwrap().as_ref(), Some(&after));
}

/// Every fingerprint rule, and none (the server's default), reads back as written, through
/// an insert, a hash lookup and an update to each other value.
pub(crate) async fn every_api_key_fingerprint_rule_reads_back_as_written(store: &dyn ApiKeyStore) {
    let rules: Vec<Option<OnNewFingerprint>> = std::iter::once(None)
        .chain(OnNewFingerprint::ALL.iter().copied().map(Some))
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let id = format!("ak_00000000000000000000000{i}");
        let key = ApiKeyRecord {
            on_new_fingerprint: *rule,
            ..api_key(&id, "payments")
        };
        store.insert_api_key(&key, &hash(20 + i as u8)).await.unwrap();
        assert_eq!(store.get_api_key(&id).await.unwrap().as_ref(), Some(&key));
        assert_eq!(
            store.find_api_key(&hash(20 + i as u8)).await.unwrap(),
            Some((key.clone(), None))
        );
        for (n, other) in rules.iter().enumerate() {
            let patch = ApiKeyPatch {
                on_new_fingerprint: Some(*other),
                ..ApiKeyPatch::default()
            };
            let at = T0 + HOUR_MS * (n as i64 + 1);
            let after = store.update_api_key(&id, &patch, at).await.unwrap().unwrap();
            assert_eq!(after.on_new_fingerprint, *other);
            assert_eq!(store.get_api_key(&id).await.unwrap().as_ref(), Some(&after));
        }
    }
}
