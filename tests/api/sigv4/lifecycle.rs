//! Credential lifecycle: create (secret once), import, list, get, patch, delete, the
//! per-principal limit, the signing-key route, and bad requests.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{ToSign, create_credential, now, sign_with, verify};
use crate::helpers::{TestApp, spawn_app};

fn assert_no_secret(body: &Value, secret: &str) {
    let text = body.to_string();
    assert!(!text.contains("secret"), "no secret field: {text}");
    assert!(!text.contains(secret), "the secret is not in {text}");
}

#[tokio::test]
async fn a_created_credential_shows_its_secret_once_and_never_again() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/credentials",
            json!({"principal": "acme-ci", "description": "CI deploys"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["access_key_id"].as_str().expect("id").to_owned();
    let secret = r.body["secret_access_key"].as_str().expect("secret").to_owned();
    assert_eq!(id.len(), 20, "{id}");
    assert!(id.starts_with("SVAK"), "{id}");
    assert!(
        id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "base32: {id}"
    );
    assert_eq!(secret.len(), 40, "a 40-character secret");
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    );
    assert_eq!(r.body["state"], "active");
    assert_eq!(r.body["principal"], "acme-ci");
    assert_eq!(r.body["description"], "CI deploys");
    assert!(r.body["created_at"].is_string());

    let got = app.get(&format!("/v1/credentials/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_no_secret(&got.body, &secret);
    assert_eq!(got.body["access_key_id"], json!(id));
    let list = app.get("/v1/credentials?principal=acme-ci").await;
    assert_no_secret(&list.body, &secret);
    assert_eq!(list.body["credentials"].as_array().map(Vec::len), Some(1));
    let activity = app.get(&format!("/v1/credentials/{id}/activity")).await;
    assert_no_secret(&activity.body, &secret);
    let events = app.get("/v1/audit/events?limit=100").await;
    assert!(!events.body.to_string().contains(&secret), "not in the audit trail");
    // And it works.
    let signed = sign_with(&id, &secret, &ToSign::get("/", now(&app)));
    assert_eq!(verify(&app, &signed).await["valid"], true);
}

#[tokio::test]
async fn a_principal_holds_at_most_two_so_it_can_rotate_without_downtime() {
    let app = spawn_app().await;
    let (old, old_secret) = create_credential(&app, "acme-ci").await;
    let (new, new_secret) = create_credential(&app, "acme-ci").await;
    let r = app.post("/v1/credentials", json!({"principal": "acme-ci"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
        "{}",
        r.body
    );
    create_credential(&app, "other").await;

    // Both work during the move; then the old one goes.
    for (id, secret) in [(&old, &old_secret), (&new, &new_secret)] {
        let signed = sign_with(id, secret, &ToSign::get("/", now(&app)));
        assert_eq!(verify(&app, &signed).await["valid"], true);
    }
    let r = app
        .patch(&format!("/v1/credentials/{old}"), json!({"state": "inactive"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.delete(&format!("/v1/credentials/{old}")).await;
    assert_eq!(
        (r.status, r.body["deleted"].clone()),
        (StatusCode::OK, json!(true)),
        "{}",
        r.body
    );
    let r = app.get(&format!("/v1/credentials/{old}")).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "CREDENTIAL_NOT_FOUND"));
    let r = app.delete(&format!("/v1/credentials/{old}")).await;
    assert_eq!(r.code(), "CREDENTIAL_NOT_FOUND");
    let signed = sign_with(&old, &old_secret, &ToSign::get("/", now(&app)));
    assert_eq!(
        verify(&app, &signed).await["code"],
        "UNKNOWN_ACCESS_KEY",
        "deleted means unknown"
    );
    create_credential(&app, "acme-ci").await;

    let all = app.get("/v1/credentials").await;
    assert_eq!(all.body["credentials"].as_array().map(Vec::len), Some(3));
    let page = app.get("/v1/credentials?limit=1").await;
    let next = page.body["next"].as_str().expect("a next cursor").to_owned();
    let rest = app.get(&format!("/v1/credentials?cursor={next}")).await;
    assert_eq!(rest.body["credentials"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn an_imported_pair_verifies_requests_signed_with_it() {
    let app = spawn_app().await;
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let r = app
        .post(
            "/v1/credentials/import",
            json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": secret, "principal": "legacy"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_no_secret(&r.body, secret);
    let signed = sign_with("AKIAIOSFODNN7EXAMPLE", secret, &ToSign::get("/x", now(&app)));
    assert_eq!(verify(&app, &signed).await["principal"], "legacy");

    let again = app
        .post(
            "/v1/credentials/import",
            json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": secret, "principal": "other"}),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "FAILED_PRECONDITION")
    );
}

#[tokio::test]
async fn bad_credential_requests_are_400_or_404_and_change_nothing() {
    let app = spawn_app().await;
    let (id, _) = create_credential(&app, "acme-ci").await;
    let before = app.get("/v1/credentials").await.body;
    let cases: [(&str, reqwest::Method, String, Value, StatusCode); 11] = [
        (
            "no principal",
            reqwest::Method::POST,
            "/v1/credentials".into(),
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "reserved principal",
            reqwest::Method::POST,
            "/v1/credentials".into(),
            json!({"principal": "root"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad rule",
            reqwest::Method::POST,
            "/v1/credentials".into(),
            json!({"principal": "p", "on_new_fingerprint": "panic"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            reqwest::Method::POST,
            "/v1/credentials".into(),
            json!({"principal": "p", "secret_access_key": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "short secret",
            reqwest::Method::POST,
            "/v1/credentials/import".into(),
            json!({"access_key_id": "AKIDSHORTSECRET", "secret_access_key": "short", "principal": "p"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad id",
            reqwest::Method::POST,
            "/v1/credentials/import".into(),
            json!({"access_key_id": "AK/ID", "secret_access_key": "0123456789abcdef0123", "principal": "p"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "spaces in secret",
            reqwest::Method::POST,
            "/v1/credentials/import".into(),
            json!({"access_key_id": "AKIDSPACES", "secret_access_key": "0123456789 abcdef0123", "principal": "p"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad state",
            reqwest::Method::PATCH,
            format!("/v1/credentials/{id}"),
            json!({"state": "paused"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty patch",
            reqwest::Method::PATCH,
            format!("/v1/credentials/{id}"),
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown id",
            reqwest::Method::PATCH,
            "/v1/credentials/SVAKNOSUCHCREDENTIAL".into(),
            json!({"state": "inactive"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "invalid id",
            reqwest::Method::GET,
            "/v1/credentials/not-an-id!".into(),
            Value::Null,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (what, method, path, body, status) in cases {
        let body = (!body.is_null()).then(|| body.to_string().into_bytes());
        let r = app.send(method, &path, Some(crate::helpers::ROOT_TOKEN), body).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
    }
    assert_eq!(app.get("/v1/credentials").await.body, before, "nothing changed");
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

async fn signing_key(app: &TestApp, body: Value) -> crate::helpers::Reply {
    app.post("/v1/sigv4/signing-key", body).await
}

#[tokio::test]
async fn the_signing_key_route_returns_the_derived_key_of_one_scope_near_today() {
    let app = spawn_app().await;
    let (id, secret) = create_credential(&app, "gateway-fed").await;
    let today = sigvault::clock::Clock::now(app.clock.as_ref()).date();
    let date = |d: time::Date| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day());
    let r = signing_key(
        &app,
        json!({"access_key_id": id, "date": date(today), "region": "eu-west-1", "service": "s3"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date(today).as_bytes());
    let k_region = hmac(&k_date, b"eu-west-1");
    let k_service = hmac(&k_region, b"s3");
    let expected = hmac(&k_service, b"aws4_request");
    assert_eq!(r.body["signing_key"], json!(crate::helpers::b64(&expected)));
    assert_eq!(
        r.body["scope"],
        json!(format!("{}/eu-west-1/s3/aws4_request", date(today)))
    );
    assert!(r.body["expires_at"].is_string());

    let far = today + time::Duration::days(3);
    let r = signing_key(
        &app,
        json!({"access_key_id": id, "date": date(far), "region": "eu-west-1", "service": "s3"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = signing_key(
        &app,
        json!({"access_key_id": id, "date": "2026-09-21", "region": "eu-west-1", "service": "s3"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = signing_key(
        &app,
        json!({"access_key_id": id, "date": date(today), "region": "EU WEST", "service": "s3"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = signing_key(
        &app,
        json!({"access_key_id": "SVAKNOSUCHCREDENTIAL", "date": date(today), "region": "eu-west-1", "service": "s3"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "CREDENTIAL_NOT_FOUND"));
    app.patch(&format!("/v1/credentials/{id}"), json!({"state": "inactive"}))
        .await;
    let r = signing_key(
        &app,
        json!({"access_key_id": id, "date": date(today), "region": "eu-west-1", "service": "s3"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "FAILED_PRECONDITION"));

    let events = app.get("/v1/audit/events?action=DeriveSigningKey&limit=100").await;
    let list = events.body["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 6, "every call is audited");
    assert!(
        !events.body.to_string().contains(&crate::helpers::b64(&expected)),
        "never the key"
    );
}

#[tokio::test]
async fn the_compliance_report_lists_credentials_with_age_and_last_use_never_a_secret() {
    let app = spawn_app().await;
    let (used, used_secret) = create_credential(&app, "acme-ci").await;
    let (idle, idle_secret) = create_credential(&app, "acme-ci").await;
    let signed = sign_with(&used, &used_secret, &ToSign::get("/", now(&app)));
    assert_eq!(verify(&app, &signed).await["valid"], true);
    app.clock.advance(time::Duration::days(400));

    let r = app.get("/v1/reports/compliance").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let text = r.body.to_string();
    assert!(
        !text.contains(&used_secret) && !text.contains(&idle_secret),
        "no secret in the report"
    );
    let rows = r.body["credentials"].as_array().expect("a credential section");
    let row = |id: &str| rows.iter().find(|c| c["access_key_id"] == id).cloned().expect("listed");
    let u = row(&used);
    assert_eq!(
        (u["age_days"].clone(), u["over_age"].clone(), u["never_used"].clone()),
        (json!(400), json!(true), json!(false)),
        "{u}"
    );
    assert_eq!(u["last_used_service"], "execute-api");
    assert_eq!(row(&idle)["never_used"], true);
    assert_eq!(r.body["summary"]["credentials"]["total"], 2);
    assert_eq!(r.body["summary"]["credentials"]["never_used"], 1);

    let html = crate::report::report_html(&app).await;
    assert!(
        html.contains(&used) && html.contains("SigV4 credentials"),
        "the page lists them"
    );
}

/// An hsm-boundary credential: `"AWS4" ‖ secret` lives only in the HSM, which computes the
/// first link of the SigV4 chain (kDate); requests signed by AWS's own signer verify, and the
/// derived key is the one the same secret gives in the process boundary.
#[tokio::test]
async fn an_hsm_boundary_credential_verifies_what_aws_signs_and_derives_the_same_keys() {
    use crate::sigv4::{ToSign, now, sign_with, verify};
    let app = spawn_app().await;
    let r = app
        .post("/v1/credentials", json!({"principal": "edge", "boundary": "hsm"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["boundary"], "hsm");
    let (id, secret) = (
        r.body["access_key_id"].as_str().expect("id").to_owned(),
        r.body["secret_access_key"].as_str().expect("secret").to_owned(),
    );
    assert_eq!(app.get(&format!("/v1/credentials/{id}")).await.body["boundary"], "hsm");
    let request = sign_with(&id, &secret, &ToSign::get("/orders?limit=5", now(&app)));
    let verdict = verify(&app, &request).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    let forged = sign_with(&id, &format!("{secret}x"), &ToSign::get("/orders?limit=5", now(&app)));
    assert_eq!(verify(&app, &forged).await["valid"], false);

    // The same secret imported in both boundaries derives one key.
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    for (id, boundary) in [("AKIDPROCESS0000001", "process"), ("AKIDINHSM000000001", "hsm")] {
        let r = app
            .post(
                "/v1/credentials/import",
                json!({"access_key_id": id, "secret_access_key": secret, "principal": "edge2", "boundary": boundary}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let today = sigvault::clock::Clock::now(app.clock.as_ref()).date();
    let date = format!("{:04}{:02}{:02}", today.year(), u8::from(today.month()), today.day());
    let derived = |id: &'static str| {
        let (app, date) = (&app, date.clone());
        async move {
            let r = signing_key(
                app,
                json!({"access_key_id": id, "date": date, "region": "eu-west-1", "service": "s3"}),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body["signing_key"].as_str().expect("key").to_owned()
        }
    };
    let here = derived("AKIDPROCESS0000001").await;
    assert_eq!(derived("AKIDINHSM000000001").await, here);
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, b"eu-west-1");
    let k_service = hmac(&k_region, b"s3");
    assert_eq!(crate::helpers::unb64(&here), hmac(&k_service, b"aws4_request"));

    // Too short for the HSM's HMAC, or an unknown boundary: refused, nothing stored.
    let r = app
        .post(
            "/v1/credentials/import",
            json!({"access_key_id": "AKIDSHORT000000001", "secret_access_key": "shortsecretshortsecret", "principal": "edge3", "boundary": "hsm"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        "{}",
        r.body
    );
    let r = app
        .post("/v1/credentials", json!({"principal": "edge3", "boundary": "cloud"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        "{}",
        r.body
    );
}
