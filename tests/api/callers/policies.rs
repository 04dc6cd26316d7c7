//! `sigvault policy check`, a start with a bad policy directory, and reloads by API and SIGHUP.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    ADMIN_WITHOUT_LIST_KEYS, SCHEMA_ERROR_ON_LINE_3, SHIPPED_POLICIES, SYNTAX_ERROR_ON_LINE_3,
    copy_of_shipped_policies, policy_count,
};
use crate::helpers::{
    AppHome, DevProcess, ROOT_TOKEN, Reply, Run, run_binary, spawn_app_in, spawn_dev, stderr_log, temp_dir,
};

/// A copy of the shipped policies plus a syntax error and a schema error, each on line 3
/// of its own file.
fn broken_policy_dir(tag: &str) -> std::path::PathBuf {
    let dir = copy_of_shipped_policies(tag);
    std::fs::write(dir.join("broken.cedar"), SYNTAX_ERROR_ON_LINE_3).expect("write broken.cedar");
    std::fs::write(dir.join("typo.cedar"), SCHEMA_ERROR_ON_LINE_3).expect("write typo.cedar");
    dir
}

#[test]
fn policy_check_accepts_the_shipped_policies() {
    let Run { code, stdout, stderr } = run_binary(&["policy", "check", SHIPPED_POLICIES], &[]);
    assert_eq!(code, Some(0), "checking the shipped policies exits 0; stderr: {stderr}");
    let expected = format!(
        "{SHIPPED_POLICIES}: {} policies valid",
        policy_count(Path::new(SHIPPED_POLICIES))
    );
    assert_eq!(stdout.trim(), expected, "the check says how many policies are valid");
}

#[test]
fn policy_check_names_each_broken_file_with_its_line() {
    let dir = broken_policy_dir("policy-check");
    let Run { code, stdout, stderr } = run_binary(&["policy", "check", dir.to_str().expect("utf-8 path")], &[]);
    assert_ne!(code, Some(0), "a set with errors exits non-zero; stdout: {stdout}");
    assert!(!stdout.contains("valid"), "nothing is called valid: {stdout}");
    let broken = format!("{}:3:", dir.join("broken.cedar").display());
    let typo = format!("{}:3:", dir.join("typo.cedar").display());
    assert!(
        stderr.lines().any(|l| l.starts_with(&broken)),
        "the syntax error is reported as `{broken}…`: {stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with(&typo) && l.contains("Sing")),
        "the schema error is reported as `{typo}…` naming `Sing`: {stderr}"
    );
    for good in [
        "admin.cedar",
        "auditor.cedar",
        "common.cedar",
        "custodian.cedar",
        "service.cedar",
    ] {
        assert!(!stderr.contains(good), "the valid {good} is not named: {stderr}");
    }
}

#[test]
fn dev_refuses_a_policy_dir_with_errors_naming_each_file_and_line_and_creates_nothing() {
    let policies = broken_policy_dir("start-bad-policies");
    let data_dir = temp_dir("start-bad-policies-data").join("data");
    let dir = policies.to_str().expect("utf-8 path");
    let data = data_dir.to_str().expect("utf-8 path");
    let line = run_binary(
        &["dev", "--listen", "127.0.0.1:0", "--data-dir", data],
        &[("SIGVAULT_POLICIES__DIR", dir), ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)],
    )
    .refused_line();
    assert!(line.contains("policies"), "the error line says `policies`: {line}");
    for file in ["broken.cedar", "typo.cedar"] {
        let at = format!("{}:3:", policies.join(file).display());
        assert!(line.contains(&at), "the error line names `{at}`: {line}");
    }
    let created: Vec<_> = std::fs::read_dir(&data_dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !data_dir.exists(),
        "a refused start creates no data dir, yet it holds {created:?}: {line}"
    );
}

#[test]
fn dev_refuses_a_policy_dir_that_does_not_exist_and_creates_nothing() {
    let base = temp_dir("start-no-policies");
    let missing = base.join("no-such-dir");
    let data_dir = base.join("data");
    let line = run_binary(
        &[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
        ],
        &[("SIGVAULT_POLICIES__DIR", missing.to_str().expect("utf-8"))],
    )
    .refused_line();
    assert!(
        line.contains("policies") && line.contains("no-such-dir"),
        "the error line names the policy dir: {line}"
    );
    assert!(!data_dir.exists(), "a refused start creates no data dir: {line}");
}

#[tokio::test]
async fn a_reload_with_errors_is_refused_whole_and_a_valid_one_applies_at_once() {
    let dir = copy_of_shipped_policies("reload-api");
    let app = spawn_app_in(AppHome {
        policies_dir: Some(dir.clone()),
        ..AppHome::new()
    })
    .await;
    let r = app.post_raw("/v1/sys/policies/reload", b"").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "reloading an unchanged set answers 200: {}",
        r.body
    );
    assert_eq!(
        r.body,
        json!({"policies": policy_count(&dir)}),
        "the reload counts the policies"
    );

    // A valid change and a broken file together: neither may apply.
    std::fs::write(dir.join("admin.cedar"), ADMIN_WITHOUT_LIST_KEYS).expect("rewrite admin.cedar");
    std::fs::write(dir.join("zz-broken.cedar"), SYNTAX_ERROR_ON_LINE_3).expect("write zz-broken.cedar");
    let r = app.post_raw("/v1/sys/policies/reload", b"").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        "a reload with errors answers 400 INVALID_ARGUMENT: {}",
        r.body
    );
    let message = r.body["error"]["message"].as_str().unwrap_or("");
    let at = format!("{}:3:", dir.join("zz-broken.cedar").display());
    assert!(message.contains(&at), "the refusal names `{at}`: {message}");
    let r = app.get("/v1/keys").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the old set stays whole: root still lists keys: {}",
        r.body
    );

    std::fs::remove_file(dir.join("zz-broken.cedar")).expect("remove the broken file");
    let r = app.post_raw("/v1/sys/policies/reload", b"").await;
    assert_eq!(r.status, StatusCode::OK, "the repaired set reloads: {}", r.body);
    assert_eq!(
        r.body,
        json!({"policies": policy_count(&dir)}),
        "the reload counts the new set"
    );
    let r = app.get("/v1/keys").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        "the new forbid applies to root at once: expected 403, got {}",
        r.body
    );
    let denied = app.audit_events("action=ListKeys").await;
    let last = denied.last().expect("the denied listing is audited");
    assert_eq!(
        (&last["decision"], &last["policy"], &last["outcome"]),
        (&json!("deny"), &json!("nobody-lists-keys"), &json!("PERMISSION_DENIED")),
        "the denial is audited with the forbid that made it: {last}"
    );
    let reloads: Vec<Value> = app.audit_events("action=ReloadPolicies").await;
    let outcomes: Vec<&str> = reloads.iter().map(|e| e["outcome"].as_str().unwrap_or("")).collect();
    assert_eq!(
        outcomes,
        ["intent", "ok", "intent", "INVALID_ARGUMENT", "intent", "ok"],
        "every reload is audited with its intent, then its outcome"
    );
}

/// `GET path` on a dev process with the root token.
async fn dev_get(dev: &DevProcess, path: &str) -> Reply {
    dev.request(Method::GET, path, ROOT_TOKEN, None).await
}

fn send_sighup(dev: &DevProcess) {
    let pid = i32::try_from(dev.child.id()).expect("pid fits i32");
    // SAFETY: signalling our own child by its pid.
    let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
    assert_eq!(rc, 0, "SIGHUP is delivered to the dev process");
}

/// Polls until `done` holds, for at most 10 s; `what` says what was awaited.
async fn within_10s<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "expected within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_a_valid_set_and_keeps_the_old_one_when_the_new_has_errors() {
    let dir = copy_of_shipped_policies("reload-sighup");
    let data_dir = temp_dir("reload-sighup-data").join("data");
    let dev = spawn_dev(
        &data_dir,
        &[
            ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN),
            ("SIGVAULT_POLICIES__DIR", dir.to_str().expect("utf-8 path")),
        ],
    );
    within_10s("the dev vault installs its SIGHUP handler", || async {
        dev.catches(libc::SIGHUP)
    })
    .await;
    let r = dev_get(&dev, "/v1/keys").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "root lists keys under the shipped set: {}",
        r.body
    );

    std::fs::write(dir.join("admin.cedar"), ADMIN_WITHOUT_LIST_KEYS).expect("rewrite admin.cedar");
    std::fs::write(dir.join("zz-broken.cedar"), SYNTAX_ERROR_ON_LINE_3).expect("write zz-broken.cedar");
    send_sighup(&dev);
    let log = stderr_log(&data_dir);
    within_10s("the log says the SIGHUP reload was refused", || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("policy reload refused")
    })
    .await;
    let r = dev_get(&dev, "/v1/keys").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a refused reload keeps the old set: {}",
        r.body
    );

    std::fs::remove_file(dir.join("zz-broken.cedar")).expect("remove the broken file");
    send_sighup(&dev);
    within_10s("root's key listing is forbidden after the SIGHUP reload", || async {
        dev_get(&dev, "/v1/keys").await.status == StatusCode::FORBIDDEN
    })
    .await;
    let r = dev_get(&dev, "/v1/auth/whoami").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the reloaded set still lets root ask who it is: {}",
        r.body
    );
    dev.stop();
}

/// `sigvault dev` prints `listening on` before it handles SIGHUP; an operator (or a
/// supervisor's `reload`) signalling it then must not kill the vault, whose default
/// action for SIGHUP is to terminate.
#[tokio::test]
async fn a_dev_vault_sent_sighup_right_after_it_reports_listening_keeps_serving() {
    let data_dir = temp_dir("early-sighup").join("data");
    for round in 0..5 {
        let mut dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]);
        send_sighup(&dev);
        let health = reqwest::get(dev.url("/v1/sys/health")).await.map(|r| r.status());
        let exited = dev.child.try_wait().expect("wait");
        assert!(
            exited.is_none() && matches!(health, Ok(StatusCode::OK)),
            "round {round}: the vault keeps serving after SIGHUP; it exited with {:?} (signal {:?}), health {health:?}",
            exited,
            exited.and_then(|s| s.signal())
        );
        dev.stop();
    }
}
