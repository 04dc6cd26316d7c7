//! Deleting a key, restoring it within its waiting period, and purging it once the period ends.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{all_keys, assert_error, get_key, sign_with};
use crate::helpers::{b64, spawn_app};

#[tokio::test]
async fn deleting_a_key_blocks_it_and_restore_brings_back_the_same_material() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, _) = app.sign("k", b"m").await;

    let r = app.delete("/v1/keys/k?pending_days=7").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["state"], "pending_deletion");
    assert_eq!(r.body["deletion_due_at"], "2026-09-28T14:13:20Z");
    assert_eq!(get_key(&app, "k").await, r.body);

    let pending = r.body;
    let r = sign_with(&app, "k", json!({"message": b64(b"m")})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "sign while pending deletion",
    );
    let r = app.verify("k", b"m", &signature).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "verify while pending deletion",
    );
    let r = app.post("/v1/keys/k/rotate", json!({})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "rotate while pending deletion",
    );
    let r = app.delete("/v1/keys/k?pending_days=7").await;
    assert_error(&r, StatusCode::CONFLICT, "FAILED_PRECONDITION", "delete twice");
    let r = app.patch("/v1/keys/k", json!({"state": "enabled"})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "enable while pending deletion",
    );
    let r = app
        .post("/v1/keys/k/import", json!({"key_material": b64(&[3; 32])}))
        .await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "import while pending deletion",
    );
    assert_eq!(get_key(&app, "k").await, pending);

    let r = app.post("/v1/keys/k/restore", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "enabled");
    assert_eq!(r.body.get("deletion_due_at"), None, "{}", r.body);
    assert_eq!(
        app.sign("k", b"m").await,
        (signature, 1),
        "the same material signs again"
    );

    let r = app.post("/v1/keys/k/restore", json!({})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "restore a key that is not pending deletion",
    );
}

#[tokio::test]
async fn a_disabled_key_restored_from_deletion_is_disabled_again() {
    let app = spawn_app().await;
    app.create_key("k").await;
    app.patch("/v1/keys/k", json!({"state": "disabled"})).await;

    let r = app.delete("/v1/keys/k").await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (StatusCode::ACCEPTED, Some("pending_deletion")),
        "{}",
        r.body
    );
    assert_eq!(
        r.body["deletion_due_at"], "2026-09-28T14:13:20Z",
        "the default wait is 7 days"
    );

    let r = app.post("/v1/keys/k/restore", json!({})).await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (StatusCode::OK, Some("disabled")),
        "{}",
        r.body
    );
    let r = sign_with(&app, "k", json!({"message": b64(b"m")})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "sign after restoring a disabled key",
    );
}

#[tokio::test]
async fn pending_days_outside_1_to_30_or_not_a_number_is_refused() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = get_key(&app, "k").await;
    for days in ["0", "31", "x", "-1", "7.5", ""] {
        let r = app.delete(&format!("/v1/keys/k?pending_days={days}")).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("pending_days={days}"),
        );
    }
    assert_eq!(get_key(&app, "k").await, before);
    for (days, due) in [("1", "2026-09-22T14:13:20Z"), ("30", "2026-10-21T14:13:20Z")] {
        let r = app.delete(&format!("/v1/keys/k?pending_days={days}")).await;
        assert_eq!(
            (r.status, r.body["deletion_due_at"].as_str()),
            (StatusCode::ACCEPTED, Some(due)),
            "{}",
            r.body
        );
        app.post("/v1/keys/k/restore", json!({})).await;
    }
}

#[tokio::test]
async fn a_key_past_its_waiting_period_is_destroyed_and_its_name_can_be_reused() {
    let app = spawn_app().await;
    app.create_key("k").await;
    app.create_key("kept").await;
    let (old_signature, _) = app.sign("k", b"m").await;
    let r = app.delete("/v1/keys/k?pending_days=7").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    app.clock.advance(time::Duration::days(6));
    assert_eq!(
        app.state.keys.purge_due().await.expect("purge"),
        0,
        "not due after 6 days"
    );
    assert_eq!(get_key(&app, "k").await["state"], "pending_deletion");

    app.clock.advance(time::Duration::days(2));
    assert_eq!(app.state.keys.purge_due().await.expect("purge"), 1);
    let r = app.get("/v1/keys/k").await;
    assert_error(&r, StatusCode::NOT_FOUND, "KEY_NOT_FOUND", "get a destroyed key");
    let r = app.post("/v1/keys/k/restore", json!({})).await;
    assert_error(&r, StatusCode::NOT_FOUND, "KEY_NOT_FOUND", "restore a destroyed key");
    let r = sign_with(&app, "k", json!({"message": b64(b"m")})).await;
    assert_error(&r, StatusCode::NOT_FOUND, "KEY_NOT_FOUND", "sign with a destroyed key");
    let names: Vec<Value> = all_keys(&app).await["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    assert_eq!(names, [json!("kept")]);

    let created = app.create_key("k").await;
    assert_eq!(
        (created["latest_version"].as_u64(), created["state"].as_str()),
        (Some(1), Some("enabled"))
    );
    assert_eq!(created["versions"][0]["sign_count"], 0);
    let r = app.verify("k", b"m", &old_signature).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": false, "code": "SIGNATURE_MISMATCH"})),
        "new material"
    );
}

#[tokio::test]
async fn a_restored_key_is_not_destroyed_when_its_old_deadline_passes() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, _) = app.sign("k", b"m").await;
    app.delete("/v1/keys/k?pending_days=1").await;
    app.post("/v1/keys/k/restore", json!({})).await;

    app.clock.advance(time::Duration::days(2));
    assert_eq!(app.state.keys.purge_due().await.expect("purge"), 0);
    assert_eq!(get_key(&app, "k").await["state"], "enabled");
    assert_eq!(app.sign("k", b"m").await, (signature, 1));
}
