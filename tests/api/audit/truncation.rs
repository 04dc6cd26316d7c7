//! Acknowledged events cut from both the event file and the anchor while the vault was
//! stopped: the store still holds them. A start must refuse and change nothing (a crash
//! leaves at most one unacknowledged batch, never fifty acknowledged events); only an
//! operator's explicit decision gives them up, and that decision is itself an event.

use reqwest::StatusCode;
use serde_json::json;
use sigvault::admin::{OfflineVault, audit_accept_truncation};

use super::{
    NODE, copy_home, cut_anchor_after, file_lines, sinks, startup_error, stopped_trail_of_signs, stored_events,
    verify_offline, verify_online, write_file_lines,
};
use crate::helpers::{AppHome, spawn_app_in};

/// Events of the trail: a create (its intent and its outcome) and 58 signs.
const EVENTS: usize = 60;
/// Events cut from the end of both the event file and the anchor.
const CUT: usize = 50;

async fn stopped_trail_of_single_batches() -> AppHome {
    stopped_trail_of_signs(EVENTS).await
}

#[tokio::test]
async fn fifty_acknowledged_events_cut_from_the_file_and_the_anchor_refuse_the_start_until_an_operator_gives_them_up() {
    let home = stopped_trail_of_single_batches().await;
    let copy = copy_home(&home, "truncated-both-files").await;
    let kept = EVENTS - CUT;
    write_file_lines(&copy, &file_lines(&copy)[..kept]);
    cut_anchor_after(&copy, kept);
    let before = sinks(&copy).await;
    assert_eq!(before.0.len(), EVENTS, "the store still holds every event");

    let report = verify_offline(&copy).await;
    assert!(
        !report.ok && report.first_bad_seq == Some(kept as u64 + 1),
        "{report:?}"
    );
    assert_eq!(
        report.reason.as_deref(),
        Some(format!("the event file ends at event {kept} but the other sink goes on to {EVENTS}").as_str())
    );

    let refused = startup_error(&copy).await;
    assert!(
        refused.contains(&format!(
            "the store holds {CUT} events past the end of the event file (event {kept})"
        )) && refused.contains(&format!("sigvault audit accept-truncation --events {CUT}")),
        "{refused}"
    );
    let after = sinks(&copy).await;
    assert!(after == before, "a refused start changes nothing");
    assert!(
        startup_error(&copy).await.contains("past the end of the event file"),
        "and refuses again"
    );

    // A count that does not match what is found changes nothing either.
    let vault = OfflineVault::open(copy.settings()).await.expect("open offline");
    let wrong = audit_accept_truncation(&vault, CUT as u64 - 1)
        .await
        .expect_err("a wrong count");
    assert!(wrong.to_string().contains(&format!("name {CUT} events")), "{wrong}");
    let after = sinks(&copy).await;
    assert!(after == before, "a refused acceptance changes nothing");

    let accepted = audit_accept_truncation(&vault, CUT as u64).await.expect("accepted");
    assert_eq!(
        (accepted.kept, accepted.dropped, accepted.event_seq),
        (kept as u64, CUT as u64, kept as u64 + 1)
    );
    drop(vault);
    let events = stored_events(&copy).await;
    assert_eq!(
        events.len(),
        kept + 1,
        "the given-up events are gone, one event records it"
    );
    assert_eq!(events[..kept], before.0[..kept], "what was kept is untouched");
    let (event, _) = &events[kept];
    assert_eq!(event.action, "audit.accept_truncation");
    assert_eq!(event.resource, format!("audit:{NODE}:{}-{EVENTS}", kept + 1));
    assert!(event.principal.starts_with("local-operator:"), "{}", event.principal);
    assert_eq!(file_lines(&copy).len(), kept + 1, "the event file holds it too");

    let report = verify_offline(&copy).await;
    assert!(report.ok && report.checked == kept as u64 + 1, "{report:?}");
    let mut app = spawn_app_in(copy.clone()).await;
    assert_eq!(verify_online(&app).await["ok"], json!(true));
    let r = app.get("/v1/audit/events?action=audit.accept_truncation").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["events"].as_array().map(Vec::len), Some(1), "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn the_half_written_line_of_a_write_a_crash_interrupted_is_cut_off_silently() {
    let home = stopped_trail_of_single_batches().await;
    let copy = copy_home(&home, "interrupted-write").await;
    // A kill -9 in the middle of write(2): the last line is half there, never acknowledged.
    let whole = std::fs::read(copy.audit_file()).expect("read the event file");
    let mut torn = whole.clone();
    torn.extend_from_slice(br#"{"event":{"seq":61,"node":"test-node","time":"2026-"#);
    std::fs::write(copy.audit_file(), &torn).expect("write the event file");
    let mut app = spawn_app_in(copy.clone()).await;
    assert_eq!(verify_online(&app).await, json!({"ok": true, "checked": EVENTS}));
    app.stop().await;
    let after = std::fs::read(copy.audit_file()).expect("read the event file");
    assert_eq!(after[..whole.len()], whole[..], "the whole lines are untouched");
    let events = stored_events(&copy).await;
    assert_eq!(events.len(), EVENTS + 1, "the check is the next event");
    assert_eq!(events[EVENTS].0.seq, EVENTS as u64 + 1);
    assert_eq!(events[EVENTS].0.action, "VerifyAudit");
}
