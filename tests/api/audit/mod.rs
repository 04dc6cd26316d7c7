//! The audit trail, black-box (ARCHITECTURE.md "Audit", API.md "Audit and compliance"):
//! one event per request that reaches a handler, the keyed chain and its verification,
//! tamper detection on copies of the data, the chain head the HSM witnessed, failing closed
//! when a sink cannot write, crash recovery of the real binary, and the absence of secrets
//! from every audit sink.
//!
//! This module holds only what its sub-modules share (reading the trail through the API is
//! `TestApp::audit_events`): verifying the trail online, and a data dir offline through the
//! library (a tampered copy may not start), copying a stopped app's data, and raw SQL on its
//! database.

mod crash;
mod fail_closed;
mod forgery;
mod full_disk;
mod interrupted;
mod live;
mod model;
mod power_loss;
mod read_after_write;
mod secrets;
mod tamper;
mod trail;
mod truncation;
mod witness;
mod write_ahead;

use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use sigvault::audit::verify::{Report, verify_trail};
use sigvault::clock::{ManualClock, SharedClock};
use sigvault::kek::{self, Keyring};
use sigvault::startup::{AUDIT_KEY_NAME, Application};
use time::OffsetDateTime;

use crate::helpers::{AppHome, TestApp, raw_db, spawn_app, temp_dir};

/// The node name `AppHome::settings()` gives the audit trail.
const NODE: &str = "test-node";

/// `GET /v1/audit/verify` through the API.
async fn verify_online(app: &TestApp) -> Value {
    let r = app.get("/v1/audit/verify").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// Verifies the trail of a (stopped) app's data offline, as `sigvault audit verify` would:
/// the KEK from the home's token, the store, the audit key unsealed under the KEK, the
/// chain head the token witnessed, then `verify_trail` over the store, the event file and
/// the anchor file.
async fn verify_offline(home: &AppHome) -> Report {
    let settings = home.settings();
    let kek = kek::open(&settings.kek).await.expect("open the KEK");
    let store = sigvault::store::open(&settings.store).await.expect("open the store");
    let clock: SharedClock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
    let keyring = Keyring::new(Arc::clone(&kek));
    let key = sigvault::system_secret::load_or_create(store.as_ref(), &keyring, &clock, AUDIT_KEY_NAME)
        .await
        .expect("the audit key opens");
    let witnessed = sigvault::audit::witness::read(kek.as_ref(), NODE)
        .await
        .expect("the witness reads");
    // Verification needs the audit key itself.
    let report = verify_trail(
        store.as_ref(),
        key.expose_secret(),
        NODE,
        &settings.audit.file,
        &settings.audit.anchor_file,
        witnessed,
        &mut |_| {},
    )
    .await
    .expect("the trail can be read");
    store.close().await;
    report
}

/// The report of an intact trail of `checked` events, as the API serialises it.
fn intact(checked: u64) -> Report {
    Report {
        ok: true,
        checked,
        first_bad_seq: None,
        reason: None,
        unanchored: 0,
    }
}

/// A copy of a stopped app's data dir (same token, so the same KEK and audit key) under a
/// new directory: each tampering works on its own copy.
async fn copy_home(home: &AppHome, tag: &str) -> AppHome {
    let dir = temp_dir(tag);
    for entry in std::fs::read_dir(&home.data_dir).expect("read data dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy a data file");
        }
    }
    let copy = AppHome {
        data_dir: dir,
        audit_file: None,
        anchor_file: None,
        ..home.clone()
    };
    // The copy shares the original's HSM token, and with it the witness of the chain head,
    // which the original's later starts move on. The copy starts as the original stopped:
    // witnessed at the last event of its file.
    if let Some(last) = file_lines(&copy).last() {
        let line: serde_json::Value = serde_json::from_str(last).expect("an event line");
        let seq = line["event"]["seq"].as_u64().expect("seq");
        let mac = base16ct::mixed::decode_vec(line["mac"].as_str().expect("mac")).expect("hex mac");
        write_witness(&copy, seq, &mac).await;
    }
    copy
}

/// Writes the node's witness of the chain head on the home's token, as the writer does:
/// the record `sigvault-audit-head:<node>` holding `0x01 ‖ u64be(seq) ‖ mac`.
async fn write_witness(home: &AppHome, seq: u64, mac: &[u8]) {
    let kek = sigvault::kek::open(&home.settings().kek).await.expect("open the KEK");
    let value = [&[1u8][..], &seq.to_be_bytes(), mac].concat();
    kek.witness_write(&format!("sigvault-audit-head:{NODE}"), &value)
        .await
        .expect("write the witness");
}

/// Runs SQL statements (`;`-separated, on one connection) on a database file and returns
/// the rows they changed.
async fn sql(path: &Path, statements: &str) -> u64 {
    let pool = raw_db(path).await;
    let done = sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{statements}: {e}"));
    pool.close().await;
    done.rows_affected()
}

/// The lines of the event file (without their newlines).
fn file_lines(home: &AppHome) -> Vec<String> {
    let text = std::fs::read_to_string(home.audit_file()).expect("read the event file");
    text.lines().map(str::to_owned).collect()
}

/// Replaces the event file with `lines`, each ended by a newline.
fn write_file_lines(home: &AppHome, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(home.audit_file(), text).expect("write the event file");
}

/// Starting an app on `home` fails: returns the startup error's text.
async fn startup_error(home: &AppHome) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
    match Application::build_with(home.settings(), clock, Some(listener)).await {
        Ok(_) => panic!("the app started on a trail it should refuse"),
        Err(e) => e.to_string(),
    }
}

/// The stored events of the node, in sequence order, read through the store interface.
async fn stored_events(home: &AppHome) -> Vec<sigvault::store::StoredEvent> {
    let store = sigvault::store::open(&home.settings().store)
        .await
        .expect("open the store");
    let events = store.audit_range(NODE, 0, 100_000).await.expect("read events");
    store.close().await;
    events
}

/// The anchor file's text.
fn anchor_text(home: &AppHome) -> String {
    std::fs::read_to_string(home.anchor_file()).expect("read the anchor file")
}

/// The anchor file's lines (without their newlines).
fn anchor_lines(home: &AppHome) -> Vec<String> {
    anchor_text(home).lines().map(str::to_owned).collect()
}

/// The event an anchor line `node seq mac` names.
fn anchored_seq(line: &str) -> Option<usize> {
    line.split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// The sequence numbers the anchor file names, in file order.
fn anchored_seqs(home: &AppHome) -> Vec<usize> {
    anchor_lines(home)
        .iter()
        .map(|line| anchored_seq(line).unwrap_or_else(|| panic!("an anchor line `node seq mac`: {line}")))
        .collect()
}

/// Keeps the anchor lines that name an event up to `seq`.
fn cut_anchor_after(home: &AppHome, seq: usize) {
    let kept: String = anchor_lines(home)
        .iter()
        .filter(|line| anchored_seq(line) <= Some(seq))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(home.anchor_file(), kept).expect("write the anchor file");
}

/// What a home's three sinks hold: the store's events, the event file's lines and the anchor
/// file's text (to show that a refused start or command changed none of them).
async fn sinks(home: &AppHome) -> (Vec<sigvault::store::StoredEvent>, Vec<String>, String) {
    (stored_events(home).await, file_lines(home), anchor_text(home))
}

/// Keeps the first `kept` events in every sink: the event file's lines, the anchor lines
/// up to that event, the store's rows.
async fn cut_every_sink(home: &AppHome, kept: usize) {
    write_file_lines(home, &file_lines(home)[..kept]);
    cut_anchor_after(home, kept);
    sql(
        &home.database(),
        &format!("DELETE FROM audit_events WHERE seq > {kept}"),
    )
    .await;
}

/// A stopped app whose trail holds `events` events: a create of `k` (its intent and its
/// outcome), then signs with `k`.
async fn stopped_trail_of_signs(events: usize) -> AppHome {
    let mut app = spawn_app().await;
    app.create_key("k").await;
    for i in 2..events {
        app.sign("k", format!("message {i}").as_bytes()).await;
    }
    app.stop().await;
    let home = app.home.clone();
    assert_eq!(file_lines(&home).len(), events);
    home
}
