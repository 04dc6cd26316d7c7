//! `POST /v1/apikeys/verify`: every code from a key made for it, the checks' order, credits
//! under concurrency, rate limits and permissions.

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

use super::{code, create, create_for, get, in_seconds, verify, verify_with, with_checksum};
use crate::helpers::spawn_app;

/// A failed verification tells its code and the key's id, never whose key it is.
#[track_caller]
fn assert_refused(v: &Value, expected: &str, id: Option<&str>) {
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(code(v), expected, "{v}");
    assert_eq!(v["id"].as_str(), id, "{v}");
    assert!(v.get("principal").is_none(), "no principal unless VALID: {v}");
    assert!(v.get("meta").is_none(), "no meta unless VALID: {v}");
}

#[tokio::test]
async fn a_new_key_verifies_and_names_its_principal_and_meta() {
    let app = spawn_app().await;
    let meta = json!({"plan": "pro", "tenant": {"id": 42}});
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "prefix": "live", "meta": meta, "permissions": ["orders.read"]}),
    )
    .await;
    let b = &issued.body;
    assert!(issued.key.starts_with("live_"), "{}", issued.key);
    assert!(
        issued.key["live_".len()..].bytes().all(|c| c.is_ascii_alphanumeric()) && issued.key.len() >= 5 + 32 + 6,
        "<prefix>_<base62 random ≥ 32><checksum>: {}",
        issued.key
    );
    assert_eq!(
        with_checksum("live", &issued.key["live_".len()..issued.key.len() - 6]),
        issued.key,
        "the checksum is the documented one (so the made-up keys below are well formed)"
    );
    assert!(issued.id.starts_with("ak_"), "{}", issued.id);
    assert_eq!(
        (
            &b["prefix"],
            &b["principal"],
            &b["state"],
            &b["meta"],
            &b["permissions"]
        ),
        (
            &json!("live"),
            &json!("acme-ci"),
            &json!("enabled"),
            &meta,
            &json!(["orders.read"])
        )
    );

    let v = verify(&app, &issued.key).await;
    assert_eq!(
        v,
        json!({"valid": true, "code": "VALID", "id": issued.id, "principal": "acme-ci", "meta": meta}),
        "no remaining without a credit limit"
    );
    let read = get(&app, &issued.id).await;
    assert!(read.get("key").is_none(), "the key is shown only once: {read}");
    assert_eq!(read["principal"], "acme-ci");

    let default = create_for(&app, "acme-ci").await;
    assert!(default.key.starts_with("sk_"), "the default prefix: {}", default.key);
    assert_ne!(default.key, issued.key);
    assert_eq!(code(&verify(&app, &default.key).await), "VALID");
}

#[tokio::test]
async fn a_key_with_a_broken_checksum_is_not_found_without_a_store_lookup() {
    let app = spawn_app().await;
    let issued = create_for(&app, "acme-ci").await;
    let key = &issued.key;
    let (body, checksum) = key.split_at(key.len() - 6);
    let mut broken = Vec::new();
    // Another checksum on the right body, and the right checksum on another body.
    let first = if checksum.starts_with('A') { 'B' } else { 'A' };
    broken.push(format!("{body}{first}{}", &checksum[1..]));
    let last = body.chars().last().expect("a character");
    let other = if last == 'z' { 'y' } else { 'z' };
    broken.push(format!("{}{other}{checksum}", &body[..body.len() - 1]));
    // Not a key at all.
    broken.extend(
        [
            "",
            "sk",
            "sk_",
            "sk_short",
            "not a key",
            "SK_0123456789abcdefghijABCDEFGHIJ0123456789",
        ]
        .map(str::to_owned),
    );
    broken.push(format!("{key} "));
    broken.push(key.replacen('_', "-", 1));

    let before = app.state.apikeys.store_lookups();
    for bad in &broken {
        assert_refused(&verify(&app, bad).await, "NOT_FOUND", None);
    }
    assert_eq!(
        app.state.apikeys.store_lookups(),
        before,
        "a malformed key never reaches the store"
    );

    // A well-formed key nobody issued does reach it.
    let made_up = with_checksum("sk", "0123456789abcdefghijABCDEFGHIJxy");
    assert_refused(&verify(&app, &made_up).await, "NOT_FOUND", None);
    assert_eq!(
        app.state.apikeys.store_lookups(),
        before + 1,
        "one lookup for a well-formed key"
    );
    assert_eq!(code(&verify(&app, key).await), "VALID", "the real key still works");
}

#[tokio::test]
async fn every_failure_code_answers_for_a_key_made_for_it() {
    let app = spawn_app().await;
    let meta = json!({"plan": "pro"});
    let with = |extra: Value| {
        let mut body = json!({"principal": "acme-ci", "meta": meta});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        body
    };

    let made_up = with_checksum("sk", "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ");
    assert_refused(&verify(&app, &made_up).await, "NOT_FOUND", None);

    let disabled = create(&app, with(json!({}))).await;
    let r = app
        .patch(&format!("/v1/apikeys/{}", disabled.id), json!({"state": "disabled"}))
        .await;
    assert_eq!(
        (r.status, &r.body["state"]),
        (StatusCode::OK, &json!("disabled")),
        "{}",
        r.body
    );
    assert_refused(&verify(&app, &disabled.key).await, "DISABLED", Some(&disabled.id));

    let spent = create(&app, with(json!({"remaining": 0}))).await;
    let v = verify(&app, &spent.key).await;
    assert_refused(&v, "USAGE_EXCEEDED", Some(&spent.id));
    assert_eq!(v["remaining"], 0, "{v}");

    let limited = create(&app, with(json!({"ratelimit": {"limit": 1, "period": "1m"}}))).await;
    assert_eq!(code(&verify(&app, &limited.key).await), "VALID");
    let v = verify(&app, &limited.key).await;
    assert_refused(&v, "RATE_LIMITED", Some(&limited.id));
    let retry = v["retry_after_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("retry_after_ms: {v}"));
    assert!((1..=60_000).contains(&retry), "{v}");

    let reader = create(&app, with(json!({"permissions": ["orders.read"]}))).await;
    assert_refused(
        &verify_with(&app, &reader.key, &["orders.write"]).await,
        "INSUFFICIENT_PERMISSIONS",
        Some(&reader.id),
    );

    // Last, as it moves the clock for every key.
    let expiring = create(&app, with(json!({"expires_at": in_seconds(&app, 60)}))).await;
    assert_eq!(code(&verify(&app, &expiring.key).await), "VALID");
    app.clock.advance(Duration::seconds(60));
    assert_refused(&verify(&app, &expiring.key).await, "EXPIRED", Some(&expiring.id));
}

#[tokio::test]
async fn remaining_counts_down_once_per_valid_verification_and_then_usage_is_exceeded() {
    let app = spawn_app().await;
    let issued = create(&app, json!({"principal": "acme-ci", "remaining": 2})).await;
    assert_eq!(issued.body["remaining"], 2);
    let v = verify(&app, &issued.key).await;
    assert_eq!((code(&v), &v["remaining"]), ("VALID", &json!(1)), "{v}");
    let v = verify(&app, &issued.key).await;
    assert_eq!((code(&v), &v["remaining"]), ("VALID", &json!(0)), "{v}");
    for _ in 0..3 {
        let v = verify(&app, &issued.key).await;
        assert_eq!((code(&v), &v["remaining"]), ("USAGE_EXCEEDED", &json!(0)), "{v}");
    }
    assert_eq!(get(&app, &issued.id).await["remaining"], 0);
}

#[tokio::test]
async fn twenty_concurrent_verifications_of_a_key_with_ten_credits_pass_exactly_ten_times() {
    let app = spawn_app().await;
    let issued = create(&app, json!({"principal": "acme-ci", "remaining": 10})).await;
    let verifications = (0..20).map(|_| verify(&app, &issued.key));
    let results = futures_util::future::join_all(verifications).await;
    let count = |wanted: &str| results.iter().filter(|v| code(v) == wanted).count();
    assert_eq!((count("VALID"), count("USAGE_EXCEEDED")), (10, 10), "{results:?}");
    let mut left: Vec<u64> = results
        .iter()
        .filter(|v| code(v) == "VALID")
        .map(|v| v["remaining"].as_u64().expect("remaining"))
        .collect();
    left.sort_unstable();
    assert_eq!(left, (0..10).collect::<Vec<u64>>(), "each credit was taken once");
    assert_eq!(get(&app, &issued.id).await["remaining"], 0);

    let app = app.restart().await;
    assert_eq!(get(&app, &issued.id).await["remaining"], 0, "after a restart");
    assert_eq!(code(&verify(&app, &issued.key).await), "USAGE_EXCEEDED");
}

#[tokio::test]
async fn the_sixth_verification_in_a_second_is_rate_limited_until_the_clock_moves_on() {
    let app = spawn_app().await;
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "ratelimit": {"limit": 5, "period": "1s"}}),
    )
    .await;
    assert_eq!(issued.body["ratelimit"], json!({"limit": 5, "period": "1s"}));
    for i in 0..5 {
        assert_eq!(code(&verify(&app, &issued.key).await), "VALID", "verification {i}");
    }
    let v = verify(&app, &issued.key).await;
    assert_refused(&v, "RATE_LIMITED", Some(&issued.id));
    let retry = v["retry_after_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("retry_after_ms: {v}"));
    assert!((1..=1000).contains(&retry), "{v}");

    app.clock.advance(Duration::milliseconds(retry));
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID", "after retry_after_ms");
    assert_eq!(code(&verify(&app, &issued.key).await), "RATE_LIMITED");

    app.clock.advance(Duration::seconds(1));
    for i in 0..5 {
        assert_eq!(code(&verify(&app, &issued.key).await), "VALID", "next second, {i}");
    }
    assert_eq!(code(&verify(&app, &issued.key).await), "RATE_LIMITED");

    let other = create(
        &app,
        json!({"principal": "acme-ci", "ratelimit": {"limit": 5, "period": "1s"}}),
    )
    .await;
    assert_eq!(code(&verify(&app, &other.key).await), "VALID", "a limit is per key");
}

#[tokio::test]
async fn a_key_passes_only_when_it_holds_every_permission_asked_for() {
    let app = spawn_app().await;
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "permissions": ["orders.read", "orders.write", "refunds:*"]}),
    )
    .await;
    for (asked, expected) in [
        (&[][..], "VALID"),
        (&["orders.read"][..], "VALID"),
        (&["orders.write", "orders.read"][..], "VALID"),
        (&["refunds:*"][..], "VALID"),
        (&["orders.read", "refunds.write"][..], "INSUFFICIENT_PERMISSIONS"),
        (&["orders"][..], "INSUFFICIENT_PERMISSIONS"),
        (&["refunds:create"][..], "INSUFFICIENT_PERMISSIONS"),
        (&["Orders.read"][..], "INSUFFICIENT_PERMISSIONS"),
    ] {
        let v = verify_with(&app, &issued.key, asked).await;
        assert_eq!(code(&v), expected, "asking for {asked:?}: {v}");
    }

    let none = create_for(&app, "acme-ci").await;
    assert_eq!(code(&verify(&app, &none.key).await), "VALID");
    assert_eq!(
        code(&verify_with(&app, &none.key, &["orders.read"]).await),
        "INSUFFICIENT_PERMISSIONS"
    );
}

#[tokio::test]
async fn a_disabled_and_expired_key_answers_disabled_and_an_expired_spent_key_expired() {
    let app = spawn_app().await;
    let both = create(
        &app,
        json!({"principal": "acme-ci", "expires_at": in_seconds(&app, 10)}),
    )
    .await;
    let r = app
        .patch(&format!("/v1/apikeys/{}", both.id), json!({"state": "disabled"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let spent = create(
        &app,
        json!({"principal": "acme-ci", "expires_at": in_seconds(&app, 10), "remaining": 0}),
    )
    .await;
    assert_eq!(
        code(&verify(&app, &spent.key).await),
        "USAGE_EXCEEDED",
        "not yet expired"
    );

    app.clock.advance(Duration::seconds(11));
    assert_eq!(code(&verify(&app, &both.key).await), "DISABLED");
    assert_eq!(code(&verify(&app, &spent.key).await), "EXPIRED");
    let r = app
        .patch(&format!("/v1/apikeys/{}", both.id), json!({"state": "enabled"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        code(&verify(&app, &both.key).await),
        "EXPIRED",
        "enabled, still expired"
    );
}

#[tokio::test]
async fn a_spent_key_answers_usage_exceeded_before_its_rate_limit_and_spends_no_rate_budget() {
    let app = spawn_app().await;
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "remaining": 0, "ratelimit": {"limit": 1, "period": "1m"}}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(code(&verify(&app, &issued.key).await), "USAGE_EXCEEDED");
    }
    let r = app
        .patch(&format!("/v1/apikeys/{}", issued.id), json!({"remaining": 5}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = verify(&app, &issued.key).await;
    assert_eq!(
        (code(&v), &v["remaining"]),
        ("VALID", &json!(4)),
        "its one token was kept: {v}"
    );
    assert_eq!(code(&verify(&app, &issued.key).await), "RATE_LIMITED");
    assert_eq!(
        get(&app, &issued.id).await["remaining"],
        4,
        "a rate-limited verification takes no credit"
    );
}

#[tokio::test]
async fn a_rate_limited_key_lacking_permissions_answers_rate_limited_once_its_budget_is_used() {
    let app = spawn_app().await;
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "permissions": ["orders.read"], "remaining": 10,
               "ratelimit": {"limit": 2, "period": "1m"}}),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            code(&verify_with(&app, &issued.key, &["orders.write"]).await),
            "INSUFFICIENT_PERMISSIONS"
        );
    }
    assert_eq!(
        code(&verify_with(&app, &issued.key, &["orders.write"]).await),
        "RATE_LIMITED",
        "the permission check comes after the rate limit"
    );
    assert_eq!(
        get(&app, &issued.id).await["remaining"],
        10,
        "a refused verification takes no credit"
    );
}
