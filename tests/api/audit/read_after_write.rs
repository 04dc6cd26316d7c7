//! `GET /v1/audit/events` lists every event written before it, though the store is only an
//! index the writer fills off the request path (`audit.index_lag`, at least a quarter of it
//! between two runs of the indexer): the handler first catches the store up with the event
//! file (`Auditor::catch_up`). So a client reads its own request's event in the first query
//! after the answer, under load too, whatever the durability.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sigvault::audit::Durability;

use crate::helpers::{AppHome, ROOT_TOKEN, b64, spawn_app_in};

/// Concurrent signers, each with a key of its own.
const SIGNERS: usize = 8;
/// Signs of each signer, each followed at once by one query.
const SIGNS: usize = 25;

/// One signer's loop: sign with `key`, and right after the answer list the key's Sign
/// events once. That first listing must hold this sign (outcome `ok`) and every earlier
/// one of the signer, in order. Returns the slowest listing.
async fn sign_then_list(client: reqwest::Client, base: String, key: String) -> Duration {
    let mut acknowledged: Vec<String> = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..SIGNS {
        let r = client
            .post(format!("{base}/v1/keys/{key}/sign"))
            .bearer_auth(ROOT_TOKEN)
            .json(&json!({"message": b64(format!("{key} message {i}").as_bytes())}))
            .send()
            .await
            .expect("sign request");
        assert_eq!(r.status(), StatusCode::OK, "a sign under load");
        let id = r.headers()["x-request-id"].to_str().expect("ascii id").to_owned();
        acknowledged.push(id.clone());

        let asked = Instant::now();
        let r = client
            .get(format!(
                "{base}/v1/audit/events?action=Sign&resource=key:{key}&limit=1000"
            ))
            .bearer_auth(ROOT_TOKEN)
            .send()
            .await
            .expect("list request");
        let status = r.status();
        let body: Value = r.json().await.expect("a JSON listing");
        slowest = slowest.max(asked.elapsed());
        assert_eq!(status, StatusCode::OK, "{body}");
        let events = body["events"].as_array().expect("events");
        let listed: Vec<&str> = events
            .iter()
            .map(|e| e["request_id"].as_str().expect("request_id"))
            .collect();
        assert!(
            listed.contains(&id.as_str()),
            "{key}: sign {i} ({id}) is missing from the first query after its answer: {listed:?}"
        );
        assert_eq!(
            listed, acknowledged,
            "{key}: the first query after sign {i} lists every sign of the key so far, in order"
        );
        let own = events.last().expect("the sign's event");
        assert_eq!(
            (&own["outcome"], &own["principal"], &own["resource"]),
            (&json!("ok"), &json!("root"), &json!(format!("key:{key}")))
        );
    }
    slowest
}

async fn every_sign_is_listed_by_the_first_query_after_its_answer(durability: Durability) {
    let app = spawn_app_in(AppHome {
        audit_durability: durability,
        ..AppHome::new()
    })
    .await;
    let keys: Vec<String> = (0..SIGNERS).map(|i| format!("k{i}")).collect();
    for key in &keys {
        app.create_key(key).await;
    }
    let base = app.url("");
    let signers: Vec<_> = keys
        .into_iter()
        .map(|key| tokio::spawn(sign_then_list(app.client.clone(), base.clone(), key)))
        .collect();
    let mut slowest = Duration::ZERO;
    for signer in signers {
        slowest = slowest.max(signer.await.expect("signer"));
    }
    let report = app.get("/v1/audit/verify").await;
    assert_eq!(report.body["ok"], json!(true), "{}", report.body);
    println!(
        "{}: {} signs, each listed by the query after it; slowest listing {:?}",
        durability.as_str(),
        SIGNERS * SIGNS,
        slowest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_a_concurrent_sign_load_with_os_durability_each_sign_is_listed_by_the_first_query_after_its_answer() {
    every_sign_is_listed_by_the_first_query_after_its_answer(Durability::Os).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_a_concurrent_sign_load_with_fsync_durability_each_sign_is_listed_by_the_first_query_after_its_answer() {
    every_sign_is_listed_by_the_first_query_after_its_answer(Durability::Fsync).await;
}
