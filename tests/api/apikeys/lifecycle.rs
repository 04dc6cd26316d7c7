//! Changing a key after it was issued: reroll with and without grace, revoke, disable and
//! enable, credits and meta, expiry, last use. Every change must show in the very next
//! verification, even of a key verified (and so remembered) just before.

use reqwest::StatusCode;
use serde_json::json;
use sigvault::clock::Clock;
use time::Duration;

use super::{code, create, create_for, get, in_seconds, parse_time, reroll, verify};
use crate::helpers::spawn_app;

#[tokio::test]
async fn a_rerolled_key_and_its_predecessor_both_verify_during_the_grace_period_and_only_the_new_one_after() {
    let app = spawn_app().await;
    let old = create(
        &app,
        json!({"principal": "acme-ci", "prefix": "live", "meta": {"n": 1}}),
    )
    .await;
    assert_eq!(code(&verify(&app, &old.key).await), "VALID");

    let new = reroll(&app, &old.id, 60).await;
    assert_eq!(new.id, old.id, "the same key, a new secret");
    assert_ne!(new.key, old.key);
    assert!(new.key.starts_with("live_"), "the prefix is kept: {}", new.key);
    assert_eq!(new.body["principal"], "acme-ci");
    for key in [&old.key, &new.key] {
        let v = verify(&app, key).await;
        assert_eq!(
            (code(&v), &v["id"], &v["principal"]),
            ("VALID", &json!(old.id), &json!("acme-ci")),
            "{v}"
        );
    }

    app.clock.advance(Duration::seconds(59));
    assert_eq!(code(&verify(&app, &old.key).await), "VALID", "old key at 59 s");
    assert_eq!(code(&verify(&app, &new.key).await), "VALID", "new key at 59 s");
    app.clock.advance(Duration::seconds(2));
    let v = verify(&app, &old.key).await;
    assert_eq!((code(&v), v.get("id")), ("NOT_FOUND", None), "old key at 61 s: {v}");
    assert_eq!(code(&verify(&app, &new.key).await), "VALID", "new key at 61 s");
}

#[tokio::test]
async fn a_reroll_without_grace_stops_the_old_key_at_once() {
    let app = spawn_app().await;
    let old = create_for(&app, "acme-ci").await;
    assert_eq!(code(&verify(&app, &old.key).await), "VALID");
    let new = reroll(&app, &old.id, 0).await;
    assert_eq!(code(&verify(&app, &old.key).await), "NOT_FOUND");
    assert_eq!(code(&verify(&app, &new.key).await), "VALID");

    // A second reroll with grace: the first key stays gone, the second is in its grace.
    let third = reroll(&app, &old.id, 60).await;
    assert_eq!(code(&verify(&app, &old.key).await), "NOT_FOUND");
    assert_eq!(code(&verify(&app, &new.key).await), "VALID");
    assert_eq!(code(&verify(&app, &third.key).await), "VALID");
    // Rerolling again ends the earlier grace period: only the latest previous key is kept.
    let fourth = reroll(&app, &old.id, 60).await;
    assert_eq!(code(&verify(&app, &new.key).await), "NOT_FOUND");
    assert_eq!(code(&verify(&app, &third.key).await), "VALID");
    assert_eq!(code(&verify(&app, &fourth.key).await), "VALID");
}

#[tokio::test]
async fn a_revoked_key_is_not_found_immediately_even_right_after_it_verified() {
    let app = spawn_app().await;
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "ratelimit": {"limit": 100, "period": "1s"}}),
    )
    .await;
    let previous = reroll(&app, &issued.id, 3600).await;
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID", "in its grace period");
    assert_eq!(code(&verify(&app, &previous.key).await), "VALID");

    app.clock.advance(Duration::seconds(5));
    let r = app.delete(&format!("/v1/apikeys/{}", issued.id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "revoked");
    assert_eq!(parse_time(&r.body["revoked_at"]), app.clock.now());
    for key in [&issued.key, &previous.key] {
        let v = verify(&app, key).await;
        assert_eq!((code(&v), v.get("id")), ("NOT_FOUND", None), "{v}");
    }
    assert_eq!(
        get(&app, &issued.id).await["state"],
        "revoked",
        "the record stays, revoked"
    );

    // Nothing brings it back.
    let r = app
        .patch(&format!("/v1/apikeys/{}", issued.id), json!({"state": "enabled"}))
        .await;
    assert!(
        r.status.is_client_error(),
        "enabling a revoked key: {} {}",
        r.status,
        r.body
    );
    let r = app
        .post(
            &format!("/v1/apikeys/{}/reroll", issued.id),
            json!({"grace_seconds": 0}),
        )
        .await;
    assert!(
        r.status.is_client_error(),
        "rerolling a revoked key: {} {}",
        r.status,
        r.body
    );
    assert!(r.body.get("key").is_none(), "{}", r.body);
    assert_eq!(get(&app, &issued.id).await["state"], "revoked");
    assert_eq!(code(&verify(&app, &issued.key).await), "NOT_FOUND");

    let app = app.restart().await;
    assert_eq!(code(&verify(&app, &issued.key).await), "NOT_FOUND", "after a restart");
}

#[tokio::test]
async fn disabling_answers_disabled_at_once_and_enabling_brings_it_back() {
    let app = spawn_app().await;
    let issued = create_for(&app, "acme-ci").await;
    let path = format!("/v1/apikeys/{}", issued.id);
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID");
    let r = app.patch(&path, json!({"state": "disabled"})).await;
    assert_eq!(
        (r.status, &r.body["state"]),
        (StatusCode::OK, &json!("disabled")),
        "{}",
        r.body
    );
    assert_eq!(code(&verify(&app, &issued.key).await), "DISABLED");
    assert_eq!(get(&app, &issued.id).await["state"], "disabled");
    let r = app.patch(&path, json!({"state": "enabled"})).await;
    assert_eq!(
        (r.status, &r.body["state"]),
        (StatusCode::OK, &json!("enabled")),
        "{}",
        r.body
    );
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID");
}

#[tokio::test]
async fn a_changed_credit_limit_or_meta_applies_to_the_next_verification() {
    let app = spawn_app().await;
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "remaining": 1, "meta": {"plan": "free"}}),
    )
    .await;
    let path = format!("/v1/apikeys/{}", issued.id);
    assert_eq!(verify(&app, &issued.key).await["remaining"], 0);
    assert_eq!(code(&verify(&app, &issued.key).await), "USAGE_EXCEEDED");

    let r = app.patch(&path, json!({"remaining": 2})).await;
    assert_eq!(
        (r.status, &r.body["remaining"]),
        (StatusCode::OK, &json!(2)),
        "{}",
        r.body
    );
    let v = verify(&app, &issued.key).await;
    assert_eq!((code(&v), &v["remaining"]), ("VALID", &json!(1)), "{v}");

    let r = app.patch(&path, json!({"meta": {"plan": "pro"}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["remaining"], 1, "remaining kept when not named");
    assert_eq!(verify(&app, &issued.key).await["meta"], json!({"plan": "pro"}));

    let r = app.patch(&path, json!({"remaining": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.get("remaining").is_none(), "null removes the limit: {}", r.body);
    for _ in 0..3 {
        let v = verify(&app, &issued.key).await;
        assert_eq!(code(&v), "VALID", "{v}");
        assert!(v.get("remaining").is_none(), "{v}");
    }
    assert!(get(&app, &issued.id).await.get("remaining").is_none());
}

#[tokio::test]
async fn a_key_expires_at_its_expiry_time() {
    let app = spawn_app().await;
    let expires_at = in_seconds(&app, 3600);
    let issued = create(&app, json!({"principal": "acme-ci", "expires_at": expires_at})).await;
    assert_eq!(parse_time(&issued.body["expires_at"]), parse_time(&json!(expires_at)));
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID");
    app.clock.advance(Duration::seconds(3599));
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID", "a second before");
    app.clock.advance(Duration::seconds(1));
    assert_eq!(code(&verify(&app, &issued.key).await), "EXPIRED", "at its expiry time");
    app.clock.advance(Duration::days(400));
    assert_eq!(code(&verify(&app, &issued.key).await), "EXPIRED");
}

#[tokio::test]
async fn a_verification_shows_as_last_use_and_is_kept_across_a_restart() {
    let app = spawn_app().await;
    let issued = create_for(&app, "acme-ci").await;
    assert!(get(&app, &issued.id).await.get("last_used_at").is_none(), "never used");
    app.clock.advance(Duration::seconds(90));
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID");
    let used_at = app.clock.now();
    let read = get(&app, &issued.id).await;
    assert_eq!(parse_time(&read["last_used_at"]), used_at, "{read}");

    app.clock.advance(Duration::seconds(30));
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID");
    let later = app.clock.now();
    assert_eq!(
        parse_time(&get(&app, &issued.id).await["last_used_at"]),
        later,
        "moves forward"
    );

    let app = app.restart().await;
    assert_eq!(
        parse_time(&get(&app, &issued.id).await["last_used_at"]),
        later,
        "written on stop"
    );
}
