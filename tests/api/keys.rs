//! Signing keys through the HTTP API, black-box: lifecycle (create, get, list, patch,
//! rotate, delete, restore, purge), import, sign and verify (single and batch), usage
//! counters, and the error contract of API.md ("Signing keys", "Conventions").
//!
//! Every refused request is checked for its status, its stable code, an `x-request-id`
//! header equal to `error.request_id`, and for leaving the keys exactly as they were.

use std::io::{Read, Write};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Sha256, Sha384, Sha512};

use crate::helpers::{AppHome, ROOT_TOKEN, Reply, TestApp, b64, spawn_app, spawn_app_in};

/// The manual clock's start (helpers' `spawn_app_in`), as the API writes it.
const START: &str = "2026-09-21T14:13:20Z";
const MIB: usize = 1024 * 1024;

// ----- helpers ----------------------------------------------------------------------------

fn local_hmac<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Status, stable code, a non-empty message, and `x-request-id` equal to `error.request_id`.
#[track_caller]
fn assert_error(r: &Reply, status: StatusCode, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_eq!(r.code(), code, "{what}: {}", r.body);
    let header = r
        .request_id
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: no x-request-id header"));
    assert!(!header.is_empty(), "{what}: empty x-request-id");
    assert_eq!(
        r.body["error"]["request_id"].as_str(),
        Some(header),
        "{what}: {}",
        r.body
    );
    let message = r.body["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{what}: no message in {}", r.body);
}

/// Every key, as the API shows it (metadata and usage counters).
async fn all_keys(app: &TestApp) -> Value {
    let r = app.get("/v1/keys?limit=1000").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn get_key(app: &TestApp, name: &str) -> Value {
    let r = app.get(&format!("/v1/keys/{name}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn sign_with(app: &TestApp, name: &str, body: Value) -> Reply {
    app.post(&format!("/v1/keys/{name}/sign"), body).await
}

async fn verify_with(app: &TestApp, name: &str, body: Value) -> Reply {
    app.post(&format!("/v1/keys/{name}/verify"), body).await
}

async fn verify_version(app: &TestApp, name: &str, message: &[u8], signature: &[u8], version: u64) -> Reply {
    let body = json!({"message": b64(message), "signature": b64(signature), "key_version": version});
    verify_with(app, name, body).await
}

/// A request with an arbitrary `Authorization` header value.
async fn send_authorization(app: &TestApp, method: Method, path: &str, authorization: &str, body: Value) -> Reply {
    let resp = app
        .client
        .request(method, app.url(path))
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request sent");
    let status = resp.status();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.bytes().await.expect("body");
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        request_id,
    }
}

/// POSTs `body` with `Transfer-Encoding: chunked` and no `Content-Length`, over a raw
/// HTTP/1.1 connection (reqwest streams bodies only with its `stream` feature). The body
/// is written from another thread while the response is read, so an early answer is seen.
async fn post_chunked(app: &TestApp, path: &str, body: Vec<u8>) -> Reply {
    let addr = app.addr;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone stream");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ROOT_TOKEN}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let sender = std::thread::spawn(move || {
            // The server may answer and close before taking it all: write errors are expected.
            let _ = writer.write_all(head.as_bytes());
            for chunk in body.chunks(4096) {
                let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
                if writer.write_all(&framed).is_err() {
                    return;
                }
            }
            let _ = writer.write_all(b"0\r\n\r\n");
        });
        let reply = read_response(&mut stream);
        let _ = sender.join();
        reply
    })
    .await
    .expect("raw request thread")
}

fn read_response(stream: &mut std::net::TcpStream) -> Reply {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).expect("read response head");
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(raw[..head_end].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = raw[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).expect("read response body");
        assert!(n > 0, "connection closed inside the response body");
        body.extend_from_slice(&buf[..n]);
    }
    Reply {
        status: StatusCode::from_u16(code).expect("status"),
        body: serde_json::from_slice(&body[..length]).unwrap_or(Value::Null),
        request_id: header("x-request-id"),
    }
}

// ----- create, sign, verify ----------------------------------------------------------------

#[tokio::test]
async fn a_created_key_shows_its_settings_and_never_its_material() {
    let app = spawn_app().await;
    let created = app.create_key("payments.webhook-1").await;
    let expected = json!({
        "name": "payments.webhook-1",
        "algorithm": "hmac-sha256",
        "boundary": "process",
        "owner": "root",
        "tags": {},
        "state": "enabled",
        "latest_version": 1,
        "min_verify_version": 1,
        "exportable": false,
        "auto_rotate_period": null,
        "created_at": START,
        "versions": [{"version": 1, "created_at": START, "sign_count": 0, "verify_count": 0, "last_used_at": null}],
    });
    assert_eq!(created, expected);
    assert_eq!(get_key(&app, "payments.webhook-1").await, expected);
}

#[tokio::test]
async fn create_options_are_shown_back_and_auto_rotation_can_be_turned_off() {
    let app = spawn_app().await;
    let body = json!({
        "name": "k", "algorithm": "hmac-sha384", "owner": "svc-payments",
        "tags": {"team": "payments", "env": "prod"}, "auto_rotate_period": "90d", "exportable": true,
    });
    let r = app.post("/v1/keys", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (
            &r.body["owner"],
            &r.body["tags"],
            &r.body["auto_rotate_period"],
            &r.body["exportable"]
        ),
        (
            &json!("svc-payments"),
            &json!({"env": "prod", "team": "payments"}),
            &json!("90d"),
            &json!(true)
        )
    );
    let r = app.patch("/v1/keys/k", json!({"auto_rotate_period": null})).await;
    assert_eq!(
        (r.status, &r.body["auto_rotate_period"]),
        (StatusCode::OK, &Value::Null),
        "{}",
        r.body
    );

    let before = get_key(&app, "k").await;
    for period in ["30m", "36501d", "soon"] {
        let r = app.patch("/v1/keys/k", json!({"auto_rotate_period": period})).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("auto_rotate_period {period}"),
        );
    }
    assert_eq!(get_key(&app, "k").await, before);
}

#[tokio::test]
async fn a_signature_verifies_and_any_change_to_message_or_signature_makes_it_invalid() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, version) = app.sign("k", b"hello").await;
    assert_eq!(version, 1);
    assert_eq!(signature.len(), 32);

    let r = app.verify("k", b"hello", &signature).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": true, "key_version": 1}))
    );

    let r = app.verify("k", b"hellO", &signature).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": false, "code": "SIGNATURE_MISMATCH"})),
        "changed message"
    );

    let mut flipped = signature.clone();
    flipped[31] ^= 0x01;
    let r = app.verify("k", b"hello", &flipped).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": false, "code": "SIGNATURE_MISMATCH"})),
        "changed signature"
    );

    for wrong_length in [&signature[..31], &[signature.as_slice(), &[0]].concat()[..], &[][..]] {
        let r = app.verify("k", b"hello", wrong_length).await;
        assert_eq!(
            (r.status, r.body),
            (StatusCode::OK, json!({"valid": false, "code": "MALFORMED_SIGNATURE"})),
            "length {}",
            wrong_length.len()
        );
    }
}

#[tokio::test]
async fn each_algorithm_signs_with_a_tag_of_its_hash_length() {
    let app = spawn_app().await;
    for (algorithm, tag_len) in [("hmac-sha256", 32), ("hmac-sha384", 48), ("hmac-sha512", 64)] {
        let r = app
            .post("/v1/keys", json!({"name": algorithm, "algorithm": algorithm}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["algorithm"], algorithm);
        let (signature, version) = app.sign(algorithm, b"message").await;
        assert_eq!((signature.len(), version), (tag_len, 1), "{algorithm}");
        let r = app.verify(algorithm, b"message", &signature).await;
        assert_eq!(r.body, json!({"valid": true, "key_version": 1}), "{algorithm}");
    }
}

#[tokio::test]
async fn key_size_must_be_between_32_and_512_bytes() {
    let app = spawn_app().await;
    let before = all_keys(&app).await;
    for size in [31, 513, 0] {
        let r = app
            .post(
                "/v1/keys",
                json!({"name": "sized", "algorithm": "hmac-sha256", "key_size": size}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("key_size {size}"),
        );
    }
    assert_eq!(all_keys(&app).await, before);
    for size in [32, 512] {
        let name = format!("size-{size}");
        let r = app
            .post(
                "/v1/keys",
                json!({"name": name, "algorithm": "hmac-sha512", "key_size": size}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "key_size {size}: {}", r.body);
        let (signature, _) = app.sign(&name, b"m").await;
        assert_eq!(signature.len(), 64);
    }
}

// ----- rotation and minimum verify version -------------------------------------------------

#[tokio::test]
async fn after_rotation_old_signatures_verify_until_min_verify_version_moves_past_them() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (old, _) = app.sign("k", b"m").await;

    let r = app.post("/v1/keys/k/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["latest_version"].as_u64(), r.body["min_verify_version"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(r.body["versions"].as_array().map(Vec::len), Some(2));

    let r = app.verify("k", b"m", &old).await;
    assert_eq!(
        r.body,
        json!({"valid": true, "key_version": 1}),
        "a v1 signature still verifies"
    );
    let (new, version) = app.sign("k", b"m").await;
    assert_eq!(version, 2);
    assert_ne!(new, old);
    let r = app.verify("k", b"m", &new).await;
    assert_eq!(r.body, json!({"valid": true, "key_version": 2}));
    let r = sign_with(&app, "k", json!({"message": b64(b"m"), "key_version": 1})).await;
    assert_eq!(
        r.body,
        json!({"signature": b64(&old), "key_version": 1}),
        "v1 still signs on request"
    );

    let r = app.patch("/v1/keys/k", json!({"min_verify_version": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["min_verify_version"], 2);

    let r = app.verify("k", b"m", &old).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": false, "code": "SIGNATURE_MISMATCH"})),
        "v1 is retired"
    );
    let r = app.verify("k", b"m", &new).await;
    assert_eq!(r.body, json!({"valid": true, "key_version": 2}));

    let before = get_key(&app, "k").await;
    let r = verify_version(&app, "k", b"m", &old, 1).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "verify with retired key_version 1",
    );
    let r = sign_with(&app, "k", json!({"message": b64(b"m"), "key_version": 1})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "sign with retired key_version 1",
    );
    for beyond in [3, 0] {
        let r = verify_version(&app, "k", b"m", &new, beyond).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("verify key_version {beyond}"),
        );
        let r = sign_with(&app, "k", json!({"message": b64(b"m"), "key_version": beyond})).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("sign key_version {beyond}"),
        );
    }
    for min in [3, 0] {
        let r = app.patch("/v1/keys/k", json!({"min_verify_version": min})).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("min_verify_version {min}"),
        );
    }
    assert_eq!(get_key(&app, "k").await, before);
}

// ----- get and list ------------------------------------------------------------------------

#[tokio::test]
async fn listing_walks_every_key_in_name_order_with_a_cursor() {
    let app = spawn_app().await;
    for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
        app.create_key(name).await;
    }
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/keys?limit=2".to_owned(),
            Some(c) => format!("/v1/keys?limit=2&cursor={c}"),
        };
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let keys = r.body["keys"].as_array().expect("keys");
        pages.push(
            keys.iter()
                .map(|k| k["name"].as_str().expect("name").to_owned())
                .collect(),
        );
        match &r.body["next"] {
            Value::Null => break,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next is {other}"),
        }
        assert!(pages.len() < 10, "paging does not end: {pages:?}");
    }
    assert_eq!(pages, [vec!["alpha", "bravo"], vec!["charlie", "delta"], vec!["echo"]]);

    let everything = all_keys(&app).await;
    assert_eq!(everything["next"], Value::Null);
    let names: Vec<&str> = everything["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(
        everything["keys"][2],
        get_key(&app, "charlie").await,
        "list and get show the same key"
    );
}

#[tokio::test]
async fn listing_refuses_a_bad_cursor_and_a_limit_outside_1_to_1000() {
    let app = spawn_app().await;
    app.create_key("a").await;
    for query in [
        "cursor=!!not-a-cursor!!",
        "cursor=%zz",
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=x",
        "limit=1&limit=2",
    ] {
        let r = app.get(&format!("/v1/keys?{query}")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", query);
    }
    for query in ["limit=1", "limit=1000"] {
        let r = app.get(&format!("/v1/keys?{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        assert_eq!(r.body["keys"].as_array().map(Vec::len), Some(1), "{query}");
    }
}

// ----- patch -------------------------------------------------------------------------------

#[tokio::test]
async fn a_disabled_key_neither_signs_nor_verifies_until_enabled_again() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, _) = app.sign("k", b"m").await;

    let r = app.patch("/v1/keys/k", json!({"state": "disabled"})).await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (StatusCode::OK, Some("disabled")),
        "{}",
        r.body
    );
    let before = get_key(&app, "k").await;
    let r = sign_with(&app, "k", json!({"message": b64(b"m")})).await;
    assert_error(&r, StatusCode::CONFLICT, "FAILED_PRECONDITION", "sign while disabled");
    let r = app.verify("k", b"m", &signature).await;
    assert_error(&r, StatusCode::CONFLICT, "FAILED_PRECONDITION", "verify while disabled");
    assert_eq!(get_key(&app, "k").await, before, "refused uses are not counted");

    let r = app.patch("/v1/keys/k", json!({"state": "enabled"})).await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (StatusCode::OK, Some("enabled")),
        "{}",
        r.body
    );
    assert_eq!(app.sign("k", b"m").await, (signature.clone(), 1));
    assert_eq!(
        app.verify("k", b"m", &signature).await.body,
        json!({"valid": true, "key_version": 1})
    );
}

#[tokio::test]
async fn exportable_can_only_change_from_true_to_false() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "k", "algorithm": "hmac-sha256", "exportable": true}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["exportable"].as_bool()),
        (StatusCode::CREATED, Some(true)),
        "{}",
        r.body
    );

    let r = app.patch("/v1/keys/k", json!({"exportable": false})).await;
    assert_eq!(
        (r.status, r.body["exportable"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{}",
        r.body
    );

    let before = get_key(&app, "k").await;
    let r = app.patch("/v1/keys/k", json!({"exportable": true})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "exportable false to true",
    );
    assert_eq!(get_key(&app, "k").await, before);
}

#[tokio::test]
async fn patch_refuses_pending_deletion_unknown_states_and_unknown_fields() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = get_key(&app, "k").await;
    let cases = [
        json!({"state": "pending_deletion"}),
        json!({"state": "destroyed"}),
        json!({"colour": "red"}),
        json!({"state": "disabled", "name": "other"}),
    ];
    for body in cases {
        let r = app.patch("/v1/keys/k", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &body.to_string());
    }
    assert_eq!(get_key(&app, "k").await, before);
}

// ----- delete, restore, purge --------------------------------------------------------------

#[tokio::test]
async fn deleting_a_key_blocks_it_and_restore_brings_back_the_same_material() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, _) = app.sign("k", b"m").await;

    let r = app.delete("/v1/keys/k?pending_days=7").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["state"], "pending_deletion");
    assert_eq!(r.body["deletion_due_at"], "2026-09-28T14:13:20Z");
    assert_eq!(get_key(&app, "k").await, r.body);

    let pending = r.body;
    let r = sign_with(&app, "k", json!({"message": b64(b"m")})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "sign while pending deletion",
    );
    let r = app.verify("k", b"m", &signature).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "verify while pending deletion",
    );
    let r = app.post("/v1/keys/k/rotate", json!({})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "rotate while pending deletion",
    );
    let r = app.delete("/v1/keys/k?pending_days=7").await;
    assert_error(&r, StatusCode::CONFLICT, "FAILED_PRECONDITION", "delete twice");
    let r = app.patch("/v1/keys/k", json!({"state": "enabled"})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "enable while pending deletion",
    );
    let r = app
        .post("/v1/keys/k/import", json!({"key_material": b64(&[3; 32])}))
        .await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "import while pending deletion",
    );
    assert_eq!(get_key(&app, "k").await, pending);

    let r = app.post("/v1/keys/k/restore", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "enabled");
    assert_eq!(r.body.get("deletion_due_at"), None, "{}", r.body);
    assert_eq!(
        app.sign("k", b"m").await,
        (signature, 1),
        "the same material signs again"
    );

    let r = app.post("/v1/keys/k/restore", json!({})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "restore a key that is not pending deletion",
    );
}

#[tokio::test]
async fn a_disabled_key_restored_from_deletion_is_disabled_again() {
    let app = spawn_app().await;
    app.create_key("k").await;
    app.patch("/v1/keys/k", json!({"state": "disabled"})).await;

    let r = app.delete("/v1/keys/k").await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (StatusCode::ACCEPTED, Some("pending_deletion")),
        "{}",
        r.body
    );
    assert_eq!(
        r.body["deletion_due_at"], "2026-09-28T14:13:20Z",
        "the default wait is 7 days"
    );

    let r = app.post("/v1/keys/k/restore", json!({})).await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (StatusCode::OK, Some("disabled")),
        "{}",
        r.body
    );
    let r = sign_with(&app, "k", json!({"message": b64(b"m")})).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "sign after restoring a disabled key",
    );
}

#[tokio::test]
async fn pending_days_outside_1_to_30_or_not_a_number_is_refused() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = get_key(&app, "k").await;
    for days in ["0", "31", "x", "-1", "7.5", ""] {
        let r = app.delete(&format!("/v1/keys/k?pending_days={days}")).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("pending_days={days}"),
        );
    }
    assert_eq!(get_key(&app, "k").await, before);
    for (days, due) in [("1", "2026-09-22T14:13:20Z"), ("30", "2026-10-21T14:13:20Z")] {
        let r = app.delete(&format!("/v1/keys/k?pending_days={days}")).await;
        assert_eq!(
            (r.status, r.body["deletion_due_at"].as_str()),
            (StatusCode::ACCEPTED, Some(due)),
            "{}",
            r.body
        );
        app.post("/v1/keys/k/restore", json!({})).await;
    }
}

#[tokio::test]
async fn a_key_past_its_waiting_period_is_destroyed_and_its_name_can_be_reused() {
    let app = spawn_app().await;
    app.create_key("k").await;
    app.create_key("kept").await;
    let (old_signature, _) = app.sign("k", b"m").await;
    let r = app.delete("/v1/keys/k?pending_days=7").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    app.clock.advance(time::Duration::days(6));
    assert_eq!(
        app.state.keys.purge_due().await.expect("purge"),
        0,
        "not due after 6 days"
    );
    assert_eq!(get_key(&app, "k").await["state"], "pending_deletion");

    app.clock.advance(time::Duration::days(2));
    assert_eq!(app.state.keys.purge_due().await.expect("purge"), 1);
    let r = app.get("/v1/keys/k").await;
    assert_error(&r, StatusCode::NOT_FOUND, "KEY_NOT_FOUND", "get a destroyed key");
    let r = app.post("/v1/keys/k/restore", json!({})).await;
    assert_error(&r, StatusCode::NOT_FOUND, "KEY_NOT_FOUND", "restore a destroyed key");
    let r = sign_with(&app, "k", json!({"message": b64(b"m")})).await;
    assert_error(&r, StatusCode::NOT_FOUND, "KEY_NOT_FOUND", "sign with a destroyed key");
    let names: Vec<Value> = all_keys(&app).await["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    assert_eq!(names, [json!("kept")]);

    let created = app.create_key("k").await;
    assert_eq!(
        (created["latest_version"].as_u64(), created["state"].as_str()),
        (Some(1), Some("enabled"))
    );
    assert_eq!(created["versions"][0]["sign_count"], 0);
    let r = app.verify("k", b"m", &old_signature).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"valid": false, "code": "SIGNATURE_MISMATCH"})),
        "new material"
    );
}

#[tokio::test]
async fn a_restored_key_is_not_destroyed_when_its_old_deadline_passes() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, _) = app.sign("k", b"m").await;
    app.delete("/v1/keys/k?pending_days=1").await;
    app.post("/v1/keys/k/restore", json!({})).await;

    app.clock.advance(time::Duration::days(2));
    assert_eq!(app.state.keys.purge_due().await.expect("purge"), 0);
    assert_eq!(get_key(&app, "k").await["state"], "enabled");
    assert_eq!(app.sign("k", b"m").await, (signature, 1));
}

// ----- concurrency -------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_rotations_each_add_exactly_one_version() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let rotations = (0..5).map(|_| app.post("/v1/keys/k/rotate", json!({})));
    for r in futures_util::future::join_all(rotations).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let key = get_key(&app, "k").await;
    assert_eq!(key["latest_version"], 6);
    let versions: Vec<u64> = key["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
}

/// More concurrent writers than `KeyService`'s optimistic-locking retry budget
/// (`UPDATE_ATTEMPTS`, 8): every one must still succeed; a healthy store is never "unavailable".
#[tokio::test]
async fn many_concurrent_rotations_all_succeed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let rotations = (0..16).map(|_| app.post("/v1/keys/k/rotate", json!({})));
    let statuses: Vec<(StatusCode, String)> = futures_util::future::join_all(rotations)
        .await
        .into_iter()
        .map(|r| (r.status, r.code().to_owned()))
        .collect();
    assert_eq!(statuses, vec![(StatusCode::OK, String::new()); 16]);
    assert_eq!(get_key(&app, "k").await["latest_version"], 17);
}

#[tokio::test]
async fn many_concurrent_patches_all_succeed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let patches = (0..16).map(|i| {
        let state = if i % 2 == 0 { "disabled" } else { "enabled" };
        app.patch("/v1/keys/k", json!({"state": state}))
    });
    let statuses: Vec<(StatusCode, String)> = futures_util::future::join_all(patches)
        .await
        .into_iter()
        .map(|r| (r.status, r.code().to_owned()))
        .collect();
    assert_eq!(statuses, vec![(StatusCode::OK, String::new()); 16]);
}

#[tokio::test]
async fn concurrent_creates_of_one_name_make_one_key_and_concurrent_signs_are_all_counted() {
    let app = spawn_app().await;
    let creates = (0..5).map(|_| app.post("/v1/keys", json!({"name": "k", "algorithm": "hmac-sha256"})));
    let mut statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409]);

    let signs = (0..20).map(|_| sign_with(&app, "k", json!({"message": b64(b"m")})));
    for r in futures_util::future::join_all(signs).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(get_key(&app, "k").await["versions"][0]["sign_count"], 20);
}

// ----- import ------------------------------------------------------------------------------

#[tokio::test]
async fn imported_material_signs_exactly_like_a_local_hmac() {
    let app = spawn_app().await;
    // RFC 4231 test case 2: a short, known key (imports may be shorter than generated keys).
    let (key, data) = (b"Jefe".as_slice(), b"what do ya want for nothing?".as_slice());
    let r = app
        .post("/v1/keys/rfc4231/import", json!({"key_material": b64(key)}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (r.body["algorithm"].as_str(), r.body["latest_version"].as_u64()),
        (Some("hmac-sha256"), Some(1))
    );
    let (signature, _) = app.sign("rfc4231", data).await;
    assert_eq!(
        signature,
        unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    assert_eq!(signature, local_hmac::<Hmac<Sha256>>(key, data));

    let material: Vec<u8> = (0u8..=99).collect();
    for (name, algorithm) in [("i384", "hmac-sha384"), ("i512", "hmac-sha512")] {
        let body = app.import_key(name, algorithm, &material).await;
        assert_eq!(body["algorithm"], algorithm);
    }
    assert_eq!(
        app.sign("i384", b"payload").await.0,
        local_hmac::<Hmac<Sha384>>(&material, b"payload")
    );
    assert_eq!(
        app.sign("i512", b"payload").await.0,
        local_hmac::<Hmac<Sha512>>(&material, b"payload")
    );
    let expected = local_hmac::<Hmac<Sha512>>(&material, b"payload");
    assert_eq!(
        app.verify("i512", b"payload", &expected).await.body,
        json!({"valid": true, "key_version": 1})
    );
}

#[tokio::test]
async fn importing_into_an_existing_key_adds_a_version_with_that_material() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (v1_signature, _) = app.sign("k", b"m").await;
    let material = [0x5a_u8; 40];

    let body = app.import_key("k", "hmac-sha256", &material).await;
    assert_eq!(
        (
            body["latest_version"].as_u64(),
            body["versions"].as_array().map(Vec::len)
        ),
        (Some(2), Some(2))
    );
    let (signature, version) = app.sign("k", b"m").await;
    assert_eq!((signature, version), (local_hmac::<Hmac<Sha256>>(&material, b"m"), 2));
    assert_eq!(
        app.verify("k", b"m", &v1_signature).await.body,
        json!({"valid": true, "key_version": 1})
    );

    let r = app
        .post("/v1/keys/k/import", json!({"key_material": b64(&[7; 32])}))
        .await;
    assert_eq!(
        (r.status, r.body["latest_version"].as_u64()),
        (StatusCode::CREATED, Some(3)),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn import_refuses_create_options_on_an_existing_key_another_algorithm_and_bad_material() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = all_keys(&app).await;
    let good = b64(&[1; 32]);
    let cases = [
        (
            "k",
            json!({"key_material": good, "exportable": true}),
            "create option on an existing key",
        ),
        (
            "k",
            json!({"key_material": good, "tags": {"team": "x"}}),
            "tags on an existing key",
        ),
        (
            "k",
            json!({"key_material": good, "algorithm": "hmac-sha512"}),
            "algorithm mismatch",
        ),
        ("k", json!({"key_material": ""}), "empty material"),
        ("k", json!({"key_material": b64(&[1; 513])}), "513 bytes"),
        ("k", json!({"key_material": "not base64!"}), "bad base64"),
        ("k", json!({"key_material": "AQI"}), "unpadded base64"),
        ("new", json!({"key_material": ""}), "empty material for a new key"),
        (
            "new",
            json!({"key_material": b64(&[1; 513])}),
            "513 bytes for a new key",
        ),
        (
            "new",
            json!({"key_material": good, "algorithm": "hmac-md5"}),
            "unknown algorithm",
        ),
        (
            "new",
            json!({"key_material": good, "key_size": 32}),
            "key_size is not an import option",
        ),
    ];
    for (name, body, what) in cases {
        let r = app.post(&format!("/v1/keys/{name}/import"), body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    assert_eq!(all_keys(&app).await, before);

    let body = app.import_key("k", "hmac-sha256", &[2; 512]).await;
    assert_eq!(body["latest_version"], 2, "512 bytes is the largest material");
}

// ----- batches -----------------------------------------------------------------------------

#[tokio::test]
async fn batch_sign_reports_failing_items_beside_the_ones_that_succeed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (sig_a, _) = app.sign("k", b"a").await;
    let (sig_d, _) = app.sign("k", b"d").await;

    let r = sign_with(
        &app,
        "k",
        json!({"batch": [
            {"message": b64(b"a"), "reference": "r1"},
            {"message": "%%% not base64", "reference": "r2"},
            {"message": b64(b"c"), "key_version": 2, "reference": "r3"},
            {"message": b64(b"d")},
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["batch"].as_array().expect("batch");
    assert_eq!(items.len(), 4);
    assert_eq!(
        items[0],
        json!({"signature": b64(&sig_a), "key_version": 1, "reference": "r1"})
    );
    assert_item_error(&items[1], "INVALID_ARGUMENT", Some("r2"));
    assert_item_error(&items[2], "INVALID_ARGUMENT", Some("r3"));
    assert_eq!(items[3], json!({"signature": b64(&sig_d), "key_version": 1}));
}

#[tokio::test]
async fn batch_verify_reports_failing_items_beside_the_ones_that_succeed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (sig_a, _) = app.sign("k", b"a").await;

    let r = verify_with(
        &app,
        "k",
        json!({"batch": [
            {"message": b64(b"a"), "signature": b64(&sig_a), "reference": "v1"},
            {"message": b64(b"a"), "signature": "***", "reference": "v2"},
            {"message": b64(b"a"), "signature": b64(&sig_a), "key_version": 2, "reference": "v3"},
            {"message": b64(b"b"), "signature": b64(&sig_a), "reference": "v4"},
            {"message": b64(b"a"), "signature": b64(&sig_a), "key_version": 1},
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["batch"].as_array().expect("batch");
    assert_eq!(items.len(), 5);
    assert_eq!(items[0], json!({"valid": true, "key_version": 1, "reference": "v1"}));
    assert_item_error(&items[1], "INVALID_ARGUMENT", Some("v2"));
    assert_item_error(&items[2], "INVALID_ARGUMENT", Some("v3"));
    assert_eq!(
        items[3],
        json!({"valid": false, "code": "SIGNATURE_MISMATCH", "reference": "v4"})
    );
    assert_eq!(items[4], json!({"valid": true, "key_version": 1}));
}

/// `{"error":{"code","message"},"reference"?}` and nothing else.
#[track_caller]
fn assert_item_error(item: &Value, code: &str, reference: Option<&str>) {
    let message = item["error"]["message"].as_str().unwrap_or("").to_owned();
    assert!(!message.is_empty(), "{item}");
    let mut expected = json!({"error": {"code": code, "message": message}});
    if let Some(r) = reference {
        expected["reference"] = json!(r);
    }
    assert_eq!(item, &expected);
}

#[tokio::test]
async fn an_empty_batch_or_a_batch_beside_a_message_is_refused() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (sig, _) = app.sign("k", b"a").await;
    let before = all_keys(&app).await;
    let m = b64(b"a");
    let s = b64(&sig);
    let cases = [
        ("sign", json!({"batch": []}), "empty sign batch"),
        (
            "sign",
            json!({"message": m, "batch": [{"message": m}]}),
            "sign message and batch",
        ),
        ("sign", json!({}), "sign neither message nor batch"),
        (
            "sign",
            json!({"key_version": 1, "batch": [{"message": m}]}),
            "sign top-level key_version with batch",
        ),
        (
            "sign",
            json!({"batch": [{"message": m, "reference": "r".repeat(257)}]}),
            "sign reference too long",
        ),
        ("verify", json!({"batch": []}), "empty verify batch"),
        (
            "verify",
            json!({"message": m, "signature": s, "batch": [{"message": m, "signature": s}]}),
            "verify both",
        ),
        ("verify", json!({"message": m}), "verify without signature"),
        (
            "verify",
            json!({"batch": [{"message": m}]}),
            "verify item without signature",
        ),
    ];
    for (action, body, what) in cases {
        let r = app.post(&format!("/v1/keys/k/{action}"), body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    assert_eq!(all_keys(&app).await, before, "nothing was signed or verified");
}

#[tokio::test]
async fn a_batch_over_the_item_limit_is_refused_whole() {
    let mut home = AppHome::new();
    home.limits.max_batch_items = 3;
    let app = spawn_app_in(home).await;
    app.create_key("k").await;
    let (sig, _) = app.sign("k", b"a").await;
    let sign_item = json!({"message": b64(b"a")});
    let verify_item = json!({"message": b64(b"a"), "signature": b64(&sig)});

    let r = sign_with(&app, "k", json!({"batch": vec![sign_item.clone(); 3]})).await;
    assert_eq!(r.body["batch"].as_array().map(Vec::len), Some(3), "{}", r.body);
    let r = verify_with(&app, "k", json!({"batch": vec![verify_item.clone(); 3]})).await;
    assert_eq!(r.body["batch"].as_array().map(Vec::len), Some(3), "{}", r.body);

    let before = get_key(&app, "k").await;
    assert_eq!(
        (
            before["versions"][0]["sign_count"].as_u64(),
            before["versions"][0]["verify_count"].as_u64()
        ),
        (Some(4), Some(3))
    );
    let r = sign_with(&app, "k", json!({"batch": vec![sign_item; 4]})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "4 sign items over a limit of 3",
    );
    let r = verify_with(&app, "k", json!({"batch": vec![verify_item; 4]})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "4 verify items over a limit of 3",
    );
    assert_eq!(get_key(&app, "k").await, before, "no item of a refused batch ran");
}

// ----- usage counters ----------------------------------------------------------------------

#[tokio::test]
async fn usage_counters_count_signs_and_successful_verifies_and_survive_a_restart() {
    let app = spawn_app().await;
    app.create_key("k").await;
    app.clock.advance(time::Duration::hours(1));
    let mut signature = Vec::new();
    for _ in 0..3 {
        signature = app.sign("k", b"m").await.0;
    }
    for _ in 0..2 {
        assert_eq!(app.verify("k", b"m", &signature).await.body["valid"], true);
    }
    assert_eq!(app.verify("k", b"other", &signature).await.body["valid"], false);

    let shown = get_key(&app, "k").await;
    let expected = json!([{"version": 1, "created_at": START, "sign_count": 3, "verify_count": 2, "last_used_at": "2026-09-21T15:13:20Z"}]);
    assert_eq!(shown["versions"], expected);

    app.flush_usage().await;
    assert_eq!(get_key(&app, "k").await, shown, "flushing changes nothing visible");
    let app = app.restart().await;
    assert_eq!(get_key(&app, "k").await, shown, "the counts persist across a restart");
}

// ----- errors and limits -------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_unknown_fields_and_wrong_types_are_refused_without_changing_anything() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (sig, _) = app.sign("k", b"m").await;
    let before = all_keys(&app).await;
    let m = b64(b"m");
    let s = b64(&sig);
    let raw: &[(&str, &[u8])] = &[
        ("/v1/keys", b"{not json"),
        ("/v1/keys", b""),
        ("/v1/keys", b"[]"),
        ("/v1/keys", br#"{"name":"x","algorithm":"hmac-sha256"} trailing"#),
        ("/v1/keys/k/sign", b"{\"message\":"),
        ("/v1/keys/k/verify", b"null"),
        ("/v1/keys/k/rotate", b"{"),
        ("/v1/keys/k/restore", b"{"),
        ("/v1/keys/k/import", b"{\"key_material\""),
    ];
    for (path, body) in raw {
        let r = app.post_raw(path, body).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("{path} {}", String::from_utf8_lossy(body)),
        );
    }
    let typed = [
        (
            "/v1/keys",
            json!({"name": "x", "algorithm": "hmac-sha256", "colour": "red"}),
        ),
        ("/v1/keys", json!({"name": 5, "algorithm": "hmac-sha256"})),
        (
            "/v1/keys",
            json!({"name": "x", "algorithm": "hmac-sha256", "key_size": "32"}),
        ),
        (
            "/v1/keys",
            json!({"name": "x", "algorithm": "hmac-sha256", "exportable": "yes"}),
        ),
        (
            "/v1/keys",
            json!({"name": "x", "algorithm": "hmac-sha256", "tags": ["a"]}),
        ),
        ("/v1/keys", json!({"name": "x", "algorithm": "hmac-md5"})),
        ("/v1/keys", json!({"name": "x"})),
        (
            "/v1/keys",
            json!({"name": "x", "algorithm": "hmac-sha256", "boundary": "cloud"}),
        ),
        (
            "/v1/keys",
            json!({"name": "x", "algorithm": "hmac-sha256", "auto_rotate_period": "soon"}),
        ),
        ("/v1/keys/k/sign", json!({"message": 5})),
        ("/v1/keys/k/sign", json!({"message": m, "extra": 1})),
        ("/v1/keys/k/sign", json!({"message": m, "key_version": "1"})),
        ("/v1/keys/k/sign", json!({"message": m, "key_version": -1})),
        ("/v1/keys/k/sign", json!({"batch": [{"message": m, "extra": 1}]})),
        ("/v1/keys/k/sign", json!({"batch": {"message": m}})),
        ("/v1/keys/k/verify", json!({"message": m, "signature": true})),
        ("/v1/keys/k/verify", json!({"message": m, "signature": s, "hint": "x"})),
        ("/v1/keys/k/rotate", json!({"size": 64})),
        ("/v1/keys/k/restore", json!({"now": true})),
        ("/v1/keys/k/import", json!({"key_material": 5})),
        ("/v1/keys/k/import", json!({"key_material": s, "version": 9})),
    ];
    for (path, body) in typed {
        let r = app.post(path, body.clone()).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("{path} {body}"),
        );
    }
    for body in [
        json!({"state": 1}),
        json!({"min_verify_version": "1"}),
        json!({"exportable": "no"}),
        json!([]),
    ] {
        let r = app.patch("/v1/keys/k", body.clone()).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("PATCH {body}"),
        );
    }
    assert_eq!(all_keys(&app).await, before);
}

#[tokio::test]
async fn bad_key_names_are_refused_in_bodies_and_paths() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = all_keys(&app).await;
    let long = "a".repeat(129);
    for name in ["", "a b", long.as_str(), "ключ", "a/b", "x;drop"] {
        let r = app
            .post("/v1/keys", json!({"name": name, "algorithm": "hmac-sha256"}))
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("create {name:?}"),
        );
    }
    for path in [
        "/v1/keys/a%20b".to_owned(),
        format!("/v1/keys/{long}"),
        "/v1/keys/ключ".to_owned(),
    ] {
        let r = app.get(&path).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &format!("GET {path}"));
    }
    let r = app
        .post(
            &format!("/v1/keys/{long}/import"),
            json!({"key_material": b64(&[1; 32])}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "import under a 129-character name",
    );
    assert_eq!(all_keys(&app).await, before);

    let longest = "a".repeat(128);
    assert_eq!(
        app.create_key(&longest).await["name"],
        longest.as_str(),
        "128 characters is allowed"
    );
}

#[tokio::test]
async fn an_unknown_key_is_key_not_found_on_every_key_route() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = all_keys(&app).await;
    let m = b64(b"m");
    let cases = [
        (Method::GET, "/v1/keys/missing", None),
        (Method::PATCH, "/v1/keys/missing", Some(json!({"state": "disabled"}))),
        (Method::DELETE, "/v1/keys/missing", None),
        (Method::POST, "/v1/keys/missing/rotate", Some(json!({}))),
        (Method::POST, "/v1/keys/missing/restore", Some(json!({}))),
        (Method::POST, "/v1/keys/missing/sign", Some(json!({"message": m}))),
        (
            Method::POST,
            "/v1/keys/missing/verify",
            Some(json!({"message": m, "signature": b64(&[0; 32])})),
        ),
    ];
    for (method, path, body) in cases {
        let what = format!("{method} {path}");
        let r = app
            .send(method, path, Some(ROOT_TOKEN), body.map(|b| b.to_string().into_bytes()))
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "KEY_NOT_FOUND", &what);
    }
    let r = sign_with(&app, "missing", json!({"batch": [{"message": m, "reference": "x"}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_item_error(&r.body["batch"][0], "KEY_NOT_FOUND", Some("x"));
    assert_eq!(all_keys(&app).await, before);
}

#[tokio::test]
async fn unknown_routes_are_not_found_and_wrong_methods_are_not_allowed() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let before = all_keys(&app).await;
    for (method, path) in [
        (Method::GET, "/v1/nothing-here"),
        (Method::GET, "/v2/keys"),
        (Method::POST, "/v1/keys/k/bogus"),
        (Method::GET, "/v1/keys/k/sign/extra"),
        (Method::GET, "/"),
    ] {
        let r = app.send(method.clone(), path, Some(ROOT_TOKEN), None).await;
        assert_error(&r, StatusCode::NOT_FOUND, "NOT_FOUND", &format!("{method} {path}"));
    }
    for (method, path) in [
        (Method::PUT, "/v1/keys/k"),
        (Method::POST, "/v1/keys/k"),
        (Method::DELETE, "/v1/keys"),
        (Method::PUT, "/v1/keys"),
        (Method::GET, "/v1/keys/k/sign"),
        (Method::DELETE, "/v1/keys/k/rotate"),
        (Method::POST, "/v1/sys/ping"),
        (Method::POST, "/v1/sys/health"),
    ] {
        let r = app
            .send(method.clone(), path, Some(ROOT_TOKEN), Some(b"{}".to_vec()))
            .await;
        assert_error(
            &r,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("{method} {path}"),
        );
    }
    assert_eq!(all_keys(&app).await, before);
}

#[tokio::test]
async fn every_key_route_requires_a_valid_bearer_token() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (sig, _) = app.sign("k", b"m").await;
    let before = all_keys(&app).await;
    let m = b64(b"m");
    let routes = [
        (Method::GET, "/v1/keys", None),
        (
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "new", "algorithm": "hmac-sha256"})),
        ),
        (Method::GET, "/v1/keys/k", None),
        (Method::PATCH, "/v1/keys/k", Some(json!({"state": "disabled"}))),
        (Method::DELETE, "/v1/keys/k", None),
        (Method::POST, "/v1/keys/k/rotate", Some(json!({}))),
        (Method::POST, "/v1/keys/k/restore", Some(json!({}))),
        (
            Method::POST,
            "/v1/keys/new/import",
            Some(json!({"key_material": b64(&[1; 32])})),
        ),
        (
            Method::POST,
            "/v1/keys/k/import",
            Some(json!({"key_material": b64(&[1; 32])})),
        ),
        (Method::POST, "/v1/keys/k/sign", Some(json!({"message": m}))),
        (
            Method::POST,
            "/v1/keys/k/verify",
            Some(json!({"message": m, "signature": b64(&sig)})),
        ),
    ];
    for (method, path, body) in &routes {
        let bytes = || body.as_ref().map(|b| b.to_string().into_bytes());
        for token in [None, Some("svt_not-the-root-token-0123456789"), Some("")] {
            let r = app.send(method.clone(), path, token, bytes()).await;
            assert_error(
                &r,
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                &format!("{method} {path} token {token:?}"),
            );
        }
        for header in [
            ROOT_TOKEN.to_owned(),
            format!("Basic {ROOT_TOKEN}"),
            format!("Bearer  {ROOT_TOKEN}x"),
        ] {
            let r = send_authorization(&app, method.clone(), path, &header, body.clone().unwrap_or(Value::Null)).await;
            assert_error(
                &r,
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                &format!("{method} {path} header {header:?}"),
            );
        }
    }
    assert_eq!(all_keys(&app).await, before, "nothing changed, nothing was counted");
}

#[tokio::test]
async fn an_oversize_create_body_is_refused_with_or_without_content_length() {
    let app = spawn_app().await;
    let before = all_keys(&app).await;
    let padded = |name: &str, total: usize| {
        let json = format!(r#"{{"name":"{name}","algorithm":"hmac-sha256"}}"#);
        let mut body = vec![b' '; total - json.len()];
        body.extend_from_slice(json.as_bytes());
        body
    };
    const LIMIT: usize = 64 * 1024;

    let r = app.post_raw("/v1/keys", &padded("big", LIMIT + 1)).await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "64 KiB + 1 with Content-Length",
    );
    let r = post_chunked(&app, "/v1/keys", padded("big", LIMIT + 1)).await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "64 KiB + 1 chunked",
    );
    let r = post_chunked(&app, "/v1/keys", padded("big", 4 * LIMIT)).await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "256 KiB chunked",
    );
    assert_eq!(all_keys(&app).await, before);

    let r = app.post_raw("/v1/keys", &padded("at-limit", LIMIT)).await;
    assert_eq!(r.status, StatusCode::CREATED, "exactly 64 KiB is allowed: {}", r.body);
    let r = post_chunked(&app, "/v1/keys", padded("chunked-at-limit", LIMIT)).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "exactly 64 KiB chunked is allowed: {}",
        r.body
    );
}

#[tokio::test]
async fn a_message_over_one_mebibyte_is_refused_with_413() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let largest = vec![0xab_u8; MIB];
    let (signature, _) = app.sign("k", &largest).await;
    assert_eq!(
        app.verify("k", &largest, &signature).await.body,
        json!({"valid": true, "key_version": 1})
    );
    let before = get_key(&app, "k").await;

    let over = vec![0xab_u8; MIB + 1];
    let r = sign_with(&app, "k", json!({"message": b64(&over)})).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "sign 1 MiB + 1");
    let r = app.verify("k", &over, &signature).await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "verify 1 MiB + 1",
    );
    let body_over_limit = vec![b' '; 8 * MIB + 1];
    let r = app.post_raw("/v1/keys/k/sign", &body_over_limit).await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "a sign body over 8 MiB",
    );
    let far_over = vec![0_u8; 4 * MIB];
    let r = sign_with(&app, "k", json!({"message": b64(&far_over)})).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "sign 4 MiB");
    assert_eq!(get_key(&app, "k").await, before);
}

#[tokio::test]
async fn creating_a_key_that_exists_is_already_exists_and_keeps_the_original() {
    let app = spawn_app().await;
    app.create_key("k").await;
    let (signature, _) = app.sign("k", b"m").await;
    let before = all_keys(&app).await;
    for body in [
        json!({"name": "k", "algorithm": "hmac-sha256"}),
        json!({"name": "k", "algorithm": "hmac-sha512", "exportable": true}),
    ] {
        let r = app.post("/v1/keys", body.clone()).await;
        assert_error(&r, StatusCode::CONFLICT, "ALREADY_EXISTS", &body.to_string());
    }
    assert_eq!(all_keys(&app).await, before);
    assert_eq!(
        app.sign("k", b"m").await,
        (signature, 1),
        "the original material is kept"
    );
}

// ----- system ------------------------------------------------------------------------------

#[tokio::test]
async fn ping_and_health_answer_without_a_token() {
    let app = spawn_app().await;
    let r = app.send(Method::GET, "/v1/sys/ping", None, None).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({})));
    assert!(
        r.request_id.is_some_and(|id| !id.is_empty()),
        "ping carries x-request-id"
    );

    let r = app.send(Method::GET, "/v1/sys/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (
            r.body["status"].as_str(),
            r.body["kek"].as_str(),
            r.body["store"].as_str()
        ),
        (Some("ok"), Some("ok"), Some("ok")),
        "{}",
        r.body
    );
    assert_eq!(r.body["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        r.request_id.is_some_and(|id| !id.is_empty()),
        "health carries x-request-id"
    );
}
