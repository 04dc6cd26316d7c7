//! Tampering with a stopped app's trail, each on its own copy of the data: an edited field,
//! a deleted event, swapped events, a dropped tail, an edited line of the event file (the
//! attacker who recomputes an unkeyed chain is in [`super::forgery`]). Each is found offline (the library, as
//! `sigvault audit verify` does) with the first bad sequence named; where the server still
//! starts on the copy, `GET /v1/audit/verify` reports the same, and where its startup
//! reconcile refuses, the startup error names the problem.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sigvault::audit::verify::Report;

use super::{
    StoreRow, copy_home, delete_store_events, edit_store_event, file_lines, intact, line_seq, record, rewrite_store,
    startup_error, stored_events, verify_offline, verify_online, write_file_lines,
};
use crate::helpers::{AppHome, spawn_app, spawn_app_in};

/// Events in the trail [`stopped_trail`] leaves.
pub(super) const EVENTS: u64 = 14;
pub(super) const MAC_MISMATCH: &str = "MAC mismatch: the event or an earlier one was altered, replaced or reordered";

/// A stopped app whose intact trail holds [`EVENTS`] events, one batch (and one anchor) each:
/// 1-2 create (intent, outcome), 3-4 import (intent, outcome), 5-8 sign `k`, 9-10 sign `m`,
/// 11 verify, 12 sign of a missing key, 13 a refused token, 14 get.
pub(super) async fn stopped_trail() -> AppHome {
    let mut app = spawn_app().await;
    app.create_key("k").await;
    app.import_key("m", "hmac-sha256", &[7u8; 32]).await;
    let mut signature = Vec::new();
    for i in 0..4 {
        signature = app.sign("k", format!("message {i}").as_bytes()).await.0;
    }
    for i in 0..2 {
        app.sign("m", format!("message {i}").as_bytes()).await;
    }
    let r = app.verify("k", b"message 3", &signature).await;
    assert_eq!(r.body["valid"], json!(true), "{}", r.body);
    let r = app.post("/v1/keys/ghost/sign", json!({"message": "aGk="})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = app
        .send(Method::GET, "/v1/keys", Some("svt_wrong-token-00000000000"), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(app.get("/v1/keys/k").await.status, StatusCode::OK);
    app.stop().await;
    let home = app.home.clone();
    assert_eq!(
        verify_offline(&home).await,
        intact(EVENTS),
        "the untouched trail verifies"
    );
    assert_eq!(file_lines(&home).len() as u64, EVENTS);
    home
}

/// The offline report of `copy`, which must name `seq` as the first bad event.
#[track_caller]
pub(super) fn assert_bad(report: &Report, seq: u64, reason: &str, what: &str) {
    assert!(!report.ok, "{what}: {report:?}");
    assert_eq!(report.first_bad_seq, Some(seq), "{what}: {report:?}");
    assert_eq!(report.reason.as_deref(), Some(reason), "{what}: {report:?}");
}

/// Starts the server on `copy` (its reconcile accepts it) and checks that the API's verify
/// reports exactly what the offline verification did.
pub(super) async fn assert_server_reports_the_same(copy: &AppHome, offline: &Report, what: &str) {
    let mut app = spawn_app_in(copy.clone()).await;
    assert_eq!(
        verify_online(&app).await,
        serde_json::to_value(offline).expect("report json"),
        "{what}: the API and the offline verification disagree"
    );
    app.stop().await;
}

#[tokio::test]
async fn changing_any_field_of_one_stored_event_is_detected_at_its_sequence() {
    let home = stopped_trail().await;
    // Event 5 is a sign of `k`, version 1, by root, from 127.0.0.1, without a user agent.
    // Each edit is a member of the stored line `{"event":…,"mac":…}`, named by its pointer.
    let edits = [
        ("/event/principal", json!("mallory")),
        ("/event/action", json!("Verify")),
        ("/event/resource", json!("key:m")),
        ("/event/key_version", json!(2)),
        ("/event/key_version", json!(null)),
        ("/event/decision", json!("deny")),
        ("/event/policy", json!("permit-all")),
        ("/event/outcome", json!("KEY_NOT_FOUND")),
        ("/event/source_ip", json!("10.9.8.7")),
        ("/event/user_agent", json!("curl/8.5.0")),
        ("/event/request_id", json!("forged-request-id")),
        ("/event/time", json!("2026-01-01T00:00:00.000Z")),
        ("/event/secret_hmac", json!("00")),
        ("/mac", json!("00".repeat(32))),
    ];
    for (member, value) in edits {
        let what = format!("{member} = {value}");
        let copy = copy_home(&home, "tamper-field").await;
        let edited = edit_store_event(&copy.store(), 5, |line| {
            *line
                .pointer_mut(member)
                .unwrap_or_else(|| panic!("{what}: the line has the member")) = value.clone();
        })
        .await;
        assert_eq!(edited, 1, "{what}");
        let report = verify_offline(&copy).await;
        assert_bad(&report, 5, &format!("store: {MAC_MISMATCH}"), &what);
        assert_server_reports_the_same(&copy, &report, &what).await;
    }

    // The row stays the node's, but the store reads the node's events by the node each
    // line names: event 5 is now another node's.
    let copy = copy_home(&home, "tamper-node").await;
    assert_eq!(
        edit_store_event(&copy.store(), 5, |line| line["event"]["node"] = json!("other-node")).await,
        1
    );
    let report = verify_offline(&copy).await;
    assert_bad(&report, 5, "store: event 5 is missing (found 6 next)", "node moved");
    assert_server_reports_the_same(&copy, &report, "node moved").await;
}

#[tokio::test]
async fn moving_one_event_out_of_a_time_window_is_detected() {
    // `time` is the member the `since`/`until` filters use, and the MAC covers it: an
    // event moved out of a window by an edit is hidden from that listing, but the trail
    // no longer verifies.
    let home = stopped_trail().await;
    let copy = copy_home(&home, "tamper-time").await;
    assert_eq!(
        edit_store_event(&copy.store(), 5, |line| {
            line["event"]["time"] = json!("1970-01-01T00:00:00.000Z");
        })
        .await,
        1
    );
    let mut app = spawn_app_in(copy.clone()).await;
    let r = app.get("/v1/audit/events?since=2026-01-01T00:00:00Z&action=Sign").await;
    let listed: Vec<u64> = r.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    let report = verify_online(&app).await;
    app.stop().await;
    assert!(
        listed == [5, 6, 7, 8, 9, 10, 12] || report["ok"] == json!(false),
        "event 5 is hidden from a time-filtered listing ({listed:?}) while verify reports {report}"
    );
    let report = verify_offline(&copy).await;
    assert!(!report.ok && report.first_bad_seq == Some(5), "{report:?}");
}

#[tokio::test]
async fn deleting_one_event_is_detected_as_missing_in_the_store_or_the_event_file() {
    let home = stopped_trail().await;

    let copy = copy_home(&home, "tamper-delete-db").await;
    assert_eq!(delete_store_events(&copy.store(), |seq| seq == 7).await, 1);
    let report = verify_offline(&copy).await;
    assert_bad(
        &report,
        7,
        "store: event 7 is missing (found 8 next)",
        "deleted from the store",
    );
    assert_server_reports_the_same(&copy, &report, "deleted from the store").await;

    let copy = copy_home(&home, "tamper-delete-file").await;
    let mut lines = file_lines(&copy);
    lines.remove(6);
    write_file_lines(&copy, &lines);
    let report = verify_offline(&copy).await;
    assert_bad(
        &report,
        7,
        "event file line 7: event 7 is missing (found 8 next)",
        "deleted from the file",
    );
    assert_server_reports_the_same(&copy, &report, "deleted from the file").await;
}

/// The store's lines of events `a` and `b`, in stored order (each must be stored once).
fn stored_pair(rows: &mut [StoreRow], a: u64, b: u64) -> [&mut String; 2] {
    let pair: Vec<&mut String> = rows
        .iter_mut()
        .flat_map(|row| &mut row.lines)
        .filter(|line| line_seq(line).is_some_and(|seq| seq == a || seq == b))
        .collect();
    let found = pair.len();
    pair.try_into()
        .unwrap_or_else(|_| panic!("events {a} and {b} are each stored once, not in {found} lines"))
}

#[tokio::test]
async fn swapping_two_events_is_detected_at_the_first_of_them() {
    let home = stopped_trail().await;

    // The seq values of events 3 and 6 exchanged, each relabelled line moved to its new
    // seq's place, as a store kept in seq order would hold them: where event 3 stood is event
    // 6's line, saying 3. (Relabelled in place instead, what the walk finds first would
    // depend on how the indexer cut the trail into rows.)
    let copy = copy_home(&home, "tamper-swap-seq").await;
    rewrite_store(&copy.store(), |rows| {
        let [three, six] = stored_pair(rows, 3, 6);
        let relabelled = |line: &str, seq: u64| {
            let mut line = record(line);
            line["event"]["seq"] = json!(seq);
            line.to_string()
        };
        (*three, *six) = (relabelled(six, 3), relabelled(three, 6));
    })
    .await;
    let report = verify_offline(&copy).await;
    assert_bad(&report, 3, &format!("store: {MAC_MISMATCH}"), "seq values swapped");
    assert_server_reports_the_same(&copy, &report, "seq values swapped").await;

    // Events 3 and 6 exchange every member but their seq, and their MACs, in place.
    let copy = copy_home(&home, "tamper-swap-content").await;
    rewrite_store(&copy.store(), |rows| {
        let [three, six] = stored_pair(rows, 3, 6);
        let (mut a, mut b) = (record(three), record(six));
        let members: Vec<String> = a["event"]
            .as_object()
            .expect("an event object")
            .keys()
            .filter(|member| *member != "seq")
            .cloned()
            .collect();
        for member in &members {
            std::mem::swap(&mut a["event"][member], &mut b["event"][member]);
        }
        std::mem::swap(&mut a["mac"], &mut b["mac"]);
        (*three, *six) = (a.to_string(), b.to_string());
    })
    .await;
    let (events, original) = (stored_events(&copy).await, stored_events(&home).await);
    assert_eq!(
        [(events[2].0.seq, &events[2].1), (events[5].0.seq, &events[5].1)],
        [(3, &original[5].1), (6, &original[2].1)],
        "rows 3 and 6 hold each other's event and MAC"
    );
    let report = verify_offline(&copy).await;
    assert_bad(&report, 3, &format!("store: {MAC_MISMATCH}"), "contents swapped");
    assert_server_reports_the_same(&copy, &report, "contents swapped").await;

    let copy = copy_home(&home, "tamper-swap-lines").await;
    let mut lines = file_lines(&copy);
    lines.swap(2, 5);
    write_file_lines(&copy, &lines);
    let report = verify_offline(&copy).await;
    assert_bad(
        &report,
        3,
        "event file line 3: event 3 is missing (found 6 next)",
        "lines swapped",
    );
    assert_server_reports_the_same(&copy, &report, "lines swapped").await;
}

#[tokio::test]
async fn dropping_the_last_events_is_detected_and_from_both_sinks_refuses_startup() {
    let home = stopped_trail().await;
    for dropped in [1, 3] {
        let kept = EVENTS - dropped;

        // From the store only: the event file goes on.
        let copy = copy_home(&home, "tamper-tail-db").await;
        let tail = |seq: u64| seq > kept;
        assert_eq!(delete_store_events(&copy.store(), tail).await, dropped);
        let report = verify_offline(&copy).await;
        let reason = format!("the store ends at event {kept} but the other sink goes on to {EVENTS}");
        assert_bad(&report, kept + 1, &reason, "tail dropped from the store");
        // The startup reconcile treats a store behind the file as a crash between the two
        // writes: it copies the (chain-checked) tail back from the file.
        let mut app = spawn_app_in(copy.clone()).await;
        assert_eq!(verify_online(&app).await, json!({"ok": true, "checked": EVENTS}));
        app.stop().await;
        assert_eq!(
            stored_events(&copy).await[..EVENTS as usize],
            stored_events(&home).await[..],
            "the dropped events are back, unchanged"
        );

        // From the store and the event file: only the anchor remembers.
        let copy = copy_home(&home, "tamper-tail-both").await;
        assert_eq!(delete_store_events(&copy.store(), tail).await, dropped);
        write_file_lines(&copy, &file_lines(&copy)[..kept as usize]);
        let report = verify_offline(&copy).await;
        assert!(!report.ok && report.first_bad_seq == Some(kept + 1), "{report:?}");
        let reason = report.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("truncated: the anchor names event ")
                && reason.ends_with(&format!(" but the trail ends at {kept}")),
            "{reason}"
        );
        let refused = startup_error(&copy).await;
        assert!(
            refused.contains(&format!("the anchor names event {EVENTS} but the trail ends at {kept}")),
            "{refused}"
        );

        // From the event file only.
        let copy = copy_home(&home, "tamper-tail-file").await;
        write_file_lines(&copy, &file_lines(&copy)[..kept as usize]);
        let report = verify_offline(&copy).await;
        let reason = format!("the event file ends at event {kept} but the other sink goes on to {EVENTS}");
        assert_bad(&report, kept + 1, &reason, "tail dropped from the file");
        let refused = startup_error(&copy).await;
        assert!(
            refused.contains(&format!("the event file ends at {kept} but the store at {EVENTS}")),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn editing_a_line_of_the_event_file_is_detected_at_its_sequence() {
    let home = stopped_trail().await;
    let edits: [(usize, &str, &str, String); 4] = [
        (
            4,
            "\"principal\":\"root\"",
            "\"principal\":\"admin\"",
            format!("event file line 4: {MAC_MISMATCH}"),
        ),
        (
            4,
            "\"mac\":\"",
            "\"mac\":\"00",
            format!("event file line 4: {MAC_MISMATCH}"),
        ),
        (
            12,
            "\"outcome\":\"KEY_NOT_FOUND\"",
            "\"outcome\":\"ok\"",
            format!("event file line 12: {MAC_MISMATCH}"),
        ),
        (
            14,
            "\"action\":\"GetKey\"",
            "\"action\":\"ListKeys\"",
            format!("event file line 14: {MAC_MISMATCH}"),
        ),
    ];
    for (line, from, to, reason) in edits {
        let what = format!("line {line}: {from} -> {to}");
        let copy = copy_home(&home, "tamper-line").await;
        let mut lines = file_lines(&copy);
        assert_eq!(lines[line - 1].matches(from).count(), 1, "{what}: {}", lines[line - 1]);
        lines[line - 1] = lines[line - 1].replace(from, to);
        write_file_lines(&copy, &lines);
        let report = verify_offline(&copy).await;
        assert_bad(&report, line as u64, &reason, &what);
        assert_server_reports_the_same(&copy, &report, &what).await;
    }

    let copy = copy_home(&home, "tamper-line-garbled").await;
    let mut lines = file_lines(&copy);
    lines[3].truncate(40);
    write_file_lines(&copy, &lines);
    let report = verify_offline(&copy).await;
    assert_eq!(report.first_bad_seq, Some(4), "{report:?}");
    let reason = report.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("event file line 4: not an audit record: "),
        "{reason}"
    );
    assert_server_reports_the_same(&copy, &report, "garbled line").await;
}
