//! Caller tokens, whoami, the failed-auth limit, policy reload and `policy check`, black-box
//! (API.md "Callers"): a token is shown once and stored nowhere in any encoding, it
//! authenticates as its principal and groups until it expires or is revoked, requests
//! without a valid token are refused and audited as nobody (`-`), an address that fails too
//! often is refused even with the right token, and a policy set that does not compile is
//! named by file and line and never replaces the set in force.
//!
//! One inline module per concept; this file holds only what they share.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, temp_dir};

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

/// Every audit event matching `query` (`""` or `a=b&c=d`), following `next` cursors. Each
/// page request is itself audited after it answers, so it is not in its own page.
async fn audit_events(app: &TestApp, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit/events?limit=1000&{query}");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(c);
        }
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "root lists {path}: {}", r.body);
        events.extend(r.body["events"].as_array().expect("an `events` array").iter().cloned());
        match r.body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
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

/// Creating, reading, using, revoking and expiring caller tokens.
mod tokens {
    use reqwest::{Method, StatusCode};
    use serde_json::{Value, json};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    use time::Duration;

    use super::{assert_unauthenticated, audit_events, create_token, create_token_reply, whoami};
    use crate::helpers::{TestApp, spawn_app};

    /// The `spawn_app` clock's start, and one hour later.
    const START: &str = "2026-09-21T14:13:20Z";
    const START_PLUS_1H: &str = "2026-09-21T15:13:20Z";

    /// Rows of the `caller_tokens` table, read from the database file while the app runs.
    async fn stored_tokens(app: &TestApp) -> i64 {
        let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(app.home.database()))
            .await
            .expect("open the database");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM caller_tokens")
            .fetch_one(&pool)
            .await
            .expect("count caller tokens");
        pool.close().await;
        n
    }

    #[tokio::test]
    async fn a_created_token_is_shown_once_and_authenticates_as_its_principal_and_groups() {
        let app = spawn_app().await;
        let r = create_token_reply(
            &app,
            json!({"principal": "payments", "groups": ["service"], "ttl": "1h",
                   "description": "payments API, prod"}),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "creating a token answers 201: {}",
            r.body
        );
        let id = r.body["id"].as_str().expect("an `id`").to_owned();
        let token = r.body["token"].as_str().expect("a `token`").to_owned();
        assert!(token.starts_with("svt_"), "the token starts with svt_: {token}");
        assert!(token.len() >= 4 + 43, "the token carries at least 256 bits: {token}");
        assert_eq!(r.body["principal"], "payments", "the answer names the principal");
        assert_eq!(r.body["groups"], json!(["service"]), "the answer lists the groups");
        assert_eq!(r.body["expires_at"], START_PLUS_1H, "expires_at is creation + ttl");

        let r = whoami(&app, Some(&token)).await;
        assert_eq!(r.status, StatusCode::OK, "the new token authenticates: {}", r.body);
        assert_eq!(
            r.body,
            json!({"principal": "payments", "groups": ["service"], "via": "token"}),
            "whoami names the token's principal and groups"
        );

        let r = app.get(&format!("/v1/auth/tokens/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "root reads the token: {}", r.body);
        assert_eq!(
            r.body,
            json!({"id": id, "principal": "payments", "groups": ["service"],
                   "description": "payments API, prod", "created_at": START, "expires_at": START_PLUS_1H}),
            "reading a token gives its metadata and nothing else"
        );
        let body_part = token.strip_prefix("svt_").expect("svt_ prefix");
        assert!(
            !r.body.to_string().contains(body_part),
            "reading a token never shows the token: {}",
            r.body
        );
    }

    #[tokio::test]
    async fn a_revoked_token_is_refused_and_a_second_revocation_keeps_the_first_time() {
        let app = spawn_app().await;
        let (id, token) = create_token(&app, "payments", &["service"], None).await;
        let (_, other) = create_token(&app, "billing", &["service"], None).await;
        // Used first, so the vault has it in its memory of verified tokens.
        assert_eq!(
            whoami(&app, Some(&token)).await.status,
            StatusCode::OK,
            "the token works"
        );
        assert_eq!(
            whoami(&app, Some(&other)).await.status,
            StatusCode::OK,
            "the other works"
        );

        let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "revoking answers 200: {}", r.body);
        assert_eq!(r.body["revoked_at"], START, "the revocation is timed now");
        assert_unauthenticated(&whoami(&app, Some(&token)).await, "the revoked token");
        assert_unauthenticated(&whoami(&app, Some(&token)).await, "the revoked token, again");
        assert_eq!(
            whoami(&app, Some(&other)).await.status,
            StatusCode::OK,
            "revoking one token leaves the others working"
        );

        app.clock.advance(Duration::minutes(5));
        let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "a second revocation answers 200: {}", r.body);
        assert_eq!(r.body["revoked_at"], START, "a second revocation keeps the first time");
        let r = app.get(&format!("/v1/auth/tokens/{id}")).await;
        assert_eq!(r.body["revoked_at"], START, "reading shows the first revocation time");
        assert_unauthenticated(&whoami(&app, Some(&token)).await, "the token revoked twice");
    }

    #[tokio::test]
    async fn reading_or_revoking_an_unknown_token_id_is_not_found() {
        let app = spawn_app().await;
        let long = format!("tok_{}", "a".repeat(100));
        for id in ["tok_0000000000000000", "tok-with-dash", "tok.with.dots", long.as_str()] {
            for method in [Method::GET, Method::DELETE] {
                let path = format!("/v1/auth/tokens/{id}");
                let r = app
                    .send(method.clone(), &path, Some(crate::helpers::ROOT_TOKEN), None)
                    .await;
                assert_eq!(
                    (r.status, r.code()),
                    (StatusCode::NOT_FOUND, "NOT_FOUND"),
                    "{method} {path}: expected 404 NOT_FOUND, got {}",
                    r.body
                );
            }
        }
    }

    #[tokio::test]
    async fn bad_token_requests_are_invalid_arguments_and_create_no_token() {
        let app = spawn_app().await;
        let too_many_groups: Vec<String> = (0..17).map(|i| format!("g{i}")).collect();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("principal root", json!({"principal": "root"}).to_string().into_bytes()),
            ("principal -", json!({"principal": "-"}).to_string().into_bytes()),
            ("empty principal", json!({"principal": ""}).to_string().into_bytes()),
            ("no principal", json!({"groups": ["service"]}).to_string().into_bytes()),
            (
                "unknown field",
                json!({"principal": "payments", "role": "admin"})
                    .to_string()
                    .into_bytes(),
            ),
            (
                "ttl over the 365d maximum",
                json!({"principal": "payments", "ttl": "366d"}).to_string().into_bytes(),
            ),
            (
                "ttl 0s",
                json!({"principal": "payments", "ttl": "0s"}).to_string().into_bytes(),
            ),
            (
                "ttl not a duration",
                json!({"principal": "payments", "ttl": "soon"}).to_string().into_bytes(),
            ),
            (
                "group with a space",
                json!({"principal": "payments", "groups": ["bad group"]})
                    .to_string()
                    .into_bytes(),
            ),
            (
                "group listed twice",
                json!({"principal": "payments", "groups": ["service", "service"]})
                    .to_string()
                    .into_bytes(),
            ),
            (
                "17 groups",
                json!({"principal": "payments", "groups": too_many_groups})
                    .to_string()
                    .into_bytes(),
            ),
            ("not JSON", b"principal=payments".to_vec()),
        ];
        for (what, body) in &cases {
            let r = app.post_raw("/v1/auth/tokens", body).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
                "{what}: expected 400 INVALID_ARGUMENT, got {}",
                r.body
            );
            assert!(r.body.get("token").is_none(), "{what}: a refusal shows no token");
        }
        assert_eq!(stored_tokens(&app).await, 0, "no refused request stored a token");
        let events = audit_events(&app, "action=CreateToken").await;
        assert_eq!(events.len(), cases.len(), "every refused creation is audited");
        for e in &events {
            assert_eq!(
                (e["outcome"].as_str(), e["resource"].as_str()),
                (Some("INVALID_ARGUMENT"), Some("tokens")),
                "a refused creation is audited as INVALID_ARGUMENT on `tokens`: {e}"
            );
        }

        // The limit itself is allowed.
        create_token(&app, "payments", &["service"], Some("365d")).await;
        assert_eq!(stored_tokens(&app).await, 1, "a ttl of exactly the maximum is accepted");
    }

    #[tokio::test]
    async fn a_token_expires_at_its_ttl_even_right_after_it_was_used() {
        let app = spawn_app().await;
        let (id, token) = create_token(&app, "payments", &["service"], Some("1h")).await;
        let (_, lasting) = create_token(&app, "batch", &[], None).await;
        assert_eq!(
            whoami(&app, Some(&token)).await.status,
            StatusCode::OK,
            "fresh token works"
        );

        app.clock.advance(Duration::minutes(60) - Duration::seconds(1));
        assert_eq!(
            whoami(&app, Some(&token)).await.status,
            StatusCode::OK,
            "one second before its expiry the token works"
        );
        app.clock.advance(Duration::seconds(1));
        assert_unauthenticated(&whoami(&app, Some(&token)).await, "the token at its expiry");
        let r = app.get(&format!("/v1/auth/tokens/{id}")).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "an expired token can still be read: {}",
            r.body
        );
        assert_eq!(r.body.get("revoked_at"), None, "expiry is not revocation: {}", r.body);

        app.clock.advance(Duration::days(400));
        let r = whoami(&app, Some(&lasting)).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "a token without ttl does not expire: {}",
            r.body
        );
        assert_eq!(
            r.body,
            json!({"principal": "batch", "groups": [], "via": "token"}),
            "a token without groups has none"
        );
        let events: Vec<Value> = audit_events(&app, "action=WhoAmI&principal=-").await;
        assert_eq!(
            events.len(),
            1,
            "the refused expired token is audited as nobody: {events:?}"
        );
    }
}

/// Requests without a valid token: refused with 401 and audited as nobody (`-`).
mod unauthenticated {
    use reqwest::Method;
    use serde_json::json;

    use super::{assert_unauthenticated, audit_events};
    use crate::helpers::{Reply, TestApp, spawn_app};

    /// Sends `method path` with a raw `Authorization` header value (none when `None`).
    async fn send_with_header(app: &TestApp, method: Method, path: &str, authorization: Option<&str>) -> Reply {
        let mut req = app.client.request(method.clone(), app.url(path));
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        if method == Method::POST {
            req = req.header("content-type", "application/json").body("{}");
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            body,
            request_id,
        }
    }

    #[tokio::test]
    async fn every_route_refuses_a_request_without_a_valid_token_and_audits_it_as_nobody() {
        let app = spawn_app().await;
        app.create_key("payments.webhook").await;
        // (method, path, the audit event's action and resource)
        let routes = [
            (Method::GET, "/v1/keys", "ListKeys", "keys"),
            (Method::POST, "/v1/keys", "CreateKey", "keys"),
            (
                Method::GET,
                "/v1/keys/payments.webhook",
                "GetKey",
                "key:payments.webhook",
            ),
            (
                Method::POST,
                "/v1/keys/payments.webhook/sign",
                "Sign",
                "key:payments.webhook",
            ),
            (
                Method::POST,
                "/v1/keys/payments.webhook/rotate",
                "RotateKey",
                "key:payments.webhook",
            ),
            (Method::GET, "/v1/auth/whoami", "WhoAmI", "self"),
            (Method::POST, "/v1/auth/tokens", "CreateToken", "tokens"),
            (
                Method::GET,
                "/v1/auth/tokens/tok_0123456789abcdef",
                "ReadToken",
                "token:tok_0123456789abcdef",
            ),
            (
                Method::DELETE,
                "/v1/auth/tokens/tok_0123456789abcdef",
                "RevokeToken",
                "token:tok_0123456789abcdef",
            ),
            (Method::POST, "/v1/sys/policies/reload", "ReloadPolicies", "policies"),
            (Method::GET, "/v1/audit/events", "ReadAudit", "audit"),
            (Method::GET, "/v1/audit/verify", "VerifyAudit", "audit"),
            (
                Method::GET,
                "/v1/reports/compliance",
                "ReadComplianceReport",
                "report:compliance",
            ),
        ];
        let long = format!("Bearer svt_{}", "x".repeat(300));
        let bad_headers = [
            "Bearer",
            "Basic cm9vdDpyb290",
            "Bearer svt_not-a-token-anyone-was-given-00000",
            "Bearer not-even-prefixed-0123456789",
            long.as_str(),
        ];
        let mut expected = Vec::new();
        for (method, path, action, resource) in &routes {
            let r = send_with_header(&app, method.clone(), path, None).await;
            assert_unauthenticated(&r, &format!("{method} {path} without a token"));
            expected.push((r.request_id.expect("x-request-id"), *action, *resource));
        }
        for header in bad_headers {
            let r = send_with_header(&app, Method::GET, "/v1/auth/whoami", Some(header)).await;
            assert_unauthenticated(&r, &format!("whoami with `Authorization: {header:.40}`"));
            expected.push((r.request_id.expect("x-request-id"), "WhoAmI", "self"));
        }

        let events = audit_events(&app, "principal=-").await;
        let seen: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e["request_id"].as_str().unwrap_or("").to_owned(),
                    e["action"].as_str().unwrap_or(""),
                    e["resource"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            seen, expected,
            "one event per refused request, in order, with its request id, action and resource"
        );
        for e in &events {
            assert_eq!(
                (&e["principal"], &e["decision"], &e["outcome"]),
                (&json!("-"), &json!("deny"), &json!("UNAUTHENTICATED")),
                "a refused request is audited as principal `-`, decision deny, outcome UNAUTHENTICATED: {e}"
            );
        }
    }
}

/// The failed-authentication limit per source address.
mod failure_limit {
    use reqwest::{Method, StatusCode};
    use serde_json::json;
    use sigvault::config::AuthSettings;

    use super::{assert_unauthenticated, audit_events, whoami};
    use crate::helpers::{AppHome, ROOT_TOKEN, Reply, spawn_app_in};

    fn assert_rate_limited(r: &Reply, what: &str) {
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            "{what}: expected 429 RATE_LIMITED, got {}",
            r.body
        );
    }

    #[tokio::test]
    async fn an_address_that_fails_three_times_is_refused_even_with_the_root_token_until_the_window_ends() {
        let app = spawn_app_in(AppHome {
            auth: AuthSettings {
                max_failures: 3,
                failure_window: time::Duration::minutes(1),
                max_token_ttl: time::Duration::days(365),
            },
            ..AppHome::new()
        })
        .await;
        for i in 0..3 {
            let bad = format!("svt_wrong-guess-number-{i}-0000000000");
            assert_unauthenticated(&whoami(&app, Some(&bad)).await, &format!("bad token {i}"));
        }
        assert_rate_limited(&whoami(&app, Some(ROOT_TOKEN)).await, "the root token after 3 failures");
        assert_rate_limited(
            &app.send(Method::GET, "/v1/keys", Some(ROOT_TOKEN), None).await,
            "another route with the root token",
        );
        assert_rate_limited(&whoami(&app, None).await, "no token after 3 failures");
        let raw = reqwest::Client::new()
            .get(app.url("/v1/auth/whoami"))
            .bearer_auth(ROOT_TOKEN)
            .send()
            .await
            .expect("request sent");
        assert_eq!(raw.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            raw.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("60"),
            "a 429 says when the window ends (the clock has not moved)"
        );

        app.clock.advance(time::Duration::seconds(61));
        let r = whoami(&app, Some(ROOT_TOKEN)).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "root works once the window has ended: {}",
            r.body
        );
        assert_unauthenticated(
            &whoami(&app, Some("svt_one-more-wrong-guess-0000")).await,
            "a new failure",
        );
        assert_eq!(
            whoami(&app, Some(ROOT_TOKEN)).await.status,
            StatusCode::OK,
            "one failure in the new window does not block"
        );

        let events = audit_events(&app, "principal=-").await;
        let seen: Vec<(&str, &str, &str)> = events
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap_or(""),
                    e["decision"].as_str().unwrap_or(""),
                    e["outcome"].as_str().unwrap_or(""),
                )
            })
            .collect();
        let unauthenticated = ("WhoAmI", "deny", "UNAUTHENTICATED");
        assert_eq!(
            seen,
            vec![
                unauthenticated,
                unauthenticated,
                unauthenticated,
                ("WhoAmI", "deny", "RATE_LIMITED"),
                ("ListKeys", "deny", "RATE_LIMITED"),
                ("WhoAmI", "deny", "RATE_LIMITED"),
                ("WhoAmI", "deny", "RATE_LIMITED"),
                unauthenticated,
            ],
            "every refused request is audited as nobody, the blocked ones as RATE_LIMITED"
        );
        assert!(
            events.iter().all(|e| e["source_ip"] == json!("127.0.0.1")),
            "each event names the source address: {events:?}"
        );
    }
}

/// What a copy of the database and audit files holds of caller tokens: nothing.
mod dump {
    use std::collections::{BTreeSet, HashMap};
    use std::path::PathBuf;

    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use reqwest::StatusCode;
    use sha2::{Digest, Sha256};

    use super::{create_token, whoami};
    use crate::helpers::{AppHome, spawn_app};

    /// Bytes compared at once when searching; every needle is at least this long.
    const PREFIX: usize = 8;

    /// `secret` raw, in lower and upper hex, and in base64 (standard and URL-safe, padded
    /// and not), each labelled.
    fn encodings(label: &str, secret: &[u8]) -> Vec<(String, Vec<u8>)> {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let forms = [
            ("raw", secret.to_vec()),
            ("lower hex", hex.clone().into_bytes()),
            ("upper hex", hex.to_uppercase().into_bytes()),
            ("base64", STANDARD.encode(secret).into_bytes()),
            ("base64 unpadded", STANDARD_NO_PAD.encode(secret).into_bytes()),
            ("base64url", URL_SAFE.encode(secret).into_bytes()),
            ("base64url unpadded", URL_SAFE_NO_PAD.encode(secret).into_bytes()),
        ];
        forms
            .into_iter()
            .map(|(form, bytes)| (format!("{label} ({form})"), bytes))
            .collect()
    }

    /// The database (with whichever of `-wal` and `-shm` exist) and the audit files.
    fn stored_files(home: &AppHome) -> Vec<(PathBuf, Vec<u8>)> {
        let db = home.database().display().to_string();
        let mut paths: Vec<PathBuf> = ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| PathBuf::from(format!("{db}{suffix}")))
            .collect();
        paths.extend([home.audit_file(), home.anchor_file()]);
        let mut files = Vec::new();
        for path in paths {
            match std::fs::read(&path) {
                Ok(bytes) => files.push((path, bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("cannot read {}: {e}", path.display()),
            }
        }
        for must in [home.database(), home.audit_file()] {
            assert!(
                files.iter().any(|(p, b)| *p == must && !b.is_empty()),
                "{} exists and is not empty",
                must.display()
            );
        }
        files
    }

    /// Each needle found, as `label in file`.
    fn found(files: &[(PathBuf, Vec<u8>)], needles: &[(String, Vec<u8>)]) -> Vec<String> {
        let mut by_prefix: HashMap<&[u8], Vec<&(String, Vec<u8>)>> = HashMap::new();
        for needle in needles {
            assert!(needle.1.len() >= PREFIX, "{} is long enough to search for", needle.0);
            by_prefix.entry(&needle.1[..PREFIX]).or_default().push(needle);
        }
        let mut out = Vec::new();
        for (path, bytes) in files {
            for (start, window) in bytes.windows(PREFIX).enumerate() {
                for (label, needle) in by_prefix.get(window).into_iter().flatten() {
                    if bytes[start..].starts_with(needle) {
                        out.push(format!("{label} in {}", path.display()));
                    }
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn no_caller_token_or_its_unkeyed_sha256_is_in_the_database_or_audit_files_live_or_stopped() {
        let mut app = spawn_app().await;
        let mut ids = Vec::new();
        let mut secrets = Vec::new();
        for i in 0..50 {
            let ttl = (i % 2 == 0).then_some("30d");
            let (id, token) = create_token(&app, &format!("service-{i:02}"), &["service"], ttl).await;
            // Used once, so the vault's memory of verified tokens holds its digest.
            assert_eq!(
                whoami(&app, Some(&token)).await.status,
                StatusCode::OK,
                "token {i} works"
            );
            if i % 10 == 0 {
                let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
                assert_eq!(r.status, StatusCode::OK, "token {i} is revoked: {}", r.body);
            }
            let body = token.strip_prefix("svt_").expect("svt_ prefix");
            secrets.extend(encodings(&format!("token {i}"), token.as_bytes()));
            secrets.push((format!("token {i} without its prefix"), body.as_bytes().to_vec()));
            let digest = Sha256::digest(token.as_bytes()).to_vec();
            secrets.extend(encodings(&format!("SHA-256 of token {i}"), &digest));
            ids.push((id.clone(), id.into_bytes()));
        }

        let live = stored_files(&app.home);
        assert!(
            live.iter().any(|(p, _)| p.to_string_lossy().ends_with("-wal")),
            "a serving WAL-mode database has a -wal file to search"
        );
        assert_eq!(
            found(&live, &secrets),
            Vec::<String>::new(),
            "no token in the live files"
        );
        let ids_found: BTreeSet<String> = found(&live, &ids)
            .into_iter()
            .filter_map(|hit| hit.split(' ').next().map(str::to_owned))
            .collect();
        assert_eq!(
            ids_found.len(),
            ids.len(),
            "every token id is in the live files (the search can hit)"
        );

        app.stop().await;
        let home = app.home.clone();
        drop(app);
        let stopped = stored_files(&home);
        assert_eq!(
            found(&stopped, &secrets),
            Vec::<String>::new(),
            "no token in the files after stopping"
        );
        let ids_found: BTreeSet<String> = found(&stopped, &ids)
            .into_iter()
            .filter_map(|hit| hit.split(' ').next().map(str::to_owned))
            .collect();
        assert_eq!(ids_found.len(), ids.len(), "every token id is in the stopped files");
    }
}

/// `sigvault policy check`, a start with a bad policy directory, and reloads by API and SIGHUP.
mod policies {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use reqwest::{Method, StatusCode};
    use serde_json::{Value, json};

    use super::{
        ADMIN_WITHOUT_LIST_KEYS, SCHEMA_ERROR_ON_LINE_3, SHIPPED_POLICIES, SYNTAX_ERROR_ON_LINE_3, audit_events,
        copy_of_shipped_policies, policy_count,
    };
    use crate::helpers::{AppHome, DevProcess, ROOT_TOKEN, run_binary, spawn_app_in, spawn_dev, stderr_log, temp_dir};

    /// A copy of the shipped policies plus a syntax error and a schema error, each on line 3
    /// of its own file.
    fn broken_policy_dir(tag: &str) -> std::path::PathBuf {
        let dir = copy_of_shipped_policies(tag);
        std::fs::write(dir.join("broken.cedar"), SYNTAX_ERROR_ON_LINE_3).expect("write broken.cedar");
        std::fs::write(dir.join("typo.cedar"), SCHEMA_ERROR_ON_LINE_3).expect("write typo.cedar");
        dir
    }

    #[test]
    fn policy_check_accepts_the_shipped_policies() {
        let (ok, stdout, stderr) = run_binary(&["policy", "check", SHIPPED_POLICIES], &[]);
        assert!(ok, "checking the shipped policies exits 0; stderr: {stderr}");
        let expected = format!(
            "{SHIPPED_POLICIES}: {} policies valid",
            policy_count(Path::new(SHIPPED_POLICIES))
        );
        assert_eq!(stdout.trim(), expected, "the check says how many policies are valid");
    }

    #[test]
    fn policy_check_names_each_broken_file_with_its_line() {
        let dir = broken_policy_dir("policy-check");
        let (ok, stdout, stderr) = run_binary(&["policy", "check", dir.to_str().expect("utf-8 path")], &[]);
        assert!(!ok, "a set with errors exits non-zero; stdout: {stdout}");
        assert!(!stdout.contains("valid"), "nothing is called valid: {stdout}");
        let broken = format!("{}:3:", dir.join("broken.cedar").display());
        let typo = format!("{}:3:", dir.join("typo.cedar").display());
        assert!(
            stderr.lines().any(|l| l.starts_with(&broken)),
            "the syntax error is reported as `{broken}…`: {stderr}"
        );
        assert!(
            stderr.lines().any(|l| l.starts_with(&typo) && l.contains("Sing")),
            "the schema error is reported as `{typo}…` naming `Sing`: {stderr}"
        );
        for good in [
            "admin.cedar",
            "auditor.cedar",
            "common.cedar",
            "custodian.cedar",
            "service.cedar",
        ] {
            assert!(!stderr.contains(good), "the valid {good} is not named: {stderr}");
        }
    }

    /// Runs the binary to its exit, killing it after 60 s: a regression that makes a refused
    /// start serve must fail the test, not hang it.
    fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigvault"));
        cmd.args(args)
            .env_remove("SOFTHSM2_CONF")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run sigvault");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
        let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sigvault {args:?} was expected to exit but still ran after 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.success(),
            stdout.join().expect("stdout"),
            stderr.join().expect("stderr"),
        )
    }

    /// Asserts a refused start: non-zero exit, no panic, nothing served, and exactly one
    /// `sigvault: error:` line, which it returns.
    fn refused_line(outcome: (bool, String, String)) -> String {
        let (ok, stdout, stderr) = outcome;
        assert!(
            !ok,
            "the start is refused (non-zero exit); stdout: {stdout}; stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "a refused start does not panic: {stderr}");
        assert!(
            !stdout.contains("listening on"),
            "a refused start serves nothing: {stdout}"
        );
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("sigvault: error:")).collect();
        assert_eq!(errors.len(), 1, "exactly one `sigvault: error:` line: {stderr}");
        errors[0].to_owned()
    }

    #[test]
    fn dev_refuses_a_policy_dir_with_errors_naming_each_file_and_line_and_creates_nothing() {
        let policies = broken_policy_dir("start-bad-policies");
        let data_dir = temp_dir("start-bad-policies-data").join("data");
        let dir = policies.to_str().expect("utf-8 path");
        let data = data_dir.to_str().expect("utf-8 path");
        let line = refused_line(run_to_exit(
            &["dev", "--listen", "127.0.0.1:0", "--data-dir", data],
            &[("SIGVAULT_POLICIES__DIR", dir), ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)],
        ));
        assert!(line.contains("policies"), "the error line says `policies`: {line}");
        for file in ["broken.cedar", "typo.cedar"] {
            let at = format!("{}:3:", policies.join(file).display());
            assert!(line.contains(&at), "the error line names `{at}`: {line}");
        }
        let created: Vec<_> = std::fs::read_dir(&data_dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            !data_dir.exists(),
            "a refused start creates no data dir, yet it holds {created:?}: {line}"
        );
    }

    #[test]
    fn dev_refuses_a_policy_dir_that_does_not_exist_and_creates_nothing() {
        let base = temp_dir("start-no-policies");
        let missing = base.join("no-such-dir");
        let data_dir = base.join("data");
        let line = refused_line(run_to_exit(
            &[
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data_dir.to_str().expect("utf-8"),
            ],
            &[("SIGVAULT_POLICIES__DIR", missing.to_str().expect("utf-8"))],
        ));
        assert!(
            line.contains("policies") && line.contains("no-such-dir"),
            "the error line names the policy dir: {line}"
        );
        assert!(!data_dir.exists(), "a refused start creates no data dir: {line}");
    }

    #[tokio::test]
    async fn a_reload_with_errors_is_refused_whole_and_a_valid_one_applies_at_once() {
        let dir = copy_of_shipped_policies("reload-api");
        let app = spawn_app_in(AppHome {
            policies_dir: Some(dir.clone()),
            ..AppHome::new()
        })
        .await;
        let r = app.post_raw("/v1/sys/policies/reload", b"").await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "reloading an unchanged set answers 200: {}",
            r.body
        );
        assert_eq!(
            r.body,
            json!({"policies": policy_count(&dir)}),
            "the reload counts the policies"
        );

        // A valid change and a broken file together: neither may apply.
        std::fs::write(dir.join("admin.cedar"), ADMIN_WITHOUT_LIST_KEYS).expect("rewrite admin.cedar");
        std::fs::write(dir.join("zz-broken.cedar"), SYNTAX_ERROR_ON_LINE_3).expect("write zz-broken.cedar");
        let r = app.post_raw("/v1/sys/policies/reload", b"").await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            "a reload with errors answers 400 INVALID_ARGUMENT: {}",
            r.body
        );
        let message = r.body["error"]["message"].as_str().unwrap_or("");
        let at = format!("{}:3:", dir.join("zz-broken.cedar").display());
        assert!(message.contains(&at), "the refusal names `{at}`: {message}");
        let r = app.get("/v1/keys").await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "the old set stays whole: root still lists keys: {}",
            r.body
        );

        std::fs::remove_file(dir.join("zz-broken.cedar")).expect("remove the broken file");
        let r = app.post_raw("/v1/sys/policies/reload", b"").await;
        assert_eq!(r.status, StatusCode::OK, "the repaired set reloads: {}", r.body);
        assert_eq!(
            r.body,
            json!({"policies": policy_count(&dir)}),
            "the reload counts the new set"
        );
        let r = app.get("/v1/keys").await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            "the new forbid applies to root at once: expected 403, got {}",
            r.body
        );
        let denied = audit_events(&app, "action=ListKeys").await;
        let last = denied.last().expect("the denied listing is audited");
        assert_eq!(
            (&last["decision"], &last["policy"], &last["outcome"]),
            (&json!("deny"), &json!("nobody-lists-keys"), &json!("PERMISSION_DENIED")),
            "the denial is audited with the forbid that made it: {last}"
        );
        let reloads: Vec<Value> = audit_events(&app, "action=ReloadPolicies").await;
        let outcomes: Vec<&str> = reloads.iter().map(|e| e["outcome"].as_str().unwrap_or("")).collect();
        assert_eq!(
            outcomes,
            ["ok", "INVALID_ARGUMENT", "ok"],
            "every reload is audited with its outcome"
        );
    }

    /// `GET path` on a dev process with the root token.
    async fn dev_get(dev: &DevProcess, path: &str) -> (StatusCode, Value) {
        let resp = reqwest::Client::new()
            .request(Method::GET, dev.url(path))
            .bearer_auth(ROOT_TOKEN)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Whether process `pid` handles `signal` (Linux `/proc/PID/status`, `SigCgt`).
    fn catches(pid: u32, signal: i32) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
    }

    fn send_sighup(dev: &DevProcess) {
        let pid = i32::try_from(dev.child.id()).expect("pid fits i32");
        // SAFETY: signalling our own child by its pid.
        let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(rc, 0, "SIGHUP is delivered to the dev process");
    }

    /// Polls until `done` holds, for at most 10 s; `what` says what was awaited.
    async fn within_10s<F, Fut>(what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done().await {
            assert!(Instant::now() < deadline, "expected within 10 s: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn sighup_reloads_a_valid_set_and_keeps_the_old_one_when_the_new_has_errors() {
        let dir = copy_of_shipped_policies("reload-sighup");
        let data_dir = temp_dir("reload-sighup-data").join("data");
        let dev = spawn_dev(
            &data_dir,
            &[
                ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN),
                ("SIGVAULT_POLICIES__DIR", dir.to_str().expect("utf-8 path")),
            ],
        );
        let pid = dev.child.id();
        within_10s("the dev vault installs its SIGHUP handler", || async {
            catches(pid, libc::SIGHUP)
        })
        .await;
        let (status, body) = dev_get(&dev, "/v1/keys").await;
        assert_eq!(status, StatusCode::OK, "root lists keys under the shipped set: {body}");

        std::fs::write(dir.join("admin.cedar"), ADMIN_WITHOUT_LIST_KEYS).expect("rewrite admin.cedar");
        std::fs::write(dir.join("zz-broken.cedar"), SYNTAX_ERROR_ON_LINE_3).expect("write zz-broken.cedar");
        send_sighup(&dev);
        let log = stderr_log(&data_dir);
        within_10s("the log says the SIGHUP reload was refused", || async {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("policy reload refused")
        })
        .await;
        let (status, body) = dev_get(&dev, "/v1/keys").await;
        assert_eq!(status, StatusCode::OK, "a refused reload keeps the old set: {body}");

        std::fs::remove_file(dir.join("zz-broken.cedar")).expect("remove the broken file");
        send_sighup(&dev);
        within_10s("root's key listing is forbidden after the SIGHUP reload", || async {
            dev_get(&dev, "/v1/keys").await.0 == StatusCode::FORBIDDEN
        })
        .await;
        let (status, body) = dev_get(&dev, "/v1/auth/whoami").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the reloaded set still lets root ask who it is: {body}"
        );
        dev.stop();
    }

    /// `sigvault dev` prints `listening on` before it handles SIGHUP; an operator (or a
    /// supervisor's `reload`) signalling it then must not kill the vault, whose default
    /// action for SIGHUP is to terminate.
    #[tokio::test]
    async fn a_dev_vault_sent_sighup_right_after_it_reports_listening_keeps_serving() {
        let data_dir = temp_dir("early-sighup").join("data");
        for round in 0..5 {
            let mut dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]);
            send_sighup(&dev);
            let health = reqwest::get(dev.url("/v1/sys/health")).await.map(|r| r.status());
            let exited = dev.child.try_wait().expect("wait");
            assert!(
                exited.is_none() && matches!(health, Ok(StatusCode::OK)),
                "round {round}: the vault keeps serving after SIGHUP; it exited with {:?} (signal {:?}), health {health:?}",
                exited,
                exited.and_then(|s| s.signal())
            );
            dev.stop();
        }
    }
}
