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
                      response_schema_conformance,response_headers_conformance,unsupported_method";

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
        // The compatible APIs answer in other products' shapes and are held to those
        // contracts by those products' clients (tests/api/compat), not fuzzed against this
        // document's envelope.
        .args(["--exclude-tag", "compat"])
        // One worker: CPython 3.11's parser is not safe to enter from two threads at once
        // (hypothesis describes filters by parsing their source; with two workers that
        // failed now and then with "AST constructor recursion depth mismatch").
        .args(["--max-examples", "20", "--seed", "1", "--workers", "1"])
        .args(["--request-timeout", "30", "--no-color"])
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    // The report's end holds the failures and the summary; tracebacks before it can be long.
    let tail: String = report
        .chars()
        .rev()
        .take(12_000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        out.status.success() || only_the_parser_bug(&report),
        "schemathesis as {who} found failures (the report's end):\n{tail}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Tested: "),
        "schemathesis as {who} tested nothing:\n{report}"
    );
}

/// Whether a run that exited non-zero failed no check and its only errors are schemathesis's
/// own "AST constructor recursion depth mismatch" (CPython 3.11's parser, entered from two
/// threads by hypothesis; not a finding about the API, and rare with one worker).
fn only_the_parser_bug(report: &str) -> bool {
    if report.contains("= FAILURES =") {
        return false;
    }
    let Some(errors) = report.split("= ERRORS =").nth(1) else {
        return false;
    };
    let errors = errors.split("\n===").next().unwrap_or_default();
    let blocks = errors.lines().filter(|l| l.starts_with('_')).count();
    blocks > 0 && errors.matches("AST constructor recursion depth mismatch").count() >= blocks
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
