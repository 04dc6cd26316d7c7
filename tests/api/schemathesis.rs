//! API fuzzing with schemathesis (PyPI), the property-based tester of OpenAPI services:
//! it reads `GET /v1/openapi.json` of a running vault, generates requests for every
//! operation (documented examples, boundary values, random valid and invalid bodies, stateful
//! sequences that follow the links it infers) and checks every answer: no 5xx, the status,
//! content type, headers and body each as the document declares them. It runs once as root
//! and once as a service (whose requests are mostly refused: the refusals must match the
//! document too).
//!
//! `scripts/test.sh` installs the pinned schemathesis into `target/schemathesis` (a Python
//! venv); `SIGVAULT_SCHEMATHESIS` names another executable. The seed is fixed so a CI run is
//! repeatable; change it (or raise `--max-examples`) to explore further.

use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ROOT_TOKEN, TestApp, spawn_app};

/// The checks the suite holds the API to.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

fn schemathesis() -> PathBuf {
    std::env::var_os("SIGVAULT_SCHEMATHESIS").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/schemathesis/bin/schemathesis"
            ))
        },
        PathBuf::from,
    )
}

/// Runs schemathesis against `app` with `token`; panics with its report unless every check
/// passed.
fn run_as(app: &TestApp, token: &str, who: &str) {
    let exe = schemathesis();
    assert!(
        exe.exists(),
        "{} is missing: run scripts/test.sh, which installs schemathesis, or set SIGVAULT_SCHEMATHESIS",
        exe.display()
    );
    let out = Command::new(&exe)
        .args(["run", &app.url("/v1/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", "20", "--seed", "1", "--workers", "2"])
        .args(["--request-timeout", "30", "--no-color"])
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis as {who} found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Tested: "),
        "schemathesis as {who} tested nothing:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_schema_violation_as_root_or_as_a_service() {
    let app = spawn_app().await;
    // Something to find: a key the service owns, an API key, a credential.
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "payments.webhook", "algorithm": "hmac-sha256", "owner": "payments"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.post("/v1/apikeys", json!({"principal": "payments"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.post("/v1/credentials", json!({"principal": "payments"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            "/v1/auth/tokens",
            json!({"principal": "payments", "groups": ["service"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let service = r.body["token"].as_str().expect("a token").to_owned();

    let app = std::sync::Arc::new(app);
    let runner = std::sync::Arc::clone(&app);
    tokio::task::spawn_blocking(move || {
        run_as(&runner, ROOT_TOKEN, "root");
        run_as(&runner, &service, "a service");
    })
    .await
    .expect("the runs end");
}
