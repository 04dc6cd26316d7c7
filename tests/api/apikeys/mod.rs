//! Bearer API keys through the HTTP API: issuing, verifying (every code, in the documented
//! order), credits under concurrency, rate limits, rerolls, revocation, audit, the caller
//! fingerprints a key is used from, and what a copy of the files holds of a key (nothing).
//!
//! Made-up keys are built here with a CRC-32 of the tests' own, from API.md's format, so a
//! checksum test does not lean on the code it tests.

mod audit;
mod dump;
mod fingerprints;
mod lifecycle;
mod requests;
mod verify;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sigvault::clock::Clock;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{Reply, TestApp};

/// A key as `POST /v1/apikeys` (or a reroll) answered it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: String,
    pub key: String,
    /// The whole answer.
    pub body: Value,
}

/// Creates a key as root with `body`; panics unless 201.
pub async fn create(app: &TestApp, body: Value) -> Issued {
    let r = app.post("/v1/apikeys", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "expected an API key: {}", r.body);
    issued(r)
}

/// Creates a key for `principal` with nothing else set.
pub async fn create_for(app: &TestApp, principal: &str) -> Issued {
    create(app, json!({ "principal": principal })).await
}

fn issued(r: Reply) -> Issued {
    Issued {
        id: r.body["id"].as_str().expect("an id").to_owned(),
        key: r.body["key"].as_str().expect("a key").to_owned(),
        body: r.body,
    }
}

/// Rerolls `id` with `grace_seconds`; panics unless 200.
pub async fn reroll(app: &TestApp, id: &str, grace_seconds: u64) -> Issued {
    let r = app
        .post(
            &format!("/v1/apikeys/{id}/reroll"),
            json!({ "grace_seconds": grace_seconds }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "expected a reroll: {}", r.body);
    issued(r)
}

/// Verifies `key` asking for `permissions` as root; panics unless the verification ran.
pub async fn verify_with(app: &TestApp, key: &str, permissions: &[&str]) -> Value {
    let r = verify_reply(app, key, permissions).await;
    assert_eq!(r.status, StatusCode::OK, "expected the verification to run: {}", r.body);
    r.body
}

/// As [`verify_with`], the whole reply (for its request id).
pub async fn verify_reply(app: &TestApp, key: &str, permissions: &[&str]) -> Reply {
    app.post("/v1/apikeys/verify", json!({ "key": key, "permissions": permissions }))
        .await
}

/// Verifies `key` asking for no permission.
pub async fn verify(app: &TestApp, key: &str) -> Value {
    verify_with(app, key, &[]).await
}

/// The code of a verification.
pub fn code(verified: &Value) -> &str {
    verified["code"]
        .as_str()
        .unwrap_or_else(|| panic!("a code in {verified}"))
}

/// `GET /v1/apikeys/{id}` as root; panics unless 200.
pub async fn get(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/v1/apikeys/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "expected to read {id}: {}", r.body);
    r.body
}

/// The app's clock `seconds` from now, as RFC 3339.
pub fn in_seconds(app: &TestApp, seconds: i64) -> String {
    (app.clock.now() + time::Duration::seconds(seconds))
        .format(&Rfc3339)
        .expect("format")
}

pub fn parse_time(text: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(text.as_str().unwrap_or_else(|| panic!("a time, not {text}")), &Rfc3339).expect("RFC 3339")
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// CRC-32 (IEEE, reflected), the tests' own.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc ^ 0xFFFF_FFFF
}

/// `<prefix>_<random>` followed by its six-character base62 CRC-32 checksum: a key sigvault
/// could have made (API.md "Bearer API keys").
pub fn with_checksum(prefix: &str, random: &str) -> String {
    let body = format!("{prefix}_{random}");
    let mut value = crc32(body.as_bytes());
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(value % 62) as usize];
        value /= 62;
    }
    format!("{body}{}", String::from_utf8(digits.to_vec()).expect("ascii"))
}

#[test]
fn the_tests_crc32_has_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}
