//! Tokens that no longer authenticate: revoked and expired.

use super::*;

#[tokio::test]
async fn a_revoked_token_is_refused_with_401_even_right_after_it_was_used() {
    let app = spawn_app().await;
    create_key(&app, "payments.webhook", "payments", json!({})).await;
    let (id, token) = token_for(&app, "payments", &["service"]).await;
    let r = sign_as(&app, &token, "payments.webhook").await;
    assert_status(&r, StatusCode::OK, "expected the token to work before revocation");

    let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
    assert_status(&r, StatusCode::OK, "expected root to revoke the token");
    assert!(r.body["revoked_at"].is_string(), "expected revoked_at in {}", r.body);

    let r = sign_as(&app, &token, "payments.webhook").await;
    assert_unauthenticated(&r, "signing with a revoked token");
    let r = whoami(&app, &token).await;
    assert_unauthenticated(&r, "whoami with a revoked token");
    let event = event_of(&app, "-", Action::WhoAmI, &r).await;
    let expected = json!({
        "principal": "-", "action": "WhoAmI", "resource": "self",
        "decision": "deny", "policy": null, "outcome": "UNAUTHENTICATED",
    });
    assert_eq!(summary(&event), expected, "expected the refused token in the trail");
}

#[tokio::test]
async fn a_token_with_a_ttl_is_refused_with_401_from_the_moment_it_expires() {
    let app = spawn_app().await;
    let body = json!({"principal": "payments", "groups": ["service"], "ttl": "1h"});
    let r = app.post("/v1/auth/tokens", body.clone()).await;
    assert_status(&r, StatusCode::CREATED, "expected a token with a ttl");
    assert_eq!(
        r.body["expires_at"], "2026-09-21T15:13:20Z",
        "expected expiry one hour after the start"
    );
    let used = r.body["token"].as_str().expect("token").to_owned();
    // Never presented before it expires: it is checked against the store, not a memory of it.
    let r = app.post("/v1/auth/tokens", body).await;
    let unused = r.body["token"].as_str().expect("token").to_owned();

    let r = whoami(&app, &used).await;
    assert_status(&r, StatusCode::OK, "expected a fresh token to work");
    app.clock.advance(Duration::hours(1) - Duration::seconds(1));
    let r = whoami(&app, &used).await;
    assert_status(
        &r,
        StatusCode::OK,
        "expected the token to work one second before expiry",
    );

    app.clock.advance(Duration::seconds(1));
    assert_unauthenticated(&whoami(&app, &used).await, "whoami with a token used before expiry");
    assert_unauthenticated(&whoami(&app, &unused).await, "whoami with a token never used");
}
