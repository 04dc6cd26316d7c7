//! What an attacker who copies the database files gets: no key material, root token or HSM
//! PIN in any encoding, live (main file, `-wal`, `-shm` while serving) or after shutdown;
//! and sealed records that cannot be moved between rows, because each ciphertext's AAD
//! binds it to its key id and version.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Sha256, Sha384, Sha512};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use crate::helpers::{ROOT_TOKEN, USER_PIN, b64, spawn_app, spawn_app_in};

const MESSAGE: &[u8] = b"the database dump test signs this";

fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    getrandom::fill(&mut out).expect("random");
    out
}

fn local_hmac(algorithm: &str, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("any key length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        "hmac-sha256" => run::<Hmac<Sha256>>(key, message),
        "hmac-sha384" => run::<Hmac<Sha384>>(key, message),
        "hmac-sha512" => run::<Hmac<Sha512>>(key, message),
        other => panic!("unknown algorithm {other}"),
    }
}

/// `secret` as an attacker would grep for it: raw, hex in both cases, and base64 in the
/// standard and URL-safe alphabets, padded and not.
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

/// The database file and whichever of its `-wal` and `-shm` siblings exist, as raw bytes.
fn database_files(db: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::read(&path) {
            Ok(bytes) => out.push((path, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        }
    }
    assert!(!out.is_empty() && out[0].0 == db, "the database file exists");
    out
}

/// The labels of the `needles` found in any of `files`, each with the file it was found in.
/// One pass per file: every needle is at least 8 bytes, so an 8-byte window indexes them.
fn hits(files: &[(PathBuf, Vec<u8>)], needles: &[(String, Vec<u8>)]) -> Vec<(String, PathBuf)> {
    let mut by_prefix: HashMap<&[u8], Vec<&(String, Vec<u8>)>> = HashMap::new();
    for needle in needles {
        assert!(
            needle.1.len() >= 8,
            "{}: too short to search for without false hits",
            needle.0
        );
        by_prefix.entry(&needle.1[..8]).or_default().push(needle);
    }
    let mut found = Vec::new();
    for (path, bytes) in files {
        for start in 0..bytes.len().saturating_sub(7) {
            let Some(candidates) = by_prefix.get(&bytes[start..start + 8]) else {
                continue;
            };
            for (label, needle) in candidates {
                if bytes[start..].starts_with(needle) {
                    found.push((label.clone(), path.clone()));
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn the_database_files_hold_no_key_material_root_token_or_pin_while_serving_or_after_shutdown() {
    let mut app = spawn_app().await;
    let algorithms = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];
    let mut keys = Vec::new();
    for i in 0..50 {
        let len = 32 + usize::from(random_bytes(1)[0]) % 33;
        let material = random_bytes(len);
        let (name, algorithm) = (format!("dump-key-{i:02}"), algorithms[i % 3]);
        app.import_key(&name, algorithm, &material).await;
        // Signing unwraps and uses the stored secret; the local HMAC proves it is this one.
        let (signature, _) = app.sign(&name, MESSAGE).await;
        assert_eq!(signature, local_hmac(algorithm, &material, MESSAGE), "{name}");
        keys.push((name, material));
    }
    app.flush_usage().await;

    let mut secrets = Vec::new();
    for (name, material) in &keys {
        secrets.extend(encodings(&format!("{name} material"), material));
        // A partial copy would leak most of a key: its first 16 bytes count too.
        secrets.push((format!("{name} material (first 16 bytes)"), material[..16].to_vec()));
    }
    secrets.extend(encodings("root token", ROOT_TOKEN.as_bytes()));
    let token_body = ROOT_TOKEN.strip_prefix("svt_").expect("svt_ prefix");
    secrets.push(("root token without its prefix".into(), token_body.as_bytes().to_vec()));
    secrets.extend(encodings("HSM user PIN", USER_PIN.as_bytes()));
    let names: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|(name, _)| (name.clone(), name.as_bytes().to_vec()))
        .collect();

    // Live, without stopping: what a backup or a copy of a running server holds.
    let db = app.home.database();
    let live = database_files(&db);
    assert!(
        live.iter().any(|(path, _)| path.to_string_lossy().ends_with("-wal")),
        "a serving WAL-mode database has a -wal file to search"
    );
    assert_eq!(hits(&live, &secrets), vec![], "secrets in the live database files");
    let names_found: BTreeSet<String> = hits(&live, &names).into_iter().map(|(label, _)| label).collect();
    assert_eq!(
        names_found.len(),
        keys.len(),
        "every key name is in the live files (the search can hit)"
    );

    // After shutdown, and after a checkpoint has moved every WAL page into the main file.
    app.stop().await;
    drop(app);
    assert_eq!(hits(&database_files(&db), &secrets), vec![], "secrets after shutdown");
    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&db))
        .await
        .expect("open the database");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .expect("checkpoint");
    pool.close().await;
    let checkpointed = database_files(&db);
    assert_eq!(hits(&checkpointed, &secrets), vec![], "secrets after a checkpoint");
    let names_found: BTreeSet<String> = hits(&checkpointed[..1], &names)
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    assert_eq!(
        names_found.len(),
        keys.len(),
        "every key name is in the checkpointed main file"
    );
}

#[tokio::test]
async fn a_sealed_record_copied_onto_another_keys_row_does_not_open() {
    let mut app = spawn_app().await;
    let (source, target) = (random_bytes(32), random_bytes(48));
    app.import_key("copied-from", "hmac-sha256", &source).await;
    app.import_key("copied-onto", "hmac-sha256", &target).await;
    let (source_sig, _) = app.sign("copied-from", MESSAGE).await;
    let (target_sig, _) = app.sign("copied-onto", MESSAGE).await;
    assert_eq!(source_sig, local_hmac("hmac-sha256", &source, MESSAGE));
    assert_eq!(target_sig, local_hmac("hmac-sha256", &target, MESSAGE));
    let home = app.home.clone();
    app.stop().await;
    drop(app);

    // An attacker with write access to the database but not the HSM: copy every sealed
    // column of one key's version 1 over another's.
    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(home.database()))
        .await
        .expect("open the database");
    let row = sqlx::query(
        "SELECT v.format, v.kek_id, v.wrapped_dek, v.nonce, v.ciphertext FROM key_versions v \
         JOIN keys k ON k.id = v.key_id WHERE k.name = 'copied-from' AND v.version = 1",
    )
    .fetch_one(&pool)
    .await
    .expect("the source row");
    let copied = sqlx::query(
        "UPDATE key_versions SET format = ?, kek_id = ?, wrapped_dek = ?, nonce = ?, ciphertext = ? \
         WHERE version = 1 AND key_id = (SELECT id FROM keys WHERE name = 'copied-onto')",
    )
    .bind(row.get::<i64, _>("format"))
    .bind(row.get::<String, _>("kek_id"))
    .bind(row.get::<Vec<u8>, _>("wrapped_dek"))
    .bind(row.get::<Vec<u8>, _>("nonce"))
    .bind(row.get::<Vec<u8>, _>("ciphertext"))
    .execute(&pool)
    .await
    .expect("copy the sealed record");
    assert_eq!(copied.rows_affected(), 1);
    pool.close().await;

    let app = spawn_app_in(home).await;
    let r = app
        .post("/v1/keys/copied-onto/sign", json!({"message": b64(MESSAGE)}))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert_eq!(r.code(), "INTERNAL");
    let (again, _) = app.sign("copied-from", MESSAGE).await;
    assert_eq!(again, source_sig, "the untouched key still signs identically");
}

/// An attacker with write access to the database swaps the names of two key rows, hoping
/// that `/v1/keys/payments/sign` will then use the other key's secret. The name is bound
/// into every version's AAD, so neither swapped key opens: the vault fails closed.
#[tokio::test]
async fn swapping_the_names_of_two_key_rows_makes_both_refuse_to_sign() {
    let mut app = spawn_app().await;
    app.import_key("payments", "hmac-sha256", &random_bytes(32)).await;
    app.import_key("marketing", "hmac-sha256", &random_bytes(32)).await;
    let home = app.home.clone();
    app.stop().await;
    drop(app);

    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(home.database()))
        .await
        .expect("open the database");
    for (from, to) in [
        ("payments", "tmp-name"),
        ("marketing", "payments"),
        ("tmp-name", "marketing"),
    ] {
        let renamed = sqlx::query("UPDATE keys SET name = ? WHERE name = ?")
            .bind(to)
            .bind(from)
            .execute(&pool)
            .await
            .expect("rename a row");
        assert_eq!(renamed.rows_affected(), 1);
    }
    pool.close().await;

    let app = spawn_app_in(home).await;
    for name in ["payments", "marketing"] {
        let r = app
            .post(&format!("/v1/keys/{name}/sign"), json!({"message": b64(MESSAGE)}))
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {}", r.body);
        assert_eq!(r.code(), "INTERNAL");
    }
}
