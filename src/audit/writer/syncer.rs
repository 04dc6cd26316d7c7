//! The thread that makes written events durable: it fdatasyncs the event file and publishes
//! how far the file is durable.
//!
//! With `durability = "os"` it syncs every `sync_interval` while something is unsynced; a
//! request that must wait for durability (every request with `durability = "fsync"`, and the
//! intent of every change) urges it, and the writes that arrive during one fdatasync, or
//! within [`GROUP_WINDOW`] of its start, share the next (group commit). The sync runs
//! outside the log's lock, on a handle to the same open file, so appends never wait for the
//! disk.
//!
//! A failed fdatasync refuses every append at once ([`super::log::EventLog::sync_failed`]).
//! The kernel may have dropped the unsynced pages, so recovery rewrites every event after the
//! last durable point from memory and syncs again, retried every [`RETRY`] until it works.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Shared;
use super::log::SyncPoint;

/// How often a failed sync is retried.
const RETRY: Duration = Duration::from_secs(1);

/// Shortest time from the start of one fdatasync to the start of the next: the group-commit
/// window. An fdatasync that grows the file commits ext4's journal, and back-to-back syncs
/// of a few events each took ≈ 15 % of a loaded server's CPU in `fsync` mode; waiting up to
/// 1 ms lets more requests share one (bench/verify.sh with `fsync`: verify/ping 0.40 → 0.45,
/// 0.38 with 0.5 ms, 0.24 with 3 ms).
const GROUP_WINDOW: Duration = Duration::from_millis(1);

/// How far the event file is durable, as the syncer publishes it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Synced {
    pub(super) seq: u64,
    /// Failed fdatasyncs so far: a waiter whose event was written before a failure gives up.
    pub(super) failures: u64,
}

#[derive(Default)]
struct Flags {
    urgent: bool,
    stop: bool,
}

/// Wakes the syncer: urgently (someone waits) or to stop.
#[derive(Default)]
pub(super) struct SyncControl {
    flags: Mutex<Flags>,
    wake: Condvar,
}

impl SyncControl {
    fn flags(&self) -> std::sync::MutexGuard<'_, Flags> {
        self.flags.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for a sync now (one wake-up however many ask before it runs).
    pub(super) fn urge(&self) {
        let mut flags = self.flags();
        if !flags.urgent {
            flags.urgent = true;
            self.wake.notify_one();
        }
    }

    /// Asks the syncer to make everything durable and end.
    pub(super) fn stop(&self) {
        self.flags().stop = true;
        self.wake.notify_one();
    }

    /// Sleeps until urged, stopped or `interval` has passed; returns whether to stop.
    fn wait(&self, interval: Duration) -> bool {
        let mut flags = self.flags();
        if !flags.urgent && !flags.stop {
            flags = self
                .wake
                .wait_timeout(flags, interval)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        flags.urgent = false;
        flags.stop
    }
}

/// Starts the syncer thread; `durable` is where the reconciled file already is durable.
pub(super) fn spawn(shared: Arc<Shared>, durable: SyncPoint) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("audit-sync".into())
        .spawn(move || run(&shared, durable))
}

fn run(shared: &Shared, mut durable: SyncPoint) {
    let mut last_retry: Option<Instant> = None;
    let mut last_sync = Instant::now();
    loop {
        let stop = shared.sync.wait(shared.settings.sync_interval);
        let since = last_sync.elapsed();
        if since < GROUP_WINDOW && !stop {
            std::thread::sleep(GROUP_WINDOW - since);
        }
        last_sync = Instant::now();
        if shared.log().sync_failing() {
            if last_retry.is_none_or(|t| t.elapsed() >= RETRY) || stop {
                last_retry = Some(Instant::now());
                recover(shared, &mut durable);
            }
        } else {
            sync_once(shared, &mut durable);
        }
        if stop {
            break;
        }
    }
}

/// Syncs what has been written since the last durable point and publishes it.
fn sync_once(shared: &Shared, durable: &mut SyncPoint) {
    let Some((file, point)) = shared.log().sync_point() else {
        return;
    };
    if point.seq <= durable.seq {
        return;
    }
    let started = Instant::now();
    let result = file.sync_data();
    shared.metrics.sync_seconds.observe_duration(started.elapsed());
    match result {
        Ok(()) => {
            shared
                .metrics
                .sync_batch_events
                .observe(point.seq.saturating_sub(durable.seq) as f64);
            *durable = point;
            shared.synced.send_modify(|s| s.seq = point.seq);
        }
        Err(e) => {
            tracing::error!(error = %e, "audit event file sync failed; events refused until it recovers");
            shared
                .metrics
                .sync_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            shared.log().sync_failed(&e);
            shared.synced.send_modify(|s| s.failures += 1);
        }
    }
}

/// Rewrites and syncs the events after the last durable point (see the module docs).
fn recover(shared: &Shared, durable: &mut SyncPoint) {
    let result = shared.log().resync(*durable);
    match result {
        Ok(point) => {
            tracing::warn!(
                from = durable.seq + 1,
                to = point.seq,
                "audit event file sync recovered"
            );
            *durable = point;
            shared.synced.send_modify(|s| s.seq = point.seq);
        }
        Err(e) => tracing::error!(error = %e, "audit event file still cannot be synced"),
    }
}
