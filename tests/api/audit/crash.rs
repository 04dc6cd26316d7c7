//! kill -9 of the real binary during a burst of signs, in both `audit.durability` modes
//! (`os`, the default: answered once the line is handed to the OS; `fsync`: once it is
//! synced): the restarted server's startup reconcile brings the sinks to one head, the trail
//! verifies, and every sign that was answered 200 has its event. A kill loses no page the
//! process handed to the OS, so neither mode may lose an acknowledged event to it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{DevProcess, ROOT_TOKEN, b64, run_binary, spawn_dev, temp_dir};

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

/// `sigvault dev` reads `audit.durability` from `SIGVAULT_AUDIT__DURABILITY` (the config's
/// environment layer): a value it does not know refuses the start, naming the key. So the
/// variable the kill tests set reaches the audit settings of `dev` and is not ignored.
#[test]
fn sigvault_dev_takes_the_audit_durability_from_the_environment() {
    let data_dir = temp_dir("audit-durability-env").join("data");
    let dir = data_dir.to_str().expect("utf-8 path");
    let run = run_binary(
        &["dev", "--listen", "127.0.0.1:0", "--data-dir", dir],
        &[("SIGVAULT_AUDIT__DURABILITY", "sometimes")],
    );
    let line = run.refused_line();
    assert!(line.contains("audit.durability"), "{line}");
    assert!(!data_dir.exists(), "a refused value leaves no data dir");
}

/// Kills a `sigvault dev` with `audit.durability = durability` [`ROUNDS`] times in the
/// middle of a burst of signs; after each restart the trail verifies and lists every sign
/// that was acknowledged before the kill (all rounds' so far).
async fn kill_9_rounds(durability: &str) {
    let data_dir = temp_dir(&format!("audit-kill-{durability}")).join("data");
    let env = [
        ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN),
        ("SIGVAULT_AUDIT__DURABILITY", durability),
    ];
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
        assert_eq!(
            report["ok"],
            json!(true),
            "{durability}: after kill {}: {report}",
            round + 1
        );
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
            "{durability}: after kill {}: {} of {} acknowledged signs have no event: {lost:?}",
            round + 1,
            lost.len(),
            acknowledged.len()
        );
    }
    dev.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_during_a_burst_of_signs_with_os_durability_the_trail_verifies_and_holds_every_acknowledged_sign()
{
    kill_9_rounds("os").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_during_a_burst_of_signs_with_fsync_durability_the_trail_verifies_and_holds_every_acknowledged_sign()
 {
    kill_9_rounds("fsync").await;
}
