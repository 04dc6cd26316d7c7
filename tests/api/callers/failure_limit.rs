//! The failed-authentication limit: per (source address, credential), and per source address
//! by distinct failing credentials.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sigvault::auth::AuthSettings;

use super::{assert_unauthenticated, whoami};
use crate::helpers::{AppHome, ROOT_TOKEN, Reply, spawn_app_in};

fn assert_rate_limited(r: &Reply, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
        "{what}: expected 429 RATE_LIMITED, got {}",
        r.body
    );
}

#[tokio::test]
async fn an_address_that_fails_with_three_distinct_tokens_is_refused_even_with_the_root_token_until_the_window_ends() {
    let app = spawn_app_in(AppHome {
        auth: AuthSettings {
            max_failures: 3,
            failure_window: time::Duration::minutes(1),
            max_token_ttl: time::Duration::days(365),
        },
        ..AppHome::new()
    })
    .await;
    for i in 0..3 {
        let bad = format!("svt_wrong-guess-number-{i}-0000000000");
        assert_unauthenticated(&whoami(&app, Some(&bad)).await, &format!("bad token {i}"));
    }
    assert_rate_limited(&whoami(&app, Some(ROOT_TOKEN)).await, "the root token after 3 failures");
    assert_rate_limited(
        &app.send(Method::GET, "/v1/keys", Some(ROOT_TOKEN), None).await,
        "another route with the root token",
    );
    assert_rate_limited(&whoami(&app, None).await, "no token after 3 failures");
    let raw = reqwest::Client::new()
        .get(app.url("/v1/auth/whoami"))
        .bearer_auth(ROOT_TOKEN)
        .send()
        .await
        .expect("request sent");
    assert_eq!(raw.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        raw.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("60"),
        "a 429 says when the window ends (the clock has not moved)"
    );

    app.clock.advance(time::Duration::seconds(61));
    let r = whoami(&app, Some(ROOT_TOKEN)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "root works once the window has ended: {}",
        r.body
    );
    assert_unauthenticated(
        &whoami(&app, Some("svt_one-more-wrong-guess-0000")).await,
        "a new failure",
    );
    assert_eq!(
        whoami(&app, Some(ROOT_TOKEN)).await.status,
        StatusCode::OK,
        "one failure in the new window does not block"
    );

    let events = app.audit_events("principal=-").await;
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["decision"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let unauthenticated = ("WhoAmI", "deny", "UNAUTHENTICATED");
    assert_eq!(
        seen,
        vec![
            unauthenticated,
            unauthenticated,
            unauthenticated,
            ("WhoAmI", "deny", "RATE_LIMITED"),
            ("ListKeys", "deny", "RATE_LIMITED"),
            ("WhoAmI", "deny", "RATE_LIMITED"),
            ("WhoAmI", "deny", "RATE_LIMITED"),
            unauthenticated,
        ],
        "every refused request is audited as nobody, the blocked ones as RATE_LIMITED"
    );
    assert!(
        events.iter().all(|e| e["source_ip"] == json!("127.0.0.1")),
        "each event names the source address: {events:?}"
    );
}

#[tokio::test]
async fn one_wrong_token_sent_twenty_times_does_not_lock_out_the_root_token_but_ten_distinct_ones_do() {
    let app = spawn_app_in(AppHome {
        auth: AuthSettings {
            max_failures: 10,
            failure_window: time::Duration::minutes(1),
            max_token_ttl: time::Duration::days(365),
        },
        ..AppHome::new()
    })
    .await;
    let wrong = "svt_stale-token-of-a-broken-script-0000";
    for i in 0..20 {
        let r = whoami(&app, Some(wrong)).await;
        if i < 10 {
            assert_unauthenticated(&r, &format!("the wrong token, failure {i}"));
        } else {
            assert_rate_limited(&r, &format!("the wrong token, attempt {i} (after 10 failures)"));
        }
    }
    let raw = reqwest::Client::new()
        .get(app.url("/v1/auth/whoami"))
        .bearer_auth(wrong)
        .send()
        .await
        .expect("request sent");
    assert_eq!(raw.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        raw.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("60"),
        "the blocked token is told when its window ends"
    );
    let r = whoami(&app, Some(ROOT_TOKEN)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the root token from the same address still works: {}",
        r.body
    );
    assert_eq!(r.body["principal"], json!("root"), "{}", r.body);

    // The repeated token counted once at the address; nine more distinct ones make ten.
    for i in 1..10 {
        let guess = format!("svt_wrong-guess-number-{i}-0000000000");
        assert_unauthenticated(&whoami(&app, Some(&guess)).await, &format!("distinct wrong token {i}"));
    }
    assert_rate_limited(
        &whoami(&app, Some(ROOT_TOKEN)).await,
        "the root token after ten distinct wrong tokens",
    );
    assert_rate_limited(&whoami(&app, None).await, "no token after ten distinct wrong tokens");

    app.clock.advance(time::Duration::seconds(61));
    let r = whoami(&app, Some(ROOT_TOKEN)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "root works once the window has ended: {}",
        r.body
    );
}
