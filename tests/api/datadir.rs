//! A `sigvault dev` data dir that cannot be misused: one server at a time (a second exits
//! with one line and changes nothing), a moved or copied dir that works on its own token, a
//! failed first start that leaves nothing, a missing piece named rather than made afresh,
//! the root-token file and the `export` line, and quiet logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{DevProcess, ROOT_TOKEN, Run, b64, run_binary, spawn_dev, stderr_log, temp_dir};

const MESSAGE: &[u8] = b"the same signature wherever the data dir goes";

fn env() -> [(&'static str, &'static str); 1] {
    [("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]
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

async fn sign(dev: &DevProcess, name: &str) -> String {
    let r = dev
        .request(
            Method::POST,
            &format!("/v1/keys/{name}/sign"),
            ROOT_TOKEN,
            Some(json!({"message": b64(MESSAGE)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["signature"].as_str().expect("signature").to_owned()
}

async fn latest_version(dev: &DevProcess, name: &str) -> u64 {
    let r = dev
        .request(Method::GET, &format!("/v1/keys/{name}"), ROOT_TOKEN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["latest_version"].as_u64().expect("latest_version")
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// `cp -a`.
fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success());
}

#[tokio::test]
async fn a_second_server_on_a_data_dir_in_use_exits_with_one_line_and_the_first_keeps_serving() {
    let data_dir = temp_dir("dd-in-use").join("data");
    let first = spawn_dev(&data_dir, &env());
    first.create_key("held").await;
    let signature = sign(&first, "held").await;
    // What a second server could touch without the lock: its config, PINs, the lock's pid.
    let outside_store = |mut files: BTreeMap<PathBuf, Vec<u8>>| {
        files.retain(|path, _| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            !name.starts_with("sigvault.db") && !name.starts_with("audit.")
        });
        files
    };
    let before = outside_store(contents(&data_dir));
    let run = run_binary(&dev_args(&data_dir), &env());
    let line = run.refused_line();
    assert!(
        line.contains("is in use by another sigvault") && line.contains(&format!("(pid {})", first.child.id())),
        "{line}"
    );
    assert_eq!(
        outside_store(contents(&data_dir)),
        before,
        "the refused start changed the data dir"
    );
    // The one offline command that writes the trail needs the vault stopped.
    let dir = data_dir.display().to_string();
    let run = run_binary(
        &["audit", "accept-truncation", "--data-dir", &dir, "--events", "1"],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("is in use by another sigvault"), "{}", run.stderr);
    assert_eq!(sign(&first, "held").await, signature, "the first server keeps serving");
    first.stop();
}

#[tokio::test]
async fn a_first_start_that_cannot_listen_leaves_no_data_dir() {
    let data_dir = temp_dir("dd-busy").join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let listen = taken.local_addr().expect("addr").to_string();
    let run = run_binary(
        &[
            "dev",
            "--listen",
            &listen,
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
        ],
        &env(),
    );
    let line = run.refused_line();
    assert!(line.contains(&format!("cannot listen on {listen}")), "{line}");
    assert!(!data_dir.exists(), "a failed first start left {}", data_dir.display());
}

#[tokio::test]
async fn a_moved_data_dir_starts_and_signs_identically() {
    let root = temp_dir("dd-moved");
    let data_dir = root.join("data");
    let dev = spawn_dev(&data_dir, &env());
    dev.create_key("portable").await;
    let before = sign(&dev, "portable").await;
    dev.stop();
    let moved = root.join("elsewhere").join("renamed");
    std::fs::create_dir_all(moved.parent().expect("parent")).expect("mkdir");
    std::fs::rename(&data_dir, &moved).expect("move the data dir");
    let dev = spawn_dev(&moved, &env());
    assert_eq!(sign(&dev, "portable").await, before);
    let conf = std::fs::read_to_string(moved.join("softhsm2.conf")).expect("softhsm2.conf");
    let tokens = std::fs::canonicalize(moved.join("tokens")).expect("tokens");
    assert!(
        conf.contains(&format!("directories.tokendir = {}\n", tokens.display())),
        "{conf}"
    );
    dev.stop();
}

#[tokio::test]
async fn a_copied_data_dir_runs_beside_the_original_on_its_own_token() {
    let root = temp_dir("dd-copy");
    let original = root.join("original");
    let dev = spawn_dev(&original, &env());
    dev.create_key("shared").await;
    let before = sign(&dev, "shared").await;
    dev.stop();
    let copy = root.join("copy");
    copy_dir(&original, &copy);

    let a = spawn_dev(&original, &env());
    let b = spawn_dev(&copy, &env());
    let r = b
        .request(Method::POST, "/v1/keys/shared/rotate", ROOT_TOKEN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(latest_version(&b, "shared").await, 2);
    assert_eq!(
        latest_version(&a, "shared").await,
        1,
        "the rotation reached the original"
    );
    assert_eq!(sign(&a, "shared").await, before);
    a.stop();
    b.stop();

    // Without the original's token files the copy still opens its keys: it never used them.
    std::fs::remove_dir_all(original.join("tokens")).expect("remove the original's token");
    let b = spawn_dev(&copy, &env());
    let r = b
        .request(
            Method::POST,
            "/v1/keys/shared/sign",
            ROOT_TOKEN,
            Some(json!({"message": b64(MESSAGE), "key_version": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["signature"].as_str(), Some(before.as_str()));
    b.stop();
}

#[tokio::test]
async fn each_missing_piece_is_named_and_nothing_is_made_afresh() {
    let root = temp_dir("dd-missing");
    let started = root.join("started");
    let dev = spawn_dev(&started, &env());
    dev.create_key("k").await;
    dev.stop();
    for (piece, named) in [
        ("tokens", "the SoftHSM2 token"),
        ("hsm-pin", "the user PIN"),
        ("sigvault.db", "the store"),
        ("audit.jsonl", "the audit event file"),
        ("audit.anchor", "the audit anchor file"),
    ] {
        let dir = root.join(format!("without-{piece}"));
        copy_dir(&started, &dir);
        let path = dir.join(piece);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove");
        } else {
            for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
                if entry.file_name().to_string_lossy().starts_with(piece) {
                    std::fs::remove_file(entry.path()).expect("remove");
                }
            }
        }
        let before = contents(&dir);
        let run: Run = run_binary(&dev_args(&dir), &env());
        let line = run.refused_line();
        assert!(
            line.contains(&format!("{} is missing", path.display())) && line.contains(named),
            "{piece}: {line}"
        );
        assert!(line.contains("docs/OPERATIONS.md"), "{line}");
        let mut after = contents(&dir);
        // Only the lock file may differ (it holds the pid of whoever held it last).
        after.insert(
            dir.join("sigvault.lock"),
            before.get(&dir.join("sigvault.lock")).cloned().unwrap_or_default(),
        );
        assert_eq!(after, before, "{piece}: the refused start changed the data dir");
    }
}

fn export_line(dev: &DevProcess) -> &str {
    dev.stdout_lines
        .iter()
        .find(|l| l.starts_with("export "))
        .unwrap_or_else(|| panic!("no export line: {:?}", dev.stdout_lines))
}

#[tokio::test]
async fn a_generated_root_token_is_kept_in_the_data_dir_and_the_export_line_uses_it() {
    let data_dir = temp_dir("dd-export").join("data");
    let dev = spawn_dev(&data_dir, &[]);
    let file = std::fs::canonicalize(data_dir.join("root-token")).expect("root-token file");
    let token = std::fs::read_to_string(&file).expect("read root-token");
    let token = token.trim_end().to_owned();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).expect("stat").permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        dev.stdout_lines.iter().any(|l| l == &format!("root token: {token}")),
        "{:?}",
        dev.stdout_lines
    );
    let line = export_line(&dev).to_owned();
    assert_eq!(
        line,
        format!(
            "export SIGVAULT_ADDR=http://{} SIGVAULT_TOKEN=\"$(cat {})\"",
            dev.addr,
            file.display()
        )
    );
    assert!(!line.contains(&token), "the line shows the token itself");
    // Pasted into a shell, the line is all a second terminal needs.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{line}\ncurl -sS -f -H \"Authorization: Bearer $SIGVAULT_TOKEN\" \"$SIGVAULT_ADDR/v1/auth/whoami\""
        ))
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"root\""));
    dev.stop();

    let dev = spawn_dev(&data_dir, &[]);
    assert!(
        !dev.stdout_lines.iter().any(|l| l.starts_with("root token:")),
        "a restart shows no token"
    );
    assert!(export_line(&dev).contains("$(cat "), "{:?}", dev.stdout_lines);
    dev.stop();

    // A token given in the environment replaces the stored one: the file, which would name
    // a token that no longer works, goes.
    let dev = spawn_dev(&data_dir, &env());
    assert!(!file.exists());
    assert_eq!(export_line(&dev), format!("export SIGVAULT_ADDR=http://{}", dev.addr));
    dev.stop();
}

#[tokio::test]
async fn the_logs_of_a_default_start_are_plain_quiet_and_carry_one_line_per_request() {
    let data_dir = temp_dir("dd-logs").join("data");
    let dev = spawn_dev(&data_dir, &env());
    dev.create_key("logged").await;
    dev.stop();
    let log = std::fs::read_to_string(stderr_log(&data_dir)).expect("stderr log");
    assert!(!log.contains('\u{1b}'), "ANSI colours in a redirected log: {log}");
    assert!(
        !log.lines().any(|l| l.contains(" WARN ") || l.contains(" ERROR ")),
        "a default start warns: {log}"
    );
    let access: Vec<&str> = log.lines().filter(|l| l.contains("sigvault::access")).collect();
    let create = access
        .iter()
        .find(|l| l.contains("method=POST") && l.contains("path=/v1/keys "))
        .unwrap_or_else(|| panic!("no access line for the create: {log}"));
    for field in ["request_id=", "status=201", "principal=root", "latency_us="] {
        assert!(create.contains(field), "{field} missing: {create}");
    }
    assert!(!log.contains(ROOT_TOKEN), "the token reached the log");
}
