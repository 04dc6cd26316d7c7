//! The audit trail of API keys: each request names the key by id and a verification records
//! its code; the key itself is never in the trail.

use serde_json::{Value, json};

use super::{reroll, verify_reply};
use crate::helpers::{ROOT_TOKEN, spawn_app};

fn summary(event: &Value) -> Value {
    json!({"action": event["action"], "resource": event["resource"], "outcome": event["outcome"],
           "principal": event["principal"]})
}

#[tokio::test]
async fn each_request_is_audited_with_the_key_id_and_a_verification_with_its_code() {
    let app = spawn_app().await;
    let meta = json!({"plan": "pro"});
    let r = app
        .post(
            "/v1/apikeys",
            json!({"principal": "acme-ci", "remaining": 1, "meta": meta}),
        )
        .await;
    let id = r.body["id"].as_str().expect("id").to_owned();
    let key = r.body["key"].as_str().expect("key").to_owned();
    let resource = format!("apikey:{id}");
    let expect = |action: &str, resource: &str, outcome: &str| json!({"action": action, "resource": resource, "outcome": outcome, "principal": "root"});
    assert_eq!(
        summary(&app.audit_event_of(&r, "action=CreateApiKey").await),
        expect("CreateApiKey", &resource, "ok")
    );

    let valid = verify_reply(&app, &key, &[]).await;
    assert_eq!(valid.body["code"], "VALID", "{}", valid.body);
    assert_eq!(
        summary(&app.audit_event_of(&valid, "action=VerifyApiKey").await),
        expect("VerifyApiKey", &resource, "ok")
    );
    let spent = verify_reply(&app, &key, &[]).await;
    assert_eq!(spent.body["code"], "USAGE_EXCEEDED", "{}", spent.body);
    assert_eq!(
        summary(&app.audit_event_of(&spent, "action=VerifyApiKey").await),
        expect("VerifyApiKey", &resource, "USAGE_EXCEEDED")
    );

    let disable = app
        .patch(
            &format!("/v1/apikeys/{id}"),
            json!({"state": "disabled", "remaining": 5}),
        )
        .await;
    assert_eq!(
        summary(&app.audit_event_of(&disable, "action=UpdateApiKey").await),
        expect("UpdateApiKey", &resource, "ok")
    );
    let disabled = verify_reply(&app, &key, &[]).await;
    assert_eq!(
        summary(&app.audit_event_of(&disabled, "action=VerifyApiKey").await),
        expect("VerifyApiKey", &resource, "DISABLED")
    );
    let enable = app
        .patch(&format!("/v1/apikeys/{id}"), json!({"state": "enabled"}))
        .await;
    assert_eq!(enable.body["state"], "enabled", "{}", enable.body);
    let lacking = verify_reply(&app, &key, &["orders.read"]).await;
    assert_eq!(
        summary(&app.audit_event_of(&lacking, "action=VerifyApiKey").await),
        expect("VerifyApiKey", &resource, "INSUFFICIENT_PERMISSIONS")
    );

    let read = app.get(&format!("/v1/apikeys/{id}")).await;
    assert_eq!(
        summary(&app.audit_event_of(&read, "action=GetApiKey").await),
        expect("GetApiKey", &resource, "ok")
    );
    let new = reroll(&app, &id, 60).await;
    let rerolled = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/apikeys/{id}/reroll"),
            Some(ROOT_TOKEN),
            Some(json!({"grace_seconds": 0}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(
        summary(&app.audit_event_of(&rerolled, "action=RerollApiKey").await),
        expect("RerollApiKey", &resource, "ok")
    );
    let newest = rerolled.body["key"].as_str().expect("key").to_owned();
    let revoke = app.delete(&format!("/v1/apikeys/{id}")).await;
    assert_eq!(
        summary(&app.audit_event_of(&revoke, "action=RevokeApiKey").await),
        expect("RevokeApiKey", &resource, "ok")
    );

    let unknown = verify_reply(&app, &key, &[]).await;
    assert_eq!(unknown.body["code"], "NOT_FOUND", "{}", unknown.body);
    assert_eq!(
        summary(&app.audit_event_of(&unknown, "action=VerifyApiKey").await),
        expect("VerifyApiKey", "apikeys", "NOT_FOUND"),
        "a key not found is named by nothing"
    );

    // No key — issued, rerolled, or presented — is anywhere in the trail.
    let trail = app.get("/v1/audit/events?limit=1000").await.body.to_string();
    assert!(trail.contains(&id), "the search can hit");
    for k in [&key, &new.key, &newest] {
        let random = &k[k.find('_').expect("prefix") + 1..];
        assert!(!trail.contains(random), "a key is in the trail: {k}");
    }
}
