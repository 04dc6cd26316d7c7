//! The client commands of the `sigvault` binary against a running vault, as an operator or a
//! script types them (`SIGVAULT_ADDR`, `SIGVAULT_TOKEN`): every subcommand once, `--format
//! json` and `table`, input from arguments, files and standard input, `verify` exiting 1 on
//! a bad signature, and each failure one `sigvault: error: CODE (status): …` line with the
//! exit code of its kind (2 usage, 3 denied, 4 not found).

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::{DevProcess, ROOT_TOKEN, spawn_dev, sqlite_only, temp_dir};

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `sigvault ARGS` with the vault's address and `token`, `stdin` written to it.
fn cli(dev: &DevProcess, token: Option<&str>, args: &[&str], stdin: &[u8]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigvault"));
    cmd.args(args)
        .env("SIGVAULT_ADDR", format!("http://{}", dev.addr))
        .env_remove("SIGVAULT_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("SIGVAULT_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("run sigvault");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("sigvault ran");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(out: &Out, what: &str) -> String {
    assert_eq!(out.code, Some(0), "{what}: {} {}", out.stdout, out.stderr);
    assert!(out.stderr.is_empty(), "{what}: nothing on stderr: {}", out.stderr);
    out.stdout.clone()
}

fn json(out: &Out, what: &str) -> Value {
    serde_json::from_str(&ok(out, what)).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", out.stdout))
}

/// The value of `field` in a table's `field  value` lines.
fn row(table: &str, field: &str) -> String {
    table
        .lines()
        .find_map(|l| l.strip_prefix(field).filter(|rest| rest.starts_with(' ')))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no `{field}` line in {table}"))
}

/// One error line with `code`, and the exit code.
fn fails(out: &Out, exit: i32, code: &str, what: &str) {
    assert_eq!(out.code, Some(exit), "{what}: {} {}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line: {}", out.stderr);
    assert!(
        lines[0].starts_with(&format!("sigvault: error: {code}")),
        "{what}: {}",
        out.stderr
    );
}

#[test]
fn every_client_command_works_against_a_running_vault_with_script_friendly_exits() {
    sqlite_only!("runs `sigvault dev`, whose store is SQLite in its data dir whatever the suite's store");
    let data_dir = temp_dir("cli");
    let dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]);
    let root = Some(ROOT_TOKEN);

    // Keys.
    let created = ok(
        &cli(&dev, root, &["key", "create", "cli-key", "--tag", "team=ops"], b""),
        "key create",
    );
    assert_eq!(row(&created, "name"), "cli-key");
    assert_eq!(row(&created, "algorithm"), "hmac-sha256");
    let listed = json(&cli(&dev, root, &["key", "list", "--format", "json"], b""), "key list");
    assert!(
        listed["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["name"] == "cli-key"),
        "{listed}"
    );
    let table = ok(&cli(&dev, root, &["key", "list"], b""), "key list table");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("cli-key"), "{table}");
    let got = json(
        &cli(&dev, root, &["key", "get", "cli-key", "--format", "json"], b""),
        "key get",
    );
    assert_eq!(got["tags"]["team"], "ops");

    // Sign from an argument, a file and standard input: the same HMAC.
    let sig = ok(
        &cli(&dev, root, &["sign", "cli-key", "--message", "hello"], b""),
        "sign",
    );
    let sig = sig.trim().to_owned();
    let file = data_dir.with_extension("message");
    std::fs::write(&file, b"hello").expect("message file");
    let from_file = ok(
        &cli(
            &dev,
            root,
            &["sign", "cli-key", "--file", file.to_str().expect("utf-8")],
            b"",
        ),
        "sign --file",
    );
    assert_eq!(from_file.trim(), sig);
    let from_stdin = ok(&cli(&dev, root, &["sign", "cli-key"], b"hello"), "sign from stdin");
    assert_eq!(from_stdin.trim(), sig);

    let valid = cli(
        &dev,
        root,
        &["verify", "cli-key", "--signature", &sig, "--message", "hello"],
        b"",
    );
    assert_eq!(ok(&valid, "verify").trim(), "valid (version 1)");
    let invalid = cli(
        &dev,
        root,
        &["verify", "cli-key", "--signature", &sig, "--message", "hellO"],
        b"",
    );
    assert_eq!(
        invalid.code,
        Some(1),
        "a bad signature exits 1: {} {}",
        invalid.stdout,
        invalid.stderr
    );
    assert_eq!(invalid.stdout.trim(), "invalid: SIGNATURE_MISMATCH");

    let rotated = ok(&cli(&dev, root, &["key", "rotate", "cli-key"], b""), "key rotate");
    assert_eq!(row(&rotated, "latest_version"), "2");

    // Encryption: the plaintext comes back byte for byte.
    ok(
        &cli(
            &dev,
            root,
            &["key", "create", "cli-data", "--algorithm", "aes256-gcm"],
            b"",
        ),
        "key create aes",
    );
    let ciphertext = ok(
        &cli(
            &dev,
            root,
            &["encrypt", "cli-data", "--aad", "order-7"],
            b"\x00secret\xff",
        ),
        "encrypt",
    );
    assert!(ciphertext.starts_with("sigvault:v1:"), "{ciphertext}");
    let plain = Command::new(env!("CARGO_BIN_EXE_sigvault"))
        .args([
            "decrypt",
            "cli-data",
            "--aad",
            "order-7",
            "--ciphertext",
            ciphertext.trim(),
        ])
        .env("SIGVAULT_ADDR", format!("http://{}", dev.addr))
        .env("SIGVAULT_TOKEN", ROOT_TOKEN)
        .output()
        .expect("decrypt");
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    assert_eq!(plain.stdout, b"\x00secret\xff");
    let wrong = cli(
        &dev,
        root,
        &["decrypt", "cli-data", "--aad", "order-8"],
        ciphertext.as_bytes(),
    );
    fails(&wrong, 2, "INVALID_ARGUMENT (400)", "decrypt with other aad");

    // Tokens.
    let token = ok(
        &cli(
            &dev,
            root,
            &["token", "create", "--principal", "cli-svc", "--group", "service"],
            b"",
        ),
        "token create",
    );
    let token_id = row(&token, "id");
    let service_token = row(&token, "token");
    assert!(service_token.starts_with("svt_"), "{token}");
    let denied = cli(&dev, Some(&service_token), &["key", "create", "not-allowed"], b"");
    fails(&denied, 3, "PERMISSION_DENIED (403)", "a service may not create keys");
    let revoked = json(
        &cli(&dev, root, &["token", "revoke", &token_id, "--format", "json"], b""),
        "token revoke",
    );
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let gone = cli(&dev, Some(&service_token), &["key", "list"], b"");
    fails(&gone, 3, "UNAUTHENTICATED (401)", "a revoked token");

    // Credentials.
    let credential = ok(
        &cli(
            &dev,
            root,
            &["credential", "create", "--principal", "cli-svc", "--group", "service"],
            b"",
        ),
        "credential create",
    );
    let id = row(&credential, "access_key_id");
    assert_eq!(row(&credential, "secret_access_key").len(), 40);
    let listed = ok(
        &cli(&dev, root, &["credential", "list", "--principal", "cli-svc"], b""),
        "credential list",
    );
    assert!(listed.contains(&id), "{listed}");
    let off = ok(
        &cli(&dev, root, &["credential", "deactivate", &id], b""),
        "credential deactivate",
    );
    assert_eq!(row(&off, "state"), "inactive");

    // API keys: verified from standard input, exit 1 when not valid.
    let apikey = ok(
        &cli(
            &dev,
            root,
            &[
                "apikey",
                "create",
                "--principal",
                "cli-svc",
                "--permission",
                "orders.read",
            ],
            b"",
        ),
        "apikey create",
    );
    let key = row(&apikey, "key");
    let apikey_id = row(&apikey, "id");
    let verified = cli(
        &dev,
        root,
        &["apikey", "verify", "--permission", "orders.read"],
        key.as_bytes(),
    );
    assert!(
        ok(&verified, "apikey verify").starts_with("valid: "),
        "{}",
        verified.stdout
    );
    let refused = cli(&dev, root, &["apikey", "verify"], b"sv_not_a_key_at_all");
    assert_eq!(refused.code, Some(1), "{} {}", refused.stdout, refused.stderr);
    assert!(refused.stdout.starts_with("invalid: "), "{}", refused.stdout);
    let rerolled = ok(
        &cli(&dev, root, &["apikey", "reroll", &apikey_id], b""),
        "apikey reroll",
    );
    assert_ne!(row(&rerolled, "key"), key);

    // The trail, read and verified through the running vault.
    let events = json(
        &cli(
            &dev,
            root,
            &["audit", "events", "--action", "Sign", "--format", "json"],
            b"",
        ),
        "audit events",
    );
    assert!(events["events"].as_array().is_some_and(|e| e.len() >= 3), "{events}");
    let table = ok(
        &cli(&dev, root, &["audit", "events", "--limit", "3"], b""),
        "audit events table",
    );
    assert!(table.starts_with("SEQ"), "{table}");
    let verified = ok(
        &cli(&dev, root, &["audit", "verify", "--remote"], b""),
        "audit verify --remote",
    );
    assert_eq!(row(&verified, "ok"), "true");

    // Deletion, and the failures' exit codes.
    let deleted = ok(
        &cli(&dev, root, &["key", "delete", "cli-key", "--pending-days", "3"], b""),
        "key delete",
    );
    assert_eq!(row(&deleted, "state"), "pending_deletion");
    fails(
        &cli(&dev, root, &["key", "get", "no-such-key"], b""),
        4,
        "KEY_NOT_FOUND (404)",
        "missing key",
    );
    fails(
        &cli(&dev, None, &["key", "list"], b""),
        3,
        "UNAUTHENTICATED (401)",
        "no token",
    );
    fails(
        &cli(&dev, root, &["key", "get", "a/b"], b""),
        2,
        "key `a/b`",
        "a name that is no path segment",
    );
    let usage = cli(&dev, root, &["verify", "cli-key"], b"");
    assert_eq!(
        usage.code,
        Some(2),
        "a missing argument is a usage error: {}",
        usage.stderr
    );
    assert_eq!(usage.stderr.lines().count(), 1, "{}", usage.stderr);
    dev.stop();
}
