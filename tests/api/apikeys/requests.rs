//! Requests sigvault must refuse: 400 `INVALID_ARGUMENT` that changes nothing, and 404
//! `NOT_FOUND` for an id no key has.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{code, create, get, in_seconds, verify};
use crate::helpers::{ROOT_TOKEN, TestApp, spawn_app};

#[track_caller]
fn assert_invalid(r: &crate::helpers::Reply, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        "{what}: expected 400 INVALID_ARGUMENT: {}",
        r.body
    );
}

/// Every key in the store, as root could list it.
async fn stored_keys(app: &TestApp) -> Vec<String> {
    app.state
        .apikeys
        .list(None, 1000)
        .await
        .expect("list API keys")
        .into_iter()
        .map(|k| format!("{k:?}"))
        .collect()
}

#[tokio::test]
async fn a_bad_creation_is_refused_with_400_and_makes_no_key() {
    let app = spawn_app().await;
    let many: Vec<String> = (0..65).map(|i| format!("p{i}")).collect();
    let bad: Vec<(&str, Value)> = vec![
        ("no principal", json!({})),
        ("prefix with capitals", json!({"principal": "a", "prefix": "Live"})),
        (
            "prefix starting with a digit",
            json!({"principal": "a", "prefix": "1sk"}),
        ),
        ("prefix with an underscore", json!({"principal": "a", "prefix": "s_k"})),
        ("empty prefix", json!({"principal": "a", "prefix": ""})),
        (
            "17-character prefix",
            json!({"principal": "a", "prefix": "abcdefghijklmnopq"}),
        ),
        (
            "expiry in the past",
            json!({"principal": "a", "expires_at": in_seconds(&app, -1)}),
        ),
        (
            "expiry now",
            json!({"principal": "a", "expires_at": in_seconds(&app, 0)}),
        ),
        (
            "expiry not RFC 3339",
            json!({"principal": "a", "expires_at": "tomorrow"}),
        ),
        ("negative remaining", json!({"principal": "a", "remaining": -1})),
        (
            "period without a unit",
            json!({"principal": "a", "ratelimit": {"limit": 5, "period": "1"}}),
        ),
        (
            "period of zero",
            json!({"principal": "a", "ratelimit": {"limit": 5, "period": "0s"}}),
        ),
        (
            "unknown unit",
            json!({"principal": "a", "ratelimit": {"limit": 5, "period": "1w"}}),
        ),
        (
            "period over a day",
            json!({"principal": "a", "ratelimit": {"limit": 5, "period": "2d"}}),
        ),
        (
            "limit of zero",
            json!({"principal": "a", "ratelimit": {"limit": 0, "period": "1s"}}),
        ),
        (
            "ratelimit without a period",
            json!({"principal": "a", "ratelimit": {"limit": 5}}),
        ),
        ("65 permissions", json!({"principal": "a", "permissions": many})),
        ("empty permission", json!({"principal": "a", "permissions": [""]})),
        (
            "permission with a space",
            json!({"principal": "a", "permissions": ["orders read"]}),
        ),
        ("meta not an object", json!({"principal": "a", "meta": ["x"]})),
        (
            "meta over 4 KiB",
            json!({"principal": "a", "meta": {"x": "y".repeat(5000)}}),
        ),
        ("unknown field", json!({"principal": "a", "owner": "b"})),
        (
            "unknown field in ratelimit",
            json!({"principal": "a", "ratelimit": {"limit": 5, "period": "1s", "burst": 9}}),
        ),
        ("a key of one's choosing", json!({"principal": "a", "key": "sk_chosen"})),
    ];
    for (what, body) in bad {
        let r = app.post("/v1/apikeys", body).await;
        assert_invalid(&r, what);
        assert!(r.body.get("key").is_none(), "{what}: {}", r.body);
    }
    let r = app.post_raw("/v1/apikeys", b"{not json").await;
    assert_invalid(&r, "not JSON");
    assert_eq!(stored_keys(&app).await, Vec::<String>::new(), "no key was made");

    // The limits themselves are accepted.
    let edge: Vec<String> = (0..64).map(|i| format!("p{i}")).collect();
    create(
        &app,
        json!({"principal": "a", "prefix": "abcdefghijklmnop", "permissions": edge,
               "ratelimit": {"limit": 1, "period": "1d"}, "expires_at": in_seconds(&app, 1)}),
    )
    .await;
}

#[tokio::test]
async fn a_bad_change_reroll_or_verification_is_refused_with_400_and_changes_nothing() {
    let app = spawn_app().await;
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "remaining": 5, "meta": {"plan": "pro"}, "permissions": ["a"]}),
    )
    .await;
    let path = format!("/v1/apikeys/{}", issued.id);
    let before = get(&app, &issued.id).await;

    for (what, body) in [
        ("state revoked (DELETE revokes)", json!({"state": "revoked"})),
        ("unknown state", json!({"state": "paused"})),
        ("state not a string", json!({"state": true})),
        ("nothing to change", json!({})),
        ("negative remaining", json!({"remaining": -1})),
        ("meta not an object", json!({"meta": "x"})),
        ("unknown field", json!({"permissions": ["b"]})),
        (
            "a valid change beside an unknown field",
            json!({"state": "disabled", "principal": "b"}),
        ),
    ] {
        assert_invalid(&app.patch(&path, body).await, what);
    }
    let reroll = format!("{path}/reroll");
    for (what, body) in [
        ("grace over 30 days", json!({"grace_seconds": 2_592_001})),
        ("negative grace", json!({"grace_seconds": -1})),
        ("no grace given", json!({})),
        ("unknown field", json!({"grace_seconds": 0, "prefix": "x"})),
    ] {
        let r = app.post(&reroll, body).await;
        assert_invalid(&r, what);
        assert!(r.body.get("key").is_none(), "{what}: {}", r.body);
    }
    let many: Vec<String> = (0..65).map(|i| format!("p{i}")).collect();
    for (what, body) in [
        ("no key", json!({"permissions": []})),
        ("unknown field", json!({"key": issued.key, "id": issued.id})),
        ("65 permissions asked", json!({"key": issued.key, "permissions": many})),
        (
            "bad permission asked",
            json!({"key": issued.key, "permissions": ["a b"]}),
        ),
    ] {
        assert_invalid(&app.post("/v1/apikeys/verify", body).await, what);
    }

    assert_eq!(get(&app, &issued.id).await, before, "nothing changed");
    let v = verify(&app, &issued.key).await;
    assert_eq!(
        (code(&v), &v["remaining"]),
        ("VALID", &json!(4)),
        "the key was not rerolled and no refused verification took a credit: {v}"
    );

    let r = app.post(&reroll, json!({"grace_seconds": 2_592_000})).await;
    assert_eq!(r.status, StatusCode::OK, "30 days exactly is allowed: {}", r.body);
}

#[tokio::test]
async fn an_id_no_key_has_is_404_not_found() {
    let app = spawn_app().await;
    let issued = create(&app, json!({"principal": "acme-ci"})).await;
    let unknown = "ak_0123456789abcdef01234567";
    assert_ne!(issued.id, unknown);
    for id in [unknown, "nope", "ak_XYZ", &issued.id.to_uppercase()] {
        let one = format!("/v1/apikeys/{id}");
        let requests = [
            (Method::GET, one.clone(), None),
            (Method::PATCH, one.clone(), Some(json!({"state": "disabled"}))),
            (Method::DELETE, one.clone(), None),
            (Method::POST, format!("{one}/reroll"), Some(json!({"grace_seconds": 0}))),
        ];
        for (method, path, body) in requests {
            let body = body.map(|b| b.to_string().into_bytes());
            let r = app.send(method.clone(), &path, Some(ROOT_TOKEN), body).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::NOT_FOUND, "NOT_FOUND"),
                "{method} {path}: {}",
                r.body
            );
        }
    }
    assert_eq!(get(&app, &issued.id).await["state"], "enabled");
    assert_eq!(code(&verify(&app, &issued.key).await), "VALID");
}
