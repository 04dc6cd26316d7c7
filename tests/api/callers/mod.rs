//! Caller tokens, whoami, the failed-auth limit, policy reload and `policy check`, black-box
//! (API.md "Callers"): a token is shown once and stored nowhere in any encoding, it
//! authenticates as its principal and groups until it expires or is revoked, requests
//! without a valid token are refused and audited as nobody (`-`), a token that fails too
//! often from an address is refused there while the right one still works, an address that
//! fails with too many distinct tokens is refused even with the right one, and a policy set
//! that does not compile is named by file and line and never replaces the set in force.
//!
//! One file per concept; this one holds only what they share.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, temp_dir};

mod dump;
mod failure_limit;
mod policies;
mod tokens;
mod unauthenticated;

/// Where the shipped policies live in the checkout.
const SHIPPED_POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");

/// `POST /v1/auth/tokens` as root with `body`.
async fn create_token_reply(app: &TestApp, body: Value) -> Reply {
    app.post("/v1/auth/tokens", body).await
}

/// Creates a token for `principal` in `groups`; returns (id, token). Panics unless 201.
async fn create_token(app: &TestApp, principal: &str, groups: &[&str], ttl: Option<&str>) -> (String, String) {
    let mut body = json!({"principal": principal, "groups": groups});
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    let r = create_token_reply(app, body).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "creating a token answers 201: {}",
        r.body
    );
    let id = r.body["id"].as_str().expect("the answer has an `id`").to_owned();
    let token = r.body["token"].as_str().expect("the answer has a `token`").to_owned();
    (id, token)
}

/// `GET /v1/auth/whoami` with `token` (no `Authorization` header when `None`).
async fn whoami(app: &TestApp, token: Option<&str>) -> Reply {
    app.send(Method::GET, "/v1/auth/whoami", token, None).await
}

/// Asserts `r` is 401 `UNAUTHENTICATED`; `what` says which request it answers.
fn assert_unauthenticated(r: &Reply, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        "{what}: expected 401 UNAUTHENTICATED, got {}",
        r.body
    );
}

/// A copy of the shipped policy directory (schema included) under a fresh temp dir.
fn copy_of_shipped_policies(tag: &str) -> PathBuf {
    let dir = temp_dir(tag).join("policies");
    std::fs::create_dir(&dir).expect("create the policy dir");
    for entry in std::fs::read_dir(SHIPPED_POLICIES).expect("read the shipped policies") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().expect("a file name");
        std::fs::copy(&path, dir.join(name)).expect("copy a shipped policy file");
    }
    dir
}

/// How many policies the `*.cedar` files of `dir` hold: one per line that starts a
/// `permit` or `forbid` (how every shipped and test policy is written).
fn policy_count(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("read the policy dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|x| x == "cedar") {
            let text = std::fs::read_to_string(&path).expect("read a policy file");
            count += text
                .lines()
                .filter(|l| l.trim_start().starts_with("permit") || l.trim_start().starts_with("forbid"))
                .count();
        }
    }
    count
}

/// `admin.cedar` with the administrators' permit kept and a `forbid` that takes ListKeys
/// from everyone, root included (forbid wins over every permit).
const ADMIN_WITHOUT_LIST_KEYS: &str = "\
// Test set: administrators may do everything but list keys, which nobody may.
@id(\"admin-all\")
permit (principal in Sigvault::Group::\"admin\", action, resource);

@id(\"nobody-lists-keys\")
forbid (principal, action == Sigvault::Action::\"ListKeys\", resource);
";

/// A file whose only policy lacks its final `;`: a syntax error on line 3.
const SYNTAX_ERROR_ON_LINE_3: &str = "\
// This policy is missing its semicolon.
@id(\"unterminated\")
permit (principal, action, resource)
";

/// A file naming an action the schema does not have (`Sing`): a schema error on line 3.
const SCHEMA_ERROR_ON_LINE_3: &str = "\
// A misspelt action: the schema has Sign, not Sing.
@id(\"misspelt-action\")
permit (principal, action == Sigvault::Action::\"Sing\", resource);
";
