//! The database going away under load, through a proxy the test cuts ([`CutProxy`]):
//! requests answer 503 `STORE_UNAVAILABLE` (never 500, never a hang), nothing answered
//! 2xx before is lost, the node recovers by itself when the database is back, and
//! `store.serve_cached_when_unavailable` decides whether memory keeps answering meanwhile.
//! These run on PostgreSQL whichever store the rest of the suite runs on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{AppHome, CutProxy, ROOT_TOKEN, TestApp, eventually, fresh_postgres_database, spawn_app_in};

/// A node whose database connections all go through a proxy the test can cut.
async fn node_behind_proxy(serve_cached: bool) -> (TestApp, CutProxy) {
    let direct = fresh_postgres_database();
    let (head, rest) = direct.split_once('@').expect("a user@host URL");
    let (server, database) = rest.split_once('/').expect("a database");
    let upstream: SocketAddr = server.parse().expect("host:port of the test server");
    let proxy = CutProxy::start(upstream).await;
    let app = spawn_app_in(AppHome {
        postgres_url: Some(format!("{head}@{}/{database}", proxy.addr)),
        serve_cached_when_unavailable: serve_cached,
        ..AppHome::new()
    })
    .await;
    (app, proxy)
}

async fn sign_status(app: &TestApp, name: &str) -> (StatusCode, serde_json::Value) {
    let r = app
        .post(&format!("/v1/keys/{name}/sign"), json!({"message": "aGVsbG8="}))
        .await;
    (r.status, r.body)
}

#[tokio::test]
async fn a_database_cut_under_load_answers_503_loses_nothing_answered_and_recovers_without_a_restart() {
    let (app, proxy) = node_behind_proxy(false).await;
    let app = Arc::new(app);
    // A client that gives up long after any bound the vault keeps: a hang shows as an error.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..6 {
        let (app, client, stop) = (Arc::clone(&app), client.clone(), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("load-{worker}-{i}");
                i += 1;
                let sent = client
                    .post(app.url("/v1/keys"))
                    .bearer_auth(ROOT_TOKEN)
                    .json(&json!({"name": name, "algorithm": "hmac-sha256"}))
                    .send()
                    .await;
                let reply = match sent {
                    Ok(r) => {
                        let status = r.status();
                        (status, r.json::<serde_json::Value>().await.unwrap_or_default())
                    }
                    Err(e) => panic!("a request failed outright (a hang or a dropped connection): {e}"),
                };
                answers.push((name, reply.0, reply.1));
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.restore();
    eventually("creates succeeding again after the database came back", 30, || async {
        app.post(
            "/v1/keys",
            json!({"name": format!("probe-{}", rand_suffix()), "algorithm": "hmac-sha256"}),
        )
        .await
        .status
            == StatusCode::CREATED
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.expect("worker"));
    }

    let created: Vec<&String> = answers
        .iter()
        .filter(|(_, s, _)| *s == StatusCode::CREATED)
        .map(|(n, _, _)| n)
        .collect();
    let refused: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|(_, s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(_, _, b)| b)
        .collect();
    let other: Vec<_> = answers
        .iter()
        .filter(|(_, s, _)| *s != StatusCode::CREATED && *s != StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        other.is_empty(),
        "only 201 or 503 while the database comes and goes: {other:?}"
    );
    assert!(!refused.is_empty(), "the cut was felt");
    assert!(!created.is_empty(), "the load ran");
    for body in &refused {
        assert_eq!(body["error"]["code"], "STORE_UNAVAILABLE", "{body}");
    }
    for name in created {
        let r = app.get(&format!("/v1/keys/{name}")).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{name} was answered 201, so it is kept: {}",
            r.body
        );
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

#[tokio::test]
async fn by_default_a_database_outage_refuses_even_what_memory_could_answer_then_service_resumes() {
    let (app, proxy) = node_behind_proxy(false).await;
    app.create_key("cached").await;
    assert_eq!(sign_status(&app, "cached").await.0, StatusCode::OK);
    proxy.cut();
    eventually("the outage noticed", 10, || async {
        let (status, body) = sign_status(&app, "cached").await;
        status == StatusCode::SERVICE_UNAVAILABLE && body["error"]["code"] == "STORE_UNAVAILABLE"
    })
    .await;
    let r = app.get("/v1/sys/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    proxy.restore();
    eventually("signing again", 20, || async {
        sign_status(&app, "cached").await.0 == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn with_serve_cached_when_unavailable_cached_keys_keep_signing_and_the_rest_answers_503() {
    let (app, proxy) = node_behind_proxy(true).await;
    app.create_key("cached").await;
    assert_eq!(sign_status(&app, "cached").await.0, StatusCode::OK);
    proxy.cut();
    // Past the probe's detection time (a few seconds): memory still answers.
    let r = app.get("/v1/sys/health").await;
    eventually("the outage noticed by the health check", 10, || async {
        app.get("/v1/sys/health").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    drop(r);
    for _ in 0..5 {
        let (status, body) = sign_status(&app, "cached").await;
        assert_eq!(status, StatusCode::OK, "a cached key signs from memory: {body}");
    }
    let r = app
        .post("/v1/keys", json!({"name": "new-one", "algorithm": "hmac-sha256"}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "STORE_UNAVAILABLE", "{}", r.body);
    proxy.restore();
    eventually("creating again", 20, || async {
        app.post("/v1/keys", json!({"name": "new-one", "algorithm": "hmac-sha256"}))
            .await
            .status
            == StatusCode::CREATED
    })
    .await;
}

#[tokio::test]
async fn a_database_that_goes_silent_answers_503_within_the_store_call_timeout_not_never() {
    let (app, proxy) = node_behind_proxy(true).await;
    app.create_key("before").await;
    proxy.stall();
    // The store gives up on a silent database after 10 s (its call timeout; a connection
    // wait is 3 s at most): the request is answered, well before the client's 60 s.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let r = client
        .post(app.url("/v1/keys"))
        .bearer_auth(ROOT_TOKEN)
        .json(&json!({"name": "during", "algorithm": "hmac-sha256"}))
        .send()
        .await
        .expect("answered, not left hanging");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = r.json().await.expect("an error body");
    assert_eq!(body["error"]["code"], "STORE_UNAVAILABLE", "{body}");
    proxy.restore();
    eventually("creating again after the partition", 30, || async {
        app.post("/v1/keys", json!({"name": "after", "algorithm": "hmac-sha256"}))
            .await
            .status
            == StatusCode::CREATED
    })
    .await;
}

#[tokio::test]
async fn an_operation_the_database_holds_up_answers_503_after_the_store_call_timeout() {
    let (app, _proxy) = node_behind_proxy(false).await;
    app.create_key("held").await;
    // Another writer holds the key's row: the vault's update waits on the row lock, on a
    // database that otherwise answers (so only the store's own call timeout can end it).
    let url = app.home.postgres_url.clone().expect("on PostgreSQL");
    use sqlx::Connection;
    let mut holder = sqlx::PgConnection::connect(&url).await.expect("connect");
    let mut tx = holder.begin().await.expect("begin");
    sqlx::query("SELECT id FROM keys WHERE name = 'held' FOR UPDATE")
        .execute(&mut *tx)
        .await
        .expect("lock the row");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let r = client
        .patch(app.url("/v1/keys/held"))
        .bearer_auth(ROOT_TOKEN)
        .json(&json!({"state": "disabled"}))
        .send()
        .await
        .expect("answered, not left waiting on the lock");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = r.json().await.expect("an error body");
    assert_eq!(body["error"]["code"], "STORE_UNAVAILABLE", "{body}");
    tx.rollback().await.expect("release the row");
    let r = app.patch("/v1/keys/held", json!({"state": "disabled"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
