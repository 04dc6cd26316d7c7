//! Where a credential is used from: last use, caller fingerprints, the
//! `credential.new_fingerprint` event, and `on_new_fingerprint`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Forwarded, ToSign, now, sign_with, verify};
use crate::helpers::{TestApp, spawn_app};

/// A request from `user_agent` at `source_ip`, as the verifying service reports it.
fn from(signed: &Forwarded, source_ip: &str, user_agent: &str) -> Value {
    let mut body = signed.verify_body();
    body["source_ip"] = json!(source_ip);
    body["user_agent"] = json!(user_agent);
    body
}

async fn verify_from(app: &TestApp, signed: &Forwarded, source_ip: &str, user_agent: &str) -> Value {
    let r = app.post("/v1/sigv4/verify", from(signed, source_ip, user_agent)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn events(app: &TestApp, action: &str, id: &str) -> Vec<Value> {
    let r = app
        .get(&format!(
            "/v1/audit/events?action={action}&resource=credential:{id}&limit=100"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["events"].as_array().cloned().unwrap_or_default()
}

async fn create_with_rule(app: &TestApp, principal: &str, rule: &str) -> (String, String) {
    let r = app
        .post(
            "/v1/credentials",
            json!({"principal": principal, "on_new_fingerprint": rule}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["on_new_fingerprint"], rule);
    (
        r.body["access_key_id"].as_str().expect("id").to_owned(),
        r.body["secret_access_key"].as_str().expect("secret").to_owned(),
    )
}

#[tokio::test]
async fn a_new_user_agent_on_a_deactivate_credential_turns_it_inactive_and_the_trail_says_why() {
    let app = spawn_app().await;
    let (id, secret) = create_with_rule(&app, "acme-ci", "deactivate").await;
    let signed = sign_with(&id, &secret, &ToSign::get("/orders", now(&app)));

    // The first fingerprint is learned; it may keep coming.
    assert_eq!(
        verify_from(&app, &signed, "10.1.2.3", "ci-runner/1.0").await["valid"],
        true
    );
    assert_eq!(
        verify_from(&app, &signed, "10.1.2.3", "ci-runner/1.0").await["valid"],
        true
    );

    // A new user agent: refused, and the credential is inactive from now on.
    let v = verify_from(&app, &signed, "10.1.2.3", "curl/8.5").await;
    assert_eq!(
        (v["valid"].clone(), v["code"].clone()),
        (json!(false), json!("INACTIVE_ACCESS_KEY")),
        "{v}"
    );
    let v = verify_from(&app, &signed, "10.1.2.3", "ci-runner/1.0").await;
    assert_eq!(v["code"], "INACTIVE_ACCESS_KEY", "the next request fails too: {v}");
    let r = app.get(&format!("/v1/credentials/{id}")).await;
    assert_eq!(r.body["state"], "inactive", "{}", r.body);

    let raised = events(&app, "credential.new_fingerprint", &id).await;
    let summary: Vec<Value> = raised
        .iter()
        .map(|e| json!([e["outcome"], e["user_agent"], e["source_ip"], e["principal"]]))
        .collect();
    assert_eq!(
        summary,
        [
            json!(["learned", "ci-runner/1.0", "10.1.2.3", "root"]),
            json!(["deactivated", "curl/8.5", "10.1.2.3", "root"]),
        ],
        "{raised:?}"
    );
    let outcomes: Vec<Value> = events(&app, "VerifySigV4", &id)
        .await
        .iter()
        .map(|e| e["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            json!("ok"),
            json!("ok"),
            json!("INACTIVE_ACCESS_KEY"),
            json!("INACTIVE_ACCESS_KEY")
        ]
    );
    let r = app.get("/v1/audit/verify").await;
    assert_eq!(r.body["ok"], true, "{}", r.body);

    // Reactivated by someone who looked: the fingerprint is known now.
    let r = app
        .patch(&format!("/v1/credentials/{id}"), json!({"state": "active"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(verify_from(&app, &signed, "10.1.2.3", "curl/8.5").await["valid"], true);
    assert_eq!(
        events(&app, "credential.new_fingerprint", &id).await.len(),
        2,
        "no new event"
    );
}

#[tokio::test]
async fn record_and_alert_keep_the_credential_working_and_activity_lists_every_fingerprint() {
    let app = spawn_app().await;
    let (id, secret) = create_with_rule(&app, "acme-ci", "record").await;
    let signed = sign_with(&id, &secret, &ToSign::get("/orders", now(&app)));
    for (ip, ua) in [
        ("10.0.0.1", "a/1"),
        ("10.0.0.1", "a/1"),
        ("10.0.0.2", "a/1"),
        ("10.0.0.1", "b/2"),
    ] {
        assert_eq!(verify_from(&app, &signed, ip, ua).await["valid"], true, "{ip} {ua}");
    }
    let outcomes: Vec<Value> = events(&app, "credential.new_fingerprint", &id)
        .await
        .iter()
        .map(|e| e["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("learned"), json!("recorded"), json!("recorded")]);

    let a = app.get(&format!("/v1/credentials/{id}/activity")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["last_used_region"], "eu-west-1");
    assert_eq!(a.body["last_used_service"], "execute-api");
    assert!(a.body["last_used_at"].is_string(), "{}", a.body);
    let mut seen: Vec<(String, String, u64)> = a.body["fingerprints"]
        .as_array()
        .expect("list")
        .iter()
        .map(|f| {
            (
                f["source_ip"].as_str().unwrap_or_default().to_owned(),
                f["user_agent"].as_str().unwrap_or_default().to_owned(),
                f["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    let expected = vec![
        ("10.0.0.1".to_owned(), "a/1".to_owned(), 2),
        ("10.0.0.1".to_owned(), "b/2".to_owned(), 1),
        ("10.0.0.2".to_owned(), "a/1".to_owned(), 1),
    ];
    assert_eq!(seen, expected);

    // Switching to alert: a new fingerprint is still accepted (and logged).
    let r = app
        .patch(&format!("/v1/credentials/{id}"), json!({"on_new_fingerprint": "alert"}))
        .await;
    assert_eq!(r.body["on_new_fingerprint"], "alert", "{}", r.body);
    assert_eq!(verify_from(&app, &signed, "10.9.9.9", "c/3").await["valid"], true);
    let last = events(&app, "credential.new_fingerprint", &id).await;
    assert_eq!(last.last().map(|e| e["outcome"].clone()), Some(json!("alerted")));

    // Flushed at shutdown and known after a restart: no second event, counts kept.
    let app = app.restart().await;
    assert_eq!(verify_from(&app, &signed, "10.0.0.2", "a/1").await["valid"], true);
    assert_eq!(events(&app, "credential.new_fingerprint", &id).await.len(), 4);
    let a = app.get(&format!("/v1/credentials/{id}/activity")).await;
    let total: u64 = a.body["fingerprints"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["count"].as_u64())
        .sum();
    assert_eq!(total, 6, "{}", a.body);
}

#[tokio::test]
async fn the_user_agent_defaults_to_the_forwarded_header() {
    let app = spawn_app().await;
    let (id, secret) = create_with_rule(&app, "acme-ci", "record").await;
    let what = ToSign {
        headers: &[("User-Agent", "aws-cli/2.15")],
        ..ToSign::get("/orders", now(&app))
    };
    let signed = sign_with(&id, &secret, &what);
    assert_eq!(verify(&app, &signed).await["valid"], true);
    let a = app.get(&format!("/v1/credentials/{id}/activity")).await;
    assert_eq!(a.body["fingerprints"][0]["user_agent"], "aws-cli/2.15", "{}", a.body);
    assert_eq!(a.body["fingerprints"][0]["source_ip"], "", "{}", a.body);
}
