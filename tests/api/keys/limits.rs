//! Size limits: request bodies with or without `Content-Length`, and messages to sign or verify.

use std::io::{Read, Write};

use reqwest::StatusCode;
use serde_json::json;

use super::{all_keys, assert_error, get_key, sign_with};
use crate::helpers::{ROOT_TOKEN, Reply, TestApp, b64, spawn_app};

const MIB: usize = 1024 * 1024;

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
    Reply::from_parts(
        StatusCode::from_u16(code).expect("status"),
        header("x-request-id"),
        &body[..length],
    )
}
