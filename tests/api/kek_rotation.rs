//! KEK rotation through the API: `POST /v1/sys/kek/rotate` makes a new KEK current, the
//! rewrap job moves every sealed record under it while keys keep signing, `GET /v1/sys/kek`
//! shows it, and `POST /v1/sys/kek/retire` removes the old KEK only once no record uses it.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{eventually, records_under, spawn_app};

#[tokio::test]
async fn a_rotation_moves_every_record_under_the_new_kek_and_the_old_one_retires_once_unused() {
    let app = spawn_app().await;
    let mut signatures = Vec::new();
    for i in 0..5 {
        let name = format!("rotated-{i}");
        app.create_key(&name).await;
        signatures.push((name.clone(), app.sign(&name, b"before").await.0));
    }
    let before = app.get("/v1/sys/kek").await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    let old = before.body["current_kek_id"].as_str().expect("current").to_owned();
    // Five keys, the system secrets (pepper, audit key, row integrity key).
    assert!(records_under(&before.body, &old) >= 8, "{}", before.body);

    let r = app.post_raw("/v1/sys/kek/rotate", b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["previous_kek_id"], old.as_str());
    let new = r.body["current_kek_id"].as_str().expect("new").to_owned();
    assert_ne!(new, old);

    // The old KEK is still in use: retiring it is refused with the count. (On a loaded
    // machine the rewrap job may have moved every record already: then it retires here.)
    let r = app.post("/v1/sys/kek/retire", json!({"kek_id": old})).await;
    let retired_early = r.status == StatusCode::OK;
    if !retired_early {
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(
            r.body["error"]["message"].as_str().unwrap_or("").contains("records"),
            "{}",
            r.body
        );
    }

    eventually("every record is under the new KEK", 30, || async {
        let status = app.get("/v1/sys/kek").await.body;
        records_under(&status, &old) == 0
    })
    .await;
    let status = app.get("/v1/sys/kek").await.body;
    assert_eq!(status["current_kek_id"], new.as_str(), "{status}");
    assert!(records_under(&status, &new) >= 8, "{status}");
    assert_eq!(status["rewrap"]["failed"], 0, "{status}");
    for (name, signature) in &signatures {
        assert_eq!(&app.sign(name, b"before").await.0, signature, "{name} signs as before");
    }

    // The pass is in the trail.
    eventually("the rewrap pass is an audit event", 10, || async {
        let r = app.get("/v1/audit/events?action=kek.rewrap&limit=10").await;
        r.body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["outcome"] == "ok" && e["resource"] == format!("kek:{new}").as_str() && e["principal"] == "-")
    })
    .await;

    if !retired_early {
        let r = app.post("/v1/sys/kek/retire", json!({"kek_id": old})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let status = app.get("/v1/sys/kek").await.body;
    assert_eq!(status["kek_ids"], json!([new]), "{status}");
    let r = app.post("/v1/sys/kek/retire", json!({"kek_id": new})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the current KEK: {}", r.body);
    let r = app
        .post("/v1/sys/kek/retire", json!({"kek_id": "pkcs11:nobody:1"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = app.post("/v1/sys/kek/retire", json!({"kek": "x"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // After a restart, only the new KEK is needed.
    let app = app.restart().await;
    for (name, signature) in &signatures {
        assert_eq!(&app.sign(name, b"before").await.0, signature, "{name} after a restart");
    }
}
