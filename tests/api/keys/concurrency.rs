//! Concurrent creates, rotations, patches and signs on one key: none lost, none refused.

use reqwest::StatusCode;
use serde_json::json;

use super::{get_key, sign_with};
use crate::helpers::{b64, spawn_app};

#[tokio::test]
async fn concurrent_rotations_each_add_exactly_one_version() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let rotations = (0..5).map(|_| app.post("/v1/keys/k/rotate", json!({})));
    for r in futures_util::future::join_all(rotations).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let key = get_key(&app, "k").await;
    assert_eq!(key["latest_version"], 6);
    let versions: Vec<u64> = key["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
}

/// More concurrent writers than `KeyService`'s optimistic-locking retry budget
/// (`UPDATE_ATTEMPTS`, 8): every one must still succeed; a healthy store is never "unavailable".
#[tokio::test]
async fn many_concurrent_rotations_all_succeed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let rotations = (0..16).map(|_| app.post("/v1/keys/k/rotate", json!({})));
    let statuses: Vec<(StatusCode, String)> = futures_util::future::join_all(rotations)
        .await
        .into_iter()
        .map(|r| (r.status, r.code().to_owned()))
        .collect();
    assert_eq!(statuses, vec![(StatusCode::OK, String::new()); 16]);
    assert_eq!(get_key(&app, "k").await["latest_version"], 17);
}

#[tokio::test]
async fn many_concurrent_patches_all_succeed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let patches = (0..16).map(|i| {
        let state = if i % 2 == 0 { "disabled" } else { "enabled" };
        app.patch("/v1/keys/k", json!({"state": state}))
    });
    let statuses: Vec<(StatusCode, String)> = futures_util::future::join_all(patches)
        .await
        .into_iter()
        .map(|r| (r.status, r.code().to_owned()))
        .collect();
    assert_eq!(statuses, vec![(StatusCode::OK, String::new()); 16]);
}

#[tokio::test]
async fn concurrent_creates_of_one_name_make_one_key_and_concurrent_signs_are_all_counted() {
    let app = spawn_app().await;
    let creates = (0..5).map(|_| app.post("/v1/keys", json!({"name": "k", "algorithm": "hmac-sha256"})));
    let mut statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409]);

    let signs = (0..20).map(|_| sign_with(&app, "k", json!({"message": b64(b"m")})));
    for r in futures_util::future::join_all(signs).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(get_key(&app, "k").await["versions"][0]["sign_count"], 20);
}

/// A burst of requests for a key whose secret is not in the cache (a restarted vault) makes
/// one KEK unwrap, not one per request: the others wait for it and use its result.
#[tokio::test]
async fn a_burst_of_signs_on_a_cold_key_makes_one_kek_unwrap() {
    let app = spawn_app().await;
    app.create_key("cold").await;
    app.create_key("other").await;
    let app = app.restart().await;
    let before = app.state.keys.kek_unwraps();
    let paths: Vec<&str> = (0..32)
        .map(|i| {
            if i % 8 == 0 {
                "/v1/keys/other/sign"
            } else {
                "/v1/keys/cold/sign"
            }
        })
        .collect();
    let signs = paths
        .iter()
        .map(|path| app.post(path, json!({"message": b64(b"burst")})));
    let replies = futures_util::future::join_all(signs).await;
    let signatures: std::collections::BTreeSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body["signature"].as_str().expect("signature").to_owned()
        })
        .collect();
    assert_eq!(signatures.len(), 2, "each key signs the same message the same way");
    assert_eq!(
        app.state.keys.kek_unwraps() - before,
        2,
        "one unwrap per cold key version"
    );
}
