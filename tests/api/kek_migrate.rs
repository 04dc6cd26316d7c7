//! Moving a populated vault's root of trust, as an operator does with the commands: SoftHSM2
//! → AWS KMS (moto) → another SoftHSM2 token, each step `sigvault kek migrate` on the config
//! file, a restart, and `sigvault kek wait` while the rewrap job moves every record. Every key
//! signs as before at each step (during the job too); while records are still under the old
//! provider, `sigvault kek retire` of its KEK and a further migration are refused with the
//! count; afterwards `sigvault kek status` shows every record under the new KEK.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    DevProcess, MOTO_CREDENTIALS, MOTO_REGION, MotoServer, ROOT_TOKEN, Run, SO_PIN, USER_PIN, b64, module_path,
    own_softhsm_conf, run_binary, spawn_sigvault, sqlite_only, temp_dir,
};

/// Records a second the rewrap job moves: slow, so the refusals below come while records
/// are still under the old provider.
const REWRAP_RATE: u32 = 1;
/// Keys made before the first migration: with the system secrets, ~20 records, so the job
/// runs ~20 s after each start, long past the refusals tried right after it.
const KEYS: usize = 16;

struct Host {
    root: PathBuf,
    config: PathBuf,
    softhsm_conf: PathBuf,
    so_pin: PathBuf,
    pin: PathBuf,
}

impl Host {
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> =
            MOTO_CREDENTIALS.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        env.push(("SOFTHSM2_CONF", self.softhsm_conf.display().to_string()));
        env.push(("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN.to_owned()));
        env
    }

    fn run(&self, args: &[&str], vault: Option<&DevProcess>) -> Run {
        let mut env = self.env();
        if let Some(vault) = vault {
            env.push(("SIGVAULT_ADDR", format!("http://{}", vault.addr)));
            env.push(("SIGVAULT_TOKEN", ROOT_TOKEN.to_owned()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_binary(args, &env)
    }

    fn serve(&self, log: &str) -> DevProcess {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = self.config.display().to_string();
        spawn_sigvault(&["serve", "--config", &config], &env, &self.root.join(log))
    }

    /// A `[kek]` section on the SoftHSM2 token `label`.
    fn pkcs11_section(&self, label: &str) -> String {
        format!(
            "[kek]\nprovider = \"pkcs11\"\n[kek.pkcs11]\nmodule = \"{}\"\ntoken_label = \"{label}\"\npin_file = \"{}\"\n",
            module_path().display(),
            self.pin.display()
        )
    }

    /// A config file `name` of a vault whose data dir is `data` and whose `[kek]` is
    /// `section`; `sigvault init` on it makes the token (and its KEK) when missing.
    fn write_config(&self, name: &str, data: &str, section: &str) -> PathBuf {
        let data = self.root.join(data);
        std::fs::create_dir_all(&data).expect("data dir");
        let file = self.root.join(name);
        let section = section.replacen("[kek]\n", &format!("[kek]\nrewrap_rate = {REWRAP_RATE}\n"), 1);
        let text = format!(
            "# The vault of the migration test.\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n{section}",
            data.display()
        );
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&file, &text).expect("config");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("mode");
        }
        file
    }

    fn init(&self, config: &Path) {
        let (config, so) = (config.display().to_string(), self.so_pin.display().to_string());
        let run = self.run(&["init", "--config", &config, "--so-pin-file", &so], None);
        assert_eq!(run.code, Some(0), "init {config}: {}", run.stderr);
    }

    fn migrate(&self, to: &Path) -> Run {
        let (config, to) = (self.config.display().to_string(), to.display().to_string());
        self.run(&["kek", "migrate", "--config", &config, "--to", &to], None)
    }
}

async fn sign(vault: &DevProcess, name: &str) -> String {
    let r = vault
        .request(
            Method::POST,
            &format!("/v1/keys/{name}/sign"),
            ROOT_TOKEN,
            Some(json!({"message": b64(b"signed across roots of trust")})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.body);
    r.body["signature"].as_str().expect("signature").to_owned()
}

async fn signatures(vault: &DevProcess, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        out.push(sign(vault, name).await);
    }
    out
}

fn status(host: &Host, vault: &DevProcess) -> Value {
    let run = host.run(&["kek", "status", "--json"], Some(vault));
    assert_eq!(run.code, Some(0), "kek status: {}", run.stderr);
    serde_json::from_str(&run.stdout).expect("kek status --json prints the vault's JSON")
}

/// The `kek_id`s of `status`'s records (with their counts).
fn records(status: &Value) -> Vec<(String, u64)> {
    status["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|row| {
            (
                row["kek_id"].as_str().expect("kek_id").to_owned(),
                row["records"].as_u64().expect("count"),
            )
        })
        .collect()
}

/// After a migration's restart: while records are still under `old_kek_id`, retiring it and
/// migrating further are refused with the count; then `kek wait` follows the job to its end,
/// and every key signed as `expected` throughout.
async fn while_the_job_runs(
    host: &Host,
    vault: &DevProcess,
    old_kek_id: &str,
    next: &Path,
    names: &[String],
    expected: &[String],
) {
    let before = std::fs::read_to_string(&host.config).expect("config");
    let retire = host.run(&["kek", "retire", old_kek_id], Some(vault));
    assert_eq!(retire.code, Some(1), "retire while in use: {}", retire.stderr);
    assert!(
        retire.stderr.contains("FAILED_PRECONDITION")
            && retire.stderr.contains("sealed records are still wrapped under"),
        "{}",
        retire.stderr
    );
    let refused = host.migrate(next);
    assert_eq!(
        refused.code,
        Some(1),
        "a migration while [kek.previous] holds records: {}",
        refused.stdout
    );
    assert!(
        refused
            .stderr
            .contains("sealed records are still under the provider of [kek.previous]"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&host.config).expect("config"),
        before,
        "a refusal writes nothing"
    );
    assert_eq!(
        signatures(vault, names).await,
        expected,
        "keys sign as before during the job"
    );

    let wait = host.run(&["kek", "wait", "--timeout", "50"], Some(vault));
    assert_eq!(wait.code, Some(0), "kek wait: {} {}", wait.stdout, wait.stderr);
    assert!(wait.stdout.contains("every sealed record is under"), "{}", wait.stdout);
    assert_eq!(
        signatures(vault, names).await,
        expected,
        "keys sign as before after the job"
    );
}

/// The start after a migration: the new current KEK starts with `prefix`; the job runs
/// through as [`while_the_job_runs`] checks, leaving every record under that KEK, which is
/// returned.
async fn step(
    host: &Host,
    log: &str,
    prefix: &str,
    old_kek_id: &str,
    next: &Path,
    names: &[String],
    expected: &[String],
) -> String {
    let vault = host.serve(log);
    let new_kek = status(host, &vault)["current_kek_id"]
        .as_str()
        .expect("current")
        .to_owned();
    assert!(new_kek.starts_with(prefix), "{new_kek}");
    while_the_job_runs(host, &vault, old_kek_id, next, names, expected).await;
    let after = status(host, &vault);
    assert_eq!(
        records(&after).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        [new_kek.as_str()],
        "every record under {new_kek}: {after}"
    );
    vault.stop();
    new_kek
}

#[tokio::test]
async fn a_populated_vault_moves_from_softhsm2_to_kms_and_on_to_another_token_signing_the_same_throughout() {
    sqlite_only!("runs `sigvault serve` from config files whose store is SQLite in their data dir");
    let root = temp_dir("kek-migrate");
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    let so_pin = etc.join("so-pin");
    std::fs::write(&so_pin, format!("{SO_PIN}\n")).expect("so pin");
    let pin = etc.join("pin");
    std::fs::write(&pin, format!("{USER_PIN}\n")).expect("pin");
    let softhsm_conf = own_softhsm_conf(&root.join("softhsm"));
    let mut host = Host {
        root: root.clone(),
        config: PathBuf::new(),
        softhsm_conf,
        so_pin,
        pin,
    };
    host.config = host.write_config("sigvault.toml", "var", &host.pkcs11_section("migrate-a"));
    host.init(&host.config);

    // A populated vault on token A: generated and imported keys.
    let vault = host.serve("a.log");
    let mut names = Vec::new();
    for i in 0..KEYS {
        let name = format!("key-{i}");
        vault.create_key(&name).await;
        names.push(name);
    }
    let r = vault
        .request(
            Method::POST,
            "/v1/keys/imported/import",
            ROOT_TOKEN,
            Some(json!({"algorithm": "hmac-sha256", "key_material": b64(&[7u8; 32])})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    names.push("imported".into());
    let expected = signatures(&vault, &names).await;
    let on_a = status(&host, &vault);
    let a_kek = on_a["current_kek_id"].as_str().expect("current").to_owned();
    assert!(a_kek.starts_with("pkcs11:migrate-a:"), "{a_kek}");
    vault.stop();

    // → AWS KMS.
    let kms = MotoServer::start();
    kms.create_key_with_alias("alias/sigvault").await;
    let kms_file = root.join("kms.toml");
    std::fs::write(
        &kms_file,
        format!(
            "[kek]\nprovider = \"aws-kms\"\n[kek.aws_kms]\nkey_id = \"alias/sigvault\"\nregion = \"{MOTO_REGION}\"\nendpoint_url = \"{}\"\n",
            kms.url()
        ),
    )
    .expect("kms.toml");
    // Token B exists before the second step is tried (a further migration is refused while
    // records are still under the previous provider).
    let b_file = host.write_config("b.toml", "var-b", &host.pkcs11_section("migrate-b"));
    host.init(&b_file);
    let a_file = root.join("a.toml");
    std::fs::write(&a_file, host.pkcs11_section("migrate-a")).expect("a.toml");

    let migrated = host.migrate(&kms_file);
    assert_eq!(migrated.code, Some(0), "migrate to KMS: {}", migrated.stderr);
    assert!(migrated.stdout.contains("migrated:"), "{}", migrated.stdout);
    let config = std::fs::read_to_string(&host.config).expect("config");
    assert!(
        config.contains("# The vault of the migration test."),
        "the rest of the file is kept: {config}"
    );
    assert!(
        config.contains("[kek.previous]") && config.contains("migrate-a") && config.contains("aws-kms"),
        "{config}"
    );
    let backups: Vec<String> = std::fs::read_dir(&root)
        .expect("root")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sigvault.toml.before-kek-migrate-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = root.join(backups.first().expect("a backup"));
    assert!(std::fs::read_to_string(&backup).expect("backup").contains("migrate-a"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("mode").permissions().mode() & 0o777;
        assert_eq!(
            mode(&host.config),
            0o640,
            "the rewritten file keeps the original's mode"
        );
        assert_eq!(mode(&backup), 0o640, "so does the backup");
    }
    // A SIGVAULT_KEK__ variable would override what the rewritten file says: refused.
    let mut env = host.env();
    env.push(("SIGVAULT_KEK__PKCS11__PIN", "meant-for-the-old-token".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (config_arg, to_arg) = (host.config.display().to_string(), b_file.display().to_string());
    let overridden = run_binary(&["kek", "migrate", "--config", &config_arg, "--to", &to_arg], &env);
    assert_eq!(overridden.code, Some(2), "{}", overridden.stderr);
    assert!(
        overridden.stderr.contains("SIGVAULT_KEK__PKCS11__PIN is set"),
        "{}",
        overridden.stderr
    );

    let kms_kek = step(
        &host,
        "kms.log",
        "aws-kms:arn:aws:kms:",
        &a_kek,
        &b_file,
        &names,
        &expected,
    )
    .await;

    // → SoftHSM2 token B.
    let migrated = host.migrate(&b_file);
    assert_eq!(migrated.code, Some(0), "migrate to token B: {}", migrated.stderr);
    step(
        &host,
        "b.log",
        "pkcs11:migrate-b:",
        &kms_kek,
        &a_file,
        &names,
        &expected,
    )
    .await;

    // KMS is no longer needed: a vault on token B alone (the previous section removed)
    // signs the same.
    let config = std::fs::read_to_string(&host.config).expect("config");
    let without_previous: String = {
        let cut = config.find("[kek.previous]").expect("previous section");
        config[..cut].to_owned()
    };
    std::fs::write(&host.config, without_previous).expect("config");
    drop(kms);
    let vault = host.serve("b-alone.log");
    assert_eq!(signatures(&vault, &names).await, expected, "on token B alone");
    vault.stop();
}
