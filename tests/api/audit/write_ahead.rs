//! Write-ahead for changes: a change first makes its intent durable, then acts, then records
//! its outcome. When the trail cannot take the intent, the change does not happen — the
//! answer is 503 `AUDIT_UNAVAILABLE` and nothing in the store differs — for every kind of
//! change. An outcome that could not be written is kept and written once the trail works.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sigvault::model::{Decision, EventData};
use sigvault::store::StoreSettings;

use super::file_lines;
use crate::helpers::{AppHome, ROOT_TOKEN, RawStore, Reply, TestApp, b64, spawn_app, spawn_app_in};

/// Every row of every table (schema_migrations aside), as text: the store's whole state.
pub(super) async fn store_state(store: &StoreSettings) -> BTreeMap<String, Vec<Vec<String>>> {
    let raw = RawStore::open(store).await;
    let mut state = BTreeMap::new();
    for table in raw.tables().await {
        let rows = raw.fetch_all(&format!("SELECT * FROM {table}"), &[]).await;
        // Sorted here: `SELECT *` promises no order, and the tables share no column to order by.
        let mut rows: Vec<Vec<String>> = rows
            .iter()
            .map(|row| row.values().map(|value| format!("{value:?}")).collect())
            .collect();
        rows.sort();
        state.insert(table, rows);
    }
    raw.close().await;
    state
}

fn created(r: &Reply, field: &str) -> String {
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body[field].as_str().expect(field).to_owned()
}

/// What exists before the trail fails: a key, a key pending deletion, a caller token, a
/// credential and an API key, each for a change to try on it.
pub(super) struct Existing {
    pub(super) token: String,
    pub(super) credential: String,
    pub(super) api_key: String,
    /// The request ids of the changes that made them, each answered with success.
    pub(super) made_by: Vec<String>,
}

fn request_id(r: &Reply) -> String {
    r.request_id.clone().expect("every response has an x-request-id")
}

pub(super) async fn existing_objects(app: &TestApp) -> Existing {
    let mut made_by = Vec::new();
    for name in ["k", "gone"] {
        let r = app
            .post("/v1/keys", json!({"name": name, "algorithm": "hmac-sha256"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        made_by.push(request_id(&r));
    }
    let r = app.delete("/v1/keys/gone").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    made_by.push(request_id(&r));
    let r = app
        .post("/v1/auth/tokens", json!({"principal": "svc", "groups": ["service"]}))
        .await;
    let token = created(&r, "id");
    made_by.push(request_id(&r));
    let r = app.post("/v1/credentials", json!({"principal": "acme"})).await;
    let credential = created(&r, "access_key_id");
    made_by.push(request_id(&r));
    let r = app.post("/v1/apikeys", json!({"principal": "acme"})).await;
    let api_key = created(&r, "id");
    made_by.push(request_id(&r));
    Existing {
        token,
        credential,
        api_key,
        made_by,
    }
}

/// One change request, sent as root: what it does, the method, the path, the JSON body.
pub(super) type Change = (&'static str, Method, String, Option<Value>);

/// Every kind of change, each on an object `existing` made, in an order in which each can
/// succeed after the ones before it (the root token's revocation last).
pub(super) fn every_kind_of_change(existing: &Existing) -> Vec<Change> {
    let Existing {
        token,
        credential,
        api_key,
        ..
    } = existing;
    vec![
        (
            "create a key",
            Method::POST,
            "/v1/keys".into(),
            Some(json!({"name": "new-key", "algorithm": "hmac-sha256"})),
        ),
        (
            "import a key",
            Method::POST,
            "/v1/keys/imported/import".into(),
            Some(json!({"key_material": b64(&[7u8; 32]), "algorithm": "hmac-sha256"})),
        ),
        (
            "rotate a key",
            Method::POST,
            "/v1/keys/k/rotate".into(),
            Some(json!({})),
        ),
        (
            "disable a key",
            Method::PATCH,
            "/v1/keys/k".into(),
            Some(json!({"state": "disabled"})),
        ),
        ("schedule a deletion", Method::DELETE, "/v1/keys/k".into(), None),
        (
            "restore a key",
            Method::POST,
            "/v1/keys/gone/restore".into(),
            Some(json!({})),
        ),
        (
            "create a token",
            Method::POST,
            "/v1/auth/tokens".into(),
            Some(json!({"principal": "ops", "groups": ["admin"]})),
        ),
        (
            "revoke a token",
            Method::DELETE,
            format!("/v1/auth/tokens/{token}"),
            None,
        ),
        (
            "create a credential",
            Method::POST,
            "/v1/credentials".into(),
            Some(json!({"principal": "beta"})),
        ),
        (
            "import a credential",
            Method::POST,
            "/v1/credentials/import".into(),
            Some(
                json!({"access_key_id": "AKIAIMPORTED0001", "secret_access_key": "s3cr3t-value-0123456789", "principal": "gamma"}),
            ),
        ),
        (
            "deactivate a credential",
            Method::PATCH,
            format!("/v1/credentials/{credential}"),
            Some(json!({"state": "inactive"})),
        ),
        (
            "delete a credential",
            Method::DELETE,
            format!("/v1/credentials/{credential}"),
            None,
        ),
        (
            "create an API key",
            Method::POST,
            "/v1/apikeys".into(),
            Some(json!({"principal": "beta"})),
        ),
        (
            "disable an API key",
            Method::PATCH,
            format!("/v1/apikeys/{api_key}"),
            Some(json!({"state": "disabled"})),
        ),
        (
            "reroll an API key",
            Method::POST,
            format!("/v1/apikeys/{api_key}/reroll"),
            Some(json!({"grace_seconds": 0})),
        ),
        (
            "revoke an API key",
            Method::DELETE,
            format!("/v1/apikeys/{api_key}"),
            None,
        ),
        (
            "reload the policies",
            Method::POST,
            "/v1/sys/policies/reload".into(),
            None,
        ),
        (
            "revoke the root token",
            Method::DELETE,
            "/v1/auth/tokens/root".into(),
            None,
        ),
    ]
}

/// Asserts the answer of a change the trail refused: 503 `AUDIT_UNAVAILABLE`, and no
/// secret the change would have shown.
#[track_caller]
pub(super) fn assert_refused_change(what: &str, r: &Reply) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "AUDIT_UNAVAILABLE"),
        "{what}: {}",
        r.body
    );
    for secret in ["token", "secret_access_key", "key"] {
        assert!(
            r.body.get(secret).is_none(),
            "{what}: a refused change shows no {secret}"
        );
    }
}

#[tokio::test]
async fn with_no_durable_trail_every_kind_of_change_answers_503_and_the_store_does_not_change() {
    let mut app = spawn_app().await;
    let existing = existing_objects(&app).await;
    app.stop().await;
    let full = AppHome {
        audit_file: Some("/dev/full".into()),
        ..app.home.clone()
    };
    let app = spawn_app_in(full).await;
    let before = store_state(&app.home.store()).await;

    let token = &existing.token;
    for (what, method, path, body) in &every_kind_of_change(&existing) {
        // As root: authenticated and allowed, so only the trail can refuse the change.
        let r = app
            .send(
                method.clone(),
                path,
                Some(ROOT_TOKEN),
                body.as_ref().map(|b| b.to_string().into_bytes()),
            )
            .await;
        assert_refused_change(what, &r);
    }
    assert!(
        store_state(&app.home.store()).await == before,
        "no refused change reached the store"
    );
    let mut app = app;
    app.stop().await;

    // With a working trail again, everything is as it was: the root token (whose revocation
    // was refused) still works, and the trail holds no event of a refused change.
    let home = AppHome {
        audit_file: None,
        ..app.home.clone()
    };
    let app = spawn_app_in(home).await;
    let r = app.get("/v1/auth/whoami").await;
    assert_eq!(
        (r.status, &r.body["principal"]),
        (StatusCode::OK, &json!("root")),
        "{}",
        r.body
    );
    assert_eq!(app.get("/v1/keys/k").await.body["state"], "enabled");
    assert_eq!(
        app.get(&format!("/v1/auth/tokens/{token}"))
            .await
            .body
            .get("revoked_at"),
        None
    );
    let events = app.audit_events("").await;
    assert!(
        events.iter().all(|e| e["outcome"] != "AUDIT_UNAVAILABLE"),
        "no refused request is in the trail"
    );
}

#[tokio::test]
async fn a_deferred_outcome_is_written_once_the_trail_works_even_with_no_request_after_it() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = file_lines(&app.home).len();
    app.state.audit.defer(EventData {
        time_ms: 1_790_000_000_000,
        request_id: "deferred-outcome-1".into(),
        principal: "root".into(),
        action: "RotateKey".into(),
        resource: "key:k".into(),
        decision: Decision::Allow,
        outcome: "ok".into(),
        ..EventData::default()
    });
    // No request follows: the idle writer retries on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while file_lines(&app.home).len() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the deferred outcome was never written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let lines = file_lines(&app.home);
    assert_eq!(lines.len(), before + 1);
    let last: Value = serde_json::from_str(lines.last().expect("a line")).expect("JSON");
    assert_eq!(last["event"]["request_id"], "deferred-outcome-1");
    assert_eq!(last["event"]["outcome"], "ok");
    let verified = app.get("/v1/audit/verify").await;
    assert_eq!(verified.body["ok"], json!(true), "{}", verified.body);
}
