//! Creating, reading, listing, patching and rotating a key, and the minimum verify version.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{START, all_keys, assert_error, get_key, sign_with, verify_with};
use crate::helpers::{Reply, TestApp, b64, spawn_app};

// ----- create -----------------------------------------------------------------------------

#[tokio::test]
async fn a_created_key_shows_its_settings_and_never_its_material() {
    let app = spawn_app().await;
    let created = app.create_key("payments.webhook-1").await;
    let expected = json!({
        "name": "payments.webhook-1",
        "algorithm": "hmac-sha256",
        "boundary": "process",
        "owner": "root",
        "tags": {},
        "state": "enabled",
        "latest_version": 1,
        "min_verify_version": 1,
        "min_encryption_version": 0,
        "deletion_allowed": true,
        "exportable": false,
        "origin": "generated",
        "auto_rotate_period": null,
        "created_at": START,
        "versions": [{"version": 1, "created_at": START, "sign_count": 0, "verify_count": 0, "last_used_at": null}],
    });
    assert_eq!(created, expected);
    assert_eq!(get_key(&app, "payments.webhook-1").await, expected);
}

#[tokio::test]
async fn create_options_are_shown_back_and_auto_rotation_can_be_turned_off() {
    let app = spawn_app().await;
    let body = json!({
        "name": "k", "algorithm": "hmac-sha384", "owner": "svc-payments",
        "tags": {"team": "payments", "env": "prod"}, "auto_rotate_period": "90d", "exportable": true,
    });
    let r = app.post("/v1/keys", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (
            &r.body["owner"],
            &r.body["tags"],
            &r.body["auto_rotate_period"],
            &r.body["exportable"]
        ),
        (
            &json!("svc-payments"),
            &json!({"env": "prod", "team": "payments"}),
            &json!("90d"),
            &json!(true)
        )
    );
    let r = app.patch("/v1/keys/k", json!({"auto_rotate_period": null})).await;
    assert_eq!(
        (r.status, &r.body["auto_rotate_period"]),
        (StatusCode::OK, &Value::Null),
        "{}",
        r.body
    );

    let before = get_key(&app, "k").await;
    for period in ["30m", "36501d", "soon"] {
        let r = app.patch("/v1/keys/k", json!({"auto_rotate_period": period})).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("auto_rotate_period {period}"),
        );
    }
    assert_eq!(get_key(&app, "k").await, before);
}

#[tokio::test]
async fn key_size_must_be_between_32_and_512_bytes() {
    let app = spawn_app().await;
    let before = all_keys(&app).await;
    for size in [31, 513, 0] {
        let r = app
            .post(
                "/v1/keys",
                json!({"name": "sized", "algorithm": "hmac-sha256", "key_size": size}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("key_size {size}"),
        );
    }
    assert_eq!(all_keys(&app).await, before);
    for size in [32, 512] {
        let name = format!("size-{size}");
        let r = app
            .post(
                "/v1/keys",
                json!({"name": name, "algorithm": "hmac-sha512", "key_size": size}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "key_size {size}: {}", r.body);
        let (signature, _) = app.sign(&name, b"m").await;
        assert_eq!(signature.len(), 64);
    }
}

// ----- rotation and minimum verify version ------------------------------------------------

#[tokio::test]
async fn after_rotation_old_signatures_verify_until_min_verify_version_moves_past_them() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (old, _) = app.sign("k", b"m").await;

    let r = app.post("/v1/keys/k/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["latest_version"].as_u64(), r.body["min_verify_version"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(r.body["versions"].as_array().map(Vec::len), Some(2));

    let r = app.verify("k", b"m", &old).await;
    assert_eq!(
        r.body,
        json!({"valid": true, "key_version": 1}),
        "a v1 signature still verifies"
    );
    let (new, version) = app.sign("k", b"m").await;
    assert_eq!(version, 2);
    assert_ne!(new, old);
    let r = app.verify("k", b"m", &new).await;
    assert_eq!(r.body, json!({"valid": true, "key_version": 2}));
    let r = sign_with(&app, "k", json!({"message": b64(b"m"), "key_version": 1})).await;
    assert_eq!(
        r.body,
        json!({"signature": b64(&old), "key_version": 1}),
        "v1 still signs on request"
    );

    let r = app.patch("/v1/keys/k", json!({"min_verify_version": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["min_verify_version"], 2);

    let r = app.verify("k", b"m", &old).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": false, "code": "SIGNATURE_MISMATCH"})),
        "v1 is retired"
    );
    let r = app.verify("k", b"m", &new).await;
    assert_eq!(r.body, json!({"valid": true, "key_version": 2}));

    let before = get_key(&app, "k").await;
    let r = verify_version(&app, "k", b"m", &old, 1).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "verify with retired key_version 1",
    );
    let r = sign_with(&app, "k", json!({"message": b64(b"m"), "key_version": 1})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "sign with retired key_version 1",
    );
    for beyond in [3, 0] {
        let r = verify_version(&app, "k", b"m", &new, beyond).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("verify key_version {beyond}"),
        );
        let r = sign_with(&app, "k", json!({"message": b64(b"m"), "key_version": beyond})).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("sign key_version {beyond}"),
        );
    }
    for min in [3, 0] {
        let r = app.patch("/v1/keys/k", json!({"min_verify_version": min})).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("min_verify_version {min}"),
        );
    }
    assert_eq!(get_key(&app, "k").await, before);
}

async fn verify_version(app: &TestApp, name: &str, message: &[u8], signature: &[u8], version: u64) -> Reply {
    let body = json!({"message": b64(message), "signature": b64(signature), "key_version": version});
    verify_with(app, name, body).await
}

// ----- get and list -----------------------------------------------------------------------

#[tokio::test]
async fn listing_walks_every_key_in_name_order_with_a_cursor() {
    let app = spawn_app().await;
    for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
        app.create_key(name).await;
    }
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/keys?limit=2".to_owned(),
            Some(c) => format!("/v1/keys?limit=2&cursor={c}"),
        };
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let keys = r.body["keys"].as_array().expect("keys");
        pages.push(
            keys.iter()
                .map(|k| k["name"].as_str().expect("name").to_owned())
                .collect(),
        );
        match &r.body["next"] {
            Value::Null => break,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next is {other}"),
        }
        assert!(pages.len() < 10, "paging does not end: {pages:?}");
    }
    assert_eq!(pages, [vec!["alpha", "bravo"], vec!["charlie", "delta"], vec!["echo"]]);

    let everything = all_keys(&app).await;
    assert_eq!(everything["next"], Value::Null);
    let names: Vec<&str> = everything["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(
        everything["keys"][2],
        get_key(&app, "charlie").await,
        "list and get show the same key"
    );
}

#[tokio::test]
async fn listing_refuses_a_bad_cursor_and_a_limit_outside_1_to_1000() {
    let app = spawn_app().await;
    app.create_key("a").await;
    for query in [
        "cursor=!!not-a-cursor!!",
        "cursor=%zz",
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=x",
        "limit=1&limit=2",
    ] {
        let r = app.get(&format!("/v1/keys?{query}")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", query);
    }
    for query in ["limit=1", "limit=1000"] {
        let r = app.get(&format!("/v1/keys?{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        assert_eq!(r.body["keys"].as_array().map(Vec::len), Some(1), "{query}");
    }
}

// ----- patch ------------------------------------------------------------------------------

#[tokio::test]
async fn a_disabled_key_neither_signs_nor_verifies_until_enabled_again() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, _) = app.sign("k", b"m").await;

    let r = app.patch("/v1/keys/k", json!({"state": "disabled"})).await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (StatusCode::OK, Some("disabled")),
        "{}",
        r.body
    );
    let before = get_key(&app, "k").await;
    let r = sign_with(&app, "k", json!({"message": b64(b"m")})).await;
    assert_error(&r, StatusCode::CONFLICT, "FAILED_PRECONDITION", "sign while disabled");
    let r = app.verify("k", b"m", &signature).await;
    assert_error(&r, StatusCode::CONFLICT, "FAILED_PRECONDITION", "verify while disabled");
    assert_eq!(get_key(&app, "k").await, before, "refused uses are not counted");

    let r = app.patch("/v1/keys/k", json!({"state": "enabled"})).await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (StatusCode::OK, Some("enabled")),
        "{}",
        r.body
    );
    assert_eq!(app.sign("k", b"m").await, (signature.clone(), 1));
    assert_eq!(
        app.verify("k", b"m", &signature).await.body,
        json!({"valid": true, "key_version": 1})
    );
}

#[tokio::test]
async fn exportable_can_only_change_from_true_to_false() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "k", "algorithm": "hmac-sha256", "exportable": true}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["exportable"].as_bool()),
        (StatusCode::CREATED, Some(true)),
        "{}",
        r.body
    );

    let r = app.patch("/v1/keys/k", json!({"exportable": false})).await;
    assert_eq!(
        (r.status, r.body["exportable"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{}",
        r.body
    );

    let before = get_key(&app, "k").await;
    let r = app.patch("/v1/keys/k", json!({"exportable": true})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "exportable false to true",
    );
    assert_eq!(get_key(&app, "k").await, before);
}

#[tokio::test]
async fn patch_refuses_pending_deletion_unknown_states_and_unknown_fields() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = get_key(&app, "k").await;
    let cases = [
        json!({"state": "pending_deletion"}),
        json!({"state": "destroyed"}),
        json!({"colour": "red"}),
        json!({"state": "disabled", "name": "other"}),
    ];
    for body in cases {
        let r = app.patch("/v1/keys/k", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &body.to_string());
    }
    assert_eq!(get_key(&app, "k").await, before);
}

// ----- min_encryption_version and deletion_allowed ------------------------------------------

#[tokio::test]
async fn min_encryption_version_stops_signing_with_older_versions_and_deletion_allowed_guards_delete() {
    let app = spawn_app().await;
    app.create_key("guarded").await;
    let r = app.post("/v1/keys/guarded/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let message = b64(b"m");

    let r = app
        .patch("/v1/keys/guarded", json!({"min_encryption_version": 3}))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "a floor above the latest version",
    );
    let r = app
        .patch("/v1/keys/guarded", json!({"min_encryption_version": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["min_encryption_version"], 2);
    let r = sign_with(&app, "guarded", json!({"message": message, "key_version": 1})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "signing below the floor",
    );
    let r = sign_with(&app, "guarded", json!({"message": message})).await;
    assert_eq!(r.body["key_version"], 2, "the default is still the latest: {}", r.body);
    let r = verify_with(
        &app,
        "guarded",
        json!({"message": message, "signature": b64(&[0u8; 32]), "key_version": 1}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the floor does not stop verification: {}",
        r.body
    );
    let r = app
        .patch(
            "/v1/keys/guarded",
            json!({"min_verify_version": 2, "min_encryption_version": 0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "0 lifts the floor: {}", r.body);

    let r = app.patch("/v1/keys/guarded", json!({"deletion_allowed": false})).await;
    assert_eq!(r.body["deletion_allowed"], false, "{}", r.body);
    let r = app.delete("/v1/keys/guarded").await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "a delete the key does not allow",
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deletion_allowed")),
        "{}",
        r.body
    );
    assert_eq!(get_key(&app, "guarded").await["state"], "enabled", "nothing changed");
    let r = app.patch("/v1/keys/guarded", json!({"deletion_allowed": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.delete("/v1/keys/guarded").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}
