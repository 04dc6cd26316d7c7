//! `sigvault audit verify` and `sigvault audit export`, run as the real binary on the data
//! dir a real `sigvault dev` left behind once stopped: verification passes on an intact
//! trail and names the first bad sequence of a tampered one (also when the vault itself
//! refuses to start), exports are the event file's own records for the asked window, and
//! wrong arguments exit 2 with one error line.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sigvault::store::StoreSettings;

use crate::audit::edit_store_event;
use crate::helpers::{ROOT_TOKEN, b64, run_binary, spawn_dev, temp_dir};

fn verify_args(data_dir: &Path) -> Vec<String> {
    vec![
        "audit".into(),
        "verify".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ]
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| (*s).to_owned()));
    args
}

/// Runs `sigvault dev` on a fresh data dir, creates a key (its intent and its outcome are
/// audited), signs with it, asks for a key that does not exist (a failure is audited too),
/// and stops it: 9 events. Returns the data dir.
async fn stopped_vault_with_a_trail(tag: &str) -> PathBuf {
    let data_dir = temp_dir(tag).join("data");
    let dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]);
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| client.post(dev.url(path)).bearer_auth(ROOT_TOKEN).json(&body).send();
    let created = post("/v1/keys", json!({"name": "payments", "algorithm": "hmac-sha256"}))
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    for i in 0..6 {
        let signed = post(
            "/v1/keys/payments/sign",
            json!({"message": b64(format!("message {i}").as_bytes())}),
        )
        .await
        .expect("sign");
        assert_eq!(signed.status(), StatusCode::OK);
    }
    let missing = post("/v1/keys/nope/sign", json!({"message": b64(b"x")}))
        .await
        .expect("sign");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    dev.stop();
    data_dir
}

fn event_file_lines(data_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(data_dir.join("audit.jsonl"))
        .expect("event file")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn event_of(line: &str) -> Value {
    let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert!(record["mac"].as_str().is_some_and(|m| m.len() == 64), "{line}");
    record["event"].clone()
}

#[tokio::test]
async fn verify_passes_on_a_stopped_vault_names_the_event_count_and_changes_nothing() {
    let data_dir = stopped_vault_with_a_trail("audit-verify-ok").await;
    let lines = event_file_lines(&data_dir);
    let anchors = std::fs::read(data_dir.join("audit.anchor")).expect("anchor file");
    assert_eq!(
        lines.len(),
        9,
        "create (intent, outcome), 6 signs and a failed sign are audited"
    );

    let run = run_binary(&verify_args(&data_dir), &[]);

    assert_eq!(run.code, Some(0), "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ok"), "{}", run.stdout);
    assert!(run.stdout.contains("9 events verified"), "{}", run.stdout);
    assert_eq!(run.stderr, "", "no progress bar when stderr is not a terminal");

    let run = run_binary(&with(verify_args(&data_dir), &["--json"]), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON report");
    assert_eq!(report["ok"], true);
    assert_eq!(report["checked"], 9);
    assert!(report.get("first_bad_seq").is_none(), "{report}");

    assert_eq!(
        event_file_lines(&data_dir),
        lines,
        "verification leaves the event file alone"
    );
    assert_eq!(
        std::fs::read(data_dir.join("audit.anchor")).expect("anchor file"),
        anchors
    );

    // Without arguments it verifies the `sigvault dev` data dir of the working directory
    // (as the README runs it), also after the data dir was moved there.
    let cwd = data_dir.with_file_name("cwd");
    std::fs::create_dir_all(&cwd).expect("cwd");
    std::fs::rename(&data_dir, cwd.join(".sigvault-dev")).expect("move the data dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigvault"))
        .args(["audit", "verify"])
        .current_dir(&cwd)
        .env_remove("SOFTHSM2_CONF")
        .output()
        .expect("run sigvault audit verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("9 events verified"), "{stdout}");
}

#[tokio::test]
async fn verify_names_sequence_2_when_a_field_of_event_2_was_changed_in_the_store() {
    let data_dir = stopped_vault_with_a_trail("audit-verify-edited").await;
    let store = StoreSettings::Sqlite {
        path: data_dir.join("sigvault.db"),
    };
    let edited = edit_store_event(&store, 2, |line| {
        line["event"]["principal"] = json!("mallory");
    })
    .await;
    assert_eq!(edited, 1, "event 2 is stored once");

    let run = run_binary(&verify_args(&data_dir), &[]);

    assert_eq!(run.code, Some(1), "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("sequence 2"), "{}", run.stdout);
    assert!(run.stdout.contains("MAC mismatch"), "says why: {}", run.stdout);
    assert!(
        run.error_lines().is_empty(),
        "a failed verification is a result: {}",
        run.stderr
    );

    let run = run_binary(&with(verify_args(&data_dir), &["--json"]), &[]);
    assert_eq!(run.code, Some(1));
    let report: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON report");
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad_seq"], 2);
    assert!(
        report["reason"].as_str().is_some_and(|r| r.contains("store")),
        "{report}"
    );
}

#[tokio::test]
async fn verify_still_runs_when_the_vault_refuses_to_start_over_a_truncated_event_file() {
    let data_dir = stopped_vault_with_a_trail("audit-verify-refused").await;
    let mut lines = event_file_lines(&data_dir);
    let last = lines.len();
    lines.pop();
    std::fs::write(data_dir.join("audit.jsonl"), lines.join("\n") + "\n").expect("cut the file");

    let start = run_binary(
        &[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir.display().to_string(),
        ],
        &[],
    );
    assert_ne!(start.code, Some(0), "the vault must refuse: {}", start.stdout);
    assert!(!start.stdout.contains("listening on"), "{}", start.stdout);
    assert!(start.stderr.contains("sigvault audit verify"), "{}", start.stderr);

    let run = run_binary(&verify_args(&data_dir), &[]);

    assert_eq!(run.code, Some(1), "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(run.stdout.contains(&format!("sequence {last}")), "{}", run.stdout);
}

#[tokio::test]
async fn export_writes_exactly_the_events_of_the_window_as_the_event_files_records() {
    let data_dir = stopped_vault_with_a_trail("audit-export-window").await;
    let lines = event_file_lines(&data_dir);
    let times: Vec<String> = lines
        .iter()
        .map(|l| event_of(l)["time"].as_str().expect("time").to_owned())
        .collect();
    // The times share one format (RFC 3339 UTC, milliseconds), so text order is time order.
    let (since, until) = (&times[2], &times[times.len() - 2]);
    let expected: Vec<&String> = lines
        .iter()
        .zip(&times)
        .filter(|(_, t)| *t >= since && *t < until)
        .map(|(l, _)| l)
        .collect();
    assert!(
        !expected.is_empty() && expected.len() < lines.len() - 2,
        "the window must cut the trail: {times:?}"
    );

    let run = run_binary(
        &[
            "audit",
            "export",
            "--data-dir",
            &data_dir.display().to_string(),
            "--since",
            since,
            "--until",
            until,
        ],
        &[],
    );

    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let exported: Vec<&str> = run.stdout.lines().collect();
    // Byte for byte the event file's records: the same events and the chain's own MACs.
    assert_eq!(exported, expected, "the events of [since, until)");
    let mut previous_seq = None;
    for line in &exported {
        let event = event_of(line);
        let seq = event["seq"].as_u64().expect("seq");
        let time = event["time"].as_str().expect("time");
        assert!(
            time >= since.as_str() && time < until.as_str(),
            "{time} outside the window"
        );
        if let Some(previous) = previous_seq {
            assert_eq!(seq, previous + 1, "in sequence order, without gaps");
        }
        previous_seq = Some(seq);
    }
}

#[tokio::test]
async fn export_to_a_file_holds_the_whole_trail_and_draws_its_progress_bar_when_asked() {
    let data_dir = stopped_vault_with_a_trail("audit-export-file").await;
    let output = data_dir.with_extension("export.jsonl");
    let output_arg = output.display().to_string();
    let dir_arg = data_dir.display().to_string();

    let run = run_binary(
        &[
            "audit",
            "export",
            "--data-dir",
            &dir_arg,
            "--output",
            &output_arg,
            "--progress",
        ],
        &[],
    );

    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&output).expect("export file"),
        std::fs::read_to_string(data_dir.join("audit.jsonl")).expect("event file"),
        "one node, no window: the export is the event file"
    );
    assert!(run.stdout.contains("exported 9 events"), "{}", run.stdout);
    assert!(run.stderr.contains("\r["), "{:?}", run.stderr);
    assert!(run.stderr.trim_end().ends_with("] 9/9 events"), "{:?}", run.stderr);
    assert!(!output.with_extension("jsonl.partial").exists());

    let quiet = run_binary(&["audit", "export", "--data-dir", &dir_arg], &[]);
    assert_eq!(quiet.code, Some(0));
    assert_eq!(quiet.stderr, "", "no bar when stderr is not a terminal");
    assert_eq!(quiet.stdout.lines().count(), 9);
}

#[test]
fn wrong_arguments_and_unusable_vaults_exit_2_with_one_error_line() {
    let empty = temp_dir("audit-cli-args");
    let empty_arg = empty.display().to_string();
    let missing = empty.join("missing").display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["audit", "verify", "--config", "x.toml", "--data-dir", &empty_arg],
            "cannot be used with",
        ),
        (vec!["audit", "verify", "--data-dir", &missing], &missing),
        (vec!["audit", "verify", "--data-dir", &empty_arg], "softhsm2.conf"),
        (vec!["audit", "verify", "--config", &missing], &missing),
        (
            vec!["audit", "export", "--data-dir", &empty_arg, "--since", "yesterday"],
            "RFC 3339",
        ),
        (
            vec![
                "audit",
                "export",
                "--data-dir",
                &empty_arg,
                "--since",
                "2026-02-01T00:00:00Z",
                "--until",
                "2026-01-01T00:00:00Z",
            ],
            "after --until",
        ),
        (vec!["audit", "export", "--bogus"], "--bogus"),
    ];
    for (args, named) in cases {
        let run = run_binary(&args, &[]);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        let errors = run.error_lines();
        assert_eq!(errors.len(), 1, "{args:?}: {}", run.stderr);
        assert!(
            errors[0].contains(named),
            "{args:?}: `{}` does not name {named}",
            errors[0]
        );
    }
    assert!(
        std::fs::read_dir(&empty).expect("dir").next().is_none(),
        "nothing was created in the directory"
    );
}

#[tokio::test]
async fn accept_truncation_gives_up_exactly_the_named_count_and_records_it() {
    let data_dir = stopped_vault_with_a_trail("audit-accept-truncation").await;
    let lines = event_file_lines(&data_dir);
    let anchor_path = data_dir.join("audit.anchor");
    let anchors: Vec<String> = std::fs::read_to_string(&anchor_path)
        .expect("anchor file")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 9);
    let keep = |all: &[String]| all[..6].iter().map(|l| format!("{l}\n")).collect::<String>();
    std::fs::write(data_dir.join("audit.jsonl"), keep(&lines)).expect("cut the event file");
    // The anchor lines that name events past the cut go too (the indexer anchors per batch).
    let anchored_up_to_6: String = anchors
        .iter()
        .filter(|l| {
            l.split(' ')
                .nth(1)
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s <= 6)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&anchor_path, anchored_up_to_6).expect("cut the anchor file");
    let accept = |events: &str| {
        vec![
            "audit".to_owned(),
            "accept-truncation".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--events".into(),
            events.into(),
        ]
    };

    let run = run_binary(&accept("2"), &[]);
    assert_eq!(run.code, Some(2), "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("name 3 events") && run.stderr.contains("nothing was changed"),
        "{}",
        run.stderr
    );
    assert_eq!(
        event_file_lines(&data_dir).len(),
        6,
        "a refused acceptance writes nothing"
    );

    let run = run_binary(&accept("3"), &[]);
    assert_eq!(run.code, Some(0), "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("gave up 3 events (sequence 7 to 9)")
            && run
                .stdout
                .contains("the trail continues with event 7, which records it"),
        "{}",
        run.stdout
    );
    let recorded = event_of(event_file_lines(&data_dir).last().expect("a last line"));
    assert_eq!(recorded["action"], "audit.accept_truncation", "{recorded}");
    assert_eq!(recorded["seq"], 7, "{recorded}");

    let run = run_binary(&verify_args(&data_dir), &[]);
    assert_eq!(run.code, Some(0), "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("7 events verified"), "{}", run.stdout);
}
