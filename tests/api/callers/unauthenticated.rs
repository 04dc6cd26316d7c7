//! Requests without a valid token: refused with 401 and audited as nobody (`-`).

use reqwest::Method;
use serde_json::json;

use super::assert_unauthenticated;
use crate::helpers::{Reply, TestApp, spawn_app};

/// Sends `method path` with a raw `Authorization` header value (none when `None`).
async fn send_with_header(app: &TestApp, method: Method, path: &str, authorization: Option<&str>) -> Reply {
    let mut req = app.client.request(method.clone(), app.url(path));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    if method == Method::POST {
        req = req.header("content-type", "application/json").body("{}");
    }
    Reply::of(req).await
}

#[tokio::test]
async fn every_route_refuses_a_request_without_a_valid_token_and_audits_it_as_nobody() {
    let app = spawn_app().await;
    app.create_key("payments.webhook").await;
    // (method, path, the audit event's action and resource)
    let routes = [
        (Method::GET, "/v1/keys", "ListKeys", "keys"),
        (Method::POST, "/v1/keys", "CreateKey", "keys"),
        (
            Method::GET,
            "/v1/keys/payments.webhook",
            "GetKey",
            "key:payments.webhook",
        ),
        (
            Method::POST,
            "/v1/keys/payments.webhook/sign",
            "Sign",
            "key:payments.webhook",
        ),
        (
            Method::POST,
            "/v1/keys/payments.webhook/rotate",
            "RotateKey",
            "key:payments.webhook",
        ),
        (Method::GET, "/v1/auth/whoami", "WhoAmI", "self"),
        (Method::POST, "/v1/auth/tokens", "CreateToken", "tokens"),
        (
            Method::GET,
            "/v1/auth/tokens/tok_0123456789abcdef",
            "ReadToken",
            "token:tok_0123456789abcdef",
        ),
        (
            Method::DELETE,
            "/v1/auth/tokens/tok_0123456789abcdef",
            "RevokeToken",
            "token:tok_0123456789abcdef",
        ),
        (Method::POST, "/v1/sys/policies/reload", "ReloadPolicies", "policies"),
        (Method::GET, "/v1/audit/events", "ReadAudit", "audit"),
        (Method::GET, "/v1/audit/verify", "VerifyAudit", "audit"),
        (
            Method::GET,
            "/v1/reports/compliance",
            "ReadComplianceReport",
            "report:compliance",
        ),
    ];
    let long = format!("Bearer svt_{}", "x".repeat(300));
    let bad_headers = [
        "Bearer",
        "Basic cm9vdDpyb290",
        "Bearer svt_not-a-token-anyone-was-given-00000",
        "Bearer not-even-prefixed-0123456789",
        long.as_str(),
    ];
    let mut expected = Vec::new();
    for (method, path, action, resource) in &routes {
        let r = send_with_header(&app, method.clone(), path, None).await;
        assert_unauthenticated(&r, &format!("{method} {path} without a token"));
        expected.push((r.request_id.expect("x-request-id"), *action, *resource));
    }
    for header in bad_headers {
        let r = send_with_header(&app, Method::GET, "/v1/auth/whoami", Some(header)).await;
        assert_unauthenticated(&r, &format!("whoami with `Authorization: {header:.40}`"));
        expected.push((r.request_id.expect("x-request-id"), "WhoAmI", "self"));
    }

    let events = app.audit_events("principal=-").await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["request_id"].as_str().unwrap_or("").to_owned(),
                e["action"].as_str().unwrap_or(""),
                e["resource"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen, expected,
        "one event per refused request, in order, with its request id, action and resource"
    );
    for e in &events {
        assert_eq!(
            (&e["principal"], &e["decision"], &e["outcome"]),
            (&json!("-"), &json!("deny"), &json!("UNAUTHENTICATED")),
            "a refused request is audited as principal `-`, decision deny, outcome UNAUTHENTICATED: {e}"
        );
    }
}
