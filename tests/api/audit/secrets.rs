//! What the audit trail must never hold: key material, messages, signatures, the root token
//! or the HSM PIN, in any common encoding — in the event file, the anchor file, the
//! `audit_events` table or the API's listing of it. Imported material appears only as its
//! HMAC under the audit key (`secret_hmac`).

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Row;

use super::{all_events, raw_db};
use crate::helpers::{ROOT_TOKEN, SO_PIN, USER_PIN, b64, spawn_app};

const KEYS: usize = 20;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    getrandom::fill(&mut out).expect("random");
    out
}

/// `secret` raw, in hex of both cases, and in standard and URL-safe base64, padded or not.
fn encodings(label: &str, secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let lower = base16ct::lower::encode_string(secret);
    let mut forms = vec![
        ("raw", secret.to_vec()),
        ("upper hex", lower.to_uppercase().into_bytes()),
        ("lower hex", lower.into_bytes()),
        ("base64", STANDARD.encode(secret).into_bytes()),
        ("base64 unpadded", STANDARD_NO_PAD.encode(secret).into_bytes()),
        ("base64url", URL_SAFE.encode(secret).into_bytes()),
        ("base64url unpadded", URL_SAFE_NO_PAD.encode(secret).into_bytes()),
    ];
    forms.dedup_by(|a, b| a.1 == b.1);
    forms
        .into_iter()
        .map(|(form, bytes)| (format!("{label} ({form})"), bytes))
        .collect()
}

/// `(needle label, haystack name)` of every needle found in a haystack. Needles are at
/// least 8 bytes, so an 8-byte window indexes them.
fn hits(haystacks: &[(&str, &[u8])], needles: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    let mut by_prefix: HashMap<&[u8], Vec<&(String, Vec<u8>)>> = HashMap::new();
    for needle in needles {
        assert!(needle.1.len() >= 8, "{} is too short to search for", needle.0);
        by_prefix.entry(&needle.1[..8]).or_default().push(needle);
    }
    let mut found = Vec::new();
    for (name, bytes) in haystacks {
        for start in 0..bytes.len().saturating_sub(7) {
            for (label, needle) in by_prefix.get(&bytes[start..start + 8]).into_iter().flatten() {
                if bytes[start..].starts_with(needle) {
                    found.push((label.clone(), (*name).to_owned()));
                }
            }
        }
    }
    found
}

#[test]
fn the_secret_search_finds_every_encoding_it_looks_for() {
    // 32 bytes: base64 with padding, so all seven forms differ.
    let secret = random_bytes(32);
    let needles = encodings("planted", &secret);
    assert_eq!(needles.len(), 7);
    let mut planted = b"prefix ".to_vec();
    for (_, form) in &needles {
        planted.extend_from_slice(form);
        planted.extend_from_slice(b" | ");
    }
    let found: BTreeSet<String> = hits(&[("planted", &planted[..])], &needles)
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    let all: BTreeSet<String> = needles.iter().map(|(label, _)| label.clone()).collect();
    assert_eq!(found, all);
    assert_eq!(hits(&[("clean", &b"nothing to see here at all"[..])], &needles), []);
}

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

    let listing = serde_json::to_vec(&all_events(&app, "").await).expect("json");
    app.stop().await;
    let file = std::fs::read(app.home.audit_file()).expect("event file");
    let anchor = std::fs::read(app.home.anchor_file()).expect("anchor file");
    let pool = raw_db(&app.home.database()).await;
    let mut table = Vec::new();
    for row in sqlx::query("SELECT * FROM audit_events ORDER BY seq")
        .fetch_all(&pool)
        .await
        .expect("read the table")
    {
        for column in 0..row.len() {
            if let Ok(Some(text)) = row.try_get::<Option<String>, _>(column) {
                table.extend_from_slice(text.as_bytes());
            } else if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(column) {
                table.extend_from_slice(&bytes);
            } else if let Ok(Some(n)) = row.try_get::<Option<i64>, _>(column) {
                table.extend_from_slice(n.to_string().as_bytes());
            }
            table.push(b'|');
        }
        table.push(b'\n');
    }
    pool.close().await;
    let sinks: [(&str, &[u8]); 4] = [
        ("event file", &file),
        ("anchor file", &anchor),
        ("audit_events table", &table),
        ("API listing", &listing),
    ];
    // 7 per key, the second import, the refused import, the missing key, the listing.
    let expected_events = KEYS * 7 + 4;
    assert_eq!(file.iter().filter(|b| **b == b'\n').count(), expected_events);

    // The search does hit: every key name and every material's keyed fingerprint is there.
    for (label, needle) in names.iter().chain(&fingerprints) {
        let found = hits(&sinks, &[(label.clone(), needle.clone())]);
        let places: Vec<&str> = found.iter().map(|(_, sink)| sink.as_str()).collect();
        assert!(
            ["event file", "audit_events table", "API listing"]
                .iter()
                .all(|sink| places.contains(sink)),
            "{label} found in {places:?}"
        );
    }
    assert_eq!(hits(&sinks, &secrets), [], "secrets in the audit sinks");
}
