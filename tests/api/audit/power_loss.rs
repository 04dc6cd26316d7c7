//! A power loss with `audit.durability = "os"` (the default), on copies of a stopped vault
//! cut back the way the disk can be after one.
//!
//! The writer's order (`audit::writer`): a request's line is written to the event file, the
//! syncer fdatasyncs it within `audit.sync_interval`, the indexer copies synced events into
//! the store (its own connection, `synchronous = NORMAL`) and then appends and syncs an
//! anchor line for them; the HSM witnesses an anchored head at most every
//! `audit.hsm_anchor_interval`. So after a power loss the event file holds what was synced,
//! which may go past the store and past the last anchor; the store never holds an event the
//! synced file lacks; the anchor names only events the file had synced; the witness names an
//! anchored head or an older one. What `os` durability gives up is the file's unsynced tail:
//! those events were acknowledged and are lost, and the trail goes on after the last
//! surviving one.
//!
//! A file cut back past the last anchor is such a power loss: verify passes (counting the
//! events past the anchor as `unanchored`) and a start repairs the store and the anchor from
//! the file. A file cut back before an anchored event is not: the anchor was written only
//! after the file had synced that event, so it was removed by someone, and both verify and
//! the start say so.

use serde_json::{Value, json};

use super::{
    anchor_text, anchored_seqs, copy_home, cut_anchor_after, delete_store_events, file_lines, sinks, startup_error,
    stored_events, verify_offline, verify_online, write_file_lines,
};
use crate::helpers::{AppHome, spawn_app, spawn_app_in};

/// Signs between two verifications in [`stopped_trail`].
const SIGNS: usize = 10;

/// A stopped trail with several anchored heads: a create (intent and outcome), then three
/// rounds of [`SIGNS`] signs, the first two each followed by a verification (which catches
/// the store and the anchor up, so each round ends at an anchored head). 34 events.
async fn stopped_trail() -> AppHome {
    let mut app = spawn_app().await;
    app.create_key("k").await;
    for round in 0..3 {
        for i in 0..SIGNS {
            app.sign("k", format!("round {round} message {i}").as_bytes()).await;
        }
        if round < 2 {
            assert_eq!(verify_online(&app).await["ok"], json!(true));
        }
    }
    app.stop().await;
    let home = app.home.clone();
    assert_eq!(file_lines(&home).len(), 2 + 3 * SIGNS + 2);
    home
}

/// What each sink of a copy keeps: the first `file` lines of the event file, the store's
/// rows up to `store`, the anchor lines up to `anchor`; the HSM witnesses event `witness`.
struct Cut {
    file: usize,
    store: usize,
    anchor: usize,
    witness: usize,
}

/// Cuts a copy's sinks back as `cut` says (the witness with the MAC the store holds for it).
async fn cut_back(home: &AppHome, cut: &Cut) {
    let events = stored_events(home).await;
    let (event, mac) = &events[cut.witness - 1];
    assert_eq!(event.seq, cut.witness as u64);
    super::write_witness(home, event.seq, mac).await;
    write_file_lines(home, &file_lines(home)[..cut.file]);
    delete_store_events(&home.store(), |seq| seq > cut.store as u64).await;
    cut_anchor_after(home, cut.anchor);
    assert_eq!(
        anchored_seqs(home).last(),
        Some(&cut.anchor),
        "an anchor line names {}",
        cut.anchor
    );
    assert_eq!(stored_events(home).await.len(), cut.store);
}

/// A copy of `home` (tagged `tag`) with its sinks cut back as `cut` says.
async fn cut_copy(home: &AppHome, tag: &str, cut: &Cut) -> AppHome {
    let copy = copy_home(home, tag).await;
    cut_back(&copy, cut).await;
    copy
}

/// The request ids of the event lines, in file order.
fn request_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("an event line");
            line["event"]["request_id"].as_str().expect("request_id").to_owned()
        })
        .collect()
}

/// The last anchored head at or before `seq` (there is one: [`stopped_trail`] anchors a
/// head after each round).
fn anchor_at_or_before(home: &AppHome, seq: usize) -> usize {
    let anchor = anchored_seqs(home).into_iter().filter(|s| *s <= seq).max().unwrap_or(0);
    assert!(
        anchor > 2,
        "an anchored head past the first events, at or before {seq}: {}",
        anchor_text(home)
    );
    anchor
}

/// A copy of a stopped trail for a power loss: the file synced 5 events short of what was
/// acknowledged, and the HSM witnessed an anchored head half way. Returns the copy, the
/// original event lines, that anchored head and how many lines the file keeps.
async fn power_loss_copy(tag: &str) -> (AppHome, Vec<String>, usize, usize) {
    let home = stopped_trail().await;
    let original = file_lines(&home);
    let events = original.len();
    let copy = copy_home(&home, tag).await;
    let anchor = anchor_at_or_before(&copy, events / 2);
    (copy, original, anchor, events - 5)
}

/// Starts the copy after a power loss left it as `cut` says: verify passes offline before
/// the start (with the events past the anchor counted), the start succeeds, the trail holds
/// exactly the events the file kept and goes on after them, and everything is anchored.
async fn survives(home: &AppHome, original: &[String], cut: &Cut) {
    let report = verify_offline(home).await;
    assert!(report.ok, "a power loss is not tampering: {report:?}");
    assert_eq!(
        (report.checked, report.unanchored),
        (cut.store as u64, (cut.file - cut.anchor) as u64),
        "the store's events verified; the file's events past the anchor are unanchored: {report:?}"
    );

    let mut app = spawn_app_in(home.clone()).await;
    assert_eq!(
        verify_online(&app).await,
        json!({"ok": true, "checked": cut.file}),
        "the start copied the file's tail into the store and anchored it"
    );
    let listed = app.audit_events("").await;
    let seqs: Vec<u64> = listed.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(
        seqs,
        (1..=cut.file as u64 + 1).collect::<Vec<_>>(),
        "every event the file kept, then the verification, with no gap"
    );
    let ids: Vec<String> = listed
        .iter()
        .map(|e| e["request_id"].as_str().expect("request_id").to_owned())
        .collect();
    let original_ids = request_ids(original);
    assert_eq!(
        ids[..cut.file],
        original_ids[..cut.file],
        "the kept events are the original ones"
    );
    for lost in &original_ids[cut.file..] {
        assert!(
            !ids.contains(lost),
            "event of {lost} past the synced file is gone, not revived"
        );
    }
    app.stop().await;

    let report = verify_offline(home).await;
    assert!(
        report.ok && report.unanchored == 0,
        "a clean stop anchors everything: {report:?}"
    );
    assert_eq!(anchored_seqs(home).last().copied(), Some(report.checked as usize));
}

#[tokio::test]
async fn after_a_power_loss_the_file_synced_past_the_store_and_the_anchor_verifies_and_the_vault_starts() {
    let (copy, original, anchor, file) = power_loss_copy("power-loss-file-ahead").await;
    // The store committed half way between the anchor and the file's end.
    let cut = Cut {
        file,
        store: (anchor + file) / 2,
        anchor,
        witness: anchor,
    };
    assert!(cut.anchor < cut.store && cut.store < cut.file, "anchor < store < file");
    cut_back(&copy, &cut).await;
    survives(&copy, &original, &cut).await;
}

/// Written back page by page, an unsynced line can reach the disk in part: its first bytes,
/// up to a page boundary, and no newline (a kill -9 during a write(2) that crosses a page
/// can leave the same). Never acknowledged: the start cuts such a line off
/// (`sink::drop_partial_line`), and verification leaves it out (`sink::read_events`), so an
/// operator who runs `sigvault audit verify` after the power loss is not told of tampering.
#[tokio::test]
async fn after_a_power_loss_that_tore_the_last_line_of_the_event_file_verify_passes_and_the_vault_starts() {
    let (copy, original, anchor, file) = power_loss_copy("power-loss-torn-line").await;
    let cut = Cut {
        file,
        store: file,
        anchor,
        witness: anchor,
    };
    cut_back(&copy, &cut).await;
    let torn = &original[file].as_bytes()[..original[file].len() / 2];
    let mut bytes = std::fs::read(copy.audit_file()).expect("read the event file");
    bytes.extend_from_slice(torn);
    std::fs::write(copy.audit_file(), &bytes).expect("write the event file");
    survives(&copy, &original, &cut).await;
}

#[tokio::test]
async fn an_event_file_cut_back_before_an_anchored_event_is_tampering_that_verify_reports_and_the_start_refuses() {
    let home = stopped_trail().await;
    let events = file_lines(&home).len();
    let anchored = *anchored_seqs(&home).last().expect("anchored");
    assert_eq!(anchored, events, "the stop anchored the last event");

    // The file alone cut back before the anchored head (the store and the anchor intact).
    let witness = anchor_at_or_before(&home, events / 2);
    let file = witness + 3;
    let cut = Cut {
        file,
        store: events,
        anchor: anchored,
        witness,
    };
    let copy = cut_copy(&home, "file-cut-before-anchor", &cut).await;
    let before = sinks(&copy).await;
    let report = verify_offline(&copy).await;
    assert!(
        !report.ok && report.first_bad_seq == Some(file as u64 + 1),
        "{report:?}"
    );
    assert_eq!(
        report.reason.as_deref(),
        Some(format!("the event file ends at event {file} but the other sink goes on to {events}").as_str())
    );
    let refused = startup_error(&copy).await;
    assert!(
        refused.contains(&format!(
            "the event file ends at {file} but the store at {events} and the anchor at {anchored}"
        )) && refused.contains("sigvault audit verify"),
        "{refused}"
    );
    let after = sinks(&copy).await;
    assert!(after == before, "a refused start changes nothing");

    // The file and the store cut back together before the anchored head: the anchor alone
    // names the removed events.
    let cut = Cut { store: file, ..cut };
    let copy = cut_copy(&home, "file-and-store-cut-before-anchor", &cut).await;
    let before = sinks(&copy).await;
    let report = verify_offline(&copy).await;
    assert!(
        !report.ok && report.first_bad_seq == Some(file as u64 + 1),
        "{report:?}"
    );
    let reason = report.reason.unwrap_or_default();
    assert!(
        reason.starts_with("truncated: the anchor names event")
            && reason.ends_with(&format!("but the trail ends at {file}")),
        "{reason}"
    );
    let refused = startup_error(&copy).await;
    assert!(
        refused.contains(&format!(
            "the anchor names event {anchored} but the trail ends at {file}"
        )) && refused.contains("sigvault audit verify"),
        "{refused}"
    );
    let after = sinks(&copy).await;
    assert!(after == before, "a refused start changes nothing");
}
