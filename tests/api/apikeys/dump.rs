//! What a copy of the database and audit files holds of API keys: their ids, never a key
//! nor an unkeyed digest of one (which would let a copy test guesses offline).

use serde_json::json;
use sha2::{Digest, Sha256, Sha512};

use super::{code, create, reroll, verify};
use crate::helpers::{Needle, assert_dump_holds_no_secret, encodings, spawn_app};

/// Every form of `key` a careless store or log could hold.
fn forms(label: &str, key: &str) -> Vec<Needle> {
    let mut out = encodings(label, key.as_bytes());
    let random = &key[key.find('_').expect("a prefix") + 1..];
    out.push((format!("{label} without its prefix"), random.as_bytes().to_vec()));
    out.extend(encodings(
        &format!("SHA-256 of {label}"),
        &Sha256::digest(key.as_bytes()),
    ));
    out.extend(encodings(
        &format!("SHA-512 of {label}"),
        &Sha512::digest(key.as_bytes()),
    ));
    out
}

#[tokio::test]
async fn no_api_key_or_its_unkeyed_digest_is_in_the_database_or_audit_files_live_or_stopped() {
    let app = spawn_app().await;
    let mut secrets = Vec::new();
    let mut ids = Vec::new();
    for i in 0..200 {
        let body = if i % 3 == 0 {
            json!({"principal": format!("tenant-{:02}", i / 4), "remaining": 5, "meta": {"n": i}})
        } else {
            json!({"principal": format!("tenant-{:02}", i / 4), "prefix": "live", "permissions": ["orders.read"]})
        };
        let issued = create(&app, body).await;
        if i % 4 == 0 {
            // Verified: remembered in memory, a credit taken, a last use noted.
            assert_eq!(code(&verify(&app, &issued.key).await), "VALID", "key {i}");
        }
        secrets.extend(forms(&format!("key {i}"), &issued.key));
        if i % 10 == 1 {
            // Rerolled: the old key stays valid for a while, beside the new one.
            let new = reroll(&app, &issued.id, if i % 20 == 1 { 600 } else { 0 }).await;
            assert_eq!(code(&verify(&app, &new.key).await), "VALID", "rerolled key {i}");
            secrets.extend(forms(&format!("rerolled key {i}"), &new.key));
        }
        ids.push((issued.id.clone(), issued.id.into_bytes()));
    }
    app.state.apikeys.flush_usage().await.expect("last use written");

    assert_dump_holds_no_secret(app, &secrets, &ids).await;
}
