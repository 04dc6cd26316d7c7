//! What custodians move in and out, checked against an independent implementation of the
//! format (pyca `cryptography`, `helpers::custody`): BYOK import to the vault's wrapping key,
//! wrapped export to a custodian's key, and the wrapping key's rotation.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::json;
use sha2::Sha256;

use super::{all_keys, assert_error};
use crate::helpers::{
    b64, custodian_key, random_bytes, spawn_app, spki_fingerprint, unb64, unwrap_export, wrap_for_import,
};

fn local_hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

async fn wrapping_pem(app: &crate::helpers::TestApp) -> String {
    let r = app.get("/v1/wrapping-key").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["public_key_pem"].as_str().expect("public_key_pem").to_owned()
}

#[tokio::test]
async fn material_wrapped_by_an_independent_implementation_imports_and_signs_like_a_local_hmac() {
    let app = spawn_app().await;
    let r = app.get("/v1/wrapping-key").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["algorithm"], "RSA-4096");
    assert_eq!(r.body["wrapping"], "rsa-oaep-sha256-aes-kwp");
    assert_eq!(r.body["version"], 1);
    let pem = r.body["public_key_pem"].as_str().expect("pem").to_owned();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    assert_eq!(
        r.body["fingerprint"],
        spki_fingerprint(&pem),
        "fingerprint of the SPKI DER"
    );
    // Asking again gives the same key: it was made once, in the HSM.
    assert_eq!(app.get("/v1/wrapping-key").await.body["public_key_pem"], pem.as_str());

    let material = random_bytes(48);
    let wrapped = wrap_for_import(&pem, &material);
    assert_eq!(wrapped.len(), 512 + 56, "RSA-4096 block, then the KWP of 48 bytes");

    // A flipped bit anywhere (the RSA block or the KWP) is refused and creates nothing.
    let before = all_keys(&app).await;
    for at in [3, 511, 512 + 9, wrapped.len() - 1] {
        let mut altered = wrapped.clone();
        altered[at] ^= 0x10;
        let r = app
            .post(
                "/v1/keys/byok/import-wrapped",
                json!({"wrapped_key": b64(&altered), "algorithm": "hmac-sha256"}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("bit flipped at {at}"),
        );
    }
    // Wrapped to another RSA key (the custodian's own): refused likewise.
    let elsewhere = wrap_for_import(&custodian_key().1, &material);
    let r = app
        .post("/v1/keys/byok/import-wrapped", json!({"wrapped_key": b64(&elsewhere)}))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "wrapped to another key",
    );
    for bad in [
        json!({"wrapped_key": b64(&wrapped[..100])}),
        json!({"wrapped_key": "***"}),
    ] {
        let r = app.post("/v1/keys/byok/import-wrapped", bad).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "truncated or not base64",
        );
    }
    assert_eq!(all_keys(&app).await, before, "nothing was created");

    let r = app
        .post(
            "/v1/keys/byok/import-wrapped",
            json!({"wrapped_key": b64(&wrapped), "algorithm": "hmac-sha256", "owner": "payments"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["origin"], "imported");
    assert_eq!(r.body["owner"], "payments");
    for message in [b"".as_slice(), b"GET /orders", &random_bytes(1000)] {
        let (signature, version) = app.sign("byok", message).await;
        assert_eq!(version, 1);
        assert_eq!(
            signature,
            local_hmac(&material, message),
            "sigvault's HMAC is the local one"
        );
    }
    // The trail holds a keyed fingerprint of the material, never the material.
    let event = app.audit_event_of(&r, "action=ImportKeyWrapped").await;
    assert_eq!(event["outcome"], "ok");
    assert!(event["secret_hmac"].as_str().is_some_and(|h| h.len() == 64), "{event}");

    // A second version may be imported into a key created by import, not into a generated one.
    let next = random_bytes(32);
    let r = app
        .post(
            "/v1/keys/byok/import-wrapped",
            json!({"wrapped_key": b64(&wrap_for_import(&pem, &next))}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["latest_version"], 2);
    assert_eq!(app.sign("byok", b"m").await.0, local_hmac(&next, b"m"));
    let r = app
        .post("/v1/keys", json!({"name": "made-here", "algorithm": "hmac-sha256"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let before = all_keys(&app).await;
    let r = app
        .post(
            "/v1/keys/made-here/import-wrapped",
            json!({"wrapped_key": b64(&wrap_for_import(&pem, &next))}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        "a generated key takes no import",
    );
    assert_eq!(all_keys(&app).await, before);
}

#[tokio::test]
async fn the_previous_wrapping_key_still_imports_after_a_rotation_and_older_ones_do_not() {
    let app = spawn_app().await;
    let first = wrapping_pem(&app).await;
    let r = app.post_raw("/v1/wrapping-key/rotate", b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    let second = r.body["public_key_pem"].as_str().expect("pem").to_owned();
    assert_ne!(second, first);
    assert_eq!(wrapping_pem(&app).await, second, "the new key is current");
    let material = random_bytes(32);
    let r = app
        .post(
            "/v1/keys/from-first/import-wrapped",
            json!({"wrapped_key": b64(&wrap_for_import(&first, &material))}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "the previous key still opens: {}",
        r.body
    );
    assert_eq!(app.sign("from-first", b"m").await.0, local_hmac(&material, b"m"));

    let r = app.post_raw("/v1/wrapping-key/rotate", b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], 3);
    let r = app
        .post(
            "/v1/keys/from-first-again/import-wrapped",
            json!({"wrapped_key": b64(&wrap_for_import(&first, &material))}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "two rotations ago");
    let r = app
        .post(
            "/v1/keys/from-second/import-wrapped",
            json!({"wrapped_key": b64(&wrap_for_import(&second, &material))}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.post_raw("/v1/wrapping-key/rotate", b"{\"x\":1}").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "rotate takes no body");
}

#[tokio::test]
async fn an_exportable_key_exports_to_a_custodian_key_and_opens_with_an_independent_implementation() {
    let app = spawn_app().await;
    let (private_pem, public_pem) = custodian_key();
    let material = random_bytes(40);
    let r = app
        .post(
            "/v1/keys/portable/import",
            json!({"key_material": b64(&material), "exportable": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.post("/v1/keys/portable/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = app
        .post(
            "/v1/keys/portable/export",
            json!({"version": 1, "public_key_pem": public_pem}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["wrapping"], "rsa-oaep-sha256-aes-kwp");
    assert_eq!(r.body["key_version"], 1);
    let fingerprint = spki_fingerprint(public_pem);
    assert_eq!(r.body["recipient_fingerprint"], fingerprint.as_str());
    let wrapped = unb64(r.body["wrapped_key"].as_str().expect("wrapped_key"));
    assert_eq!(
        unwrap_export(private_pem, &wrapped),
        material,
        "version 1 is the imported material"
    );
    // Every export is audited with the recipient key's fingerprint (and the intent first).
    let event = app.audit_event_of(&r, "action=ExportKey").await;
    assert_eq!(event["outcome"], "ok");
    assert_eq!(event["key_version"], 1);
    assert_eq!(event["secret_hmac"], fingerprint.as_str());

    // The latest by default: version 2 was generated inside the vault; it signs as exported.
    let r = app
        .post("/v1/keys/portable/export", json!({"public_key_pem": public_pem}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["key_version"], 2);
    let latest = unwrap_export(private_pem, &unb64(r.body["wrapped_key"].as_str().expect("wrapped")));
    assert_eq!(app.sign("portable", b"m").await.0, local_hmac(&latest, b"m"));

    for (body, what) in [
        (
            json!({"version": 3, "public_key_pem": public_pem}),
            "a version the key lacks",
        ),
        (json!({"version": 0, "public_key_pem": public_pem}), "version 0"),
        (
            json!({"public_key_pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}),
            "not a key",
        ),
        (json!({"public_key_pem": "x".repeat(5000)}), "too long"),
        (json!({}), "no recipient"),
    ] {
        let r = app.post("/v1/keys/portable/export", body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
}

#[tokio::test]
async fn a_key_created_non_exportable_never_leaves_not_even_for_root() {
    let app = spawn_app().await;
    let public_pem = &custodian_key().1;
    let r = app
        .post("/v1/keys", json!({"name": "stays", "algorithm": "hmac-sha256"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["exportable"], false);
    let r = app
        .post("/v1/keys/stays/export", json!({"public_key_pem": public_pem}))
        .await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        "root exporting a non-exportable key",
    );
    // The flag cannot be turned on later; turned off, an exportable key stops leaving too.
    let r = app.patch("/v1/keys/stays", json!({"exportable": true})).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "exportable cannot be switched on",
    );
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "was-portable", "algorithm": "hmac-sha256", "exportable": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.patch("/v1/keys/was-portable", json!({"exportable": false})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post("/v1/keys/was-portable/export", json!({"public_key_pem": public_pem}))
        .await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        "exportable switched off",
    );
}

#[tokio::test]
async fn a_kwp_wrap_opens_with_an_independent_rfc_5649_given_the_exported_key() {
    let app = spawn_app().await;
    let (private_pem, public_pem) = custodian_key();
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "transport", "algorithm": "aes256-kwp", "exportable": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let material = random_bytes(37);
    let r = app
        .post("/v1/keys/transport/wrap", json!({"key_material": b64(&material)}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let wrapped = r.body["wrapped_key"].as_str().expect("wrapped_key").to_owned();
    let r = app
        .post("/v1/keys/transport/export", json!({"public_key_pem": public_pem}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let kwp_key = unwrap_export(private_pem, &unb64(r.body["wrapped_key"].as_str().expect("wrapped")));
    assert_eq!(kwp_key.len(), 32);
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto/bin/python");
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import base64,sys\nfrom cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding as u\nprint(base64.b64encode(u(base64.b64decode(sys.argv[1]), base64.b64decode(sys.argv[2]))).decode())",
            &b64(&kwp_key),
            &wrapped,
        ])
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(unb64(String::from_utf8_lossy(&out.stdout).trim()), material);
}

#[tokio::test]
async fn a_backup_restores_the_whole_key_after_its_destruction_and_nowhere_else() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "kept", "algorithm": "hmac-sha256", "owner": "payments", "tags": {"team": "pay"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (old_signature, _) = app.sign("kept", b"before the rotation").await;
    assert_eq!(app.post("/v1/keys/kept/rotate", json!({})).await.status, StatusCode::OK);
    let (signature, version) = app.sign("kept", b"payload").await;
    assert_eq!(version, 2);
    let before = app.get("/v1/keys/kept").await.body;

    let r = app.post_raw("/v1/keys/kept/backup", b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["latest_version"], 2);
    let backup = r.body["backup"].as_str().expect("backup").to_owned();
    let blob = unb64(&backup);
    let text = String::from_utf8_lossy(&blob);
    assert!(text.contains("sigvault-key-backup-1"), "{text}");
    let event = app.audit_event_of(&r, "action=BackupKey").await;
    assert_eq!(event["resource"], "key:kept");

    // Restoring over a live key is refused.
    let r = app
        .post("/v1/keys/kept/restore-backup", json!({"backup": backup}))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "ALREADY_EXISTS", "the key exists");

    // Delete and destroy, then restore: every version signs and verifies as before.
    assert_eq!(
        app.delete("/v1/keys/kept?pending_days=7").await.status,
        StatusCode::ACCEPTED
    );
    app.clock.advance(time::Duration::days(8));
    assert_eq!(app.state.keys.purge_due().await.expect("purge"), 1);
    assert_eq!(app.get("/v1/keys/kept").await.status, StatusCode::NOT_FOUND);

    // Altered anywhere (the clear header included), or under another name: refused.
    let mut altered = blob.clone();
    let at = text.find("\"latest_version\":2").expect("header") + "\"latest_version\":".len();
    altered[at] = b'3';
    for (body, path, what) in [
        (
            json!({"backup": b64(&altered)}),
            "/v1/keys/kept/restore-backup",
            "a changed header",
        ),
        (
            json!({"backup": b64(b"{}")}),
            "/v1/keys/kept/restore-backup",
            "not a backup",
        ),
        (
            json!({"backup": backup}),
            "/v1/keys/other/restore-backup",
            "another name",
        ),
    ] {
        let r = app.post(path, body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    let mut flipped = blob.clone();
    let at = text.find("\"ciphertext\":\"").expect("ciphertext") + "\"ciphertext\":\"".len() + 4;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let r = app
        .post("/v1/keys/kept/restore-backup", json!({"backup": b64(&flipped)}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "a changed ciphertext");
    assert_eq!(
        app.get("/v1/keys/kept").await.status,
        StatusCode::NOT_FOUND,
        "nothing restored"
    );

    let r = app
        .post("/v1/keys/kept/restore-backup", json!({"backup": backup}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for field in [
        "id",
        "owner",
        "tags",
        "latest_version",
        "min_verify_version",
        "exportable",
        "origin",
        "algorithm",
        "created_at",
    ] {
        assert_eq!(r.body[field], before[field], "{field} as before");
    }
    assert_eq!(app.sign("kept", b"payload").await, (signature.clone(), 2));
    let r = app.verify("kept", b"before the rotation", &old_signature).await;
    assert_eq!(r.body["valid"], true, "version 1 came back too: {}", r.body);

    // Another vault (another KEK on another token) does not open it, and creates nothing.
    let elsewhere = spawn_app().await;
    let r = elsewhere
        .post("/v1/keys/kept/restore-backup", json!({"backup": backup}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "another KEK");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not hold")),
        "{}",
        r.body
    );
    assert_eq!(elsewhere.get("/v1/keys/kept").await.status, StatusCode::NOT_FOUND);
}
