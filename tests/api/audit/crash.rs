//! kill -9 of the real binary during a burst of signs: the restarted server's startup
//! reconcile brings the sinks to one head, the trail verifies, and every sign that was
//! answered 200 has its event.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{DevProcess, ROOT_TOKEN, b64, spawn_dev, temp_dir};

/// Concurrent signers in a burst.
const SIGNERS: usize = 32;
/// Acknowledged signs after which the server is killed (the other signers are mid-request).
const KILL_AFTER: usize = 300;
const ROUNDS: usize = 8;

/// `GET path` as root; panics unless 200 with a JSON body.
async fn get(dev: &DevProcess, path: &str) -> Value {
    let r = dev.request(Method::GET, path, ROOT_TOKEN, None).await;
    assert_eq!(r.status, StatusCode::OK, "{path}");
    assert!(!r.body.is_null(), "{path}: a JSON body");
    r.body
}

/// Request ids of every Sign event the server lists, following cursors.
async fn signed_request_ids(dev: &DevProcess) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor = String::new();
    loop {
        let page = get(dev, &format!("/v1/audit/events?action=Sign&limit=1000&cursor={cursor}")).await;
        for e in page["events"].as_array().expect("events") {
            ids.insert(e["request_id"].as_str().expect("request_id").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return ids,
        }
    }
}

/// Signs from [`SIGNERS`] tasks until the server dies; kills it with SIGKILL once
/// [`KILL_AFTER`] signs were acknowledged. Returns the request ids of the 200 answers.
async fn burst_until_killed(client: &reqwest::Client, dev: &mut DevProcess, round: usize) -> Vec<String> {
    let pid = i32::try_from(dev.child.id()).expect("pid");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let url = dev.url("/v1/keys/burst/sign");
    let mut signers = Vec::new();
    for signer in 0..SIGNERS {
        let (client, url) = (client.clone(), url.clone());
        let (acknowledged, killed, count) = (Arc::clone(&acknowledged), Arc::clone(&killed), Arc::clone(&count));
        signers.push(tokio::spawn(async move {
            for i in 0.. {
                let message = format!("round {round} signer {signer} message {i}");
                let sent = client
                    .post(&url)
                    .bearer_auth(ROOT_TOKEN)
                    .json(&json!({"message": b64(message.as_bytes())}))
                    .send()
                    .await;
                let resp = match sent {
                    Ok(resp) => resp,
                    Err(e) => {
                        assert!(killed.load(Ordering::SeqCst), "a sign failed before the kill: {e}");
                        return;
                    }
                };
                assert_eq!(resp.status(), StatusCode::OK, "a sign was refused before the kill");
                let id = resp.headers()["x-request-id"].to_str().expect("ascii id").to_owned();
                acknowledged.lock().expect("lock").push(id);
                if count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    killed.store(true, Ordering::SeqCst);
                    // SAFETY: signalling our own child by pid.
                    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9");
                }
            }
        }));
    }
    for signer in signers {
        signer.await.expect("signer task");
    }
    let status = dev.child.wait().expect("reap the killed server");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{status}"
    );
    let ids = acknowledged.lock().expect("lock").clone();
    assert!(ids.len() >= KILL_AFTER, "{} acknowledged", ids.len());
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_during_a_burst_of_signs_the_trail_verifies_and_holds_every_acknowledged_sign() {
    let data_dir = temp_dir("audit-kill").join("data");
    let env = [("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)];
    // A server that stops answering under the burst fails the test instead of hanging it.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    let mut dev = spawn_dev(&data_dir, &env);
    let body = json!({"name": "burst", "algorithm": "hmac-sha256"});
    let created = dev.request(Method::POST, "/v1/keys", ROOT_TOKEN, Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let mut acknowledged = Vec::new();
    for round in 0..ROUNDS {
        acknowledged.extend(burst_until_killed(&client, &mut dev, round).await);
        dev = spawn_dev(&data_dir, &env);
        let report = get(&dev, "/v1/audit/verify").await;
        assert_eq!(report["ok"], json!(true), "after kill {}: {report}", round + 1);
        let checked = report["checked"].as_u64().expect("checked");
        assert!(
            checked as usize > acknowledged.len(),
            "{checked} events, {} acknowledged",
            acknowledged.len()
        );
        let signed = signed_request_ids(&dev).await;
        let lost: Vec<&String> = acknowledged.iter().filter(|id| !signed.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "after kill {}: {} of {} acknowledged signs have no event: {lost:?}",
            round + 1,
            lost.len(),
            acknowledged.len()
        );
    }
    dev.stop();
}
