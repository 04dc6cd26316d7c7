//! Signing keys through the HTTP API, black-box: lifecycle (create, get, list, patch,
//! rotate, delete, restore, purge), import, sign and verify (single and batch), usage
//! counters, and the error contract of API.md ("Signing keys", "Conventions").
//!
//! Every refused request is checked for its status, its stable code, an `x-request-id`
//! header equal to `error.request_id`, and for leaving the keys exactly as they were.
//!
//! This module holds only the helpers its sub-modules share; child modules see its private
//! items, so nothing here is exported past `keys`.

mod concurrency;
mod custody;
mod deletion;
mod encryption;
mod errors;
mod import;
mod lifecycle;
mod limits;
mod resident;
mod sign_verify;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp};

/// The manual clock's start (helpers' `spawn_app_in`), as the API writes it.
const START: &str = "2026-09-21T14:13:20Z";

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
