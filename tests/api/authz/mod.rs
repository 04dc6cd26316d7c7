//! Who may do what, black-box: every action for a caller in each shipped group (`policies/`)
//! and for one in none; a service confined to the keys it owns and to its namespace; key
//! tags deciding under a policy directory of the test's own; revoked and expired tokens.
//!
//! An allowed request must succeed and take effect; a denied one must answer 403
//! `PERMISSION_DENIED` and leave everything as it was. Either way the audit trail must
//! name the decision and the policy that made it (none for a deny no `forbid` matched).

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sigvault::audit::action::Action;
use time::Duration;

use crate::helpers::{AppHome, Reply, TestApp, b64, spawn_app, spawn_app_in, temp_dir};

mod boundaries;
mod table;
mod tokens;

/// A caller token made by root; returns (id, token).
async fn token_for(app: &TestApp, principal: &str, groups: &[&str]) -> (String, String) {
    let r = app
        .post("/v1/auth/tokens", json!({"principal": principal, "groups": groups}))
        .await;
    assert_status(&r, StatusCode::CREATED, "expected root to create a token");
    let field = |name: &str| r.body[name].as_str().expect("id and token").to_owned();
    (field("id"), field("token"))
}

/// An HMAC-SHA256 key created by root for `owner`, with `tags`.
async fn create_key(app: &TestApp, name: &str, owner: &str, tags: Value) {
    let body = json!({"name": name, "algorithm": "hmac-sha256", "owner": owner, "tags": tags});
    let r = app.post("/v1/keys", body).await;
    assert_status(&r, StatusCode::CREATED, &format!("expected root to create {name}"));
}

async fn sign_as(app: &TestApp, token: &str, key: &str) -> Reply {
    let body = json!({"message": b64(b"m")}).to_string().into_bytes();
    app.send(Method::POST, &format!("/v1/keys/{key}/sign"), Some(token), Some(body))
        .await
}

/// Verifies a made-up signature: allowed, it answers 200 `"valid": false`.
async fn verify_as(app: &TestApp, token: &str, key: &str) -> Reply {
    let body = json!({"message": b64(b"m"), "signature": b64(&[0; 32])});
    let body = body.to_string().into_bytes();
    app.send(Method::POST, &format!("/v1/keys/{key}/verify"), Some(token), Some(body))
        .await
}

async fn whoami(app: &TestApp, token: &str) -> Reply {
    app.send(Method::GET, "/v1/auth/whoami", Some(token), None).await
}

/// `r` answered `status`; `what` says what was expected, the body is shown on failure.
#[track_caller]
fn assert_status(r: &Reply, status: StatusCode, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
}

#[track_caller]
fn assert_denied(r: &Reply, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        "{what}: expected 403 PERMISSION_DENIED: {}",
        r.body
    );
}

#[track_caller]
fn assert_unauthenticated(r: &Reply, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        "{what}: expected 401 UNAUTHENTICATED: {}",
        r.body
    );
}

/// The audit event of request `r`, found by its request id among `principal`'s `action`s.
async fn event_of(app: &TestApp, principal: &str, action: Action, r: &Reply) -> Value {
    let query = format!("principal={principal}&action={}", action.as_str());
    app.audit_event_of(r, &query).await
}

/// The fields of an event that say who did what to what, and how it was decided.
fn summary(event: &Value) -> Value {
    let fields = ["principal", "action", "resource", "decision", "policy", "outcome"];
    fields.iter().map(|f| ((*f).to_owned(), event[*f].clone())).collect()
}
