//! `GET /v1/openapi.json`: served verbatim without a token, and in step with what this build
//! serves. Every documented (path, method) is routed and answers a documented status, every
//! other method on a documented path is refused, routes of API.md that the document leaves
//! out are not served, the `ErrorCode` enum is exactly the codes of `ErrorCode::ALL`, the
//! `Key` and API key schemas are the JSON the server emits, security matches authentication,
//! and the documented limits are the server's.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sigvault::error::ErrorCode;

use crate::helpers::{ROOT_TOKEN, Reply, TestApp, b64, spawn_app};

/// The file the server embeds with `include_str!` and serves verbatim.
const DOCUMENT: &str = include_str!("../../src/api/openapi.json");

/// The HTTP methods an OpenAPI path item may list.
const PATH_ITEM_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The routes without authentication.
const OPEN_ROUTES: [&str; 3] = ["/v1/sys/health", "/v1/sys/ping", "/v1/openapi.json"];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("src/api/openapi.json is JSON")
}

/// Follows local `$ref`s (`#/components/…`) until a non-reference.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let mut current = value;
    for _ in 0..16 {
        let Some(target) = current.get("$ref").and_then(Value::as_str) else {
            return current;
        };
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {target}"));
        current = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {target}"));
    }
    panic!("$ref chain too long at {value}");
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("no components.schemas.{name}"))
}

struct Operation<'a> {
    path: &'a str,
    method: Method,
    op: &'a Value,
}

impl Operation<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// An operation of a compatible API (`x-sigvault-compat`): it answers in another
    /// product's shapes (Vault's `{"errors"}`, KMS's `{"__type"}`) and authenticates as that
    /// product does, so the checks of the native envelope, statuses and security skip it;
    /// its own clients' tests (tests/api/compat) hold it to that product's contract.
    fn is_compat(&self) -> bool {
        self.op.get("x-sigvault-compat").is_some()
    }

    fn has_body(&self) -> bool {
        self.op.get("requestBody").is_some()
    }

    /// The operation's `security`, else the document's.
    fn is_open(&self, doc: &Value) -> bool {
        let security = self.op.get("security").unwrap_or(&doc["security"]);
        security.as_array().is_some_and(Vec::is_empty)
    }
}

fn paths(doc: &Value) -> Vec<(&str, &Value)> {
    doc["paths"]
        .as_object()
        .expect("paths is an object")
        .iter()
        .map(|(path, item)| (path.as_str(), item))
        .collect()
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.to_ascii_uppercase().as_bytes()).expect("an HTTP method")
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let mut out = Vec::new();
    for (path, item) in paths(doc) {
        for name in PATH_ITEM_METHODS {
            if let Some(op) = item.get(name) {
                out.push(Operation {
                    path,
                    method: method(name),
                    op,
                });
            }
        }
    }
    out
}

/// Real ids to fill documented paths with.
struct Ids {
    /// A signing key's name, for `{name}`.
    key: String,
    /// A caller token's id, for `{id}`.
    token: String,
    /// An API key's id, for `{id}` under `/v1/apikeys/`: an unknown API key id answers 404
    /// `NOT_FOUND`, which is also what a route that is not served answers.
    apikey: String,
    /// An approval request's id, for `{id}` under `/v1/approvals/` (likewise 404 when
    /// unknown).
    approval: String,
}

impl Ids {
    /// Creates a signing key named `key`, a caller token and an API key.
    async fn create(app: &TestApp, key: &str) -> Self {
        app.create_key(key).await;
        Self {
            key: key.to_owned(),
            token: token_id(app).await,
            apikey: api_key(app).await["id"].as_str().expect("id").to_owned(),
            approval: approval_id(app).await,
        }
    }
}

/// A documented path with `{name}` replaced by a real key's name and `{id}` by a real
/// caller token's or, under `/v1/apikeys/`, API key's id.
fn concrete(path: &str, ids: &Ids) -> String {
    let path = &path.replace("{algorithm}", "sha2-256");
    assert!(
        !path.replace("{name}", "").replace("{id}", "").contains('{'),
        "{path}: a path parameter this test does not know how to fill"
    );
    let id = if path.starts_with("/v1/apikeys/") {
        &ids.apikey
    } else if path.starts_with("/v1/approvals/") {
        &ids.approval
    } else {
        &ids.token
    };
    path.replace("{name}", &ids.key).replace("{id}", id)
}

/// Asks for an approval (as root) and returns its id.
async fn approval_id(app: &TestApp) -> String {
    let r = app
        .post(
            "/v1/approvals",
            json!({"action": "ReloadPolicies", "resource": "policies", "reason": "openapi"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

/// Creates a caller token and returns its id.
async fn token_id(app: &TestApp) -> String {
    let r = app.post("/v1/auth/tokens", json!({"principal": "openapi"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

/// Issues an API key with only a principal and returns the answer (with the key).
async fn api_key(app: &TestApp) -> Value {
    let r = app.post("/v1/apikeys", json!({"principal": "openapi"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// What the server answers for a path it does not serve, or a method a path does not take.
fn route_missing(r: &Reply) -> bool {
    r.status == StatusCode::METHOD_NOT_ALLOWED || (r.status == StatusCode::NOT_FOUND && r.code() == "NOT_FOUND")
}

fn documented_codes(doc: &Value) -> BTreeSet<String> {
    schema(doc, "ErrorCode")["enum"]
        .as_array()
        .expect("ErrorCode.enum is an array")
        .iter()
        .map(|c| c.as_str().expect("error codes are strings").to_owned())
        .collect()
}

/// The strings of every code the server has: [`ErrorCode::ALL`] is complete (the build
/// fails otherwise), so a new code fails the test until it is documented.
fn codes_of_the_server() -> BTreeSet<&'static str> {
    let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes.len(), ErrorCode::ALL.len(), "two codes share a string");
    codes
}

/// `value`'s fields against an object schema: every required field is present, and every
/// field present is documented.
fn check_fields(doc: &Value, name: &str, value: &Value) {
    let schema = schema(doc, name);
    let properties: BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has properties"))
        .keys()
        .map(String::as_str)
        .collect();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has required"))
        .iter()
        .map(|f| f.as_str().expect("field names are strings"))
        .collect();
    let actual: BTreeSet<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("{name}: not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    let undeclared: Vec<_> = required.difference(&properties).collect();
    assert!(
        undeclared.is_empty(),
        "{name}: required but not in properties: {undeclared:?}"
    );
    let missing: Vec<_> = required.difference(&actual).collect();
    assert!(
        missing.is_empty(),
        "{name}: required fields the server did not send: {missing:?} in {value}"
    );
    let undocumented: Vec<_> = actual.difference(&properties).collect();
    assert!(
        undocumented.is_empty(),
        "{name}: fields the server sent that the document lacks: {undocumented:?}"
    );
}

fn integer_at(doc: &Value, pointer: &str) -> u64 {
    doc.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer at {pointer}"))
}

// ----- (a) the document is served ----------------------------------------------------------

#[tokio::test]
async fn openapi_json_is_served_without_a_token_and_is_the_file() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.expect("body");
    assert_eq!(text, DOCUMENT, "the served document is the file, byte for byte");
    let served: Value = serde_json::from_str(&text).expect("the served document is JSON");
    assert_eq!(served, document());
    assert!(
        served["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")),
        "OpenAPI 3.1: {}",
        served["openapi"]
    );

    let posted = app.post("/v1/openapi.json", json!({})).await;
    assert_eq!(posted.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(posted.code(), "METHOD_NOT_ALLOWED");
}

// ----- (b) every documented route exists -------------------------------------------------------

#[tokio::test]
async fn every_documented_path_and_method_is_served_and_answers_a_documented_status() {
    let app = spawn_app().await;
    let doc = document();
    let codes = documented_codes(&doc);
    let ids = Ids::create(&app, "openapi-routes").await;

    let ops = operations(&doc);
    assert!(
        ops.len() >= 13,
        "expected at least the 13 operations of this build, found {}",
        ops.len()
    );
    for op in &ops {
        let path = concrete(op.path, &ids);
        // A minimal body where one is taken: valid for some routes, a 400 for others; either
        // way the route had to exist to answer it.
        let body = op.has_body().then(|| b"{}".to_vec());
        let r = if op.op.get("x-sigvault-compat") == Some(&json!("aws-kms")) {
            // A KMS request names its operation (unsigned here: KMS's 400).
            let resp = reqwest::Client::new()
                .post(app.url(&path))
                .header("x-amz-target", "TrentService.ListKeys")
                .body("{}")
                .send()
                .await
                .expect("sent");
            Reply::read(resp).await.expect("a reply")
        } else {
            app.send(op.method.clone(), &path, Some(ROOT_TOKEN), body).await
        };
        assert!(
            !route_missing(&r),
            "{}: the server does not serve it: {} {}",
            op.label(),
            r.status,
            r.body
        );
        assert!(r.request_id.is_some(), "{}: no x-request-id", op.label());
        assert!(
            op.op["responses"].get(r.status.as_str()).is_some(),
            "{}: answered {} ({}), which the document does not list",
            op.label(),
            r.status,
            r.body
        );
        if !r.code().is_empty() {
            assert!(
                codes.contains(r.code()),
                "{}: undocumented code {}",
                op.label(),
                r.code()
            );
        }
    }
}

// ----- (c) other methods are refused -----------------------------------------------------------

#[tokio::test]
async fn methods_a_documented_path_does_not_list_are_refused() {
    let app = spawn_app().await;
    let doc = document();
    let ids = Ids::create(&app, "openapi-methods").await;

    for (path, item) in paths(&doc) {
        // A compatible API takes its product's methods (Vault's PUT for POST, LIST).
        if PATH_ITEM_METHODS
            .iter()
            .filter_map(|m| item.get(*m))
            .any(|op| op.get("x-sigvault-compat").is_some())
        {
            continue;
        }
        let listed: BTreeSet<Method> = PATH_ITEM_METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| method(m))
            .collect();
        assert!(!listed.is_empty(), "{path} lists no operation");
        let probes = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ];
        for m in probes.into_iter().filter(|m| !listed.contains(m)) {
            let resp = reqwest::Client::new()
                .request(m.clone(), app.url(&concrete(path, &ids)))
                .bearer_auth(ROOT_TOKEN)
                .send()
                .await
                .expect("sent");
            let allow = resp
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let r = Reply::read(resp).await.expect("a reply");
            if r.status == StatusCode::METHOD_NOT_ALLOWED {
                // RFC 9110: a 405 lists the methods the route takes.
                let allowed: BTreeSet<Method> = allow
                    .unwrap_or_else(|| panic!("{m} {path}: 405 without Allow"))
                    .split(',')
                    .map(|name| method(name.trim()))
                    .collect();
                assert_eq!(allowed, listed, "{m} {path}: Allow is not the documented methods");
            }
            assert!(
                (r.status == StatusCode::METHOD_NOT_ALLOWED && r.code() == "METHOD_NOT_ALLOWED")
                    || (r.status == StatusCode::NOT_FOUND && r.code() == "NOT_FOUND"),
                "{m} {path} is not in the document but answered {} {}",
                r.status,
                r.body
            );
        }
    }
}

/// Every route of API.md, served by this build or not yet. Each one the document leaves out
/// must answer 404 "no such route": a route served but left out of the document fails here.
#[tokio::test]
async fn routes_the_document_leaves_out_are_not_served() {
    let app = spawn_app().await;
    let doc = document();
    let key = "openapi-absent";
    app.create_key(key).await;
    let api_md_routes = [
        "/v1/sys/health",
        "/v1/sys/ping",
        "/v1/openapi.json",
        "/v1/keys",
        "/v1/keys/{name}",
        "/v1/keys/{name}/rotate",
        "/v1/keys/{name}/restore",
        "/v1/keys/{name}/import",
        "/v1/keys/{name}/sign",
        "/v1/keys/{name}/verify",
        "/metrics",
        "/v1/sys/kek",
        "/v1/sys/kek/rotate",
        "/v1/sys/policies/reload",
        "/v1/auth/tokens",
        "/v1/auth/tokens/{id}",
        "/v1/auth/whoami",
        "/v1/credentials",
        "/v1/credentials/import",
        "/v1/credentials/{id}",
        "/v1/credentials/{id}/activity",
        "/v1/sigv4/verify",
        "/v1/sigv4/signing-key",
        "/v1/apikeys",
        "/v1/apikeys/verify",
        "/v1/apikeys/{id}",
        "/v1/apikeys/{id}/reroll",
        "/v1/apikeys/{id}/activity",
        "/v1/wrapping-key",
        "/v1/keys/{name}/import-wrapped",
        "/v1/keys/{name}/export",
        "/v1/keys/{name}/wrap",
        "/v1/keys/{name}/unwrap",
        "/v1/keys/{name}/rewrap",
        "/v1/keys/{name}/datakey",
        "/v1/audit/events",
        "/v1/audit/verify",
        "/v1/reports/compliance",
    ];
    for route in api_md_routes {
        if doc["paths"].get(route).is_some() {
            continue; // documented: the other tests cover it
        }
        let path = route.replace("{name}", key).replace("{id}", "x1");
        for m in [Method::GET, Method::POST, Method::PATCH, Method::DELETE] {
            let r = app.send(m.clone(), &path, Some(ROOT_TOKEN), None).await;
            assert!(
                r.status == StatusCode::NOT_FOUND && r.code() == "NOT_FOUND",
                "{m} {path} is served ({} {}) but src/api/openapi.json does not describe {route}",
                r.status,
                r.body
            );
        }
    }
}

// ----- (d) error codes ---------------------------------------------------------------------------

#[test]
fn the_documented_error_codes_are_those_of_error_code_all() {
    let doc = document();
    let served = codes_of_the_server();
    let enumerated = schema(&doc, "ErrorCode")["enum"].as_array().expect("enum").len();
    let documented = documented_codes(&doc);
    assert_eq!(enumerated, documented.len(), "ErrorCode.enum repeats a code");
    let documented: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "codes of ErrorCode::ALL missing from the document: {undocumented:?}; \
         codes documented but not in ErrorCode::ALL: {unknown:?}"
    );
    // Both error shapes use that enum.
    let code_ref = json!({"$ref": "#/components/schemas/ErrorCode"});
    assert_eq!(
        schema(&doc, "Error")["properties"]["error"]["properties"]["code"],
        code_ref
    );
    assert_eq!(
        schema(&doc, "BatchItemError")["properties"]["error"]["properties"]["code"],
        code_ref
    );
}

// ----- (e) the Key schema is the key JSON ------------------------------------------------------

#[tokio::test]
async fn the_key_schema_is_the_key_json_the_server_emits() {
    let app = spawn_app().await;
    let doc = document();

    let minimal = app.create_key("openapi-minimal").await;
    check_fields(&doc, "Key", &minimal);
    check_fields(&doc, "KeyVersion", &minimal["versions"][0]);

    let full = app
        .post(
            "/v1/keys",
            json!({
                "name": "openapi-full",
                "algorithm": "hmac-sha512",
                "key_size": 64,
                "boundary": "process",
                "exportable": true,
                "auto_rotate_period": "90d",
                "owner": "payments",
                "tags": {"team": "payments"}
            }),
        )
        .await;
    assert_eq!(full.status, StatusCode::CREATED, "{}", full.body);
    check_fields(&doc, "Key", &full.body);

    app.sign("openapi-full", b"used").await;
    app.flush_usage().await;
    let used = app.get("/v1/keys/openapi-full").await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    check_fields(&doc, "KeyVersion", &used.body["versions"][0]);

    // The field that appears only while a deletion is pending is documented too.
    let deleted = app.delete("/v1/keys/openapi-full?pending_days=3").await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{}", deleted.body);
    assert!(deleted.body.get("deletion_due_at").is_some(), "{}", deleted.body);
    check_fields(&doc, "Key", &deleted.body);
}

// ----- the API key schemas are the API key JSON ------------------------------------------------

#[tokio::test]
async fn the_api_key_schemas_are_the_json_the_server_emits() {
    let app = spawn_app().await;
    let doc = document();

    let minimal = api_key(&app).await;
    check_fields(&doc, "CreatedApiKey", &minimal);
    let full = app
        .post(
            "/v1/apikeys",
            json!({
                "principal": "openapi",
                "prefix": "acme",
                "expires_at": "2099-01-01T00:00:00Z",
                "remaining": 5,
                "ratelimit": {"limit": 10, "period": "1m"},
                "permissions": ["reports:read", "keys:*"],
                "meta": {"team": "payments"}
            }),
        )
        .await;
    assert_eq!(full.status, StatusCode::CREATED, "{}", full.body);
    check_fields(&doc, "CreatedApiKey", &full.body);
    let id = full.body["id"].as_str().expect("id").to_owned();
    let key = full.body["key"].as_str().expect("key").to_owned();

    // Every optional field of the verdict, then the fewest.
    let verify = |body: Value| app.post("/v1/apikeys/verify", body);
    let valid = verify(json!({"key": key, "permissions": ["keys:*"]})).await;
    assert_eq!(valid.body["code"], "VALID", "{}", valid.body);
    check_fields(&doc, "ApiKeyVerification", &valid.body);
    let denied = verify(json!({"key": key, "permissions": ["other"]})).await;
    assert_eq!(denied.body["code"], "INSUFFICIENT_PERMISSIONS", "{}", denied.body);
    check_fields(&doc, "ApiKeyVerification", &denied.body);
    let unknown = verify(json!({"key": "sk_not-a-key"})).await;
    assert_eq!(
        unknown.body,
        json!({"valid": false, "code": "NOT_FOUND"}),
        "{}",
        unknown.body
    );
    let codes = &schema(&doc, "ApiKeyVerification")["properties"]["code"]["enum"];
    for answer in [&valid.body, &denied.body] {
        assert!(codes.as_array().expect("enum").contains(&answer["code"]));
    }

    // Where it was used from: before any use, then after one with a fingerprint.
    let fresh = api_key(&app).await;
    let fresh_id = fresh["id"].as_str().expect("id");
    let served = &app;
    let activity = |id: String| async move { served.get(&format!("/v1/apikeys/{id}/activity")).await };
    let unused = activity(fresh_id.to_owned()).await;
    assert_eq!(unused.status, StatusCode::OK, "{}", unused.body);
    assert_eq!(unused.body["last_used_at"], Value::Null, "{}", unused.body);
    check_fields(&doc, "ApiKeyActivity", &unused.body);
    let seen = verify(json!({"key": key, "source_ip": "10.0.0.1", "user_agent": "openapi/1"})).await;
    assert_eq!(seen.body["code"], "VALID", "{}", seen.body);
    let used = activity(id.clone()).await;
    check_fields(&doc, "ApiKeyActivity", &used.body);
    let prints = used.body["fingerprints"].as_array().expect("fingerprints");
    assert_eq!(prints.len(), 2, "none given, then one: {}", used.body);
    for print in prints {
        check_fields(&doc, "CallerFingerprint", print);
    }

    // Used (the last use is merged in before it is written), patched, rerolled, revoked.
    let read = app.get(&format!("/v1/apikeys/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert!(read.body.get("last_used_at").is_some(), "{}", read.body);
    check_fields(&doc, "ApiKey", &read.body);
    let patched = app
        .patch(
            &format!("/v1/apikeys/{id}"),
            json!({"state": "disabled", "remaining": null}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert!(
        patched.body.get("remaining").is_none(),
        "absent, not null: {}",
        patched.body
    );
    check_fields(&doc, "ApiKey", &patched.body);
    let rerolled = app
        .post(&format!("/v1/apikeys/{id}/reroll"), json!({"grace_seconds": 60}))
        .await;
    assert_eq!(rerolled.status, StatusCode::OK, "{}", rerolled.body);
    check_fields(&doc, "CreatedApiKey", &rerolled.body);
    let revoked = app.delete(&format!("/v1/apikeys/{id}")).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["state"], "revoked");
    assert!(revoked.body.get("revoked_at").is_some(), "{}", revoked.body);
    check_fields(&doc, "ApiKey", &revoked.body);

    // An id that names no API key — a caller token's id among them — is 404 `NOT_FOUND`.
    let token = token_id(&app).await;
    for missing in [token.as_str(), "ak_000000000000000000000000"] {
        let r = app.get(&format!("/v1/apikeys/{missing}")).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"), "{}", r.body);
    }
}

// ----- security, the document's consistency, limits -------------------------------------------

#[tokio::test]
async fn security_in_the_document_matches_authentication() {
    let app = spawn_app().await;
    let doc = document();
    let ids = Ids::create(&app, "openapi-security").await;
    assert_eq!(
        doc["security"],
        json!([{"bearer": []}, {"mtls": []}]),
        "a bearer token or a client certificate applies to every route by default"
    );
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["components"]["securitySchemes"]["mtls"]["type"], "mutualTLS");

    let mut open = BTreeSet::new();
    for op in operations(&doc).into_iter().filter(|op| !op.is_compat()) {
        let path = concrete(op.path, &ids);
        let body = op.has_body().then(|| b"{}".to_vec());
        let r = app.send(op.method.clone(), &path, None, body).await;
        if op.is_open(&doc) {
            open.insert(op.path);
            assert_ne!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{} is documented open: {}",
                op.label(),
                r.body
            );
        } else {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}: {}", op.label(), r.body);
            assert_eq!(r.code(), "UNAUTHENTICATED");
            assert!(
                op.op["responses"].get("401").is_some(),
                "{} does not document 401",
                op.label()
            );
        }
    }
    assert_eq!(open, OPEN_ROUTES.into_iter().collect::<BTreeSet<_>>());
}

/// Checks that every object schema reachable from a request body refuses unknown fields, as
/// the server does.
fn assert_strict(doc: &Value, schema: &Value, at: &str, depth: usize) {
    assert!(depth < 32, "{at}: schema nesting too deep");
    let schema = resolve(doc, schema);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        assert_eq!(
            schema.get("additionalProperties"),
            Some(&Value::Bool(false)),
            "{at}: a request object must say additionalProperties: false"
        );
        for (field, sub) in properties {
            assert_strict(doc, sub, &format!("{at}.{field}"), depth + 1);
        }
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        for (i, sub) in schema
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            assert_strict(doc, sub, &format!("{at}/{combinator}[{i}]"), depth + 1);
        }
    }
    if let Some(items) = schema.get("items") {
        assert_strict(doc, items, &format!("{at}[]"), depth + 1);
    }
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_self_consistent() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }

    let mut ids = BTreeSet::new();
    for op in operations(&doc) {
        let id = op.op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no operationId", op.label()));
        assert!(ids.insert(id), "operationId {id} repeats");
        let responses = op.op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{}: no success response",
            op.label()
        );
        for (status, response) in responses {
            let response = resolve(&doc, response);
            let header = response
                .pointer("/headers/x-request-id")
                .map(|h| resolve(&doc, h))
                .unwrap_or_else(|| panic!("{} {status}: no x-request-id header", op.label()));
            assert_eq!(header["required"], true, "{} {status}", op.label());
            if !status.starts_with('2') && !op.path.starts_with("/v1/sys/") && !op.is_compat() {
                assert_eq!(
                    response.pointer("/content/application~1json/schema"),
                    Some(&json!({"$ref": "#/components/schemas/Error"})),
                    "{} {status}: errors use the Error envelope",
                    op.label()
                );
            }
        }
        if let Some(body) = op.op.get("requestBody").filter(|_| !op.is_compat()) {
            let schema = resolve(&doc, body)
                .pointer("/content/application~1json/schema")
                .unwrap_or_else(|| panic!("{}: request body is not JSON", op.label()));
            assert_strict(&doc, schema, &op.label(), 0);
        }
        if op.path.contains("{name}") {
            // Operation-level parameters, then those of the path item.
            let name_param = [op.op.get("parameters"), doc["paths"][op.path].get("parameters")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_array)
                .flatten()
                .map(|p| resolve(&doc, p))
                .find(|p| p["name"] == "name" && p["in"] == "path")
                .unwrap_or_else(|| panic!("{}: {{name}} is not a declared path parameter", op.label()));
            assert_eq!(
                resolve(&doc, &name_param["schema"])["pattern"],
                "^[A-Za-z0-9._-]{1,128}$"
            );
        }
    }
}

/// Signs `batch_len` one-byte messages in one batch.
async fn sign_batch(app: &TestApp, key: &str, batch_len: usize) -> Reply {
    let items: Vec<Value> = (0..batch_len).map(|_| json!({"message": b64(b"x")})).collect();
    app.post(&format!("/v1/keys/{key}/sign"), json!({ "batch": items }))
        .await
}

#[tokio::test]
async fn the_documented_limits_are_the_servers() {
    let app = spawn_app().await;
    let doc = document();

    // Names.
    let max_name = integer_at(&doc, "/components/schemas/KeyName/maxLength") as usize;
    assert_eq!(max_name, 128);
    app.create_key(&"n".repeat(max_name)).await;
    for bad in [
        "n".repeat(max_name + 1),
        "has space".to_owned(),
        "slash%2Fname".to_owned(),
    ] {
        let r = app
            .post("/v1/keys", json!({"name": bad, "algorithm": "hmac-sha256"}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert_eq!(r.code(), "INVALID_ARGUMENT");
    }

    // Generated key sizes.
    let min_size = integer_at(&doc, "/components/schemas/CreateKeyRequest/properties/key_size/minimum");
    let max_size = integer_at(&doc, "/components/schemas/CreateKeyRequest/properties/key_size/maximum");
    assert_eq!((min_size, max_size), (32, 512));
    for (size, ok) in [
        (min_size - 1, false),
        (min_size, true),
        (max_size, true),
        (max_size + 1, false),
    ] {
        let r = app
            .post(
                "/v1/keys",
                json!({"name": format!("size-{size}"), "algorithm": "hmac-sha256", "key_size": size}),
            )
            .await;
        let expected = if ok {
            StatusCode::CREATED
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(r.status, expected, "key_size {size}: {}", r.body);
    }

    // Imported material.
    let material = "/components/schemas/ImportKeyRequest/properties/key_material";
    let max_material = integer_at(&doc, &format!("{material}/x-max-decoded-bytes")) as usize;
    assert_eq!(integer_at(&doc, &format!("{material}/x-min-decoded-bytes")), 1);
    let r = app
        .post(
            "/v1/keys/import-max/import",
            json!({"key_material": b64(&vec![7u8; max_material])}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            "/v1/keys/import-over/import",
            json!({"key_material": b64(&vec![7u8; max_material + 1])}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // Messages: at the limit signs, one byte over is 413.
    let key = "limits";
    app.create_key(key).await;
    let max_message = integer_at(&doc, "/components/schemas/Message/x-max-decoded-bytes") as usize;
    assert_eq!(max_message, 1024 * 1024);
    let r = app
        .post(
            &format!("/v1/keys/{key}/sign"),
            json!({"message": b64(&vec![1u8; max_message])}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let over = b64(&vec![1u8; max_message + 1]);
    let r = app
        .post(&format!("/v1/keys/{key}/sign"), json!({"message": over}))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.code(), "PAYLOAD_TOO_LARGE");
    assert!(
        doc.pointer("/paths/~1v1~1keys~1{name}~1sign/post/responses/413")
            .is_some()
            && doc
                .pointer("/paths/~1v1~1keys~1{name}~1verify/post/responses/413")
                .is_some()
    );

    // Batches: the documented maximum is served, one more is refused.
    let max_batch = integer_at(&doc, "/components/schemas/SignBatchRequest/properties/batch/maxItems") as usize;
    assert_eq!(
        max_batch as u64,
        integer_at(&doc, "/components/schemas/VerifyBatchRequest/properties/batch/maxItems")
    );
    assert_eq!(max_batch, 1000);
    let r = sign_batch(&app, key, max_batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["batch"].as_array().map(Vec::len), Some(max_batch));
    let r = sign_batch(&app, key, max_batch + 1).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "INVALID_ARGUMENT");
}
