//! End to end: requests signed by AWS's Rust signer (and by botocore) against credentials
//! made in sigvault, verified through `POST /v1/sigv4/verify`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::{Forwarded, ToSign, create_credential, now, sign_with, verify};
use crate::helpers::spawn_app;

#[tokio::test]
async fn a_get_with_a_query_signed_by_aws_sigv4_verifies_and_names_the_principal() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "acme-ci").await;
    let signed = sign_with(
        &id,
        &secret,
        &ToSign::get("/orders?limit=10&after=o-1&tag=a%20b", now(&app)),
    );
    let v = verify(&app, &signed).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["access_key_id"], json!(id));
    assert_eq!(v["principal"], "acme-ci");
    assert_eq!(v["region"], "eu-west-1");
    assert_eq!(v["service"], "execute-api");
    assert_eq!(v["form"], "header");
    let signed_headers: Vec<&str> = v["signed_headers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    assert!(
        signed_headers.contains(&"host") && signed_headers.contains(&"x-amz-date"),
        "{v}"
    );

    // Any change to a signed part fails.
    let mut changed = signed.clone();
    changed.query = changed.query.replace("limit=10", "limit=11");
    assert_eq!(verify(&app, &changed).await["code"], "SIGNATURE_MISMATCH");
    let mut changed = signed.clone();
    changed.path = "/orderz".into();
    assert_eq!(verify(&app, &changed).await["code"], "SIGNATURE_MISMATCH");
    let mut changed = signed.clone();
    changed.method = "DELETE".into();
    assert_eq!(verify(&app, &changed).await["code"], "SIGNATURE_MISMATCH");
    let mut changed = signed;
    for (name, value) in &mut changed.headers {
        if name.eq_ignore_ascii_case("host") {
            *value = "evil.example.test".into();
        }
    }
    assert_eq!(verify(&app, &changed).await["code"], "SIGNATURE_MISMATCH");
}

#[tokio::test]
async fn a_post_with_a_body_verifies_and_a_changed_body_does_not() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "acme-ci").await;
    let body = br#"{"qty":1,"sku":"A-1"}"#;
    let what = ToSign {
        method: "POST",
        path_and_query: "/orders",
        headers: &[("Content-Type", "application/json")],
        body,
        ..ToSign::get("/orders", now(&app))
    };
    let signed = sign_with(&id, &secret, &what);
    assert_eq!(verify(&app, &signed).await["valid"], true);

    let mut tampered = signed.clone();
    tampered.body = br#"{"qty":9,"sku":"A-1"}"#.to_vec();
    assert_eq!(verify(&app, &tampered).await["code"], "SIGNATURE_MISMATCH");

    // The service may send the body's hash instead of the body.
    let mut by_hash = signed.verify_body();
    let digest = base16ct::lower::encode_string(&<sha2::Sha256 as sha2::Digest>::digest(body));
    by_hash.as_object_mut().expect("object").remove("body");
    by_hash["payload_sha256"] = json!(digest);
    let r = app.post("/v1/sigv4/verify", by_hash).await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
}

#[tokio::test]
async fn a_unicode_path_verifies() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "acme-ci").await;
    let signed = sign_with(
        &id,
        &secret,
        &ToSign::get("/caf%C3%A9/%E1%88%B4/a%20b?q=%E2%9C%93", now(&app)),
    );
    let v = verify(&app, &signed).await;
    assert_eq!(v["valid"], true, "{v}");
    let mut other = signed;
    other.path = "/caf%C3%A9/%E1%88%B5/a%20b".into();
    assert_eq!(verify(&app, &other).await["code"], "SIGNATURE_MISMATCH");
}

#[tokio::test]
async fn a_presigned_url_verifies_until_it_expires() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "acme-ci").await;
    let what = ToSign {
        presign: Some(Duration::from_secs(300)),
        ..ToSign::get("/reports/2026.csv", now(&app))
    };
    let signed = sign_with(&id, &secret, &what);
    assert!(signed.query.contains("X-Amz-Signature="), "{}", signed.query);
    assert!(
        !signed
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization")),
        "presigned: no Authorization header"
    );
    let v = verify(&app, &signed).await;
    assert_eq!(
        (v["valid"].clone(), v["form"].clone()),
        (json!(true), json!("presigned")),
        "{v}"
    );

    app.clock.advance(time::Duration::seconds(299));
    assert_eq!(verify(&app, &signed).await["valid"], true, "still valid at 299 s");
    app.clock.advance(time::Duration::seconds(2));
    let v = verify(&app, &signed).await;
    assert_eq!(
        (v["valid"].clone(), v["code"].clone()),
        (json!(false), json!("REQUEST_EXPIRED")),
        "{v}"
    );
}

#[tokio::test]
async fn deactivated_unknown_stale_and_future_requests_are_refused_with_their_codes() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "acme-ci").await;
    let signed = sign_with(&id, &secret, &ToSign::get("/orders", now(&app)));
    assert_eq!(verify(&app, &signed).await["valid"], true);

    let r = app
        .patch(&format!("/v1/credentials/{id}"), json!({"state": "inactive"}))
        .await;
    assert_eq!(
        (r.status, r.body["state"].clone()),
        (StatusCode::OK, json!("inactive")),
        "{}",
        r.body
    );
    let v = verify(&app, &signed).await;
    assert_eq!(v["code"], "INACTIVE_ACCESS_KEY", "{v}");
    assert_eq!(v["access_key_id"], json!(id));
    // The state is told only to a holder of the secret.
    let forged = sign_with(
        &id,
        "not-the-secret-not-the-secret-not-the-se",
        &ToSign::get("/orders", now(&app)),
    );
    assert_eq!(verify(&app, &forged).await["code"], "SIGNATURE_MISMATCH");
    let r = app
        .patch(&format!("/v1/credentials/{id}"), json!({"state": "active"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(verify(&app, &signed).await["valid"], true, "active again");

    let unknown = sign_with("SVAKAAAAAAAAAAAAAAAA", &secret, &ToSign::get("/orders", now(&app)));
    assert_eq!(verify(&app, &unknown).await["code"], "UNKNOWN_ACCESS_KEY");

    let sixteen_minutes = Duration::from_secs(16 * 60);
    let stale = sign_with(&id, &secret, &ToSign::get("/orders", now(&app) - sixteen_minutes));
    assert_eq!(verify(&app, &stale).await["code"], "REQUEST_EXPIRED");
    let fourteen_minutes = Duration::from_secs(14 * 60);
    let recent = sign_with(&id, &secret, &ToSign::get("/orders", now(&app) - fourteen_minutes));
    assert_eq!(verify(&app, &recent).await["valid"], true, "inside the window");
    let future = sign_with(&id, &secret, &ToSign::get("/orders", now(&app) + sixteen_minutes));
    assert_eq!(verify(&app, &future).await["code"], "REQUEST_NOT_YET_VALID");
}

#[tokio::test]
async fn missing_and_malformed_authorization_are_told_apart() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "acme-ci").await;
    let unsigned = Forwarded {
        method: "GET".into(),
        path: "/orders".into(),
        query: String::new(),
        headers: vec![("Host".into(), super::HOST.into())],
        body: Vec::new(),
    };
    assert_eq!(verify(&app, &unsigned).await["code"], "MISSING_AUTHORIZATION");

    let signed = sign_with(&id, &secret, &ToSign::get("/orders", now(&app)));
    for bad in [
        "AWS4-HMAC-SHA256 Credential=garbage",
        "AWS4-HMAC-SHA512 Credential=x/20260921/r/s/aws4_request, SignedHeaders=host, Signature=00",
        "Bearer abc",
    ] {
        let mut mangled = signed.clone();
        for (name, value) in &mut mangled.headers {
            if name.eq_ignore_ascii_case("authorization") {
                *value = bad.into();
            }
        }
        let v = verify(&app, &mangled).await;
        assert_eq!(v["code"], "MALFORMED_AUTHORIZATION", "{bad}: {v}");
    }
}

#[tokio::test]
async fn bad_verify_calls_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "acme-ci").await;
    let signed = sign_with(&id, &secret, &ToSign::get("/orders", now(&app)));
    let good = signed.verify_body();
    let cases = [
        ("not JSON", None, b"{".to_vec()),
        ("unknown field", Some(json!({"extra": 1})), Vec::new()),
        ("path without /", Some(json!({"path": "orders"})), Vec::new()),
        ("bad method", Some(json!({"method": "GE T"})), Vec::new()),
        ("bad source_ip", Some(json!({"source_ip": "not-an-ip"})), Vec::new()),
        ("bad payload hash", Some(json!({"payload_sha256": "XYZ"})), Vec::new()),
        ("bad base64 body", Some(json!({"body": "***"})), Vec::new()),
        ("headers not pairs", Some(json!({"headers": [["a"]]})), Vec::new()),
    ];
    for (what, patch, raw) in cases {
        let body = match patch {
            Some(p) => {
                let mut b = good.clone();
                for (k, v) in p.as_object().expect("object") {
                    b[k] = v.clone();
                }
                serde_json::to_vec(&b).expect("json")
            }
            None => raw,
        };
        let r = app.post_raw("/v1/sigv4/verify", &body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            "{what}: {}",
            r.body
        );
    }
    let too_many: Vec<_> = (0..129).map(|i| json!([format!("x-h{i}"), "v"])).collect();
    let mut b = good.clone();
    b["headers"] = json!(too_many);
    let r = app.post("/v1/sigv4/verify", b).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let activity = app.get(&format!("/v1/credentials/{id}/activity")).await;
    assert_eq!(
        activity.body["fingerprints"],
        json!([]),
        "nothing was recorded: {}",
        activity.body
    );
}

/// botocore — the AWS SDK for Python's signer — through `examples/sigv4_sign.py`, the
/// script of docs/API.md's SigV4 example. `scripts/test.sh` installs botocore when it is missing.
#[tokio::test]
async fn requests_signed_by_botocore_through_the_readme_example_verify() {
    let app = spawn_app().await;
    // botocore signs with the real time: bring the vault's clock to it.
    let real = time::OffsetDateTime::now_utc();
    app.clock
        .advance(real - sigvault::clock::Clock::now(app.clock.as_ref()));
    let (id, secret) = create_credential(&app, "acme-ci").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sigv4_sign.py");
    for args in [
        vec![
            "POST",
            "https://api.example.test/orders?dry_run=1",
            "--body",
            r#"{"qty":1}"#,
        ],
        vec![
            "GET",
            "https://api.example.test/a%20b/%E1%88%B4?x=1&b=2",
            "--header",
            "X-Custom: v",
        ],
        vec![
            "GET",
            "https://api.example.test/reports?x=1",
            "--presign",
            "300",
            "--service",
            "s3",
        ],
    ] {
        let out = std::process::Command::new("python3")
            .arg(script)
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", &id)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
        let r = app.post("/v1/sigv4/verify", body.clone()).await;
        assert_eq!(r.body["valid"], true, "{args:?}: {} for {body}", r.body);
        assert_eq!(r.body["principal"], "acme-ci");
    }
}

#[tokio::test]
async fn made_up_scopes_do_not_fill_the_derived_key_cache_and_a_verified_one_is_cached_once() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "acme-ci").await;
    for i in 0..20 {
        let region = format!("region-{i}");
        let forged = sign_with(
            &id,
            "a-guess-a-guess-a-guess-a-guess-a-guess!",
            &ToSign {
                region: &region,
                ..ToSign::get("/orders", now(&app))
            },
        );
        assert_eq!(verify(&app, &forged).await["code"], "SIGNATURE_MISMATCH");
    }
    assert_eq!(
        app.state.credentials.cache_sizes(),
        (1, 0),
        "one unwrapped secret (one KEK unwrap), no derived key cached"
    );
    let signed = sign_with(&id, &secret, &ToSign::get("/orders", now(&app)));
    for _ in 0..3 {
        assert_eq!(verify(&app, &signed).await["valid"], true);
    }
    assert_eq!(
        app.state.credentials.cache_sizes(),
        (1, 1),
        "the verified scope's key is cached"
    );
    let r = app
        .patch(&format!("/v1/credentials/{id}"), json!({"state": "inactive"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.state.credentials.cache_sizes(), (0, 0), "a change drops both");
}
