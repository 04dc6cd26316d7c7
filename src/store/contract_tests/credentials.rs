//! Contract checks of SigV4 credentials and their activity (see the parent module).

use super::{DAY_MS, HOUR_MS, T0};
use crate::envelope::SealedRecord;
use crate::model::{CredentialState, OnNewFingerprint};
use crate::store::{
    CredentialActivity, CredentialPatch, CredentialRecord, CredentialStore, FingerprintRecord, StoreError,
};

pub(crate) fn credential(id: &str, principal: &str) -> CredentialRecord {
    CredentialRecord {
        access_key_id: id.into(),
        principal: principal.into(),
        groups: vec!["service".into()],
        description: Some("ci deploys".into()),
        state: CredentialState::Active,
        on_new_fingerprint: None,
        boundary: crate::model::Boundary::Process,
        sealed: SealedRecord {
            format: 1,
            kek_id: "pkcs11:test/1".into(),
            wrapped_dek: vec![1; 40],
            nonce: vec![2; 12],
            ciphertext: id.as_bytes().to_vec(),
        },
        created_at_ms: T0,
        updated_at_ms: T0,
        last_used_at_ms: None,
        last_used_region: None,
        last_used_service: None,
        revision: 0,
    }
}

pub(super) fn fingerprint(ip: &str, ua: &str, seen: i64, count: u64) -> FingerprintRecord {
    FingerprintRecord {
        source_ip: ip.into(),
        user_agent: ua.into(),
        first_seen_ms: seen,
        last_seen_ms: seen,
        count,
    }
}

pub(crate) async fn credentials_are_limited_per_principal_and_listed_in_id_order(store: &dyn CredentialStore) {
    let a = credential("SVAKBBBB", "payments");
    store.insert_credential(&a, 2).await.unwrap();
    assert_eq!(store.get_credential("SVAKBBBB").await.unwrap().as_ref(), Some(&a));
    assert!(matches!(
        store.insert_credential(&a, 2).await,
        Err(StoreError::AlreadyExists)
    ));
    store
        .insert_credential(&credential("SVAKAAAA", "payments"), 2)
        .await
        .unwrap();
    assert!(matches!(
        store.insert_credential(&credential("SVAKCCCC", "payments"), 2).await,
        Err(StoreError::LimitReached(_))
    ));
    assert_eq!(
        store.get_credential("SVAKCCCC").await.unwrap(),
        None,
        "nothing inserted"
    );
    store
        .insert_credential(&credential("SVAKDDDD", "billing"), 2)
        .await
        .unwrap();

    let ids = |list: Vec<CredentialRecord>| list.into_iter().map(|c| c.access_key_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_credentials(None, None, 10).await.unwrap()),
        ["SVAKAAAA", "SVAKBBBB", "SVAKDDDD"]
    );
    assert_eq!(
        ids(store.list_credentials(Some("payments"), None, 10).await.unwrap()),
        ["SVAKAAAA", "SVAKBBBB"]
    );
    assert_eq!(
        ids(store.list_credentials(None, Some("SVAKAAAA"), 1).await.unwrap()),
        ["SVAKBBBB"]
    );

    assert!(store.delete_credential("SVAKAAAA").await.unwrap());
    assert!(!store.delete_credential("SVAKAAAA").await.unwrap());
    store
        .insert_credential(&credential("SVAKCCCC", "payments"), 2)
        .await
        .unwrap();
}

pub(crate) async fn update_credential_changes_only_what_the_patch_names(store: &dyn CredentialStore) {
    store
        .insert_credential(&credential("SVAKAAAA", "payments"), 2)
        .await
        .unwrap();
    let patch = CredentialPatch {
        state: Some(CredentialState::Inactive),
        on_new_fingerprint: None,
    };
    let after = store
        .update_credential("SVAKAAAA", &patch, T0 + HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.state, CredentialState::Inactive);
    assert_eq!(after.on_new_fingerprint, None);
    assert_eq!(after.updated_at_ms, T0 + HOUR_MS);
    assert_eq!(after.sealed, credential("SVAKAAAA", "payments").sealed);

    let rule = CredentialPatch {
        state: None,
        on_new_fingerprint: Some(Some(OnNewFingerprint::Deactivate)),
    };
    let after = store
        .update_credential("SVAKAAAA", &rule, T0 + 2 * HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.state, CredentialState::Inactive, "state kept");
    assert_eq!(after.on_new_fingerprint, Some(OnNewFingerprint::Deactivate));
    let cleared = CredentialPatch {
        state: None,
        on_new_fingerprint: Some(None),
    };
    let after = store
        .update_credential("SVAKAAAA", &cleared, T0 + 3 * HOUR_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.on_new_fingerprint, None);
    assert_eq!(store.update_credential("SVAKNONE", &patch, T0).await.unwrap(), None);
}

pub(crate) async fn credential_activity_adds_up_keeps_the_latest_and_the_most_recent_fingerprints(
    store: &dyn CredentialStore,
) {
    store
        .insert_credential(&credential("SVAKAAAA", "payments"), 2)
        .await
        .unwrap();
    let first = CredentialActivity {
        access_key_id: "SVAKAAAA".into(),
        last_used_at_ms: T0 + DAY_MS,
        region: "eu-west-1".into(),
        service: "execute-api".into(),
        fingerprints: vec![
            fingerprint("10.0.0.1", "curl/8", T0 + HOUR_MS, 3),
            fingerprint("10.0.0.2", "", T0 + 2 * HOUR_MS, 1),
        ],
    };
    let older = CredentialActivity {
        access_key_id: "SVAKAAAA".into(),
        last_used_at_ms: T0,
        region: "us-east-1".into(),
        service: "s3".into(),
        fingerprints: vec![fingerprint("10.0.0.1", "curl/8", T0 + 3 * HOUR_MS, 2)],
    };
    let gone = CredentialActivity {
        access_key_id: "SVAKGONE".into(),
        ..older.clone()
    };
    store.add_credential_activity(&[first, older, gone], 2).await.unwrap();
    let c = store.get_credential("SVAKAAAA").await.unwrap().unwrap();
    assert_eq!(
        c.last_used_at_ms,
        Some(T0 + DAY_MS),
        "an older use does not move last use back"
    );
    assert_eq!(c.last_used_region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.last_used_service.as_deref(), Some("execute-api"));
    let prints = store.list_fingerprints("SVAKAAAA").await.unwrap();
    assert_eq!(
        prints,
        [
            FingerprintRecord {
                source_ip: "10.0.0.1".into(),
                user_agent: "curl/8".into(),
                first_seen_ms: T0 + HOUR_MS,
                last_seen_ms: T0 + 3 * HOUR_MS,
                count: 5,
            },
            fingerprint("10.0.0.2", "", T0 + 2 * HOUR_MS, 1),
        ]
    );
    assert!(store.list_fingerprints("SVAKGONE").await.unwrap().is_empty());

    let third = CredentialActivity {
        access_key_id: "SVAKAAAA".into(),
        last_used_at_ms: T0 + 2 * DAY_MS,
        region: "eu-west-1".into(),
        service: "execute-api".into(),
        fingerprints: vec![fingerprint("10.0.0.3", "boto3", T0 + 2 * DAY_MS, 1)],
    };
    store.add_credential_activity(&[third], 2).await.unwrap();
    let prints = store.list_fingerprints("SVAKAAAA").await.unwrap();
    let kept: Vec<&str> = prints.iter().map(|f| f.source_ip.as_str()).collect();
    assert_eq!(kept, ["10.0.0.3", "10.0.0.1"], "the least recently seen is dropped");

    assert!(store.delete_credential("SVAKAAAA").await.unwrap());
    assert!(
        store.list_fingerprints("SVAKAAAA").await.unwrap().is_empty(),
        "fingerprints go too"
    );
}

/// Every state and every fingerprint rule (and none: the server's default) reads back as
/// written, on insert and through an update.
pub(crate) async fn every_credential_state_and_fingerprint_rule_reads_back_as_written(store: &dyn CredentialStore) {
    let rules: Vec<Option<OnNewFingerprint>> = std::iter::once(None)
        .chain(OnNewFingerprint::ALL.iter().copied().map(Some))
        .collect();
    let mut written = Vec::new();
    for (i, state) in CredentialState::ALL.iter().enumerate() {
        for (j, rule) in rules.iter().enumerate() {
            let c = CredentialRecord {
                state: *state,
                on_new_fingerprint: *rule,
                description: (j % 2 == 0).then(|| "ünïcode \"quoted\"".to_owned()),
                // The default, and other groups, across the states and rules.
                groups: if j % 2 == 0 {
                    vec!["service".into()]
                } else {
                    vec!["service".into(), format!("team-{i}")]
                },
                ..credential(&format!("SVAKTYPED{i}{j}"), &format!("principal-{i}-{j}"))
            };
            store.insert_credential(&c, 1).await.unwrap();
            written.push(c);
        }
    }
    for c in &written {
        assert_eq!(store.get_credential(&c.access_key_id).await.unwrap().as_ref(), Some(c));
    }
    assert_eq!(store.list_credentials(None, None, 100).await.unwrap(), written);

    let id = "SVAKTYPED00";
    for rule in &rules {
        for state in CredentialState::ALL {
            let patch = CredentialPatch {
                state: Some(*state),
                on_new_fingerprint: Some(*rule),
            };
            let after = store
                .update_credential(id, &patch, T0 + HOUR_MS)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((after.state, after.on_new_fingerprint), (*state, *rule));
            let read = store.get_credential(id).await.unwrap().unwrap();
            assert_eq!((read.state, read.on_new_fingerprint), (*state, *rule));
        }
    }
}
