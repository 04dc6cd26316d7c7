//! What the audit trail must never hold: key material, messages, signatures, the root token
//! or the HSM PIN, in any common encoding — in the event file, the anchor file, the
//! `audit_batches` table or the API's listing of it. Imported material appears only as its
//! HMAC under the audit key (`secret_hmac`).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ROOT_TOKEN, RawStore, SO_PIN, USER_PIN, b64, encodings, found, random_bytes, spawn_app};

const KEYS: usize = 20;

#[tokio::test]
async fn the_audit_sinks_hold_no_key_material_message_signature_root_token_or_pin() {
    let mut app = spawn_app().await;
    let algorithms = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];
    let mut secrets = Vec::new();
    let mut names = Vec::new();
    let mut fingerprints = Vec::new();
    for i in 0..KEYS {
        let name = format!("audit-scan-{i:02}");
        let material = random_bytes(32 + i);
        app.import_key(&name, algorithms[i % 3], &material).await;
        secrets.extend(encodings(&format!("{name} material"), &material));
        secrets.push((format!("{name} material (first 16 bytes)"), material[..16].to_vec()));
        fingerprints.push((
            format!("{name} secret_hmac"),
            app.state.audit.secret_hmac(&material).into_bytes(),
        ));
        for j in 0..3 {
            let message = random_bytes(24 + 8 * j);
            let (signature, _) = app.sign(&name, &message).await;
            let r = app.verify(&name, &message, &signature).await;
            assert_eq!(r.body["valid"], json!(true), "{}", r.body);
            secrets.extend(encodings(&format!("{name} message {j}"), &message));
            secrets.extend(encodings(&format!("{name} signature {j}"), &signature));
        }
        names.push((name.clone(), name.into_bytes()));
    }
    // More material: a second version imported into a key, and a refused import (too
    // long); then a sign of a missing key.
    let second_material = random_bytes(48);
    let r = app
        .post(
            "/v1/keys/audit-scan-00/import",
            json!({"key_material": b64(&second_material), "algorithm": "hmac-sha256"}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["latest_version"]),
        (StatusCode::CREATED, &json!(2)),
        "{}",
        r.body
    );
    secrets.extend(encodings("second version material", &second_material));
    let refused_material = random_bytes(600);
    let r = app
        .post(
            "/v1/keys/audit-scan-01/import",
            json!({"key_material": b64(&refused_material), "algorithm": "hmac-sha256"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    secrets.extend(encodings("refused material", &refused_material));
    let refused_message = random_bytes(32);
    let r = app
        .post("/v1/keys/missing/sign", json!({"message": b64(&refused_message)}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    secrets.extend(encodings("message to a missing key", &refused_message));
    secrets.extend(encodings("root token", ROOT_TOKEN.as_bytes()));
    let token_body = ROOT_TOKEN.strip_prefix("svt_").expect("svt_ prefix");
    secrets.push(("root token without its prefix".into(), token_body.as_bytes().to_vec()));
    secrets.extend(encodings("HSM user PIN", USER_PIN.as_bytes()));
    secrets.extend(encodings("HSM SO PIN", SO_PIN.as_bytes()));

    let listing = serde_json::to_vec(&app.audit_events("").await).expect("json");
    app.stop().await;
    let file = std::fs::read(app.home.audit_file()).expect("event file");
    let anchor = std::fs::read(app.home.anchor_file()).expect("anchor file");
    let raw = RawStore::open(&app.home.store()).await;
    let mut table = Vec::new();
    // Every column of every row, its `lines` (the events' lines, a blob) as their UTF-8 text.
    for row in raw
        .fetch_all("SELECT * FROM audit_batches ORDER BY node, first_seq", &[])
        .await
    {
        for value in row.values() {
            table.extend_from_slice(&value.as_bytes());
            table.push(b'|');
        }
        table.push(b'\n');
    }
    raw.close().await;
    let sinks = [
        ("event file", &file),
        ("anchor file", &anchor),
        ("audit_batches table", &table),
        ("API listing", &listing),
    ];
    // 8 per key (an import writes its intent and its outcome), 2 each for the second and the
    // refused import (refused by the store of keys, after its intent), the missing key, the
    // listing.
    let expected_events = KEYS * 8 + 6;
    assert_eq!(file.iter().filter(|b| **b == b'\n').count(), expected_events);

    // The search does hit: every key name and every material's keyed fingerprint is there.
    for (label, needle) in names.iter().chain(&fingerprints) {
        let hits = found(&sinks, &[(label.clone(), needle.clone())]);
        let places: Vec<&str> = hits.iter().map(|hit| hit.place.as_str()).collect();
        assert!(
            ["event file", "audit_batches table", "API listing"]
                .iter()
                .all(|sink| places.contains(sink)),
            "{label} found in {places:?}"
        );
    }
    assert_eq!(found(&sinks, &secrets), [], "secrets in the audit sinks");
}
