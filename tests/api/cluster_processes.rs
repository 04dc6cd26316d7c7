//! Two real `sigvault serve` processes on one PostgreSQL database and one HSM token, each
//! with its own data dir and audit node, as an operator runs them behind a load balancer
//! (README "Running several nodes"): a key made on one signs on the other; a rotation, a
//! disabling and a token revocation on one reach the other while notifications flow; ten
//! credits spent by twenty verifications spread over both are spent exactly once. The
//! in-process two-node tests (`cluster.rs`) cover the rest with a controllable clock.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    DevProcess, ROOT_TOKEN, SO_PIN, USER_PIN, b64, eventually, fresh_postgres_database, module_path, own_softhsm_conf,
    run_binary, spawn_sigvault, temp_dir, unique,
};

/// One node's config file under `root`: its own data dir and audit node, the shared token
/// and database. `cache.max_staleness` is an hour, so what the other node sees within the
/// test's seconds it heard (LISTEN/NOTIFY), not re-read on expiry.
fn node_config(root: &Path, node: &str, label: &str, database: &str) -> String {
    let data = root.join(node);
    std::fs::create_dir_all(&data).expect("data dir");
    let config = root.join(format!("{node}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\n\
             [store]\nurl = \"{database}\"\n\
             [kek]\nprovider = \"pkcs11\"\n\
             [kek.pkcs11]\nmodule = \"{module}\"\ntoken_label = \"{label}\"\npin_file = \"{pin}\"\n\
             [audit]\nnode = \"{node}\"\n\
             [cache]\nmax_staleness = \"1h\"\n",
            data = data.display(),
            module = module_path().display(),
            pin = root.join("hsm-pin").display(),
        ),
    )
    .expect("config");
    config.display().to_string()
}

async fn sign(node: &DevProcess, name: &str) -> (StatusCode, Option<u64>) {
    let r = node
        .request(
            Method::POST,
            &format!("/v1/keys/{name}/sign"),
            ROOT_TOKEN,
            Some(json!({"message": b64(b"hello")})),
        )
        .await;
    (r.status, r.body["key_version"].as_u64())
}

async fn eventually_signs(node: &DevProcess, name: &str, want: (StatusCode, Option<u64>), what: &str) {
    eventually(what, 10, || async { sign(node, name).await == want }).await;
}

#[tokio::test]
async fn two_serve_processes_on_one_database_share_keys_and_hear_each_others_changes() {
    let root = temp_dir("two-processes");
    let softhsm_conf = own_softhsm_conf(&root.join("softhsm"));
    std::fs::write(root.join("hsm-pin"), format!("{USER_PIN}\n")).expect("pin");
    let label: String = format!("c{}", unique("")).chars().take(32).collect();
    let database = fresh_postgres_database();
    let a_config = node_config(&root, "node-a", &label, &database);
    let b_config = node_config(&root, "node-b", &label, &database);
    let conf = softhsm_conf.display().to_string();
    let env = [("SOFTHSM2_CONF", conf.as_str()), ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)];

    let so_pin = root.join("so-pin");
    std::fs::write(&so_pin, format!("{SO_PIN}\n")).expect("SO PIN");
    let so_pin = so_pin.display().to_string();
    let init = run_binary(&["init", "--config", &a_config, "--so-pin-file", &so_pin], &env);
    assert_eq!(init.code, Some(0), "init: {}", init.stderr);
    let a = spawn_sigvault(&["serve", "--config", &a_config], &env, &root.join("a.stderr.log"));
    let b = spawn_sigvault(&["serve", "--config", &b_config], &env, &root.join("b.stderr.log"));

    let r = a
        .request(
            Method::POST,
            "/v1/keys",
            ROOT_TOKEN,
            Some(json!({"name": "shared", "algorithm": "hmac-sha256"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        sign(&b, "shared").await,
        (StatusCode::OK, Some(1)),
        "B signs with A's key"
    );

    let r = a
        .request(Method::POST, "/v1/keys/shared/rotate", ROOT_TOKEN, Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    eventually_signs(&b, "shared", (StatusCode::OK, Some(2)), "the rotation").await;

    let r = a
        .request(
            Method::PATCH,
            "/v1/keys/shared",
            ROOT_TOKEN,
            Some(json!({"state": "disabled"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    eventually_signs(&b, "shared", (StatusCode::CONFLICT, None), "the disabling").await;

    // A caller token made and then revoked on A.
    let r = a
        .request(
            Method::POST,
            "/v1/auth/tokens",
            ROOT_TOKEN,
            Some(json!({"principal": "payments", "groups": ["service"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (id, caller) = (
        r.body["id"].as_str().expect("id").to_owned(),
        r.body["token"].as_str().expect("token").to_owned(),
    );
    assert_eq!(
        b.request(Method::GET, "/v1/auth/whoami", &caller, None).await.status,
        StatusCode::OK
    );
    let r = a
        .request(Method::DELETE, &format!("/v1/auth/tokens/{id}"), ROOT_TOKEN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    eventually("B refusing the token A revoked", 10, || async {
        b.request(Method::GET, "/v1/auth/whoami", &caller, None).await.status == StatusCode::UNAUTHORIZED
    })
    .await;

    // Ten credits spent by twenty verifications at once, half on each process.
    let r = a
        .request(
            Method::POST,
            "/v1/apikeys",
            ROOT_TOKEN,
            Some(json!({"principal": "acme-ci", "remaining": 10})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let key = r.body["key"].as_str().expect("key").to_owned();
    let verifications = (0..20).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.request(
            Method::POST,
            "/v1/apikeys/verify",
            ROOT_TOKEN,
            Some(json!({"key": key, "permissions": []})),
        )
    });
    let codes: Vec<String> = futures_util::future::join_all(verifications)
        .await
        .iter()
        .map(|r| r.body["code"].as_str().unwrap_or("?").to_owned())
        .collect();
    let valid = codes.iter().filter(|c| *c == "VALID").count();
    assert_eq!(valid, 10, "{codes:?}");

    a.stop();
    b.stop();
}
