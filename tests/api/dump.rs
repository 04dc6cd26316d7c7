//! What an attacker who copies the database gets: no key material, root token or HSM PIN in
//! any encoding, live (on SQLite the main file, `-wal`, `-shm` while serving; on PostgreSQL
//! `pg_dump` of the serving database) or after shutdown; and sealed records that cannot be
//! moved between rows, because each ciphertext's AAD binds it to its key id and version.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Sha256, Sha384, Sha512};

use crate::helpers::{
    ROOT_TOKEN, RawStore, USER_PIN, b64, database_copy, encodings, found, found_needles, live_database_copy,
    random_bytes, spawn_app, spawn_app_in,
};

const MESSAGE: &[u8] = b"the database dump test signs this";

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

#[tokio::test]
async fn the_database_files_hold_no_key_material_root_token_or_pin_while_serving_or_after_shutdown() {
    // On PostgreSQL "the files" are what `pg_dump` of the database writes.
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
    let home = app.home.clone();
    let live = live_database_copy(&home).await;
    assert_eq!(found(&live, &secrets), [], "secrets in the live database files");
    assert_eq!(
        found_needles(&live, &names).len(),
        keys.len(),
        "every key name is in the live files (the search can hit)"
    );

    // After shutdown, and after a checkpoint has moved every WAL page into the main file.
    app.stop().await;
    drop(app);
    assert_eq!(
        found(&database_copy(&home).await, &secrets),
        [],
        "secrets after shutdown"
    );
    let raw = RawStore::open(&home.store()).await;
    raw.checkpoint().await;
    raw.close().await;
    let checkpointed = database_copy(&home).await;
    assert_eq!(found(&checkpointed, &secrets), [], "secrets after a checkpoint");
    assert_eq!(
        found_needles(&checkpointed[..1], &names).len(),
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
    let raw = RawStore::open(&home.store()).await;
    raw.copy_sealed_version("copied-from", "copied-onto").await;
    raw.close().await;

    let app = spawn_app_in(home).await;
    let r = app
        .post("/v1/keys/copied-onto/sign", json!({"message": b64(MESSAGE)}))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert_eq!(r.code(), "INTEGRITY_ERROR");
    let (again, _) = app.sign("copied-from", MESSAGE).await;
    assert_eq!(again, source_sig, "the untouched key still signs identically");
}

/// An attacker with write access to the database swaps the names of two key rows, hoping
/// that `/v1/keys/payments/sign` will then use the other key's secret. The name is bound
/// into every key row's integrity tag (and the key id into every version's AAD), so neither
/// swapped key is used: the vault fails closed.
#[tokio::test]
async fn swapping_the_names_of_two_key_rows_makes_both_refuse_to_sign() {
    let mut app = spawn_app().await;
    app.import_key("payments", "hmac-sha256", &random_bytes(32)).await;
    app.import_key("marketing", "hmac-sha256", &random_bytes(32)).await;
    let home = app.home.clone();
    app.stop().await;
    drop(app);

    let raw = RawStore::open(&home.store()).await;
    for (from, to) in [
        ("payments", "tmp-name"),
        ("marketing", "payments"),
        ("tmp-name", "marketing"),
    ] {
        let renamed = raw
            .execute("UPDATE keys SET name = $1 WHERE name = $2", &[to.into(), from.into()])
            .await;
        assert_eq!(renamed, 1, "rename a row");
    }
    raw.close().await;

    let app = spawn_app_in(home).await;
    for name in ["payments", "marketing"] {
        let r = app
            .post(&format!("/v1/keys/{name}/sign"), json!({"message": b64(MESSAGE)}))
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {}", r.body);
        assert_eq!(r.code(), "INTEGRITY_ERROR");
    }
}

/// The control for the dump tests: a secret written raw into a blob column (as a careless
/// store would) is found in the database copy they search, as raw bytes in SQLite's file and
/// as the lower hex `pg_dump` writes a `bytea` in.
#[tokio::test]
async fn a_secret_stored_raw_in_a_blob_column_is_found_in_the_database_copy() {
    let mut app = spawn_app().await;
    let home = app.home.clone();
    app.stop().await;
    drop(app);
    let secret = random_bytes(32);
    let raw = RawStore::open(&home.store()).await;
    let sql = "INSERT INTO system_values (name, value, updated_at_ms) VALUES ('planted', $1, 0)";
    assert_eq!(raw.execute(sql, &[secret.clone().into()]).await, 1);
    raw.checkpoint().await;
    raw.close().await;
    let found = found_needles(&database_copy(&home).await, &encodings("planted", &secret));
    let form = if home.postgres_url.is_some() {
        "lower hex"
    } else {
        "raw"
    };
    assert!(found.contains(&format!("planted ({form})")), "{found:?}");
}
