//! The audit trail, black-box (ARCHITECTURE.md "Audit", API.md "Audit and compliance"):
//! one event per request that reaches a handler, the keyed chain and its verification,
//! tamper detection on copies of the data, the chain head the HSM witnessed, failing closed
//! when a sink cannot write, crash recovery of the real binary, and the absence of secrets
//! from every audit sink.
//!
//! This module holds only what its sub-modules share (reading the trail through the API is
//! `TestApp::audit_events`): verifying the trail online, and a data dir offline through the
//! library (a tampered copy may not start), copying a stopped app's data (its data dir, and
//! on PostgreSQL its database), and raw SQL on its store (either backend, `RawStore`), with
//! edits of the event lines its audit table (`audit_batches`) holds.

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

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use sigvault::audit::verify::{Report, verify_trail};
use sigvault::clock::{ManualClock, SharedClock};
use sigvault::kek::{self, Keyring};
use sigvault::startup::{AUDIT_KEY_NAME, Application};
use sigvault::store::StoreSettings;
use time::OffsetDateTime;

use crate::helpers::{AppHome, RawStore, RawValue, TestApp, copy_postgres_database, spawn_app, temp_dir};

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
/// new directory, and on PostgreSQL of its database into a new one: each tampering works on
/// its own copy.
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
        postgres_url: home.postgres_url.as_deref().map(copy_postgres_database),
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

/// Runs one SQL statement on the store and returns the rows it changed.
async fn sql(store: &StoreSettings, statement: &str) -> u64 {
    let raw = RawStore::open(store).await;
    let changed = raw.execute(statement, &[]).await;
    raw.close().await;
    changed
}

/// One row of the store's audit table `audit_batches`: up to 512 consecutive events of one
/// node, as the lines of the event file (here without their newlines).
struct StoreRow {
    node: String,
    first_seq: i64,
    last_seq: i64,
    /// The lowest and highest event time of the row's lines (fixed-width RFC 3339 text).
    time_min: String,
    time_max: String,
    /// 1 when the row is the last one of an append (a PostgreSQL `boolean` reads as 0 or 1).
    ends_append: i64,
    lines: Vec<String>,
}

impl StoreRow {
    /// Sets the row's sequence and time bounds from its lines wherever they parse, as an
    /// attacker who wants the table to look untouched would: a row's key and its time
    /// pruning then agree with what it holds.
    fn fit_bounds(&mut self) {
        let seqs: Vec<i64> = self
            .lines
            .iter()
            .filter_map(|line| record(line)["event"]["seq"].as_i64())
            .collect();
        self.first_seq = seqs.iter().copied().min().unwrap_or(self.first_seq);
        self.last_seq = seqs.iter().copied().max().unwrap_or(self.last_seq);
        let times: Vec<String> = self
            .lines
            .iter()
            .filter_map(|line| record(line)["event"]["time"].as_str().map(str::to_owned))
            .collect();
        if let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) {
            (self.time_min, self.time_max) = (min.clone(), max.clone());
        }
    }
}

/// A stored line parsed (`Null` when it is not JSON: such a line matches no edit).
fn record(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or(Value::Null)
}

/// The `event.seq` of a stored line.
fn line_seq(line: &str) -> Option<u64> {
    record(line)["event"]["seq"].as_u64()
}

/// Every row of the store's audit table, ordered by node and first sequence.
async fn store_rows(store: &StoreSettings) -> Vec<StoreRow> {
    let raw = RawStore::open(store).await;
    let rows = raw
        .fetch_all(
            "SELECT node, first_seq, last_seq, time_min, time_max, ends_append, lines \
             FROM audit_batches ORDER BY node, first_seq",
            &[],
        )
        .await;
    raw.close().await;
    rows.iter()
        .map(|row| {
            let lines = String::from_utf8(row.bytes("lines")).expect("the lines are UTF-8");
            StoreRow {
                node: row.text("node"),
                first_seq: row.int("first_seq"),
                last_seq: row.int("last_seq"),
                time_min: row.text("time_min"),
                time_max: row.text("time_max"),
                ends_append: row.int("ends_append"),
                lines: lines.split_terminator('\n').map(str::to_owned).collect(),
            }
        })
        .collect()
}

/// Rewrites the store's audit table, bypassing sigvault: loads its rows, lets `edit` change
/// them, then in one transaction replaces every row with the edited ones. A row left
/// without lines is dropped; every other row's bounds are fitted to its lines
/// ([`StoreRow::fit_bounds`]), so only the events' MACs can tell.
async fn rewrite_store(store: &StoreSettings, edit: impl FnOnce(&mut Vec<StoreRow>)) {
    let mut rows = store_rows(store).await;
    edit(&mut rows);
    rows.retain(|row| !row.lines.is_empty());
    // `$6 <> 0`: 0 or 1 as SQLite's integer, and as PostgreSQL's boolean.
    let insert = "INSERT INTO audit_batches (node, first_seq, last_seq, time_min, time_max, ends_append, lines) \
                  VALUES ($1, $2, $3, $4, $5, $6 <> 0, $7)";
    let mut statements = vec![("DELETE FROM audit_batches", Vec::new())];
    for row in &mut rows {
        row.fit_bounds();
        let lines: String = row.lines.iter().map(|line| format!("{line}\n")).collect();
        let values: Vec<RawValue> = vec![
            (&row.node).into(),
            row.first_seq.into(),
            row.last_seq.into(),
            (&row.time_min).into(),
            (&row.time_max).into(),
            row.ends_append.into(),
            lines.into_bytes().into(),
        ];
        statements.push((insert, values));
    }
    let raw = RawStore::open(store).await;
    raw.in_transaction(&statements).await;
    raw.close().await;
}

/// Edits, in the store, the line of every event whose `event.seq` is `seq`: `edit` gets
/// the whole line parsed (`{"event":…,"mac":…}`), which is written back re-serialised.
/// Returns how many lines it edited.
pub(crate) async fn edit_store_event(store: &StoreSettings, seq: u64, mut edit: impl FnMut(&mut Value)) -> u64 {
    let mut edited = 0;
    rewrite_store(store, |rows| {
        for line in rows.iter_mut().flat_map(|row| &mut row.lines) {
            if line_seq(line) == Some(seq) {
                let mut parsed = record(line);
                edit(&mut parsed);
                *line = parsed.to_string();
                edited += 1;
            }
        }
    })
    .await;
    edited
}

/// Removes from the store the lines of the events whose `event.seq` is `doomed`; returns
/// how many. A row that lost its last line no longer ends an append, as when the store
/// itself cuts a row short.
async fn delete_store_events(store: &StoreSettings, doomed: impl Fn(u64) -> bool) -> u64 {
    let mut deleted = 0;
    rewrite_store(store, |rows| {
        for row in rows {
            let (before, last) = (row.lines.len(), row.lines.last().cloned());
            row.lines.retain(|line| !line_seq(line).is_some_and(&doomed));
            deleted += (before - row.lines.len()) as u64;
            if row.lines.last() != last.as_ref() {
                row.ends_append = 0;
            }
        }
    })
    .await;
    deleted
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
    delete_store_events(&home.store(), |seq| seq > kept as u64).await;
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
