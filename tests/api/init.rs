//! `sigvault init` on a fresh SoftHSM2 module, then `sigvault serve` with the shipped example
//! config (its paths moved under a temp dir): the token is created once, the root token shown
//! once, a second `init` changes nothing, the vault signs and verifies; and the backup and
//! restore of docs/OPERATIONS.md, done as written there, gives a vault that signs identically
//! and whose audit trail verifies.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    DevProcess, SO_PIN, USER_PIN, b64, module_path, own_softhsm_conf, run_binary, spawn_sigvault, temp_dir, unique,
};

const MESSAGE: &[u8] = b"signed by a vault made with sigvault init";

/// A vault's host, under one temp dir: `var/` (the data dir), `etc/` (config and PIN),
/// `softhsm/` (its own SoftHSM2 module config and token directory).
struct Host {
    root: PathBuf,
    label: String,
    config: PathBuf,
    softhsm_conf: PathBuf,
}

impl Host {
    /// The example config with its paths under `root` and a token label of its own.
    fn new(root: &Path, label: &str) -> Self {
        let etc = root.join("etc");
        let var = root.join("var");
        let softhsm = root.join("softhsm");
        std::fs::create_dir_all(&etc).expect("etc");
        let example =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sigvault.example.toml"))
                .expect("config/sigvault.example.toml");
        let text = example
            .replace("/var/lib/sigvault", &var.display().to_string())
            .replace("/etc/sigvault", &etc.display().to_string())
            .replace("/usr/lib/softhsm/libsofthsm2.so", &module_path().display().to_string())
            .replace("token_label = \"sigvault\"", &format!("token_label = \"{label}\""))
            .replace("listen = \"127.0.0.1:8200\"", "listen = \"127.0.0.1:0\"");
        assert_ne!(text, example);
        let config = etc.join("sigvault.toml");
        std::fs::write(&config, text).expect("config");
        std::fs::write(etc.join("hsm-pin"), format!("{USER_PIN}\n")).expect("pin");
        let softhsm_conf = own_softhsm_conf(&softhsm);
        Self {
            root: root.to_path_buf(),
            label: label.to_owned(),
            config,
            softhsm_conf,
        }
    }

    fn env(&self) -> [(&'static str, String); 1] {
        [("SOFTHSM2_CONF", self.softhsm_conf.display().to_string())]
    }

    fn run(&self, args: &[&str]) -> crate::helpers::Run {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_binary(args, &env)
    }

    fn init(&self, so_pin: Option<&Path>) -> crate::helpers::Run {
        let config = self.config.display().to_string();
        let mut args = vec!["init", "--config", &config];
        let so = so_pin.map(|p| p.display().to_string());
        if let Some(so) = &so {
            args.extend(["--so-pin-file", so]);
        }
        self.run(&args)
    }

    fn serve(&self) -> DevProcess {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = self.config.display().to_string();
        spawn_sigvault(
            &["serve", "--config", &config],
            &env,
            &self.root.join("serve.stderr.log"),
        )
    }
}

fn root_token_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("root token: svt_"))
        .map(|rest| format!("svt_{rest}"))
        .unwrap_or_else(|| panic!("no root token printed: {stdout}"))
}

async fn sign(vault: &DevProcess, token: &str) -> String {
    let r = vault
        .request(
            Method::POST,
            "/v1/keys/payments/sign",
            token,
            Some(json!({"message": b64(MESSAGE)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["signature"].as_str().expect("signature").to_owned()
}

/// `cp -a from to`.
fn copy(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// A host made with `init` (its token created with [`SO_PIN`]), serving, with the key
/// `payments` created: the host, the root token and the running vault.
async fn serving_host_with_a_key(root: &Path, tag: char) -> (Host, String, DevProcess) {
    let label: String = format!("{tag}{}", unique("")).chars().take(32).collect();
    let host = Host::new(root, &label);
    let so_pin = root.join("so-pin");
    std::fs::write(&so_pin, format!("{SO_PIN}\n")).expect("so pin");
    let init = host.init(Some(&so_pin));
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    let token = root_token_of(&init.stdout);
    let vault = host.serve();
    let r = vault
        .request(
            Method::POST,
            "/v1/keys",
            &token,
            Some(json!({"name": "payments", "algorithm": "hmac-sha256"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (host, token, vault)
}

#[tokio::test]
async fn init_makes_a_vault_that_serve_runs_and_a_second_init_changes_nothing() {
    let root = temp_dir("init");
    let label: String = format!("i{}", unique("")).chars().take(32).collect();
    let host = Host::new(&root, &label);

    // No token and no SO PIN: the vendor's step is named, nothing is created.
    let line = host.init(None).refused_line();
    assert!(
        line.contains(&format!("no token labelled '{label}'")) && line.contains("softhsm2-util"),
        "{line}"
    );
    assert!(!root.join("var/sigvault.db").exists(), "{line}");

    let so_pin = root.join("etc/so-pin");
    std::fs::write(&so_pin, format!("{SO_PIN}\n")).expect("so pin");
    let first = host.init(Some(&so_pin));
    assert_eq!(first.code, Some(0), "{}{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains(&format!("token '{label}': created")),
        "{}",
        first.stdout
    );
    let token = root_token_of(&first.stdout);
    for file in ["sigvault.db", "audit.jsonl", "audit.anchor"] {
        assert!(root.join("var").join(file).exists(), "{file} after init");
    }

    let again = host.init(Some(&so_pin));
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains(&format!("token '{label}': found")),
        "{}",
        again.stdout
    );
    assert!(
        !again.stdout.contains("root token: svt_"),
        "a second init shows a new token: {}",
        again.stdout
    );

    let vault = host.serve();
    let r = vault
        .request(
            Method::POST,
            "/v1/keys",
            &token,
            Some(json!({"name": "payments", "algorithm": "hmac-sha256"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let signature = sign(&vault, &token).await;
    let r = vault
        .request(
            Method::POST,
            "/v1/keys/payments/verify",
            &token,
            Some(json!({"message": b64(MESSAGE), "signature": signature})),
        )
        .await;
    assert_eq!(r.body["valid"], json!(true), "{}", r.body);

    // init while the vault serves: refused by the data dir's lock, nothing touched.
    let line = host.init(Some(&so_pin)).refused_line();
    assert!(line.contains("in use by another sigvault"), "{line}");
    vault.stop();
}

/// docs/OPERATIONS.md "Backup and restore", as written: stop the vault, copy the data dir,
/// the token directory and /etc/sigvault together; restore them on another host (paths
/// differ, so the config and SoftHSM2's config are adjusted), start, check.
#[tokio::test]
async fn a_vault_restored_from_a_backup_signs_identically_and_its_trail_verifies() {
    let root = temp_dir("backup");
    let (original, token, vault) = serving_host_with_a_key(&root.join("original"), 'b').await;
    let label = original.label.clone();
    let before = sign(&vault, &token).await;
    vault.stop();

    // The backup: the three directories, taken together while the vault is stopped.
    let backup = root.join("backup");
    std::fs::create_dir_all(&backup).expect("backup dir");
    for dir in ["var", "etc", "softhsm"] {
        copy(&original.root.join(dir), &backup.join(dir));
    }
    // The original host is lost.
    std::fs::remove_dir_all(&original.root).expect("lose the original");

    // Restore on a host whose paths differ.
    let restored_root = root.join("restored");
    std::fs::create_dir_all(&restored_root).expect("restored root");
    let restored = Host::new(&restored_root, &label);
    for dir in ["var", "softhsm"] {
        let _ = std::fs::remove_dir_all(restored_root.join(dir));
        copy(&backup.join(dir), &restored_root.join(dir));
    }
    // softhsm2.conf and the config name paths of the old host: Host::new rewrote both.
    std::fs::write(
        &restored.softhsm_conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            restored_root.join("softhsm/tokens").display()
        ),
    )
    .expect("softhsm2.conf");
    std::fs::copy(backup.join("etc/hsm-pin"), restored_root.join("etc/hsm-pin")).expect("pin");

    let config = restored.config.display().to_string();
    let verify = restored.run(&["audit", "verify", "--config", &config]);
    assert_eq!(verify.code, Some(0), "{}{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("audit trail ok"), "{}", verify.stdout);

    let vault = restored.serve();
    assert_eq!(
        sign(&vault, &token).await,
        before,
        "the restored vault signs differently"
    );
    vault.stop();
    let verify = restored.run(&["audit", "verify", "--config", &config]);
    assert_eq!(verify.code, Some(0), "{}{}", verify.stdout, verify.stderr);
}

#[tokio::test]
async fn serve_refuses_a_lost_store_beside_a_trail_that_has_events() {
    let root = temp_dir("lost-store");
    let (host, _token, vault) = serving_host_with_a_key(&root, 'l').await;
    vault.stop();
    for entry in std::fs::read_dir(root.join("var")).expect("data dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("sigvault.db") {
            std::fs::remove_file(entry.path()).expect("lose the store");
        }
    }
    let config = host.config.display().to_string();
    let line = host.run(&["serve", "--config", &config]).refused_line();
    let db = root.join("var/sigvault.db");
    assert!(
        line.contains(&format!("the store {} is missing", db.display())) && line.contains("docs/OPERATIONS.md"),
        "{line}"
    );
    assert!(!db.exists(), "the refused start made an empty store");
}
