//! Failing closed: when a sink cannot make an event durable the request answers 503
//! `AUDIT_UNAVAILABLE`, nothing is acknowledged or counted, no sink keeps a partial batch,
//! and the trail recovers by itself once the sink works again.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{file_lines, stored_events, verify_online};
use crate::helpers::{AppHome, Reply, TestApp, b64, spawn_app_in};

/// Signs `message` with `k` and expects the refusal of an unavailable trail.
async fn refused_sign(app: &TestApp, message: &[u8]) -> String {
    let r = app.post("/v1/keys/k/sign", json!({"message": b64(message)})).await;
    assert_refused(&r, "sign");
    assert!(r.body.get("signature").is_none(), "{}", r.body);
    r.request_id.expect("x-request-id")
}

#[track_caller]
fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", r.body);
    assert_eq!(r.code(), "AUDIT_UNAVAILABLE", "{what}: {}", r.body);
    assert_eq!(
        r.body["error"]["request_id"].as_str(),
        r.request_id.as_deref(),
        "{what}"
    );
}

/// `audit` of `GET /v1/sys/health` (which is not itself audited).
async fn health_audit(app: &TestApp) -> Value {
    app.get("/v1/sys/health").await.body["audit"].clone()
}

async fn sign_count(app: &TestApp) -> Value {
    let r = app.get("/v1/keys/k").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["versions"][0]["sign_count"].clone()
}

/// Points the symlink `link` at `target`, atomically (a new link renamed over the old).
fn repoint(link: &Path, target: &Path) {
    let tmp = link.with_extension("tmp-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("create symlink");
    std::fs::rename(&tmp, link).expect("replace symlink");
}

/// The sequence numbers and request ids the API lists.
async fn listed(app: &TestApp) -> (Vec<u64>, Vec<String>) {
    let events = app.audit_events("").await;
    let seqs = events.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    let ids = events
        .iter()
        .map(|e| e["request_id"].as_str().expect("request_id").to_owned())
        .collect();
    (seqs, ids)
}

/// A home whose trail holds 3 events (the intent and the outcome of creating `k`, one
/// sign), stopped.
async fn home_with_a_signed_key(home: AppHome) -> AppHome {
    let mut app = spawn_app_in(home).await;
    app.create_key("k").await;
    app.sign("k", b"acknowledged").await;
    app.stop().await;
    app.home.clone()
}

#[tokio::test]
async fn with_the_event_file_on_a_full_device_sign_answers_503_and_no_event_or_count_is_lost() {
    let home = home_with_a_signed_key(AppHome::new()).await;
    let file_before = std::fs::read(home.audit_file()).expect("event file");

    let full = AppHome {
        audit_file: Some("/dev/full".into()),
        ..home.clone()
    };
    let mut app = spawn_app_in(full).await;
    assert_eq!(health_audit(&app).await, json!("ok"), "nothing has failed yet");
    let mut refused = Vec::new();
    for i in 0..3 {
        refused.push(refused_sign(&app, format!("refused {i}").as_bytes()).await);
    }
    assert_eq!(health_audit(&app).await, json!("unavailable"));
    // Every audited request is refused, a failed authentication too.
    let r = app.get("/v1/keys/k").await;
    assert_refused(&r, "get");
    refused.push(r.request_id.clone().expect("x-request-id"));
    let r = app
        .send(Method::GET, "/v1/keys", Some("svt_wrong-token-00000000000"), None)
        .await;
    assert_refused(&r, "refused token");
    refused.push(r.request_id.clone().expect("x-request-id"));
    app.stop().await;
    assert_eq!(
        stored_events(&home).await.len(),
        3,
        "the store holds no event of the refused requests"
    );
    assert_eq!(std::fs::read(home.audit_file()).expect("event file"), file_before);

    let app = spawn_app_in(home.clone()).await;
    assert_eq!(verify_online(&app).await, json!({"ok": true, "checked": 3}));
    assert_eq!(sign_count(&app).await, json!(1), "the refused signs were not counted");
    let (seqs, ids) = listed(&app).await;
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5],
        "no gap: create (intent, outcome), sign, verify, get"
    );
    for id in &refused {
        assert!(!ids.contains(id), "refused request {id} is in the trail");
    }
    assert_eq!(health_audit(&app).await, json!("ok"));
}

#[tokio::test]
async fn the_trail_recovers_without_a_restart_when_its_event_file_becomes_writable_again() {
    let mut home = AppHome::new();
    let link = home.data_dir.join("audit-link.jsonl");
    let real = home.data_dir.join("audit.jsonl");
    repoint(&link, &real);
    home.audit_file = Some(link.clone());
    let home = home_with_a_signed_key(home).await;
    assert_eq!(file_lines(&home).len(), 3);

    repoint(&link, Path::new("/dev/full"));
    let app = spawn_app_in(home.clone()).await;
    let refused = [
        refused_sign(&app, b"refused 1").await,
        refused_sign(&app, b"refused 2").await,
    ];
    assert_eq!(health_audit(&app).await, json!("unavailable"));

    repoint(&link, &real);
    let r = app
        .post("/v1/keys/k/sign", json!({"message": b64(b"after repair")}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "the writer reopens its file: {}", r.body);
    let recovered = r.request_id.clone().expect("x-request-id");
    assert_eq!(health_audit(&app).await, json!("ok"));
    assert_eq!(verify_online(&app).await, json!({"ok": true, "checked": 4}));
    app.flush_usage().await;
    assert_eq!(
        sign_count(&app).await,
        json!(2),
        "one acknowledged sign before, one after"
    );
    let (seqs, ids) = listed(&app).await;
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5, 6],
        "create (intent, outcome), sign, sign, verify, get"
    );
    assert_eq!(ids[3], recovered);
    for id in &refused {
        assert!(!ids.contains(id), "refused request {id} is in the trail");
    }
}

/// Polls `GET /v1/sys/health` until its `audit` reads `want` (the indexer notices an anchor
/// failure, and its end, within a tick).
async fn await_health_audit(app: &TestApp, want: &str) {
    for _ in 0..100 {
        if health_audit(app).await == json!(want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("audit health never became {want}");
}

#[tokio::test]
async fn while_the_anchor_file_fails_every_request_is_refused_and_no_acknowledged_event_is_lost() {
    let mut home = AppHome::new();
    let link = home.data_dir.join("anchor-link");
    let real = home.data_dir.join("audit.anchor");
    repoint(&link, &real);
    home.anchor_file = Some(link.clone());
    let home = home_with_a_signed_key(home).await;

    // The start finds the anchor current and leaves it unopened until the first index.
    let app = spawn_app_in(home.clone()).await;
    repoint(&link, Path::new("/dev/full"));
    // Written to the event file before the indexer meets the anchor: acknowledged.
    let r = app.post("/v1/keys/k/sign", json!({"message": b64(b"written")})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let acknowledged = r.request_id.expect("x-request-id");
    await_health_audit(&app, "unavailable").await;
    let refused = refused_sign(&app, b"refused").await;
    assert_eq!(
        file_lines(&home).len(),
        4,
        "the acknowledged sign stays in the event file"
    );

    repoint(&link, &real);
    await_health_audit(&app, "ok").await;
    let r = app
        .post("/v1/keys/k/sign", json!({"message": b64(b"after repair")}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(verify_online(&app).await, json!({"ok": true, "checked": 5}));
    let (seqs, ids) = listed(&app).await;
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    assert!(!ids.contains(&refused), "the refused sign is not in the trail");
    assert_eq!(ids[3], acknowledged);
    assert_eq!(ids[4], r.request_id.expect("x-request-id"));
}
