//! The error contract: malformed input, bad names, unknown keys and routes, authentication,
//! and the unauthenticated system routes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{all_keys, assert_error, assert_item_error, sign_with};
use crate::helpers::{ROOT_TOKEN, Reply, TestApp, b64, spawn_app};

// ----- malformed input and names ----------------------------------------------------------

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
    for name in ["", "a b", long.as_str(), "ключ", "a/b", "x;drop", ".", "..", "..."] {
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
        "/v1/keys/...".to_owned(),
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

// ----- unknown keys and routes ------------------------------------------------------------

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
        (Method::POST, "/"),
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

// ----- authentication ---------------------------------------------------------------------

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

/// A request with an arbitrary `Authorization` header value.
async fn send_authorization(app: &TestApp, method: Method, path: &str, authorization: &str, body: Value) -> Reply {
    let request = app
        .client
        .request(method, app.url(path))
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(body.to_string());
    Reply::of(request).await
}

// ----- system -----------------------------------------------------------------------------

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

/// A duration whose last character is multi-byte once made the parser slice inside it.
#[tokio::test]
async fn a_non_ascii_rotation_period_is_refused_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    for period in ["1é", "é", "1😀", "٣d"] {
        let r = app
            .post(
                "/v1/keys",
                json!({"name": "k", "algorithm": "hmac-sha256", "auto_rotate_period": period}),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", period);
    }
    app.create_key("k").await;
    let r = app.patch("/v1/keys/k", json!({"auto_rotate_period": "2€"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "patch");
    let r = app.send(reqwest::Method::GET, "/v1/sys/ping", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
}
