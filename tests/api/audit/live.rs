//! Verification of a running vault: while signers keep the writer busy, the online check
//! and the offline one (over the same data dir) must not report the batches in flight as
//! tampering, and must still count what lies past the last anchored head.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Semaphore;

use super::{verify_offline, verify_online};
use crate::helpers::{ROOT_TOKEN, b64, spawn_app};

/// Verifications made while the load runs.
const CHECKS: usize = 20;
/// Concurrent signers.
const SIGNERS: usize = 8;
/// Signs released for each check: they run while it walks the trail, so every check meets
/// batches in flight, and the trail (which every check walks whole) stays a few thousand
/// events long.
const SIGNS_PER_CHECK: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_passes_twenty_times_out_of_twenty_under_a_concurrent_sign_load() {
    let app = spawn_app().await;
    app.create_key("busy").await;
    let tickets = Arc::new(Semaphore::new(0));
    let signed = Arc::new(AtomicUsize::new(0));
    let url = app.url("/v1/keys/busy/sign");
    let mut signers = Vec::new();
    for signer in 0..SIGNERS {
        let (client, url, tickets, signed) = (
            app.client.clone(),
            url.clone(),
            Arc::clone(&tickets),
            Arc::clone(&signed),
        );
        signers.push(tokio::spawn(async move {
            let mut i = 0u64;
            // Closing the semaphore ends the load.
            while let Ok(ticket) = tickets.acquire().await {
                ticket.forget();
                let message = format!("signer {signer} message {i}");
                let r = client
                    .post(&url)
                    .bearer_auth(ROOT_TOKEN)
                    .json(&json!({"message": b64(message.as_bytes())}))
                    .send()
                    .await
                    .expect("sign request");
                assert_eq!(r.status(), StatusCode::OK, "a sign under load");
                signed.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    let mut unanchored_seen = 0;
    for check in 0..CHECKS {
        tickets.add_permits(SIGNS_PER_CHECK);
        let online = verify_online(&app).await;
        assert_eq!(online["ok"], json!(true), "online check {check} under load: {online}");
        let offline = verify_offline(&app.home).await;
        assert!(offline.ok, "offline check {check} of the live data dir: {offline:?}");
        unanchored_seen += usize::from(offline.unanchored > 0 || online.get("unanchored").is_some());
    }
    tickets.close();
    for signer in signers {
        signer.await.expect("signer");
    }
    let settled = verify_online(&app).await;
    assert_eq!(settled["ok"], json!(true), "{settled}");
    let signed = signed.load(Ordering::SeqCst);
    assert!(signed >= SIGNS_PER_CHECK, "{signed} signs");
    assert!(
        settled["checked"].as_u64().expect("checked") as usize > signed,
        "{settled}"
    );
    println!("{CHECKS} checks beside {signed} signs; {unanchored_seen} of them met batches past the last anchor");
}
