//! The audit files on a small tmpfs that fills up while the vault runs: from then on every
//! change is refused before it acts (503 `AUDIT_UNAVAILABLE`, the store unchanged: the
//! intent cannot be written), and once space is freed the trail takes events again without
//! a restart, holding an intent and an outcome for every change that happened and nothing
//! of the refused ones.
//!
//! Needs root (it mounts a tmpfs): the suite runs as root, locally and in CI, and this test
//! fails, saying why, rather than skip when it cannot mount.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::write_ahead::{assert_refused_change, every_kind_of_change, existing_objects, store_state};
use super::{file_lines, store_rows};
use crate::helpers::{AppHome, ROOT_TOKEN, Reply, TestApp, spawn_app_in, temp_dir};

/// The tmpfs's size: a few hundred events' worth of pages, filled in a moment.
const TMPFS_SIZE: &str = "2m";

/// A tmpfs mounted for the test, unmounted (lazily, so open files do not keep it) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = temp_dir("audit-tmpfs");
        let c = |s: &[u8]| CString::new(s).expect("no NUL");
        let (target, fstype, data) = (
            c(dir.as_os_str().as_bytes()),
            c(b"tmpfs"),
            c(format!("size={size},mode=0700").as_bytes()),
        );
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mounting a {size} tmpfs at {} failed ({}): this test fills a small file system under the \
             audit files and must run as root (CAP_SYS_ADMIN), as the suite does in CI",
            dir.display(),
            std::io::Error::last_os_error()
        );
        Self { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let Ok(target) = CString::new(self.dir.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Writes `path` until the file system has no byte left; returns how much it took.
fn fill(path: &Path) -> u64 {
    let mut filler = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0x5au8; 64 * 1024];
    let mut written = 0u64;
    // The tmpfs holds at most TMPFS_SIZE: the loop ends long before this bound.
    for _ in 0..1024 {
        match filler.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                return written;
            }
        }
    }
    panic!("{} never filled up ({written} bytes written)", path.display());
}

/// A client whose requests carry a long `User-Agent`, which every event records: a change's
/// event lines are then longer than any line of a request without one (see [`probe`]).
fn padded_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(format!("full-disk-test/{}", "x".repeat(200)))
        .build()
        .expect("HTTP client")
}

/// The status of `GET /v1/keys/gone` as root, without a `User-Agent`: its event line is
/// shorter than any change's.
async fn probe(app: &TestApp) -> Reply {
    app.get("/v1/keys/gone").await
}

/// Sends every kind of change through `client` as `token`; returns (what, reply) of each.
async fn send_every_change(
    app: &TestApp,
    client: &reqwest::Client,
    existing: &super::write_ahead::Existing,
    token: &str,
) -> Vec<(&'static str, Reply)> {
    let mut replies = Vec::new();
    for (what, method, path, body) in every_kind_of_change(existing) {
        let r = app
            .send_with(
                client,
                method,
                &path,
                Some(token),
                body.map(|b| b.to_string().into_bytes()),
            )
            .await
            .expect("request sent");
        replies.push((what, r));
    }
    replies
}

fn request_id(r: &Reply) -> String {
    r.request_id.clone().expect("every response has an x-request-id")
}

/// Every event the API lists, read as `token`, following cursors.
async fn all_events(app: &TestApp, token: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = String::new();
    for _ in 0..100 {
        let r = app
            .send(
                Method::GET,
                &format!("/v1/audit/events?limit=1000&cursor={cursor}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        events.extend(r.body["events"].as_array().expect("events").iter().cloned());
        match r.body["next"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return events,
        }
    }
    panic!("more than 100 pages of events");
}

/// Whether [`fill_up`] waits, after each read the trail took, until the store indexed it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    Each,
    No,
}

/// Fills the tmpfs, leaving one page free, then sends reads without a user agent until the
/// trail refuses one: the event file's last page and the free page take a few of their
/// lines (at least one), and then none fits. Every change's line is longer than these, so
/// none fits any more either. Returns the filler's path, the request ids of the reads the
/// trail took and that of the one it refused. With [`Settle::Each`] each read taken is
/// synced and indexed (`Auditor::catch_up`, not itself audited) before the next, so when
/// the trail refuses, the store already holds everything the file does.
async fn fill_up(app: &TestApp, tmpfs: &Tmpfs, settle: Settle) -> (PathBuf, Vec<String>, String) {
    // The anchor file exists and has room in its last page for the heads of these reads.
    app.state.audit.catch_up().await.expect("the trail catches up");
    let reserve = tmpfs.dir.join("reserve");
    std::fs::write(&reserve, [0u8; 4096]).expect("reserve a page");
    let filler = tmpfs.dir.join("filler");
    assert!(fill(&filler) > 0, "the filler took the free space");
    std::fs::remove_file(&reserve).expect("free the reserved page");
    let mut taken = Vec::new();
    loop {
        let r = probe(app).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.code(), "AUDIT_UNAVAILABLE", "{}", r.body);
            assert!(!taken.is_empty(), "the free page took at least one read's event");
            return (filler, taken, request_id(&r));
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        taken.push(request_id(&r));
        assert!(
            taken.len() < 64,
            "64 events fit in a full tmpfs: the event file is not on it?"
        );
        if settle == Settle::Each {
            app.state.audit.catch_up().await.expect("the trail catches up");
        }
    }
}

/// The number of event lines the store's audit table holds.
async fn stored_lines(home: &AppHome) -> usize {
    store_rows(&home.store()).await.iter().map(|row| row.lines.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_audit_files_on_a_full_tmpfs_every_change_is_refused_until_space_is_freed_and_the_trail_recovers_without_a_restart()
 {
    let tmpfs = Tmpfs::mount(TMPFS_SIZE);
    let home = AppHome {
        audit_file: Some(tmpfs.dir.join("audit.jsonl")),
        anchor_file: Some(tmpfs.dir.join("audit.anchor")),
        ..AppHome::new()
    };
    let mut app = spawn_app_in(home.clone()).await;
    let existing = existing_objects(&app).await;
    let padded = padded_client();

    let (filler, mut probes, refused_probe) = fill_up(&app, &tmpfs, Settle::Each).await;
    assert_eq!(
        stored_lines(&home).await,
        file_lines(&home).len(),
        "the store holds every event the file does"
    );
    let store_before = store_state(&home.store()).await;
    let file_before = std::fs::read(home.audit_file()).expect("read the event file");
    let anchor_before = std::fs::read(home.anchor_file()).expect("read the anchor file");

    let refused = send_every_change(&app, &padded, &existing, ROOT_TOKEN).await;
    for (what, r) in &refused {
        assert_refused_change(what, r);
    }
    assert_eq!(app.get("/v1/sys/health").await.body["audit"], json!("unavailable"));
    assert!(
        store_state(&home.store()).await == store_before,
        "no refused change reached the store"
    );
    assert_eq!(
        std::fs::read(home.audit_file()).expect("read the event file"),
        file_before,
        "the event file holds nothing of the refused changes"
    );
    assert_eq!(
        std::fs::read(home.anchor_file()).expect("read the anchor file"),
        anchor_before
    );

    // Space again: the trail takes events without a restart (within the indexer's
    // retry of an anchor write that failed meanwhile).
    std::fs::remove_file(&filler).expect("remove the filler");
    let mut recovered = None;
    for _ in 0..200 {
        let r = probe(&app).await;
        if r.status == StatusCode::OK {
            recovered = Some(request_id(&r));
            break;
        }
        assert_eq!(r.code(), "AUDIT_UNAVAILABLE", "{}", r.body);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let recovered = recovered.expect("the trail took events again within 5 s of the space freed");
    probes.push(recovered);
    assert_eq!(app.get("/v1/sys/health").await.body["audit"], json!("ok"));

    // Every change that was refused now succeeds, in turn (the last revokes the root
    // token: an admin token the changes made reads the trail after it).
    let done = send_every_change(&app, &padded, &existing, ROOT_TOKEN).await;
    let mut admin = None;
    for (what, r) in &done {
        assert!(
            r.status.is_success(),
            "{what} after the recovery: {} {}",
            r.status,
            r.body
        );
        if *what == "create a token" {
            admin = Some(r.body["token"].as_str().expect("the new token").to_owned());
        }
    }
    let admin = admin.expect("the changes create an admin token");
    let report = app.send(Method::GET, "/v1/audit/verify", Some(&admin), None).await;
    assert_eq!(report.body["ok"], json!(true), "{}", report.body);

    let events = all_events(&app, &admin).await;
    let of = |id: &str| -> Vec<&Value> { events.iter().filter(|e| e["request_id"] == id).collect() };
    let happened = existing
        .made_by
        .iter()
        .cloned()
        .chain(done.iter().map(|(_, r)| request_id(r)));
    for id in happened {
        let mine = of(&id);
        let outcomes: Vec<&Value> = mine.iter().copied().filter(|e| e["outcome"] == "ok").collect();
        let intents: Vec<&Value> = mine.iter().copied().filter(|e| e["outcome"] == "intent").collect();
        assert!(
            mine.len() == 2 && intents.len() == 1 && outcomes.len() == 1,
            "change {id}: one intent and one outcome `ok`: {mine:?}"
        );
        assert!(intents[0]["seq"].as_u64() < outcomes[0]["seq"].as_u64(), "{mine:?}");
    }
    for (what, r) in &refused {
        let id = request_id(r);
        assert!(
            of(&id).is_empty(),
            "the refused change `{what}` ({id}) left events: {:?}",
            of(&id)
        );
    }
    assert!(of(&refused_probe).is_empty(), "the refused read left an event");
    for id in &probes {
        assert_eq!(of(id).len(), 1, "the acknowledged read {id} has its event");
    }
    assert!(
        events.iter().all(|e| e["outcome"] != "AUDIT_UNAVAILABLE"),
        "no refused request is in the trail"
    );
    // What made every refusal certain: a change's line is longer than any read's.
    let longest_read = probes
        .iter()
        .flat_map(|id| of(id))
        .map(|e| e.to_string().len())
        .max()
        .expect("reads");
    let shortest_change = done
        .iter()
        .flat_map(|(_, r)| of(&request_id(r)))
        .map(|e| e.to_string().len())
        .min()
        .expect("changes");
    assert!(
        shortest_change > longest_read + 100,
        "change events ({shortest_change} bytes) are longer than read events ({longest_read} bytes)"
    );

    app.stop().await;
    let report = super::verify_offline(&home).await;
    assert!(report.ok && report.unanchored == 0, "{report:?}");
    drop(tmpfs);
}

/// With `durability = "os"` a request is answered once its line is written, and the syncer
/// fdatasyncs the file within `audit.sync_interval` (here 1 s, so the reads below are
/// written well before a sync). A failed write closes the event file for a reopen; the
/// syncer keeps syncing the file the last successful write went to, so the lines written
/// just before the failure are synced — and indexed, the store taking synced events only —
/// within the window while the trail refuses writes, not at the end of the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acknowledged_just_before_the_tmpfs_filled_up_are_synced_and_indexed_while_the_trail_refuses_writes() {
    let tmpfs = Tmpfs::mount(TMPFS_SIZE);
    let home = AppHome {
        audit_file: Some(tmpfs.dir.join("audit.jsonl")),
        anchor_file: Some(tmpfs.dir.join("audit.anchor")),
        audit_sync_interval: Duration::from_secs(1),
        ..AppHome::new()
    };
    let app = spawn_app_in(home.clone()).await;
    app.create_key("gone").await;
    let (_filler, acknowledged, _) = fill_up(&app, &tmpfs, Settle::No).await;
    let lines = file_lines(&home).len();
    // Within the sync interval and an indexer tick, with room to spare.
    for _ in 0..250 {
        if stored_lines(&home).await == lines {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} acknowledged events were written, and {} of the file's {lines} lines were never synced into the store",
        acknowledged.len(),
        lines - stored_lines(&home).await
    );
}
