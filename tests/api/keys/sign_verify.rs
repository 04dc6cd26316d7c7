//! Signing and verifying, single and batch, and the per-version usage counters.

use reqwest::StatusCode;
use serde_json::json;

use super::{START, all_keys, assert_error, assert_item_error, get_key, sign_with, verify_with};
use crate::helpers::{AppHome, b64, spawn_app, spawn_app_in};

// ----- sign and verify --------------------------------------------------------------------

#[tokio::test]
async fn a_signature_verifies_and_any_change_to_message_or_signature_makes_it_invalid() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, version) = app.sign("k", b"hello").await;
    assert_eq!(version, 1);
    assert_eq!(signature.len(), 32);

    let r = app.verify("k", b"hello", &signature).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": true, "key_version": 1}))
    );

    let r = app.verify("k", b"hellO", &signature).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": false, "code": "SIGNATURE_MISMATCH"})),
        "changed message"
    );

    let mut flipped = signature.clone();
    flipped[31] ^= 0x01;
    let r = app.verify("k", b"hello", &flipped).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": false, "code": "SIGNATURE_MISMATCH"})),
        "changed signature"
    );

    for wrong_length in [&signature[..31], &[signature.as_slice(), &[0]].concat()[..], &[][..]] {
        let r = app.verify("k", b"hello", wrong_length).await;
        assert_eq!(
            (r.status, r.body),
            (StatusCode::OK, json!({"valid": false, "code": "MALFORMED_SIGNATURE"})),
            "length {}",
            wrong_length.len()
        );
    }
}

#[tokio::test]
async fn each_algorithm_signs_with_a_tag_of_its_hash_length() {
    let app = spawn_app().await;
    for (algorithm, tag_len) in [("hmac-sha256", 32), ("hmac-sha384", 48), ("hmac-sha512", 64)] {
        let r = app
            .post("/v1/keys", json!({"name": algorithm, "algorithm": algorithm}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["algorithm"], algorithm);
        let (signature, version) = app.sign(algorithm, b"message").await;
        assert_eq!((signature.len(), version), (tag_len, 1), "{algorithm}");
        let r = app.verify(algorithm, b"message", &signature).await;
        assert_eq!(r.body, json!({"valid": true, "key_version": 1}), "{algorithm}");
    }
}

// ----- batches ----------------------------------------------------------------------------

#[tokio::test]
async fn batch_sign_reports_failing_items_beside_the_ones_that_succeed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (sig_a, _) = app.sign("k", b"a").await;
    let (sig_d, _) = app.sign("k", b"d").await;

    let r = sign_with(
        &app,
        "k",
        json!({"batch": [
            {"message": b64(b"a"), "reference": "r1"},
            {"message": "%%% not base64", "reference": "r2"},
            {"message": b64(b"c"), "key_version": 2, "reference": "r3"},
            {"message": b64(b"d")},
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["batch"].as_array().expect("batch");
    assert_eq!(items.len(), 4);
    assert_eq!(
        items[0],
        json!({"signature": b64(&sig_a), "key_version": 1, "reference": "r1"})
    );
    assert_item_error(&items[1], "INVALID_ARGUMENT", Some("r2"));
    assert_item_error(&items[2], "INVALID_ARGUMENT", Some("r3"));
    assert_eq!(items[3], json!({"signature": b64(&sig_d), "key_version": 1}));
}

#[tokio::test]
async fn batch_verify_reports_failing_items_beside_the_ones_that_succeed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (sig_a, _) = app.sign("k", b"a").await;

    let r = verify_with(
        &app,
        "k",
        json!({"batch": [
            {"message": b64(b"a"), "signature": b64(&sig_a), "reference": "v1"},
            {"message": b64(b"a"), "signature": "***", "reference": "v2"},
            {"message": b64(b"a"), "signature": b64(&sig_a), "key_version": 2, "reference": "v3"},
            {"message": b64(b"b"), "signature": b64(&sig_a), "reference": "v4"},
            {"message": b64(b"a"), "signature": b64(&sig_a), "key_version": 1},
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["batch"].as_array().expect("batch");
    assert_eq!(items.len(), 5);
    assert_eq!(items[0], json!({"valid": true, "key_version": 1, "reference": "v1"}));
    assert_item_error(&items[1], "INVALID_ARGUMENT", Some("v2"));
    assert_item_error(&items[2], "INVALID_ARGUMENT", Some("v3"));
    assert_eq!(
        items[3],
        json!({"valid": false, "code": "SIGNATURE_MISMATCH", "reference": "v4"})
    );
    assert_eq!(items[4], json!({"valid": true, "key_version": 1}));
}

#[tokio::test]
async fn an_empty_batch_or_a_batch_beside_a_message_is_refused() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (sig, _) = app.sign("k", b"a").await;
    let before = all_keys(&app).await;
    let m = b64(b"a");
    let s = b64(&sig);
    let cases = [
        ("sign", json!({"batch": []}), "empty sign batch"),
        (
            "sign",
            json!({"message": m, "batch": [{"message": m}]}),
            "sign message and batch",
        ),
        ("sign", json!({}), "sign neither message nor batch"),
        (
            "sign",
            json!({"key_version": 1, "batch": [{"message": m}]}),
            "sign top-level key_version with batch",
        ),
        (
            "sign",
            json!({"batch": [{"message": m, "reference": "r".repeat(257)}]}),
            "sign reference too long",
        ),
        ("verify", json!({"batch": []}), "empty verify batch"),
        (
            "verify",
            json!({"message": m, "signature": s, "batch": [{"message": m, "signature": s}]}),
            "verify both",
        ),
        ("verify", json!({"message": m}), "verify without signature"),
        (
            "verify",
            json!({"batch": [{"message": m}]}),
            "verify item without signature",
        ),
    ];
    for (action, body, what) in cases {
        let r = app.post(&format!("/v1/keys/k/{action}"), body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    assert_eq!(all_keys(&app).await, before, "nothing was signed or verified");
}

#[tokio::test]
async fn a_batch_over_the_item_limit_is_refused_whole() {
    let mut home = AppHome::new();
    home.limits.max_batch_items = 3;
    let app = spawn_app_in(home).await;
    app.create_key("k").await;
    let (sig, _) = app.sign("k", b"a").await;
    let sign_item = json!({"message": b64(b"a")});
    let verify_item = json!({"message": b64(b"a"), "signature": b64(&sig)});

    let r = sign_with(&app, "k", json!({"batch": vec![sign_item.clone(); 3]})).await;
    assert_eq!(r.body["batch"].as_array().map(Vec::len), Some(3), "{}", r.body);
    let r = verify_with(&app, "k", json!({"batch": vec![verify_item.clone(); 3]})).await;
    assert_eq!(r.body["batch"].as_array().map(Vec::len), Some(3), "{}", r.body);

    let before = get_key(&app, "k").await;
    assert_eq!(
        (
            before["versions"][0]["sign_count"].as_u64(),
            before["versions"][0]["verify_count"].as_u64()
        ),
        (Some(4), Some(3))
    );
    let r = sign_with(&app, "k", json!({"batch": vec![sign_item; 4]})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "4 sign items over a limit of 3",
    );
    let r = verify_with(&app, "k", json!({"batch": vec![verify_item; 4]})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "4 verify items over a limit of 3",
    );
    assert_eq!(get_key(&app, "k").await, before, "no item of a refused batch ran");
}

// ----- usage counters ---------------------------------------------------------------------

#[tokio::test]
async fn usage_counters_count_signs_and_successful_verifies_and_survive_a_restart() {
    let app = spawn_app().await;
    app.create_key("k").await;
    app.clock.advance(time::Duration::hours(1));
    let mut signature = Vec::new();
    for _ in 0..3 {
        signature = app.sign("k", b"m").await.0;
    }
    for _ in 0..2 {
        assert_eq!(app.verify("k", b"m", &signature).await.body["valid"], true);
    }
    assert_eq!(app.verify("k", b"other", &signature).await.body["valid"], false);

    let shown = get_key(&app, "k").await;
    let expected = json!([{"version": 1, "created_at": START, "sign_count": 3, "verify_count": 2, "last_used_at": "2026-09-21T15:13:20Z"}]);
    assert_eq!(shown["versions"], expected);

    app.flush_usage().await;
    assert_eq!(get_key(&app, "k").await, shown, "flushing changes nothing visible");
    let app = app.restart().await;
    assert_eq!(get_key(&app, "k").await, shown, "the counts persist across a restart");
}
