//! The real `sigvault` binary starting, restarting and refusing to start: keys and the root
//! token survive a restart on the same data dir; every startup failure exits non-zero with
//! one `sigvault: error:` line naming the problem, without panicking and without leaving
//! partial state behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256, Sha384};

use crate::helpers::{
    DevProcess, ROOT_TOKEN, Run, b64, module_path, run_binary, softhsm_conf, spawn_dev, stderr_log, temp_dir, unb64,
};

const MESSAGE: &[u8] = b"signed before and after a restart";

async fn sign(dev: &DevProcess, name: &str) -> Vec<u8> {
    let r = dev
        .request(
            Method::POST,
            &format!("/v1/keys/{name}/sign"),
            ROOT_TOKEN,
            Some(json!({"message": b64(MESSAGE)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    unb64(r.body["signature"].as_str().expect("signature"))
}

fn printed_root_tokens(dev: &DevProcess) -> Vec<String> {
    dev.stdout_lines
        .iter()
        .filter(|l| l.contains("root token"))
        .cloned()
        .collect()
}

/// Stops `dev` once it handles SIGTERM. `listening on` comes before the handler exists
/// (see `a_dev_vault_stopped_right_after_it_reports_listening_exits_cleanly`), and even a
/// served request does not prove it does, so wait for the handler itself.
fn stop_cleanly(dev: DevProcess) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dev.catches(libc::SIGTERM) {
        assert!(
            Instant::now() < deadline,
            "sigvault dev never installed a SIGTERM handler"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    dev.stop();
}

#[tokio::test]
async fn a_dev_vault_restarted_on_the_same_data_dir_signs_identically() {
    let data_dir = temp_dir("dev-restart").join("data");
    let env = [("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)];
    let material: Vec<u8> = (0u8..40).map(|i| i.wrapping_mul(37) ^ 0x5c).collect();

    let dev = spawn_dev(&data_dir, &env);
    assert_eq!(
        printed_root_tokens(&dev),
        Vec::<String>::new(),
        "SIGVAULT_ROOT_TOKEN is never printed"
    );
    let body = json!({"name": "created", "algorithm": "hmac-sha256"});
    let r = dev.request(Method::POST, "/v1/keys", ROOT_TOKEN, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let body = json!({"key_material": b64(&material), "algorithm": "hmac-sha384"});
    let r = dev
        .request(Method::POST, "/v1/keys/imported/import", ROOT_TOKEN, Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let created = sign(&dev, "created").await;
    let imported = sign(&dev, "imported").await;
    let mut mac = <Hmac<Sha384> as KeyInit>::new_from_slice(&material).expect("any key length");
    mac.update(MESSAGE);
    assert_eq!(
        imported,
        mac.finalize().into_bytes().to_vec(),
        "the imported key is the material sent"
    );
    stop_cleanly(dev);

    let dev = spawn_dev(&data_dir, &env);
    assert_eq!(
        printed_root_tokens(&dev),
        Vec::<String>::new(),
        "a restart prints no root token"
    );
    assert_eq!(sign(&dev, "created").await, created, "the created key after a restart");
    assert_eq!(
        sign(&dev, "imported").await,
        imported,
        "the imported key after a restart"
    );
    stop_cleanly(dev);
}

#[tokio::test]
async fn a_generated_root_token_is_printed_once_and_still_works_after_a_restart() {
    assert!(
        std::env::var_os("SIGVAULT_ROOT_TOKEN").is_none(),
        "this test needs SIGVAULT_ROOT_TOKEN unset"
    );
    let data_dir = temp_dir("dev-token").join("data");

    let dev = spawn_dev(&data_dir, &[]);
    let printed = printed_root_tokens(&dev);
    assert_eq!(printed.len(), 1, "{printed:?}");
    let token = printed[0]
        .strip_prefix("root token: ")
        .expect("`root token: ` line")
        .to_owned();
    assert!(token.starts_with("svt_") && token.len() > 20, "{token}");
    let r = dev.request(Method::GET, "/v1/keys", &token, None).await;
    assert_eq!(r.status, StatusCode::OK, "the printed token authenticates: {}", r.body);
    let r = dev
        .request(Method::GET, "/v1/keys", "svt_not-the-printed-token-000000", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "another token does not");
    stop_cleanly(dev);
    // Read now: the next start truncates the log.
    let first_log = std::fs::read_to_string(stderr_log(&data_dir)).expect("stderr log");
    assert!(!first_log.contains(&token), "the root token is in the log");

    let dev = spawn_dev(&data_dir, &[]);
    assert_eq!(
        printed_root_tokens(&dev),
        Vec::<String>::new(),
        "a restart prints no root token"
    );
    let r = dev.request(Method::GET, "/v1/keys", &token, None).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the first token still authenticates: {}",
        r.body
    );
    stop_cleanly(dev);
    let second_log = std::fs::read_to_string(stderr_log(&data_dir)).expect("stderr log");
    assert!(
        !second_log.contains(&token),
        "the root token is in the log of the restart"
    );
}

#[tokio::test]
async fn a_clean_stop_checkpoints_the_wal_into_the_database_file() {
    // Three stops, as the outcome is a race.
    for _ in 0..3 {
        let data_dir = temp_dir("dev-checkpoint").join("data");
        let dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]);
        let body = json!({"name": "checkpointed", "algorithm": "hmac-sha256"});
        let r = dev.request(Method::POST, "/v1/keys", ROOT_TOKEN, Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        stop_cleanly(dev);
        let wal = data_dir.join("sigvault.db-wal");
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert_eq!(
            wal_len,
            0,
            "{} still holds {wal_len} bytes after a clean stop",
            wal.display()
        );
    }
}

// ----- startup failures -----------------------------------------------------------------

/// A startup failure (see [`Run::refused_line`]) whose error line contains every word of
/// `names`. Returns that line.
fn assert_refused(run: Run, names: &[&str]) -> String {
    let line = run.refused_line();
    for name in names {
        assert!(line.contains(name), "`{line}` does not name {name:?}");
    }
    line
}

fn sha256_of(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok().map(|bytes| Sha256::digest(&bytes).to_vec())
}

/// Every file name under `dir`, with the hash of the SQLite files among them.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            let is_db = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sigvault.db"));
            out.insert(path.clone(), if is_db { sha256_of(&path) } else { None });
        }
    }
    out
}

fn dev_args(data_dir: &Path) -> Vec<String> {
    vec![
        "dev".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ]
}

#[test]
fn a_dev_vault_stopped_right_after_it_reports_listening_exits_cleanly() {
    let data_dir = temp_dir("early-stop").join("data");
    for _ in 0..3 {
        // `stop` asserts a successful exit status.
        spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]).stop();
    }
}

#[test]
fn dev_refuses_a_wrong_hsm_pin_and_leaves_the_database_untouched() {
    let data_dir = temp_dir("wrong-pin").join("data");
    stop_cleanly(spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]));
    std::fs::write(data_dir.join("hsm-pin"), "not-the-pin\n").expect("overwrite the PIN");
    // Only the token's own files may change (SoftHSM2 records failed logins): no database
    // file may be created or written.
    let outside_token = |mut files: BTreeMap<PathBuf, Option<Vec<u8>>>| {
        files.retain(|path, _| !path.starts_with(data_dir.join("tokens")));
        files
    };
    let before = outside_token(snapshot(&data_dir));
    assert!(
        before.get(&data_dir.join("sigvault.db")).is_some_and(Option::is_some),
        "the database exists"
    );

    let line = assert_refused(
        run_binary(&dev_args(&data_dir), &[]),
        &["PIN", "incorrect", "sigvault-dev"],
    );
    assert_eq!(outside_token(snapshot(&data_dir)), before, "{line}");
}

#[test]
fn serve_refuses_a_token_label_the_hsm_does_not_have_and_creates_no_database() {
    let dir = temp_dir("no-token");
    let data_dir = dir.join("data");
    std::fs::create_dir(&data_dir).expect("data dir");
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, "test-user-pin\n").expect("pin file");
    let config = dir.join("sigvault.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[store]\nurl = \"sqlite://{}/sv.db\"\n\
         [kek.pkcs11]\nmodule = {:?}\ntoken_label = \"no-such-token\"\npin_file = {:?}\n",
        data_dir.display().to_string(),
        data_dir.display(),
        module_path().display().to_string(),
        pin_file.display().to_string(),
    );
    std::fs::write(&config, text).expect("config");

    let conf = softhsm_conf().display().to_string();
    let outcome = run_binary(
        &["serve", "--config", &config.display().to_string()],
        &[("SOFTHSM2_CONF", &conf)],
    );
    let line = assert_refused(outcome, &["token", "no-such-token"]);
    // Only the lock a serving process holds on its data dir (it holds the pid) was made.
    let mut left = snapshot(&data_dir);
    left.remove(&data_dir.join("sigvault.lock"));
    assert_eq!(left, BTreeMap::new(), "the data dir stays empty (no sv.db): {line}");
}

#[test]
fn dev_refuses_a_missing_pkcs11_module_before_creating_the_data_dir() {
    let data_dir = temp_dir("no-module").join("data");
    let module = "/nonexistent/libsofthsm2.so";
    let outcome = run_binary(&dev_args(&data_dir), &[("SIGVAULT_KEK__PKCS11__MODULE", module)]);
    let line = assert_refused(outcome, &[module]);
    assert!(!data_dir.exists(), "the data dir was created: {line}");
}

#[test]
fn dev_refuses_a_data_dir_that_is_a_regular_file_and_leaves_the_file_unchanged() {
    let file = temp_dir("file-data-dir").join("data");
    std::fs::write(&file, b"not a directory\n").expect("file");
    let path = file.display().to_string();
    assert_refused(
        run_binary(&dev_args(&file), &[]),
        &["data dir", &path, "not a directory"],
    );
    assert_eq!(std::fs::read(&file).expect("file"), b"not a directory\n");
}

#[test]
fn dev_refuses_a_data_dir_under_a_regular_file() {
    let file = temp_dir("file-parent").join("file");
    std::fs::write(&file, b"a file, not a parent\n").expect("file");
    let data_dir = file.join("sub");
    let path = data_dir.display().to_string();
    assert_refused(run_binary(&dev_args(&data_dir), &[]), &["data dir", &path]);
    assert_eq!(std::fs::read(&file).expect("file"), b"a file, not a parent\n");
}

#[test]
fn a_listen_value_that_is_not_an_address_is_named() {
    let data_dir = temp_dir("bad-listen").join("data");
    let dir = data_dir.display().to_string();
    // Not `dev_args`: a `--listen` flag would override the environment.
    let outcome = run_binary(&["dev", "--data-dir", &dir], &[("SIGVAULT_LISTEN", "nonsense")]);
    assert_refused(outcome, &["listen", "nonsense"]);
}

#[test]
fn an_invalid_config_value_leaves_no_data_dir_behind() {
    for (var, value) in [("SIGVAULT_LISTEN", "nonsense"), ("SIGVAULT_LOG_LEVEL", "loud")] {
        let data_dir = temp_dir("bad-value").join("data");
        let dir = data_dir.display().to_string();
        let outcome = run_binary(&["dev", "--data-dir", &dir], &[(var, value)]);
        let line = assert_refused(outcome, &[&var["SIGVAULT_".len()..].to_lowercase()]);
        assert!(!data_dir.exists(), "{var}={value}: the data dir was created: {line}");
    }
}

#[test]
fn an_unknown_environment_key_is_named_and_nothing_is_created() {
    let data_dir = temp_dir("bogus-env").join("data");
    let line = assert_refused(
        run_binary(&dev_args(&data_dir), &[("SIGVAULT_BOGUS", "1")]),
        &["SIGVAULT_BOGUS"],
    );
    assert!(!data_dir.exists(), "the data dir was created: {line}");
}

#[test]
fn an_unknown_key_in_a_config_file_is_named_with_the_file_and_nothing_is_created() {
    let dir = temp_dir("bad-config");
    let data_dir = dir.join("data");
    let config = dir.join("sigvault.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n[store]\npasword = \"x\"\n").expect("config");
    let mut owned = dev_args(&data_dir);
    owned.extend(["--config".to_owned(), config.display().to_string()]);
    let line = assert_refused(run_binary(&owned, &[]), &[&config.display().to_string(), "pasword"]);
    assert!(!data_dir.exists(), "the data dir was created: {line}");
}

/// A first start that fails after generating the root token (here: the port is taken)
/// must not store its hash: the token was never shown, so nobody could use the vault.
#[tokio::test]
async fn a_first_start_that_cannot_listen_leaves_no_unknown_root_token() {
    let data_dir = temp_dir("dev-busy-port").join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("addr").port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let Run { code, stdout, stderr } = run_binary(
        &[
            "dev",
            "--listen",
            &listen,
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_ne!(code, Some(0), "a taken port must stop the start");
    assert!(!stdout.contains("root token:"), "{stdout}");
    assert!(stderr.contains(&format!("cannot listen on {listen}")), "{stderr}");
    drop(taken);

    let dev = spawn_dev(&data_dir, &[]);
    assert_eq!(
        printed_root_tokens(&dev).len(),
        1,
        "the next start generates and shows a token"
    );
    stop_cleanly(dev);
}
