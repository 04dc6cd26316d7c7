//! The vault on AWS KMS (moto's KMS server) as an operator runs it: `sigvault init` and
//! `sigvault serve` with `[kek] provider = "aws-kms"` and the SDK's credential chain from the
//! environment. Keys made and imported sign and verify, and sign the same after a restart; the
//! database holds KMS ciphertext only; KMS paused answers 503 `KEK_UNAVAILABLE` for a key not
//! in the cache within the KMS call timeout while cached keys keep signing, and the vault
//! recovers by itself once KMS answers.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    DevProcess, MOTO_CREDENTIALS, MOTO_REGION, MotoServer, ROOT_TOKEN, RawStore, b64, database_files, encodings,
    eventually, found, random_bytes, run_binary, spawn_sigvault, temp_dir, unb64,
};
use sigvault::store::StoreSettings;

/// The KMS call timeout the vault runs with: short, so the paused-KMS case is quick.
const CALL_TIMEOUT: &str = "1s";

/// A config file under `root` for a vault on `kms` (through `alias/sigvault`), on SQLite in
/// `root/data`.
fn config(root: &Path, kms: &MotoServer) -> String {
    let data = root.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = root.join("sigvault.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\n\
             [kek]\nprovider = \"aws-kms\"\n\
             [kek.aws_kms]\nkey_id = \"alias/sigvault\"\nregion = \"{MOTO_REGION}\"\n\
             endpoint_url = \"{url}\"\ncall_timeout = \"{CALL_TIMEOUT}\"\n",
            data = data.display(),
            url = kms.url(),
        ),
    )
    .expect("config");
    config.display().to_string()
}

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = MOTO_CREDENTIALS.to_vec();
    env.push(("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN));
    env
}

fn serve(root: &Path, config: &str, log: &str) -> DevProcess {
    spawn_sigvault(&["serve", "--config", config], &env(), &root.join(log))
}

async fn sign(vault: &DevProcess, name: &str, message: &[u8]) -> (StatusCode, serde_json::Value) {
    let r = vault
        .request(
            Method::POST,
            &format!("/v1/keys/{name}/sign"),
            ROOT_TOKEN,
            Some(json!({"message": b64(message)})),
        )
        .await;
    (r.status, r.body)
}

async fn import(vault: &DevProcess, name: &str, material: &[u8]) {
    let r = vault
        .request(
            Method::POST,
            &format!("/v1/keys/{name}/import"),
            ROOT_TOKEN,
            Some(json!({"algorithm": "hmac-sha256", "key_material": b64(material)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn a_vault_on_aws_kms_signs_the_same_after_a_restart_and_its_database_holds_only_kms_ciphertext() {
    let kms = MotoServer::start();
    let arn = kms.create_key_with_alias("alias/sigvault").await;
    let root = temp_dir("kms-vault");
    let config = config(&root, &kms);

    let init = run_binary(&["init", "--config", &config], &env());
    assert_eq!(init.code, Some(0), "init: {}", init.stderr);
    assert!(init.stdout.contains("AWS KMS key 'alias/sigvault'"), "{}", init.stdout);

    let vault = serve(&root, &config, "first.log");
    let mut materials = Vec::new();
    for i in 0..5 {
        let material = random_bytes(32);
        import(&vault, &format!("imported-{i}"), &material).await;
        materials.push(material);
    }
    let r = vault
        .request(
            Method::POST,
            "/v1/keys",
            ROOT_TOKEN,
            Some(json!({"name": "generated", "algorithm": "hmac-sha256"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut before = Vec::new();
    for name in ["generated", "imported-0", "imported-4"] {
        let (status, body) = sign(&vault, name, b"same message").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let r = vault
            .request(
                Method::POST,
                &format!("/v1/keys/{name}/verify"),
                ROOT_TOKEN,
                Some(json!({"message": b64(b"same message"), "signature": body["signature"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["valid"], true, "{}", r.body);
        before.push(unb64(body["signature"].as_str().expect("signature")));
    }
    vault.stop();

    // What an attacker copying the database gets: the KMS key's ARN in each record's
    // kek_id, and no key material, root token or system secret in any encoding.
    let files = database_files(&root.join("data").join("sigvault.db"));
    let kek_id = format!("aws-kms:{arn}");
    assert!(
        files
            .iter()
            .any(|(_, bytes)| bytes.windows(kek_id.len()).any(|w| w == kek_id.as_bytes())),
        "the records name the KMS key they are wrapped under"
    );
    let mut secrets = Vec::new();
    for (i, material) in materials.iter().enumerate() {
        secrets.extend(encodings(&format!("imported-{i} material"), material));
    }
    secrets.extend(encodings("root token", ROOT_TOKEN.as_bytes()));
    let hits = found(&files, &secrets);
    assert!(hits.is_empty(), "secrets in the database: {hits:?}");

    // An attacker with write access to the database copies every sealed column of one key's
    // version onto another's: its wrapped DEK is bound (EncryptionContext) to the first key,
    // so KMS refuses it and the vault fails closed.
    let raw = RawStore::open(&StoreSettings::Sqlite {
        path: root.join("data").join("sigvault.db"),
    })
    .await;
    assert_eq!(raw.copy_sealed_version("imported-1", "imported-2").await, kek_id);
    raw.close().await;

    let vault = serve(&root, &config, "second.log");
    for (name, signature) in ["generated", "imported-0", "imported-4"].iter().zip(&before) {
        let (status, body) = sign(&vault, name, b"same message").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            &unb64(body["signature"].as_str().expect("signature")),
            signature,
            "{name}"
        );
    }
    let (status, body) = sign(&vault, "imported-2", b"same message").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["code"], "INTEGRITY_ERROR", "{body}");
}

#[tokio::test]
async fn kms_paused_fails_a_cold_key_within_the_call_timeout_keeps_cached_keys_signing_and_recovers() {
    let kms = MotoServer::start();
    kms.create_key_with_alias("alias/sigvault").await;
    let root = temp_dir("kms-paused");
    let config = config(&root, &kms);
    let init = run_binary(&["init", "--config", &config], &env());
    assert_eq!(init.code, Some(0), "init: {}", init.stderr);
    let vault = serve(&root, &config, "first.log");
    import(&vault, "warm", &random_bytes(32)).await;
    import(&vault, "cold", &random_bytes(32)).await;
    vault.stop();

    // A fresh process: nothing is cached until a key is used.
    let vault = serve(&root, &config, "second.log");
    assert_eq!(sign(&vault, "warm", b"m").await.0, StatusCode::OK);

    kms.pause();
    let started = Instant::now();
    let (status, body) = sign(&vault, "cold", b"m").await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "KEK_UNAVAILABLE", "{body}");
    // The call timeout is 1 s; the slack is for a loaded machine. Without the timeout the
    // request would hang as long as KMS does.
    assert!(
        waited < Duration::from_secs(10),
        "a paused KMS held the request for {waited:?}"
    );
    for _ in 0..5 {
        let (status, body) = sign(&vault, "warm", b"m").await;
        assert_eq!(status, StatusCode::OK, "a cached key signs while KMS is paused: {body}");
    }
    let health = vault.request(Method::GET, "/v1/sys/health", ROOT_TOKEN, None).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE, "{}", health.body);
    assert_eq!(health.body["kek"], "unavailable", "{}", health.body);

    kms.resume();
    eventually("the cold key signs once KMS answers again", 20, || async {
        sign(&vault, "cold", b"m").await.0 == StatusCode::OK
    })
    .await;
    eventually("health says the KEK is ok again", 20, || async {
        let health = vault.request(Method::GET, "/v1/sys/health", ROOT_TOKEN, None).await;
        health.status == StatusCode::OK && health.body["kek"] == "ok"
    })
    .await;
}
