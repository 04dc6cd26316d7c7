//! The rewrap job over ten thousand records, as an operator meets it: the real binary
//! (`sigvault dev` on SoftHSM2 and SQLite) with 10 000 keys plus credentials and the system
//! secrets; a KEK rotation; sign and verify traffic through the whole job without one error;
//! `kill -9` in the middle of the job; a restart that resumes where the job was (what was
//! moved stays moved) and finishes; the database then holds every record under the new KEK and
//! every key signs as before.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sigvault::store::StoreSettings;

use crate::helpers::{
    DevProcess, ROOT_TOKEN, RawStore, b64, eventually, records_under, spawn_dev, sqlite_only, temp_dir,
};

const KEYS: usize = 10_000;
/// Records a second: slow enough that the job is still running when it is killed.
const RATE: &str = "1500";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN), ("SIGVAULT_KEK__REWRAP_RATE", RATE)]
}

async fn kek_status(dev: &DevProcess) -> Value {
    let r = dev.request(Method::GET, "/v1/sys/kek", ROOT_TOKEN, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// `kek_id` → records, straight from the database file.
async fn database_kek_counts(data_dir: &Path) -> Vec<(String, i64)> {
    let raw = RawStore::open(&StoreSettings::Sqlite {
        path: data_dir.join("sigvault.db"),
    })
    .await;
    let mut counts = Vec::new();
    for table in ["key_versions", "credentials", "system_secrets"] {
        let rows = raw
            .fetch_all(
                &format!("SELECT kek_id, COUNT(*) AS n FROM {table} GROUP BY kek_id"),
                &[],
            )
            .await;
        for row in rows {
            let (id, n) = (row.text("kek_id"), row.int("n"));
            match counts.iter_mut().find(|(k, _)| *k == id) {
                Some((_, total)) => *total += n,
                None => counts.push((id, n)),
            }
        }
    }
    raw.close().await;
    counts.sort();
    counts
}

/// Signs and verifies with a few keys in a loop until `stop`, counting answers other than 200.
fn traffic(
    dev_url: String,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let name = format!("rewrap-{}", (i * 997) % KEYS);
            i += 1;
            let message = b64(b"during the rewrap");
            let signed = client
                .post(format!("{dev_url}/v1/keys/{name}/sign"))
                .bearer_auth(ROOT_TOKEN)
                .json(&json!({"message": message}))
                .send()
                .await;
            let Ok(signed) = signed else {
                // The process is being killed or restarted: not a request the vault answered.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if signed.status() != StatusCode::OK {
                errors.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let body: Value = signed.json().await.unwrap_or_default();
            let verified = client
                .post(format!("{dev_url}/v1/keys/{name}/verify"))
                .bearer_auth(ROOT_TOKEN)
                .json(&json!({"message": message, "signature": body["signature"]}))
                .send()
                .await;
            match verified {
                Ok(r) if r.status() == StatusCode::OK => {
                    let body: Value = r.json().await.unwrap_or_default();
                    if body["valid"] != true {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
}

#[tokio::test]
async fn ten_thousand_records_move_under_a_new_kek_through_a_kill_9_while_keys_keep_signing() {
    sqlite_only!("runs `sigvault dev`, whose store is SQLite in its data dir whatever the suite's store");
    let data_dir = temp_dir("rewrap-kill");
    let dev = spawn_dev(&data_dir, &env());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

    // 10 000 keys, 16 requests in flight.
    let url = dev.url("");
    futures_util::stream::iter(0..KEYS)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client
                    .post(format!("{url}/v1/keys"))
                    .bearer_auth(ROOT_TOKEN)
                    .json(&json!({"name": format!("rewrap-{i}"), "algorithm": "hmac-sha256"}))
                    .send()
                    .await
                    .expect("create");
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    for i in 0..3 {
        let r = dev
            .request(
                Method::POST,
                "/v1/credentials",
                ROOT_TOKEN,
                Some(json!({"principal": format!("rewrap-service-{i}")})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let mut before = Vec::new();
    for i in [0, 4_999, 9_999] {
        let r = dev
            .request(
                Method::POST,
                &format!("/v1/keys/rewrap-{i}/sign"),
                ROOT_TOKEN,
                Some(json!({"message": b64(b"kept")})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        before.push((i, r.body["signature"].clone()));
    }
    let status = kek_status(&dev).await;
    let old = status["current_kek_id"].as_str().expect("current").to_owned();
    let total = records_under(&status, &old);
    assert!(total >= (KEYS + 3 + 3) as u64, "{status}");

    let stop = Arc::new(AtomicBool::new(false));
    let (errors, served) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = traffic(
        url.trim_end_matches('/').to_owned(),
        Arc::clone(&stop),
        Arc::clone(&errors),
        Arc::clone(&served),
    );

    let r = dev.request(Method::POST, "/v1/sys/kek/rotate", ROOT_TOKEN, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new = r.body["current_kek_id"].as_str().expect("new").to_owned();

    // Kill -9 once a fifth of the records moved.
    eventually("the job moves a fifth of the records", 120, || async {
        records_under(&kek_status(&dev).await, &new) >= total / 5
    })
    .await;
    let mut dev = dev;
    dev.child.kill().expect("kill -9");
    dev.child.wait().expect("reaped");
    let counts = database_kek_counts(&data_dir).await;
    let moved_at_kill = counts.iter().find(|(k, _)| *k == new).map_or(0, |(_, n)| *n);
    let left_at_kill = counts.iter().find(|(k, _)| *k == old).map_or(0, |(_, n)| *n);
    assert!(
        moved_at_kill > 0 && left_at_kill > 0,
        "killed in the middle of the job: {counts:?}"
    );
    drop(dev);

    // The same port is not guaranteed: the traffic follows the new address.
    stop.store(true, Ordering::SeqCst);
    load.await.expect("traffic");
    let dev = spawn_dev(&data_dir, &env());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(
        dev.url("").trim_end_matches('/').to_owned(),
        Arc::clone(&stop),
        Arc::clone(&errors),
        Arc::clone(&served),
    );
    let status = kek_status(&dev).await;
    assert_eq!(
        status["current_kek_id"],
        new.as_str(),
        "the new KEK stays current: {status}"
    );
    assert!(
        records_under(&status, &new) >= moved_at_kill as u64,
        "what was moved stays moved: {status}"
    );
    eventually("the resumed job moves every record", 180, || async {
        records_under(&kek_status(&dev).await, &old) == 0
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    load.await.expect("traffic");
    assert_eq!(errors.load(Ordering::SeqCst), 0, "sign/verify errors during the job");
    assert!(served.load(Ordering::SeqCst) > 0, "the traffic ran");

    let status = kek_status(&dev).await;
    assert_eq!(status["rewrap"]["failed"], 0, "{status}");
    assert_eq!(records_under(&status, &new), total, "{status}");
    for (i, signature) in &before {
        let r = dev
            .request(
                Method::POST,
                &format!("/v1/keys/rewrap-{i}/sign"),
                ROOT_TOKEN,
                Some(json!({"message": b64(b"kept")})),
            )
            .await;
        assert_eq!(&r.body["signature"], signature, "rewrap-{i} signs as before");
    }
    dev.stop();
    let counts = database_kek_counts(&data_dir).await;
    assert_eq!(
        counts,
        vec![(new, total as i64)],
        "the database holds every record under the new KEK"
    );
}
