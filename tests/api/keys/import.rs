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
    app.create_key("k").await;
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
    app.create_key("k").await;
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
