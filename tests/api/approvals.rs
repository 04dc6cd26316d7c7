//! Dual control (`[custodian] quorum = 2`): the dangerous operations run only with an
//! approval request that two custodians stand behind, once, by the requester, within the
//! validity window; every step is in the trail; requests survive a restart and work across
//! nodes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sigvault::approvals::ApprovalSettings;
use time::Duration;

use crate::helpers::{AppHome, Reply, TestApp, b64, custodian_key, random_bytes, spawn_app_in, wrap_for_import};

fn dual_control() -> AppHome {
    AppHome {
        approvals: ApprovalSettings {
            quorum: 2,
            ttl: Duration::minutes(30),
        },
        ..AppHome::new()
    }
}

/// A caller token for `principal` in `groups`, made by root.
async fn token(app: &TestApp, principal: &str, groups: &[&str]) -> String {
    let r = app
        .post("/v1/auth/tokens", json!({"principal": principal, "groups": groups}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["token"].as_str().expect("token").to_owned()
}

/// `POST path` as `token` (no body for `Value::Null`), with `approval` in
/// `x-sigvault-approval` when given.
async fn post_as(app: &TestApp, token: &str, path: &str, body: Value, approval: Option<&str>) -> Reply {
    let mut req = app.client.post(app.url(path)).bearer_auth(token);
    if !body.is_null() {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    if let Some(id) = approval {
        req = req.header("x-sigvault-approval", id);
    }
    Reply::read(req.send().await.expect("sent")).await.expect("read")
}

async fn request(app: &TestApp, token: &str, action: &str, resource: &str) -> String {
    let r = post_as(
        app,
        token,
        "/v1/approvals",
        json!({"action": action, "resource": resource, "reason": "ticket CHG-1234"}),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["state"], "pending", "one custodian of two: {}", r.body);
    assert_eq!(
        (r.body["approvals"].as_u64(), r.body["quorum"].as_u64()),
        (Some(1), Some(2))
    );
    r.body["id"].as_str().expect("id").to_owned()
}

async fn approve(app: &TestApp, token: &str, id: &str) -> Reply {
    post_as(app, token, &format!("/v1/approvals/{id}/approve"), json!({}), None).await
}

#[track_caller]
fn assert_code(r: &Reply, status: StatusCode, code: &str, what: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{what}: {}", r.body);
}

#[tokio::test]
async fn an_export_runs_once_with_a_second_custodians_approval_and_never_alone() {
    let app = spawn_app_in(dual_control()).await;
    let alice = token(&app, "alice", &["custodian"]).await;
    let bob = token(&app, "bob", &["custodian"]).await;
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "portable", "algorithm": "hmac-sha256", "exportable": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let export = json!({"public_key_pem": custodian_key().1});

    // Alone: refused, for a custodian and for root alike.
    let r = post_as(&app, &alice, "/v1/keys/portable/export", export.clone(), None).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "alice alone");
    let r = app.post("/v1/keys/portable/export", export.clone()).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "root alone");

    let id = request(&app, &alice, "ExportKey", "key:portable").await;
    // Requested but not yet approved: still refused, and the request is not spent.
    let r = post_as(&app, &alice, "/v1/keys/portable/export", export.clone(), Some(&id)).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "pending");
    // Alice cannot approve her own request.
    let r = approve(&app, &alice, &id).await;
    assert_code(&r, StatusCode::FORBIDDEN, "PERMISSION_DENIED", "self-approval");
    // Root is no custodian: its approval is refused (policy approvals-by-custodians-only).
    let r = app.post_raw(&format!("/v1/approvals/{id}/approve"), b"{}").await;
    assert_code(&r, StatusCode::FORBIDDEN, "PERMISSION_DENIED", "root approving");

    let r = approve(&app, &bob, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "approved");
    assert_eq!(r.body["approvers"], json!(["bob"]));
    let r = approve(&app, &bob, &id).await;
    assert_code(&r, StatusCode::FORBIDDEN, "PERMISSION_DENIED", "bob twice");

    // Only the requester runs it, and only for what it names.
    let r = post_as(&app, &bob, "/v1/keys/portable/export", export.clone(), Some(&id)).await;
    assert_code(
        &r,
        StatusCode::FORBIDDEN,
        "APPROVAL_REQUIRED",
        "bob running alice's approval",
    );
    let r = post_as(
        &app,
        &alice,
        "/v1/keys/portable/import",
        json!({"key_material": b64(&[1; 32])}),
        Some(&id),
    )
    .await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "another action");

    let r = post_as(&app, &alice, "/v1/keys/portable/export", export.clone(), Some(&id)).await;
    assert_eq!(r.status, StatusCode::OK, "approved: {}", r.body);
    assert!(r.body["wrapped_key"].as_str().is_some());
    let exported = r.request_id.clone().expect("request id");
    // Once.
    let r = post_as(&app, &alice, "/v1/keys/portable/export", export.clone(), Some(&id)).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "second use");
    let r = app.get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(r.body["state"], "used", "{}", r.body);
    let r = approve(&app, &token(&app, "carol", &["custodian"]).await, &id).await;
    assert_code(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "approving a used request",
    );

    // Every step is in the trail: the request, the approval, the use (under the export's
    // request id) and the export itself.
    let events = app.audit_events(&format!("resource=approval:{id}")).await;
    let steps: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["outcome"] != "intent")
        .map(|e| {
            let text = |f: &str| e[f].as_str().unwrap_or_default().to_owned();
            (text("principal"), text("action"), text("outcome"))
        })
        .collect();
    for expected in [
        ("alice", "RequestApproval", "ok"),
        ("alice", "ApproveRequest", "PERMISSION_DENIED"),
        ("bob", "ApproveRequest", "ok"),
        ("alice", "approval.used", "ok"),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2.to_owned());
        assert!(steps.contains(&expected), "{expected:?} in {steps:?}");
    }
    let used = events.iter().find(|e| e["action"] == "approval.used").expect("the use");
    assert_eq!(
        used["request_id"],
        exported.as_str(),
        "the use names the export's request"
    );
}

#[tokio::test]
async fn an_expired_approval_is_refused() {
    let app = spawn_app_in(dual_control()).await;
    let alice = token(&app, "alice", &["custodian"]).await;
    let bob = token(&app, "bob", &["custodian"]).await;
    let id = request(&app, &alice, "RotateWrappingKey", "wrapping-key").await;
    assert_eq!(approve(&app, &bob, &id).await.status, StatusCode::OK);
    app.clock.advance(Duration::minutes(31));
    let r = post_as(&app, &alice, "/v1/wrapping-key/rotate", Value::Null, Some(&id)).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "expired");
    let r = app.get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(r.body["state"], "expired", "{}", r.body);
    // A request that expired before its approval cannot be approved either.
    let late = request(&app, &alice, "RotateWrappingKey", "wrapping-key").await;
    app.clock.advance(Duration::minutes(31));
    assert_code(
        &approve(&app, &bob, &late).await,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "approving an expired request",
    );
}

#[tokio::test]
async fn every_gated_operation_needs_the_quorum_and_runs_with_it() {
    let app = spawn_app_in(dual_control()).await;
    let alice = token(&app, "alice", &["custodian", "admin"]).await;
    let bob = token(&app, "bob", &["custodian"]).await;
    let approved = |action: &'static str, resource: String| {
        let (app, alice, bob) = (&app, alice.clone(), bob.clone());
        async move {
            let id = request(app, &alice, action, &resource).await;
            assert_eq!(approve(app, &bob, &id).await.status, StatusCode::OK);
            id
        }
    };

    // Plaintext import, of a new key and of a version.
    let body = json!({"key_material": b64(&random_bytes(32))});
    let r = post_as(&app, &alice, "/v1/keys/brought/import", body.clone(), None).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "plaintext import");
    let id = approved("ImportKeyPlaintext", "key:brought".into()).await;
    let r = post_as(&app, &alice, "/v1/keys/brought/import", body, Some(&id)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // A wrapped import creating a key runs alone; a new version of it needs the quorum.
    let pem = app.get("/v1/wrapping-key").await.body["public_key_pem"]
        .as_str()
        .expect("pem")
        .to_owned();
    let wrapped = json!({"wrapped_key": b64(&wrap_for_import(&pem, &random_bytes(32)))});
    let r = post_as(&app, &alice, "/v1/keys/byok/import-wrapped", wrapped.clone(), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "a new key: {}", r.body);
    let r = post_as(&app, &alice, "/v1/keys/byok/import-wrapped", wrapped.clone(), None).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "a new version");
    let id = approved("ImportKeyWrapped", "key:byok".into()).await;
    let r = post_as(&app, &alice, "/v1/keys/byok/import-wrapped", wrapped, Some(&id)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["latest_version"], 2);

    // Scheduling a deletion (which ends in destruction).
    let r = app.delete("/v1/keys/byok").await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "deletion");
    let id = approved("ScheduleKeyDeletion", "key:byok".into()).await;
    let r = app
        .client
        .delete(app.url("/v1/keys/byok"))
        .bearer_auth(&alice)
        .header("x-sigvault-approval", &id)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Wrapping-key rotation, policy reload and KEK retirement.
    let r = post_as(&app, &alice, "/v1/wrapping-key/rotate", Value::Null, None).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "wrapping-key rotation");
    let id = approved("RotateWrappingKey", "wrapping-key".into()).await;
    let r = post_as(&app, &alice, "/v1/wrapping-key/rotate", Value::Null, Some(&id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.post_raw("/v1/sys/policies/reload", b"").await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "policy reload");
    let id = approved("ReloadPolicies", "policies".into()).await;
    let r = app
        .client
        .post(app.url("/v1/sys/policies/reload"))
        .bearer_auth(&alice)
        .header("x-sigvault-approval", &id)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.post("/v1/sys/kek/retire", json!({"kek_id": "pkcs11:x:1"})).await;
    assert_code(&r, StatusCode::FORBIDDEN, "APPROVAL_REQUIRED", "KEK retirement");

    // Operations outside the list run alone; bad requests are refused and make nothing.
    let r = app.post("/v1/keys/brought/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (body, what) in [
        (
            json!({"action": "Sign", "resource": "key:brought", "reason": "r"}),
            "an ungated action",
        ),
        (
            json!({"action": "ExportKey", "resource": "credential:x", "reason": "r"}),
            "a resource of another kind",
        ),
        (
            json!({"action": "ExportKey", "resource": "key:brought", "reason": ""}),
            "no reason",
        ),
        (
            json!({"action": "ExportKey", "resource": "key:brought", "reason": "x".repeat(2000)}),
            "a long reason",
        ),
        (
            json!({"action": "ExportKey", "resource": "key:brought"}),
            "a missing field",
        ),
    ] {
        let r = post_as(&app, &alice, "/v1/approvals", body, None).await;
        assert_code(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    let r = app.get("/v1/approvals/apr_nosuch").await;
    assert_code(&r, StatusCode::NOT_FOUND, "NOT_FOUND", "unknown id");
    let r = app.get("/v1/approvals?limit=1000").await;
    assert_eq!(r.body["approvals"].as_array().map(Vec::len), Some(5), "{}", r.body);
}

#[tokio::test]
async fn without_dual_control_nothing_needs_an_approval() {
    let app = crate::helpers::spawn_app().await;
    let r = app
        .post(
            "/v1/keys/free/import",
            json!({"key_material": b64(&random_bytes(32)), "exportable": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post("/v1/keys/free/export", json!({"public_key_pem": custodian_key().1}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn an_approval_survives_a_restart() {
    let app = spawn_app_in(dual_control()).await;
    let alice = token(&app, "alice", &["custodian"]).await;
    let bob = token(&app, "bob", &["custodian"]).await;
    let id = request(&app, &alice, "RotateWrappingKey", "wrapping-key").await;
    let app = app.restart().await;
    assert_eq!(approve(&app, &bob, &id).await.status, StatusCode::OK);
    let app = app.restart().await;
    let r = post_as(&app, &alice, "/v1/wrapping-key/rotate", Value::Null, Some(&id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn requested_on_one_node_approved_on_another_and_spent_once_across_both() {
    let (a, b) = crate::cluster::two_nodes_from(dual_control()).await;
    let alice = token(&a, "alice", &["custodian"]).await;
    let bob = token(&a, "bob", &["custodian"]).await;
    let id = request(&a, &alice, "RotateWrappingKey", "wrapping-key").await;
    assert_eq!(approve(&b, &bob, &id).await.status, StatusCode::OK, "approved on B");
    // Both nodes try to spend it at once: exactly one runs.
    let (ra, rb) = tokio::join!(
        post_as(&a, &alice, "/v1/wrapping-key/rotate", Value::Null, Some(&id)),
        post_as(&b, &alice, "/v1/wrapping-key/rotate", Value::Null, Some(&id)),
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::FORBIDDEN],
        "{} / {}",
        ra.body,
        rb.body
    );
}
