//! `sigvault kek status|rotate|retire` against a running vault, as an operator types them
//! (`SIGVAULT_ADDR`, `SIGVAULT_TOKEN`): a rotation follows the rewrap job with a progress bar
//! and an ETA until every record is under the new KEK; the status shows the records per KEK;
//! retiring the old KEK works once it is unused; and each failure is one line with the
//! vault's code and an exit code a script can use.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{DevProcess, ROOT_TOKEN, Run, run_binary, spawn_dev, sqlite_only, temp_dir};

fn kek(dev: &DevProcess, token: &str, args: &[&str]) -> Run {
    let addr = format!("http://{}", dev.addr);
    let mut all = vec!["kek"];
    all.extend_from_slice(args);
    run_binary(&all, &[("SIGVAULT_ADDR", addr.as_str()), ("SIGVAULT_TOKEN", token)])
}

#[tokio::test]
async fn rotate_follows_the_rewrap_with_a_bar_and_eta_then_the_old_kek_retires_and_failures_have_exit_codes() {
    sqlite_only!("runs `sigvault dev`, whose store is SQLite in its data dir whatever the suite's store");
    let data_dir = temp_dir("kek-cli");
    // 40 records at 20 a second: the bar has a couple of seconds to draw.
    let dev = spawn_dev(
        &data_dir,
        &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN), ("SIGVAULT_KEK__REWRAP_RATE", "20")],
    );
    for i in 0..40 {
        let r = dev
            .request(
                Method::POST,
                "/v1/keys",
                ROOT_TOKEN,
                Some(json!({"name": format!("cli-{i}"), "algorithm": "hmac-sha256"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    let status = kek(&dev, ROOT_TOKEN, &["status"]);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    let old = status
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("current KEK: "))
        .expect("the current KEK line")
        .to_owned();
    assert!(status.stdout.contains(&format!("  {old}: ")), "{}", status.stdout);
    assert!(status.stdout.contains("rewrap job: idle"), "{}", status.stdout);

    let rotate = kek(&dev, ROOT_TOKEN, &["rotate", "--progress"]);
    assert_eq!(rotate.code, Some(0), "{} {}", rotate.stdout, rotate.stderr);
    let new = rotate
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("rotated: {old} → ")))
        .unwrap_or_else(|| panic!("the rotation line: {}", rotate.stdout))
        .to_owned();
    assert_ne!(new, old);
    assert!(
        rotate.stdout.contains(&format!("every sealed record is under {new}")),
        "{}",
        rotate.stdout
    );
    // The bar: frames redrawn with \r, counting records, with the time left.
    assert!(
        rotate.stderr.contains('[') && rotate.stderr.contains(" records ETA ") && rotate.stderr.contains('\r'),
        "{:?}",
        rotate.stderr
    );
    let last_frame = rotate.stderr.trim_end().rsplit('\r').next().unwrap_or_default();
    assert!(last_frame.contains("] "), "{last_frame:?}");
    let counts = last_frame
        .split("] ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("done/total");
    let (done, total) = counts.split_once('/').expect("done/total");
    assert_eq!(done, total, "the last frame shows the job complete: {last_frame:?}");
    assert!(total.parse::<u64>().expect("total") >= 40, "{last_frame:?}");

    let json = kek(&dev, ROOT_TOKEN, &["status", "--json"]);
    let body: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(body["current_kek_id"], new.as_str());
    let under: Vec<&str> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["kek_id"].as_str())
        .collect();
    assert_eq!(under, [new.as_str()], "{body}");

    // Failures: one line with the code, and the exit code of its kind.
    let current = kek(&dev, ROOT_TOKEN, &["retire", &new]);
    assert_eq!(current.code, Some(1), "{}", current.stderr);
    assert!(
        current
            .stderr
            .starts_with("sigvault: error: FAILED_PRECONDITION (409): "),
        "{}",
        current.stderr
    );
    assert_eq!(current.stderr.lines().count(), 1, "{}", current.stderr);
    let unknown = kek(&dev, ROOT_TOKEN, &["retire", "pkcs11:nobody:9"]);
    assert_eq!(unknown.code, Some(4), "{}", unknown.stderr);
    let denied = kek(&dev, "not-a-token", &["status"]);
    assert_eq!(denied.code, Some(3), "{}", denied.stderr);
    assert!(denied.stderr.contains("UNAUTHENTICATED"), "{}", denied.stderr);
    assert!(!denied.stderr.contains("not-a-token"), "the token is never printed");
    let usage = run_binary(&["kek", "status"], &[("SIGVAULT_ADDR", "127.0.0.1:1")]);
    assert_eq!(usage.code, Some(2), "{}", usage.stderr);
    let down = run_binary(&["kek", "status"], &[("SIGVAULT_ADDR", "http://127.0.0.1:1")]);
    assert_eq!(down.code, Some(5), "{}", down.stderr);
    assert!(
        down.stderr.contains("cannot reach the vault at http://127.0.0.1:1"),
        "{}",
        down.stderr
    );

    // The old KEK no record uses any more retires; the keys still sign.
    let retired = kek(&dev, ROOT_TOKEN, &["retire", &old]);
    assert_eq!(retired.code, Some(0), "{}", retired.stderr);
    assert_eq!(retired.stdout.trim(), format!("retired {old}"));
    let r = dev
        .request(
            Method::POST,
            "/v1/keys/cli-7/sign",
            ROOT_TOKEN,
            Some(json!({"message": "aGVsbG8="})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
