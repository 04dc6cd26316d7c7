//! Encryption keys (`aes256-gcm`): encrypt and decrypt, with and without aad; rewrap under a
//! rotated key; data keys; `min_verify_version` as the minimum decryption version; a key of
//! one algorithm refusing the other kind's operations; and a ciphertext opened outside the
//! vault with the RustCrypto AES-GCM implementation, given imported material.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::assert_error;
use crate::helpers::{TestApp, b64, spawn_app, unb64};

async fn create_aes(app: &TestApp, name: &str) -> Value {
    let r = app
        .post("/v1/keys", json!({"name": name, "algorithm": "aes256-gcm"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn encrypt(app: &TestApp, name: &str, plaintext: &[u8], aad: Option<&[u8]>) -> (String, u64) {
    let mut body = json!({"plaintext": b64(plaintext)});
    if let Some(aad) = aad {
        body["aad"] = json!(b64(aad));
    }
    let r = app.post(&format!("/v1/keys/{name}/encrypt"), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    (
        r.body["ciphertext"].as_str().expect("ciphertext").to_owned(),
        r.body["key_version"].as_u64().expect("version"),
    )
}

async fn decrypt(app: &TestApp, name: &str, ciphertext: &str, aad: Option<&[u8]>) -> crate::helpers::Reply {
    let mut body = json!({"ciphertext": ciphertext});
    if let Some(aad) = aad {
        body["aad"] = json!(b64(aad));
    }
    app.post(&format!("/v1/keys/{name}/decrypt"), body).await
}

#[tokio::test]
async fn encrypt_decrypt_round_trips_and_wrong_aad_or_an_altered_ciphertext_fails_alike() {
    let app = spawn_app().await;
    let created = create_aes(&app, "data").await;
    assert_eq!(
        (created["algorithm"].as_str(), created["origin"].as_str()),
        (Some("aes256-gcm"), Some("generated"))
    );

    let (plain_ct, v) = encrypt(&app, "data", b"card 4111", None).await;
    assert!(plain_ct.starts_with("sigvault:v1:"), "{plain_ct}");
    assert_eq!(v, 1);
    let r = decrypt(&app, "data", &plain_ct, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (
            unb64(r.body["plaintext"].as_str().expect("plaintext")),
            r.body["key_version"].as_u64()
        ),
        (b"card 4111".to_vec(), Some(1))
    );
    // Two encryptions of one plaintext differ (a fresh nonce each).
    assert_ne!(encrypt(&app, "data", b"card 4111", None).await.0, plain_ct);

    let (bound, _) = encrypt(&app, "data", b"row 7", Some(b"tenant-a")).await;
    let r = decrypt(&app, "data", &bound, Some(b"tenant-a")).await;
    assert_eq!(unb64(r.body["plaintext"].as_str().expect("plaintext")), b"row 7");
    let mut altered = bound.clone().into_bytes();
    let last = altered.len() - 3;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ascii");
    let other = create_aes(&app, "other").await;
    assert_eq!(other["latest_version"], 1);
    for (what, name, ciphertext, aad) in [
        ("other aad", "data", bound.as_str(), Some(b"tenant-b".as_slice())),
        ("no aad", "data", bound.as_str(), None),
        ("altered", "data", altered.as_str(), Some(b"tenant-a".as_slice())),
        ("another key's", "other", bound.as_str(), Some(b"tenant-a".as_slice())),
    ] {
        let r = decrypt(&app, name, ciphertext, aad).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("does not decrypt"),
            "{what}: {}",
            r.body
        );
    }
    for (what, ciphertext) in [
        ("no prefix", "v1:AAAA"),
        ("vault's prefix", "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ("not base64", "sigvault:v1:!!!!"),
        ("too short", "sigvault:v1:AAAA"),
    ] {
        let r = decrypt(&app, "data", ciphertext, None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    let r = decrypt(&app, "data", "sigvault:v9:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", None).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "a version the key does not have",
    );
}

#[tokio::test]
async fn rewrap_moves_a_ciphertext_to_the_latest_version_and_min_version_refuses_older_ones() {
    let app = spawn_app().await;
    create_aes(&app, "data").await;
    let (v1_ct, _) = encrypt(&app, "data", b"kept", Some(b"ctx")).await;
    let r = app.post("/v1/keys/data/rotate", json!({})).await;
    assert_eq!((r.status, r.body["latest_version"].as_u64()), (StatusCode::OK, Some(2)));
    let (v2_ct, v) = encrypt(&app, "data", b"new", None).await;
    assert!(v2_ct.starts_with("sigvault:v2:") && v == 2, "{v2_ct}");
    // Old ciphertexts still decrypt after a rotation.
    let r = decrypt(&app, "data", &v1_ct, Some(b"ctx")).await;
    assert_eq!(
        (r.status, r.body["key_version"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{}",
        r.body
    );

    let r = app
        .post("/v1/keys/data/rewrap", json!({"ciphertext": v1_ct, "aad": b64(b"ctx")}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["key_version"], 2);
    let rewrapped = r.body["ciphertext"].as_str().expect("ciphertext").to_owned();
    assert!(rewrapped.starts_with("sigvault:v2:"), "{rewrapped}");
    let r = decrypt(&app, "data", &rewrapped, Some(b"ctx")).await;
    assert_eq!(unb64(r.body["plaintext"].as_str().expect("plaintext")), b"kept");

    let r = app.patch("/v1/keys/data", json!({"min_verify_version": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = decrypt(&app, "data", &v1_ct, Some(b"ctx")).await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "below min_verify_version",
    );
    let r = app
        .post("/v1/keys/data/rewrap", json!({"ciphertext": v1_ct, "aad": b64(b"ctx")}))
        .await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "rewrap below min_verify_version",
    );
    let r = decrypt(&app, "data", &rewrapped, Some(b"ctx")).await;
    assert_eq!(r.status, StatusCode::OK, "the rewrapped one still decrypts: {}", r.body);
}

#[tokio::test]
async fn a_data_key_decrypts_from_its_own_ciphertext_and_can_come_without_its_plaintext() {
    let app = spawn_app().await;
    create_aes(&app, "kek-for-files").await;
    let r = app.post("/v1/keys/kek-for-files/datakey", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let plaintext = unb64(r.body["plaintext"].as_str().expect("plaintext"));
    assert_eq!(plaintext.len(), 32);
    let ciphertext = r.body["ciphertext"].as_str().expect("ciphertext").to_owned();
    let opened = decrypt(&app, "kek-for-files", &ciphertext, None).await;
    assert_eq!(unb64(opened.body["plaintext"].as_str().expect("plaintext")), plaintext);

    let r = app
        .post(
            "/v1/keys/kek-for-files/datakey",
            json!({"return_plaintext": false, "bits": 256, "aad": b64(b"bucket-1")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.get("plaintext").is_none(), "{}", r.body);
    let ciphertext = r.body["ciphertext"].as_str().expect("ciphertext").to_owned();
    let opened = decrypt(&app, "kek-for-files", &ciphertext, Some(b"bucket-1")).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    assert_eq!(unb64(opened.body["plaintext"].as_str().expect("plaintext")).len(), 32);
    let r = app.post("/v1/keys/kek-for-files/datakey", json!({"bits": 128})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "128-bit data key");
}

#[tokio::test]
async fn a_key_does_only_what_its_algorithm_does_and_aes_keys_are_32_bytes() {
    let app = spawn_app().await;
    create_aes(&app, "enc").await;
    app.create_key("mac").await;
    let r = app.post("/v1/keys/enc/sign", json!({"message": b64(b"m")})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "sign with an encryption key",
    );
    let r = app
        .post(
            "/v1/keys/enc/verify",
            json!({"message": b64(b"m"), "signature": b64(&[0; 32])}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "verify with an encryption key",
    );
    for route in ["encrypt", "datakey"] {
        let body = if route == "encrypt" {
            json!({"plaintext": b64(b"m")})
        } else {
            json!({})
        };
        let r = app.post(&format!("/v1/keys/mac/{route}"), body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", route);
    }
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "short", "algorithm": "aes256-gcm", "key_size": 16}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "a 16-byte AES key");
    let r = app
        .post(
            "/v1/keys/short/import",
            json!({"algorithm": "aes256-gcm", "key_material": b64(&[1; 31])}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "31 bytes of AES material",
    );
    let r = app
        .post("/v1/keys/enc/encrypt", json!({"plaintext": "not base64!"}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "plaintext not base64");
    let r = app
        .post("/v1/keys/enc/encrypt", json!({"plaintext": b64(b"m"), "extra": 1}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "an unknown field");
    let r = app
        .post(
            "/v1/keys/enc/encrypt",
            json!({"plaintext": b64(&vec![0u8; 1024 * 1024 + 1])}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "a plaintext over 1 MiB",
    );
}

/// Imported material encrypts exactly as AES-256-GCM does outside the vault: the ciphertext
/// opens with RustCrypto's implementation given the key, the nonce and the aad.
#[tokio::test]
async fn an_imported_aes_key_encrypts_as_aes_256_gcm_does_elsewhere() {
    let app = spawn_app().await;
    let material = [0x24u8; 32];
    let r = app
        .post(
            "/v1/keys/byok-aes/import",
            json!({"algorithm": "aes256-gcm", "key_material": b64(&material)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (ciphertext, _) = encrypt(&app, "byok-aes", b"opened elsewhere", Some(b"aad")).await;
    let body = unb64(ciphertext.strip_prefix("sigvault:v1:").expect("v1"));
    let (nonce, sealed) = body.split_at(12);
    let cipher = Aes256Gcm::new_from_slice(&material).expect("a 32-byte key");
    let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
    let opened = cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: sealed,
                aad: b"aad",
            },
        )
        .expect("decrypts outside the vault");
    assert_eq!(opened, b"opened elsewhere");
}

/// The batch forms: each item with its own aad and reference, an item that fails beside the
/// ones that succeed, and the batch limits of sign.
#[tokio::test]
async fn batches_encrypt_decrypt_and_rewrap_item_by_item() {
    let app = spawn_app().await;
    create_aes(&app, "data").await;
    let r = app
        .post(
            "/v1/keys/data/encrypt",
            json!({"batch": [
                {"plaintext": b64(b"one"), "reference": "a"},
                {"plaintext": b64(b"two"), "aad": b64(b"ctx"), "reference": "b"},
                {"plaintext": "not base64!", "reference": "c"},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["batch"].as_array().expect("batch").clone();
    assert_eq!(items.len(), 3);
    assert_eq!(
        (items[0]["reference"].as_str(), items[0]["key_version"].as_u64()),
        (Some("a"), Some(1))
    );
    assert_eq!(items[2]["error"]["code"], "INVALID_ARGUMENT", "{}", r.body);
    assert_eq!(items[2]["reference"], "c");
    let (one, two) = (items[0]["ciphertext"].clone(), items[1]["ciphertext"].clone());

    let r = app
        .post(
            "/v1/keys/data/decrypt",
            json!({"batch": [
                {"ciphertext": one, "reference": "a"},
                {"ciphertext": two, "aad": b64(b"ctx"), "reference": "b"},
                {"ciphertext": two, "reference": "b-without-aad"},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["batch"].as_array().expect("batch").clone();
    assert_eq!(unb64(items[0]["plaintext"].as_str().expect("plaintext")), b"one");
    assert_eq!(unb64(items[1]["plaintext"].as_str().expect("plaintext")), b"two");
    assert_eq!(items[2]["error"]["code"], "INVALID_ARGUMENT", "{}", r.body);

    app.post("/v1/keys/data/rotate", json!({})).await;
    let r = app
        .post(
            "/v1/keys/data/rewrap",
            json!({"batch": [{"ciphertext": one}, {"ciphertext": two, "aad": b64(b"ctx")}]}),
        )
        .await;
    let versions: Vec<Option<u64>> = r.body["batch"]
        .as_array()
        .expect("batch")
        .iter()
        .map(|i| i["key_version"].as_u64())
        .collect();
    assert_eq!(versions, [Some(2), Some(2)], "{}", r.body);

    for (what, body) in [
        ("empty batch", json!({"batch": []})),
        (
            "batch beside plaintext",
            json!({"batch": [{"plaintext": b64(b"x")}], "plaintext": b64(b"x")}),
        ),
        (
            "aad beside batch",
            json!({"batch": [{"plaintext": b64(b"x")}], "aad": b64(b"x")}),
        ),
        ("neither", json!({})),
    ] {
        let r = app.post("/v1/keys/data/encrypt", body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"plaintext": b64(b"x")})).collect();
    let r = app.post("/v1/keys/data/encrypt", json!({"batch": too_many})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "over the item limit");
}

/// Key-wrapping keys (`aes256-kwp`): wrap and unwrap round trip; a wrap under another
/// version, altered, or another key's does not unwrap; and what the vault wraps unwraps with
/// pyca `cryptography`'s RFC 5649 implementation given the key's (imported) material.
#[tokio::test]
async fn a_kwp_key_wraps_key_material_as_rfc_5649_does_elsewhere() {
    let app = spawn_app().await;
    let kek = [0x3c_u8; 32];
    let r = app
        .post(
            "/v1/keys/transport/import",
            json!({"algorithm": "aes256-kwp", "key_material": b64(&kek)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let material = b"a 20-byte key value!";
    let r = app
        .post("/v1/keys/transport/wrap", json!({"key_material": b64(material)}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["key_version"], 1);
    let wrapped = r.body["wrapped_key"].as_str().expect("wrapped_key").to_owned();
    assert_eq!(unb64(&wrapped).len(), 32, "8-byte header + 24 padded bytes");

    let r = app
        .post(
            "/v1/keys/transport/unwrap",
            json!({"wrapped_key": wrapped, "key_version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(unb64(r.body["key_material"].as_str().expect("material")), material);

    // Independent RFC 5649: pyca `cryptography` (from the moto venv scripts/test.sh makes).
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto/bin/python");
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import base64,sys\nfrom cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding as u\nprint(base64.b64encode(u(base64.b64decode(sys.argv[1]), base64.b64decode(sys.argv[2]))).decode())",
            &b64(&kek),
            &wrapped,
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/test.sh once to make the venv)", python.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(unb64(String::from_utf8_lossy(&out.stdout).trim()), material);

    // Other versions, alterations and keys do not unwrap; a KWP key neither signs nor encrypts.
    app.post("/v1/keys/transport/rotate", json!({})).await;
    let r = app
        .post(
            "/v1/keys/transport/unwrap",
            json!({"wrapped_key": wrapped, "key_version": 2}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "another version");
    let mut altered = unb64(&wrapped);
    altered[9] ^= 1;
    let r = app
        .post(
            "/v1/keys/transport/unwrap",
            json!({"wrapped_key": b64(&altered), "key_version": 1}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "altered");
    let r = app
        .post("/v1/keys", json!({"name": "other-kwp", "algorithm": "aes256-kwp"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            "/v1/keys/other-kwp/unwrap",
            json!({"wrapped_key": wrapped, "key_version": 1}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "another key's");
    let r = app
        .post(
            "/v1/keys/transport/unwrap",
            json!({"wrapped_key": wrapped, "key_version": 3}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "a version the key does not have",
    );
    let r = app.post("/v1/keys/transport/wrap", json!({"key_material": ""})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "empty material");
    let r = app.post("/v1/keys/transport/sign", json!({"message": b64(b"m")})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "sign with a KWP key");
    let r = app
        .post("/v1/keys/transport/encrypt", json!({"plaintext": b64(b"m")}))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "encrypt with a KWP key",
    );
    create_aes(&app, "gcm").await;
    let r = app
        .post("/v1/keys/gcm/wrap", json!({"key_material": b64(material)}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "wrap with a GCM key");
}
