//! Creating, reading, using, revoking and expiring caller tokens.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;

use super::{assert_unauthenticated, create_token, create_token_reply, whoami};
use crate::helpers::{RawStore, RawValue, TestApp, spawn_app};

/// The `spawn_app` clock's start, and one hour later.
const START: &str = "2026-09-21T14:13:20Z";
const START_PLUS_1H: &str = "2026-09-21T15:13:20Z";

/// Rows of the `caller_tokens` table, read from the database while the app runs.
async fn stored_tokens(app: &TestApp) -> i64 {
    let raw = RawStore::open(&app.home.store()).await;
    let n = raw.scalar("SELECT COUNT(*) FROM caller_tokens", &[]).await;
    raw.close().await;
    match n {
        RawValue::Int(n) => n,
        other => panic!("a count: {other:?}"),
    }
}

#[tokio::test]
async fn a_created_token_is_shown_once_and_authenticates_as_its_principal_and_groups() {
    let app = spawn_app().await;
    let r = create_token_reply(
        &app,
        json!({"principal": "payments", "groups": ["service"], "ttl": "1h",
               "description": "payments API, prod"}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "creating a token answers 201: {}",
        r.body
    );
    let id = r.body["id"].as_str().expect("an `id`").to_owned();
    let token = r.body["token"].as_str().expect("a `token`").to_owned();
    assert!(token.starts_with("svt_"), "the token starts with svt_: {token}");
    assert!(token.len() >= 4 + 43, "the token carries at least 256 bits: {token}");
    assert_eq!(r.body["principal"], "payments", "the answer names the principal");
    assert_eq!(r.body["groups"], json!(["service"]), "the answer lists the groups");
    assert_eq!(r.body["expires_at"], START_PLUS_1H, "expires_at is creation + ttl");

    let r = whoami(&app, Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "the new token authenticates: {}", r.body);
    assert_eq!(
        r.body,
        json!({"principal": "payments", "groups": ["service"], "via": "token"}),
        "whoami names the token's principal and groups"
    );

    let r = app.get(&format!("/v1/auth/tokens/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "root reads the token: {}", r.body);
    assert_eq!(
        r.body,
        json!({"id": id, "principal": "payments", "groups": ["service"],
               "description": "payments API, prod", "created_at": START, "expires_at": START_PLUS_1H}),
        "reading a token gives its metadata and nothing else"
    );
    let body_part = token.strip_prefix("svt_").expect("svt_ prefix");
    assert!(
        !r.body.to_string().contains(body_part),
        "reading a token never shows the token: {}",
        r.body
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_a_second_revocation_keeps_the_first_time() {
    let app = spawn_app().await;
    let (id, token) = create_token(&app, "payments", &["service"], None).await;
    let (_, other) = create_token(&app, "billing", &["service"], None).await;
    // Used first, so the vault has it in its memory of verified tokens.
    assert_eq!(
        whoami(&app, Some(&token)).await.status,
        StatusCode::OK,
        "the token works"
    );
    assert_eq!(
        whoami(&app, Some(&other)).await.status,
        StatusCode::OK,
        "the other works"
    );

    let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "revoking answers 200: {}", r.body);
    assert_eq!(r.body["revoked_at"], START, "the revocation is timed now");
    assert_unauthenticated(&whoami(&app, Some(&token)).await, "the revoked token");
    assert_unauthenticated(&whoami(&app, Some(&token)).await, "the revoked token, again");
    assert_eq!(
        whoami(&app, Some(&other)).await.status,
        StatusCode::OK,
        "revoking one token leaves the others working"
    );

    app.clock.advance(Duration::minutes(5));
    let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "a second revocation answers 200: {}", r.body);
    assert_eq!(r.body["revoked_at"], START, "a second revocation keeps the first time");
    let r = app.get(&format!("/v1/auth/tokens/{id}")).await;
    assert_eq!(r.body["revoked_at"], START, "reading shows the first revocation time");
    assert_unauthenticated(&whoami(&app, Some(&token)).await, "the token revoked twice");
}

#[tokio::test]
async fn reading_or_revoking_an_unknown_token_id_is_not_found() {
    let app = spawn_app().await;
    let long = format!("tok_{}", "a".repeat(100));
    for id in ["tok_0000000000000000", "tok-with-dash", "tok.with.dots", long.as_str()] {
        for method in [Method::GET, Method::DELETE] {
            let path = format!("/v1/auth/tokens/{id}");
            let r = app
                .send(method.clone(), &path, Some(crate::helpers::ROOT_TOKEN), None)
                .await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::NOT_FOUND, "NOT_FOUND"),
                "{method} {path}: expected 404 NOT_FOUND, got {}",
                r.body
            );
        }
    }
}

#[tokio::test]
async fn bad_token_requests_are_invalid_arguments_and_create_no_token() {
    let app = spawn_app().await;
    let too_many_groups: Vec<String> = (0..17).map(|i| format!("g{i}")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("principal root", json!({"principal": "root"}).to_string().into_bytes()),
        ("principal -", json!({"principal": "-"}).to_string().into_bytes()),
        ("empty principal", json!({"principal": ""}).to_string().into_bytes()),
        ("no principal", json!({"groups": ["service"]}).to_string().into_bytes()),
        (
            "unknown field",
            json!({"principal": "payments", "role": "admin"})
                .to_string()
                .into_bytes(),
        ),
        (
            "ttl over the 365d maximum",
            json!({"principal": "payments", "ttl": "366d"}).to_string().into_bytes(),
        ),
        (
            "ttl 0s",
            json!({"principal": "payments", "ttl": "0s"}).to_string().into_bytes(),
        ),
        (
            "ttl not a duration",
            json!({"principal": "payments", "ttl": "soon"}).to_string().into_bytes(),
        ),
        (
            "group with a space",
            json!({"principal": "payments", "groups": ["bad group"]})
                .to_string()
                .into_bytes(),
        ),
        (
            "group listed twice",
            json!({"principal": "payments", "groups": ["service", "service"]})
                .to_string()
                .into_bytes(),
        ),
        (
            "17 groups",
            json!({"principal": "payments", "groups": too_many_groups})
                .to_string()
                .into_bytes(),
        ),
        ("not JSON", b"principal=payments".to_vec()),
    ];
    for (what, body) in &cases {
        let r = app.post_raw("/v1/auth/tokens", body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            "{what}: expected 400 INVALID_ARGUMENT, got {}",
            r.body
        );
        assert!(r.body.get("token").is_none(), "{what}: a refusal shows no token");
    }
    assert_eq!(stored_tokens(&app).await, 0, "no refused request stored a token");
    let events = app.audit_events("action=CreateToken").await;
    assert_eq!(events.len(), cases.len(), "every refused creation is audited");
    for e in &events {
        assert_eq!(
            (e["outcome"].as_str(), e["resource"].as_str()),
            (Some("INVALID_ARGUMENT"), Some("tokens")),
            "a refused creation is audited as INVALID_ARGUMENT on `tokens`: {e}"
        );
    }

    // The limit itself is allowed.
    create_token(&app, "payments", &["service"], Some("365d")).await;
    assert_eq!(stored_tokens(&app).await, 1, "a ttl of exactly the maximum is accepted");
}

#[tokio::test]
async fn a_token_expires_at_its_ttl_even_right_after_it_was_used() {
    let app = spawn_app().await;
    let (id, token) = create_token(&app, "payments", &["service"], Some("1h")).await;
    let (_, lasting) = create_token(&app, "batch", &[], None).await;
    assert_eq!(
        whoami(&app, Some(&token)).await.status,
        StatusCode::OK,
        "fresh token works"
    );

    app.clock.advance(Duration::minutes(60) - Duration::seconds(1));
    assert_eq!(
        whoami(&app, Some(&token)).await.status,
        StatusCode::OK,
        "one second before its expiry the token works"
    );
    app.clock.advance(Duration::seconds(1));
    assert_unauthenticated(&whoami(&app, Some(&token)).await, "the token at its expiry");
    let r = app.get(&format!("/v1/auth/tokens/{id}")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "an expired token can still be read: {}",
        r.body
    );
    assert_eq!(r.body.get("revoked_at"), None, "expiry is not revocation: {}", r.body);

    app.clock.advance(Duration::days(400));
    let r = whoami(&app, Some(&lasting)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a token without ttl does not expire: {}",
        r.body
    );
    assert_eq!(
        r.body,
        json!({"principal": "batch", "groups": [], "via": "token"}),
        "a token without groups has none"
    );
    let events: Vec<Value> = app.audit_events("action=WhoAmI&principal=-").await;
    assert_eq!(
        events.len(),
        1,
        "the refused expired token is audited as nobody: {events:?}"
    );
}
