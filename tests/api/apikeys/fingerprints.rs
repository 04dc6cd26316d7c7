//! Where an API key is used from: the caller fingerprints a verifying service reports
//! (`source_ip`, `user_agent`), the `apikey.new_fingerprint` event, `on_new_fingerprint`
//! (record, alert, deactivate) and `GET /v1/apikeys/{id}/activity`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Issued, code, create, get};
use crate::helpers::{AppHome, RawStore, TestApp, spawn_app, spawn_app_in, sqlite_only};

const A: &str = "10.1.2.3";
const B: &str = "192.0.2.7";
const AGENT: &str = "orders-frontend/1.0";

/// Verifies `key` as root, reported as used from `source_ip` with `user_agent`.
async fn verify_from(app: &TestApp, key: &str, source_ip: &str, user_agent: &str) -> Value {
    let r = app
        .post(
            "/v1/apikeys/verify",
            json!({"key": key, "source_ip": source_ip, "user_agent": user_agent}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "expected the verification to run: {}", r.body);
    r.body
}

async fn create_with_rule(app: &TestApp, rule: &str) -> Issued {
    let issued = create(app, json!({"principal": "acme-ci", "on_new_fingerprint": rule})).await;
    assert_eq!(issued.body["on_new_fingerprint"], rule, "{}", issued.body);
    issued
}

/// The events of `action` on key `id`, oldest first.
async fn events(app: &TestApp, action: &str, id: &str) -> Vec<Value> {
    app.audit_events(&format!("action={action}&resource=apikey:{id}")).await
}

/// The `apikey.new_fingerprint` events of `id` as `[outcome, source_ip, user_agent, principal]`.
async fn new_fingerprints(app: &TestApp, id: &str) -> Vec<Value> {
    events(app, "apikey.new_fingerprint", id)
        .await
        .iter()
        .map(|e| json!([e["outcome"], e["source_ip"], e["user_agent"], e["principal"]]))
        .collect()
}

/// `GET /v1/apikeys/{id}/activity`'s fingerprints as sorted `(source_ip, user_agent, count)`.
async fn fingerprints(app: &TestApp, id: &str) -> Vec<(String, String, u64)> {
    let r = app.get(&format!("/v1/apikeys/{id}/activity")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], id, "{}", r.body);
    let mut seen: Vec<(String, String, u64)> = r.body["fingerprints"]
        .as_array()
        .expect("a list of fingerprints")
        .iter()
        .map(|f| {
            assert!(f["first_seen"].is_string() && f["last_seen"].is_string(), "{f}");
            (
                f["source_ip"].as_str().unwrap_or_default().to_owned(),
                f["user_agent"].as_str().unwrap_or_default().to_owned(),
                f["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    seen
}

fn print(ip: &str, ua: &str, count: u64) -> (String, String, u64) {
    (ip.to_owned(), ua.to_owned(), count)
}

#[tokio::test]
async fn a_deactivate_key_learns_its_first_address_and_a_use_from_a_new_one_disables_it_with_an_event() {
    let app = spawn_app().await;
    let issued = create_with_rule(&app, "deactivate").await;
    let id = issued.id.as_str();

    // The first use is learned; it may keep coming.
    for _ in 0..2 {
        let v = verify_from(&app, &issued.key, A, AGENT).await;
        assert_eq!((code(&v), &v["principal"]), ("VALID", &json!("acme-ci")), "{v}");
    }

    // The same key from a new address: refused, and disabled from now on, everywhere.
    let v = verify_from(&app, &issued.key, B, AGENT).await;
    assert_eq!(
        v,
        json!({"valid": false, "code": "DISABLED", "id": id}),
        "refused with the key's id, not whose it is"
    );
    let v = verify_from(&app, &issued.key, A, AGENT).await;
    assert_eq!(code(&v), "DISABLED", "the learned address is refused too: {v}");
    let read = get(&app, id).await;
    assert_eq!(
        (&read["state"], &read["on_new_fingerprint"]),
        (&json!("disabled"), &json!("deactivate")),
        "{read}"
    );

    assert_eq!(
        new_fingerprints(&app, id).await,
        [
            json!(["learned", A, AGENT, "root"]),
            json!(["deactivated", B, AGENT, "root"]),
        ]
    );
    let outcomes: Vec<Value> = events(&app, "VerifyApiKey", id)
        .await
        .iter()
        .map(|e| e["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["ok", "ok", "DISABLED", "DISABLED"]);
    let r = app.get("/v1/audit/verify").await;
    assert_eq!(r.body["ok"], true, "{}", r.body);
    assert_eq!(
        fingerprints(&app, id).await,
        [print(A, AGENT, 2), print(B, AGENT, 1)],
        "the refused address is remembered"
    );

    // Turned back on by someone who looked: the new address is known now.
    let r = app
        .patch(&format!("/v1/apikeys/{id}"), json!({"state": "enabled"}))
        .await;
    assert_eq!(r.body["state"], "enabled", "{}", r.body);
    assert_eq!(code(&verify_from(&app, &issued.key, B, AGENT).await), "VALID");
    assert_eq!(new_fingerprints(&app, id).await.len(), 2, "no new event");

    // Still disabled after a restart when disabled again.
    let v = verify_from(&app, &issued.key, A, "curl/8.5").await;
    assert_eq!(code(&v), "DISABLED", "a new user agent is a new fingerprint: {v}");
    let app = app.restart().await;
    assert_eq!(get(&app, id).await["state"], "disabled");
    assert_eq!(code(&verify_from(&app, &issued.key, A, AGENT).await), "DISABLED");
}

#[tokio::test]
async fn record_and_alert_keep_the_key_working_and_activity_lists_every_fingerprint() {
    let app = spawn_app().await;
    let issued = create_with_rule(&app, "record").await;
    let id = issued.id.as_str();
    for (ip, ua) in [(A, "a/1"), (A, "a/1"), (B, "a/1"), (A, "b/2")] {
        assert_eq!(
            code(&verify_from(&app, &issued.key, ip, ua).await),
            "VALID",
            "{ip} {ua}"
        );
    }
    assert_eq!(
        new_fingerprints(&app, id).await,
        [
            json!(["learned", A, "a/1", "root"]),
            json!(["recorded", B, "a/1", "root"]),
            json!(["recorded", A, "b/2", "root"]),
        ]
    );
    assert_eq!(
        fingerprints(&app, id).await,
        [print(A, "a/1", 2), print(A, "b/2", 1), print(B, "a/1", 1)]
    );
    let r = app.get(&format!("/v1/apikeys/{id}/activity")).await;
    assert!(r.body["last_used_at"].is_string(), "{}", r.body);

    // Switching to alert: a new fingerprint is still accepted (and logged).
    let r = app
        .patch(&format!("/v1/apikeys/{id}"), json!({"on_new_fingerprint": "alert"}))
        .await;
    assert_eq!(r.body["on_new_fingerprint"], "alert", "{}", r.body);
    assert_eq!(
        code(&verify_from(&app, &issued.key, "2001:db8::9", "c/3").await),
        "VALID"
    );
    let last = new_fingerprints(&app, id).await;
    assert_eq!(last.last(), Some(&json!(["alerted", "2001:db8::9", "c/3", "root"])));
    assert_eq!(get(&app, id).await["state"], "enabled");

    // Written at shutdown and known after a restart: no second event, counts kept.
    let app = app.restart().await;
    assert_eq!(code(&verify_from(&app, &issued.key, B, "a/1").await), "VALID");
    assert_eq!(new_fingerprints(&app, id).await.len(), 4);
    assert_eq!(
        fingerprints(&app, id).await,
        [
            print(A, "a/1", 2),
            print(A, "b/2", 1),
            print(B, "a/1", 2),
            print("2001:db8::9", "c/3", 1)
        ]
    );
}

#[tokio::test]
async fn a_key_without_its_own_rule_follows_the_server_default_and_null_returns_to_it() {
    let mut home = AppHome::new();
    home.apikeys.on_new_fingerprint = sigvault::model::OnNewFingerprint::Deactivate;
    let app = spawn_app_in(home).await;
    let issued = create(&app, json!({"principal": "acme-ci"})).await;
    let id = issued.id.as_str();
    assert_eq!(issued.body["on_new_fingerprint"], "deactivate", "{}", issued.body);

    let r = app
        .patch(&format!("/v1/apikeys/{id}"), json!({"on_new_fingerprint": "record"}))
        .await;
    assert_eq!(r.body["on_new_fingerprint"], "record", "{}", r.body);
    assert_eq!(code(&verify_from(&app, &issued.key, A, AGENT).await), "VALID");
    assert_eq!(code(&verify_from(&app, &issued.key, B, AGENT).await), "VALID");

    let r = app
        .patch(&format!("/v1/apikeys/{id}"), json!({"on_new_fingerprint": null}))
        .await;
    assert_eq!(r.body["on_new_fingerprint"], "deactivate", "{}", r.body);
    let v = verify_from(&app, &issued.key, "198.51.100.1", AGENT).await;
    assert_eq!(code(&v), "DISABLED", "{v}");

    for bad in [json!("ignore"), json!("Deactivate"), json!(1)] {
        let r = app
            .post(
                "/v1/apikeys",
                json!({"principal": "acme-ci", "on_new_fingerprint": bad}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            "{bad}"
        );
        let r = app
            .patch(&format!("/v1/apikeys/{id}"), json!({"on_new_fingerprint": bad}))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            "{bad}"
        );
    }
    assert_eq!(get(&app, id).await["on_new_fingerprint"], "deactivate");
}

#[tokio::test]
async fn a_bad_source_ip_or_user_agent_is_refused_with_400_and_changes_nothing() {
    let app = spawn_app().await;
    let issued = create_with_rule(&app, "deactivate").await;
    let id = issued.id.as_str();
    assert_eq!(code(&verify_from(&app, &issued.key, A, AGENT).await), "VALID");

    let long = "u".repeat(4097);
    for body in [
        json!({"key": issued.key, "source_ip": "example.com"}),
        json!({"key": issued.key, "source_ip": "10.1.2.3:443"}),
        json!({"key": issued.key, "source_ip": "10.1.2.300"}),
        json!({"key": issued.key, "source_ip": ""}),
        json!({"key": issued.key, "source_ip": 167903747}),
        json!({"key": issued.key, "source_ip": B, "user_agent": long}),
        json!({"key": issued.key, "source_ip": B, "user_agent": ["a"]}),
    ] {
        let r = app.post("/v1/apikeys/verify", body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            "{body}: {}",
            r.body
        );
    }

    let read = get(&app, id).await;
    assert_eq!(read["state"], "enabled", "{read}");
    assert_eq!(fingerprints(&app, id).await, [print(A, AGENT, 1)]);
    assert_eq!(new_fingerprints(&app, id).await, [json!(["learned", A, AGENT, "root"])]);
    assert_eq!(code(&verify_from(&app, &issued.key, A, AGENT).await), "VALID");
    // The longest user agent taken is stored cut to the trail's bound, without controls.
    let longest = format!("{}\u{7}", "v".repeat(4095));
    let v = verify_from(&app, &issued.key, A, &longest).await;
    assert_eq!(code(&v), "DISABLED", "a new user agent: {v}");
    let cut = "v".repeat(256);
    assert_eq!(
        new_fingerprints(&app, id).await.last(),
        Some(&json!(["deactivated", A, cut, "root"]))
    );
}

#[tokio::test]
async fn concurrent_verifications_from_one_new_fingerprint_raise_one_event() {
    let app = spawn_app().await;
    let recorded = create_with_rule(&app, "record").await;
    let stopped = create_with_rule(&app, "deactivate").await;
    for key in [&recorded.key, &stopped.key] {
        assert_eq!(code(&verify_from(&app, key, A, AGENT).await), "VALID");
    }

    let uses = (0..24).map(|_| verify_from(&app, &recorded.key, B, AGENT));
    let answers = futures_util::future::join_all(uses).await;
    assert!(answers.iter().all(|v| code(v) == "VALID"), "{answers:?}");
    assert_eq!(
        new_fingerprints(&app, &recorded.id).await,
        [
            json!(["learned", A, AGENT, "root"]),
            json!(["recorded", B, AGENT, "root"])
        ]
    );
    assert_eq!(
        fingerprints(&app, &recorded.id).await,
        [print(A, AGENT, 1), print(B, AGENT, 24)],
        "every use counted"
    );

    // Under deactivate, not one of them slips through while the key is being disabled.
    let uses = (0..24).map(|_| verify_from(&app, &stopped.key, B, AGENT));
    let answers = futures_util::future::join_all(uses).await;
    assert!(answers.iter().all(|v| code(v) == "DISABLED"), "{answers:?}");
    assert_eq!(
        new_fingerprints(&app, &stopped.id).await,
        [
            json!(["learned", A, AGENT, "root"]),
            json!(["deactivated", B, AGENT, "root"])
        ]
    );
    assert_eq!(get(&app, &stopped.id).await["state"], "disabled");
}

#[tokio::test]
async fn a_verification_without_a_fingerprint_is_one_caller_and_a_refused_key_learns_none() {
    let app = spawn_app().await;
    let issued = create_with_rule(&app, "deactivate").await;
    let id = issued.id.as_str();
    let plain = |key: &str| app.post("/v1/apikeys/verify", json!({"key": key}));
    assert_eq!(code(&plain(&issued.key).await.body), "VALID");
    assert_eq!(
        code(&plain(&issued.key).await.body),
        "VALID",
        "no fingerprint is known too"
    );
    assert_eq!(fingerprints(&app, id).await, [print("", "", 2)]);
    assert_eq!(
        new_fingerprints(&app, id).await,
        [json!(["learned", null, null, "root"])],
        "an event without an address or agent"
    );

    // A use the key refuses for another reason teaches it nothing.
    let r = app
        .post(
            "/v1/apikeys/verify",
            json!({"key": issued.key, "permissions": ["orders.write"], "source_ip": B}),
        )
        .await;
    assert_eq!(code(&r.body), "INSUFFICIENT_PERMISSIONS", "{}", r.body);
    assert_eq!(get(&app, id).await["state"], "enabled");
    assert_eq!(fingerprints(&app, id).await, [print("", "", 2)]);
    assert!(get(&app, id).await["last_used_at"].is_string(), "still a use");

    let r = app.get("/v1/apikeys/ak_000000000000000000000000/activity").await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"), "{}", r.body);
    let r = app.post(&format!("/v1/apikeys/{id}/activity"), json!({})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);
}

/// A vault whose data dir was made before API keys had fingerprints (no rule column, no
/// fingerprint table, migration 11 not applied) starts, and its keys keep verifying.
#[tokio::test]
async fn api_keys_made_before_fingerprints_existed_still_verify_after_the_upgrade() {
    sqlite_only!("upgrades SQLite's schema before migration 11: PostgreSQL's had fingerprints from its start");
    let mut app = spawn_app().await;
    let issued = create(
        &app,
        json!({"principal": "acme-ci", "permissions": ["orders.read"], "meta": {"plan": "pro"}}),
    )
    .await;
    let home = app.home.clone();
    app.stop().await;
    drop(app);

    let raw = RawStore::open(&home.store()).await;
    for sql in [
        "DROP TABLE api_key_fingerprints",
        "ALTER TABLE api_keys DROP COLUMN on_new_fingerprint",
        "DELETE FROM schema_migrations WHERE version = 11",
    ] {
        raw.execute(sql, &[]).await;
    }
    raw.close().await;

    let app = spawn_app_in(home).await;
    let v = app
        .post(
            "/v1/apikeys/verify",
            json!({"key": issued.key, "permissions": ["orders.read"], "source_ip": A}),
        )
        .await;
    assert_eq!(
        (code(&v.body), &v.body["meta"]),
        ("VALID", &json!({"plan": "pro"})),
        "{}",
        v.body
    );
    let read = get(&app, &issued.id).await;
    assert_eq!(
        (&read["state"], &read["on_new_fingerprint"]),
        (&json!("enabled"), &json!("record"))
    );
    assert_eq!(fingerprints(&app, &issued.id).await, [print(A, "", 1)]);
    let r = app.get("/v1/sys/health").await;
    assert_eq!(
        (r.body["integrity"].clone(), r.body["refused_rows"].clone()),
        (json!("ok"), json!(0))
    );
}
