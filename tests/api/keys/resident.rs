//! HSM-resident signing keys (`"boundary": "hsm"`): the HMAC runs in SoftHSM2 (`C_Sign`),
//! the material is in the clear only inside the HSM, and the wrapped form the store keeps is
//! bound to its row.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Sha256, Sha384, Sha512};

use super::assert_error;
use crate::helpers::{RawStore, b64, custodian_key, random_bytes, spawn_app, spawn_app_in, spawn_dev, temp_dir, unb64};

fn local<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[tokio::test]
async fn an_hsm_key_signs_and_verifies_exactly_as_a_process_key_with_the_same_material() {
    let app = spawn_app().await;
    for (algorithm, len) in [("hmac-sha256", 32), ("hmac-sha384", 48), ("hmac-sha512", 64)] {
        let material = random_bytes(len + 7);
        for (name, boundary) in [("in-process", "process"), ("in-hsm", "hsm")] {
            let name = format!("{name}-{algorithm}");
            let r = app
                .post(
                    &format!("/v1/keys/{name}/import"),
                    json!({"key_material": b64(&material), "algorithm": algorithm, "boundary": boundary}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            assert_eq!(r.body["boundary"], boundary);
        }
        for message in [b"".as_slice(), b"GET /orders", &random_bytes(3000)] {
            let (here, _) = app.sign(&format!("in-process-{algorithm}"), message).await;
            let (there, _) = app.sign(&format!("in-hsm-{algorithm}"), message).await;
            assert_eq!(there, here, "{algorithm}: the HSM's HMAC is the process's");
            let expected = match algorithm {
                "hmac-sha256" => local::<Hmac<Sha256>>(&material, message),
                "hmac-sha384" => local::<Hmac<Sha384>>(&material, message),
                _ => local::<Hmac<Sha512>>(&material, message),
            };
            assert_eq!(there, expected, "{algorithm}: and a local HMAC's");
            let r = app.verify(&format!("in-hsm-{algorithm}"), message, &there).await;
            assert_eq!(r.body["valid"], true, "{}", r.body);
            let mut wrong = there.clone();
            wrong[0] ^= 1;
            let r = app.verify(&format!("in-hsm-{algorithm}"), message, &wrong).await;
            assert_eq!(r.body["valid"], false, "{}", r.body);
        }
    }

    // Generated inside the HSM; rotated there; every version verifies.
    let r = app
        .post(
            "/v1/keys",
            json!({"name": "born-in-hsm", "algorithm": "hmac-sha256", "boundary": "hsm"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (r.body["boundary"].as_str(), r.body["origin"].as_str()),
        (Some("hsm"), Some("generated"))
    );
    let (first, v1) = app.sign("born-in-hsm", b"m").await;
    assert_eq!(
        app.post("/v1/keys/born-in-hsm/rotate", json!({})).await.status,
        StatusCode::OK
    );
    let (second, v2) = app.sign("born-in-hsm", b"m").await;
    assert_eq!((v1, v2), (1, 2));
    assert_ne!(first, second, "a new version, made in the HSM");
    assert_eq!(app.verify("born-in-hsm", b"m", &first).await.body["key_version"], 1);

    // What an hsm-boundary key cannot be.
    for (body, what) in [
        (
            json!({"name": "x1", "algorithm": "hmac-sha256", "boundary": "hsm", "exportable": true}),
            "exportable",
        ),
        (
            json!({"name": "x2", "algorithm": "aes256-gcm", "boundary": "hsm"}),
            "an encryption key",
        ),
        (
            json!({"name": "x3", "algorithm": "hmac-sha256", "boundary": "cloud"}),
            "an unknown boundary",
        ),
    ] {
        let r = app.post("/v1/keys", body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", what);
    }
    let r = app
        .post(
            "/v1/keys/short/import",
            json!({"key_material": b64(&[1; 16]), "boundary": "hsm"}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "shorter than the digest",
    );
    let r = app
        .post(
            "/v1/keys/born-in-hsm/export",
            json!({"public_key_pem": custodian_key().1}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "PERMISSION_DENIED", "exporting an hsm key");
    let r = app.post_raw("/v1/keys/born-in-hsm/backup", b"").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "backing up an hsm key");
}

#[tokio::test]
async fn an_hsm_keys_wrapped_form_copied_onto_another_row_does_not_open() {
    let mut app = spawn_app().await;
    for name in ["resident-a", "resident-b"] {
        let r = app
            .post(
                "/v1/keys",
                json!({"name": name, "algorithm": "hmac-sha256", "boundary": "hsm"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let (a_sig, _) = app.sign("resident-a", b"m").await;
    let home = app.home.clone();
    app.stop().await;
    drop(app);
    // The HSM's KWP wrap has no AAD; it sits inside the version's sealed record, whose
    // AES-GCM AAD names the key id, name and version: copied onto B's row, it does not open.
    let raw = RawStore::open(&home.store()).await;
    raw.copy_sealed_version("resident-a", "resident-b").await;
    raw.close().await;
    let app = spawn_app_in(home).await;
    let r = app
        .post("/v1/keys/resident-b/sign", json!({"message": b64(b"m")}))
        .await;
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "INTEGRITY_ERROR", "a moved wrap");
    assert_eq!(app.sign("resident-a", b"m").await.0, a_sig, "A is untouched");
}

/// Every readable mapping of process `pid` (its heap, stacks and libraries' data: SoftHSM2
/// runs inside it), as `(start, bytes)`.
fn process_memory(pid: u32) -> Vec<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("/proc/PID/mem (the suite runs as root)");
    let mut regions = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) else {
            continue;
        };
        let mut bytes = vec![0; usize::try_from(end - start).expect("size")];
        if mem.seek(SeekFrom::Start(start)).is_ok() && mem.read_exact(&mut bytes).is_ok() {
            regions.push(bytes);
        }
    }
    regions
}

fn holds(regions: &[Vec<u8>], needle: &[u8]) -> bool {
    regions.iter().any(|r| r.windows(needle.len()).any(|w| w == needle))
}

/// How the test shows the material is not in the process: it reads every readable mapping
/// of the real vault process through `/proc/PID/mem` after the import and 200 signatures
/// and finds the 64 material bytes nowhere (SoftHSM2 is a library inside that process: it
/// keeps private objects' values encrypted under the token key and wipes its working
/// copies). The same scan finds the material once a process-boundary key holds it: the scan
/// can see a key in memory.
#[tokio::test]
async fn an_hsm_keys_material_is_nowhere_in_the_vaults_memory_while_a_process_keys_is() {
    let data_dir = temp_dir("resident-memory");
    let mut dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", crate::helpers::ROOT_TOKEN)]);
    let token = crate::helpers::ROOT_TOKEN;
    let material = random_bytes(64);
    let r = dev
        .request(
            Method::POST,
            "/v1/keys/resident/import",
            token,
            Some(json!({"key_material": b64(&material), "boundary": "hsm"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut signature = Vec::new();
    for i in 0..200u32 {
        let r = dev
            .request(
                Method::POST,
                "/v1/keys/resident/sign",
                token,
                Some(json!({"message": b64(&i.to_be_bytes())})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        signature = unb64(r.body["signature"].as_str().expect("signature"));
    }
    assert_eq!(signature, local::<Hmac<Sha256>>(&material, &199u32.to_be_bytes()));
    let pid = dev.child.id();
    assert!(
        !holds(&process_memory(pid), &material),
        "the hsm-boundary key's material is in the vault's memory"
    );

    // Positive control: a process-boundary key of the same material, once used, is found.
    let r = dev
        .request(
            Method::POST,
            "/v1/keys/in-process/import",
            token,
            Some(json!({"key_material": b64(&material)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = dev
        .request(
            Method::POST,
            "/v1/keys/in-process/sign",
            token,
            Some(json!({"message": b64(b"m")})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        holds(&process_memory(pid), &material),
        "the scan finds a process-boundary key's material (else it proves nothing)"
    );
    let _ = dev.child.kill();
    let _ = dev.child.wait();
}
