//! Importing key material, as a new key or as a new version of an existing one.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Sha256, Sha384, Sha512};

use super::{all_keys, assert_error};
use crate::helpers::{b64, spawn_app};

fn local_hmac<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test]
async fn imported_material_signs_exactly_like_a_local_hmac() {
    let app = spawn_app().await;
    // RFC 4231 test case 2: a short, known key (imports may be shorter than generated keys).
    let (key, data) = (b"Jefe".as_slice(), b"what do ya want for nothing?".as_slice());
    let r = app
        .post("/v1/keys/rfc4231/import", json!({"key_material": b64(key)}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (r.body["algorithm"].as_str(), r.body["latest_version"].as_u64()),
        (Some("hmac-sha256"), Some(1))
    );
    let (signature, _) = app.sign("rfc4231", data).await;
    assert_eq!(
        signature,
        unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    assert_eq!(signature, local_hmac::<Hmac<Sha256>>(key, data));

    let material: Vec<u8> = (0u8..=99).collect();
    for (name, algorithm) in [("i384", "hmac-sha384"), ("i512", "hmac-sha512")] {
        let body = app.import_key(name, algorithm, &material).await;
        assert_eq!(body["algorithm"], algorithm);
    }
    assert_eq!(
        app.sign("i384", b"payload").await.0,
        local_hmac::<Hmac<Sha384>>(&material, b"payload")
    );
    assert_eq!(
        app.sign("i512", b"payload").await.0,
        local_hmac::<Hmac<Sha512>>(&material, b"payload")
    );
    let expected = local_hmac::<Hmac<Sha512>>(&material, b"payload");
    assert_eq!(
        app.verify("i512", b"payload", &expected).await.body,
        json!({"valid": true, "key_version": 1})
    );
}

#[tokio::test]
async fn importing_into_an_existing_key_adds_a_version_with_that_material() {
    let app = spawn_app().await;
    let created = app.import_key("k", "hmac-sha256", &[0x11; 32]).await;
    assert_eq!(created["origin"], "imported");
    let (v1_signature, _) = app.sign("k", b"m").await;
    let material = [0x5a_u8; 40];

    let body = app.import_key("k", "hmac-sha256", &material).await;
    assert_eq!(
        (
            body["latest_version"].as_u64(),
            body["versions"].as_array().map(Vec::len)
        ),
        (Some(2), Some(2))
    );
    let (signature, version) = app.sign("k", b"m").await;
    assert_eq!((signature, version), (local_hmac::<Hmac<Sha256>>(&material, b"m"), 2));
    assert_eq!(
        app.verify("k", b"m", &v1_signature).await.body,
        json!({"valid": true, "key_version": 1})
    );

    let r = app
        .post("/v1/keys/k/import", json!({"key_material": b64(&[7; 32])}))
        .await;
    assert_eq!(
        (r.status, r.body["latest_version"].as_u64()),
        (StatusCode::CREATED, Some(3)),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn import_refuses_create_options_on_an_existing_key_another_algorithm_and_bad_material() {
    let app = spawn_app().await;
    app.import_key("k", "hmac-sha256", &[3; 32]).await;
    let before = all_keys(&app).await;
    let good = b64(&[1; 32]);
    let cases = [
        (
            "k",
            json!({"key_material": good, "exportable": true}),
            "create option on an existing key",
        ),
        (
            "k",
            json!({"key_material": good, "tags": {"team": "x"}}),
            "tags on an existing key",
        ),
        (
            "k",
            json!({"key_material": good, "algorithm": "hmac-sha512"}),
            "algorithm mismatch",
        ),
        ("k", json!({"key_material": ""}), "empty material"),
        ("k", json!({"key_material": b64(&[1; 513])}), "513 bytes"),
        ("k", json!({"key_material": "not base64!"}), "bad base64"),
        ("k", json!({"key_material": "AQI"}), "unpadded base64"),
        ("new", json!({"key_material": ""}), "empty material for a new key"),
        (
            "new",
            json!({"key_material": b64(&[1; 513])}),
            "513 bytes for a new key",
        ),
        (
            "new",
            json!({"key_material": good, "algorithm": "hmac-md5"}),
            "unknown algorithm",
        ),
        (
            "new",
            json!({"key_material": good, "key_size": 32}),
            "key_size is not an import option",
        ),
    ];
    for (name, body, what) in cases {
        let r = app.post(&format!("/v1/keys/{name}/import"), body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    assert_eq!(all_keys(&app).await, before);

    let body = app.import_key("k", "hmac-sha256", &[2; 512]).await;
    assert_eq!(body["latest_version"], 2, "512 bytes is the largest material");
}

/// No takeover by import: known material imported as the newest version of a key generated
/// inside the vault would let the importer forge the signatures of the service using it. It
/// is refused for every caller, root included, and the key signs as before.
#[tokio::test]
async fn a_version_cannot_be_imported_into_a_generated_key_by_anyone() {
    let app = spawn_app().await;
    let created = app.create_key("service-key").await;
    assert_eq!(created["origin"], "generated");
    let (before, _) = app.sign("service-key", b"m").await;
    let r = app
        .post(
            "/v1/auth/tokens",
            json!({"principal": "custodian-1", "groups": ["custodian"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let custodian = r.body["token"].as_str().expect("token").to_owned();
    let known = b64(&[0x42; 32]);
    for token in [crate::helpers::ROOT_TOKEN, custodian.as_str()] {
        let r = app
            .send(
                reqwest::Method::POST,
                "/v1/keys/service-key/import",
                Some(token),
                Some(serde_json::to_vec(&json!({"key_material": known})).expect("json")),
            )
            .await;
        assert_error(
            &r,
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "import into a generated key",
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("generated inside the vault"),
            "{}",
            r.body
        );
    }
    let key = app.get("/v1/keys/service-key").await.body;
    assert_eq!(key["latest_version"], 1, "nothing was added: {key}");
    let (after, version) = app.sign("service-key", b"m").await;
    assert_eq!((after, version), (before, 1));
    // A rotation (material made inside the vault) is still fine.
    let r = app.post("/v1/keys/service-key/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["origin"], "generated");
}
