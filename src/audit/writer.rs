//! Writing the trail. A request's event is chained and written to the event file on the
//! request's own thread ([`log::EventLog::append`]: one write(2), no hop to another thread);
//! the [`syncer`] thread fdatasyncs the file; the [`indexer`] task copies synced events into
//! the store in large batches and anchors their head. When a request is answered depends on
//! `audit.durability` ([`Durability`]): `os` once its line is written, `fsync` once it is
//! synced. The intent of a change ([`Auditor::record_durable`]) is always synced first.
//!
//! Fail closed: a write that fails refuses that request (503 `AUDIT_UNAVAILABLE`) and is cut
//! back off the file; a failed fdatasync or anchor write refuses every request until it
//! recovers, which needs no restart.
//!
//! Crash recovery ([`Recovery::reconcile`]) at start: a crash (or power loss) can leave the
//! file ahead of the store (copied into the store after checking the chain), the anchor
//! behind (appended), or half a line at the end of the file (cut: never acknowledged).
//! Anything else — the store ahead of the file by more than one batch, an anchor ahead of
//! both — is evidence of tampering: the auditor refuses to start until a person has looked
//! (`sigvault audit verify`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

mod accept;
mod indexer;
mod log;
mod reconcile;
mod syncer;

pub use accept::{Accepted, accept_truncation};

use self::log::{EventLog, SyncPoint, Written};
use self::syncer::{SyncControl, Synced};
use super::event::{EventData, hex};
use super::sink::AppendFile;
use super::trail::AuditTrail;
use super::{AuditSettings, Durability};
use crate::audit::chain::Head;
use crate::audit::witness::Witness;
use crate::kek::KekProvider;
use crate::secret::SecretBytes;
use crate::store::AuditStore;

/// Longest a request waits for its event's fdatasync, and a reader for the store to catch
/// up, before it is refused.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuditError {
    /// A sink could not make the event durable; nothing was acknowledged.
    #[error("the audit trail is unavailable: {0}")]
    Unavailable(String),
}

/// What the request path, the syncer and the indexer share.
struct Shared {
    settings: AuditSettings,
    store: Arc<dyn AuditStore>,
    log: Mutex<EventLog>,
    sync: SyncControl,
    synced: watch::Sender<Synced>,
    indexed: watch::Sender<u64>,
    index_wake: Notify,
    /// Outcome events of changes whose intent is in the trail but whose outcome could not
    /// be written (see [`Auditor::defer`]).
    deferred: Mutex<Vec<EventData>>,
    has_deferred: AtomicBool,
    stopping: AtomicBool,
    metrics: AuditMetrics,
}

/// How the trail's background work goes, for `/metrics`.
#[derive(Debug)]
pub struct AuditMetrics {
    /// Each fdatasync of the event file, in seconds.
    pub sync_seconds: crate::metrics::Histogram,
    /// Events each fdatasync made durable.
    pub sync_batch_events: crate::metrics::Histogram,
    /// Events each store batch indexed.
    pub index_batch_events: crate::metrics::Histogram,
    pub sync_failures: std::sync::atomic::AtomicU64,
    pub index_failures: std::sync::atomic::AtomicU64,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self {
            sync_seconds: crate::metrics::Histogram::latencies(),
            sync_batch_events: crate::metrics::Histogram::new(&crate::metrics::BATCH_BUCKETS),
            index_batch_events: crate::metrics::Histogram::new(&crate::metrics::BATCH_BUCKETS),
            sync_failures: std::sync::atomic::AtomicU64::new(0),
            index_failures: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, EventLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deferred(&self) -> MutexGuard<'_, Vec<EventData>> {
        self.deferred.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Chains `data` and writes it together with the events other requests chain
    /// meanwhile: the request yields once before the write, so the requests that are ready
    /// on this worker chain theirs too, and the first to come back writes them all. (A
    /// request dropped in between leaves its line to the next write or the syncer's.)
    async fn append(&self, data: EventData) -> Result<Written, AuditError> {
        if self.has_deferred.load(Ordering::Acquire) {
            self.flush_deferred();
        }
        let written = self.log().chain(data)?;
        tokio::task::yield_now().await;
        self.log().settle(written)?;
        Ok(written)
    }

    /// Writes the deferred outcome events, in order, before anything else; keeps those the
    /// trail still refuses.
    fn flush_deferred(&self) {
        let pending = std::mem::take(&mut *self.deferred());
        if pending.is_empty() {
            return;
        }
        let mut log = self.log();
        let mut rest = pending.into_iter();
        let mut kept = Vec::new();
        for data in rest.by_ref() {
            if log.append(data.clone()).is_err() {
                kept.push(data);
                break;
            }
        }
        drop(log);
        kept.extend(rest);
        let mut deferred = self.deferred();
        let later = std::mem::take(&mut *deferred);
        *deferred = kept;
        deferred.extend(later);
        self.has_deferred.store(!deferred.is_empty(), Ordering::Release);
    }

    /// Waits until the event `written` is durable in the file.
    async fn wait_synced(&self, written: Written) -> Result<(), AuditError> {
        if self.synced.borrow().seq >= written.seq {
            return Ok(());
        }
        let mut synced = self.synced.subscribe();
        self.sync.urge();
        let waited = tokio::time::timeout(
            WAIT_LIMIT,
            synced.wait_for(|s| s.seq >= written.seq || s.failures > written.sync_failures),
        )
        .await;
        match waited {
            Ok(Ok(s)) if s.seq >= written.seq => Ok(()),
            Ok(_) => Err(AuditError::Unavailable("the event file could not be synced".into())),
            Err(_) => Err(AuditError::Unavailable(
                "the event file sync did not finish in time".into(),
            )),
        }
    }
}

/// The handle requests use. Cheap to share.
pub struct Auditor {
    shared: Arc<Shared>,
    key: Arc<SecretBytes>,
    trail: AuditTrail,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
    indexer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Auditor {
    /// The trail's syncs and index batches so far.
    pub fn metrics(&self) -> &AuditMetrics {
        &self.shared.metrics
    }

    /// Reconciles the sinks after a crash and starts the syncer thread and the indexer task.
    ///
    /// `hsm` is the KEK provider that keeps the witness of the chain head: the reconciled
    /// trail must reach the head it witnessed (else the start is refused: events were
    /// removed from every sink), and it then witnesses the reconciled head.
    pub async fn start(
        store: Arc<dyn AuditStore>,
        key: SecretBytes,
        settings: AuditSettings,
        hsm: Arc<dyn KekProvider>,
    ) -> Result<Self, AuditError> {
        Self::start_shared(store, Arc::new(key), settings, hsm, WitnessCheck::Compare).await
    }

    async fn start_shared(
        store: Arc<dyn AuditStore>,
        key: Arc<SecretBytes>,
        settings: AuditSettings,
        hsm: Arc<dyn KekProvider>,
        check: WitnessCheck,
    ) -> Result<Self, AuditError> {
        let mut recovery = Recovery::new(Arc::clone(&store), Arc::clone(&key), settings.clone());
        recovery.reconcile().await?;
        if check == WitnessCheck::Compare {
            recovery.check_witness(hsm.as_ref()).await?;
        }
        let mut witness = Witness::new(Arc::clone(&hsm), &settings.node, settings.hsm_anchor_interval);
        witness
            .write_forced(&recovery.head, std::time::Instant::now())
            .await
            .map_err(|e| AuditError::Unavailable(format!("HSM witness: {e}")))?;
        let interrupted = recovery.interrupted_changes().await?;
        // Both files exist from the first start on, events or not: a later start (and an
        // operator) can then tell a trail that was lost from one that never had an event.
        for path in [&settings.file, &settings.anchor_file] {
            create_if_missing(path);
        }
        let trail = AuditTrail::new(Arc::clone(&store), Arc::clone(&key), settings.clone(), Some(hsm));
        let head = recovery.head.clone();
        let durable = SyncPoint {
            seq: head.seq,
            len: file_len(&settings.file),
        };
        let log = EventLog::new(&settings.node, &key, settings.file.clone(), head.clone())?;
        let shared = Arc::new(Shared {
            settings,
            store,
            log: Mutex::new(log),
            sync: SyncControl::default(),
            synced: watch::Sender::new(Synced {
                seq: head.seq,
                failures: 0,
            }),
            indexed: watch::Sender::new(head.seq),
            index_wake: Notify::new(),
            deferred: Mutex::default(),
            has_deferred: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            metrics: AuditMetrics::default(),
        });
        let syncer = syncer::spawn(Arc::clone(&shared), durable)
            .map_err(|e| AuditError::Unavailable(format!("audit sync thread: {e}")))?;
        let indexer = indexer::Indexer::new(Arc::clone(&shared), recovery.anchor, head, witness);
        let indexer = tokio::spawn(indexer.run());
        let auditor = Self {
            shared,
            key,
            trail,
            syncer: Mutex::new(Some(syncer)),
            indexer: Mutex::new(Some(indexer)),
        };
        auditor.complete(interrupted).await?;
        Ok(auditor)
    }

    /// Writes the outcome of every change a crash interrupted after its intent (see
    /// [`Recovery::interrupted_changes`]) before anything else is recorded.
    async fn complete(&self, outcomes: Vec<EventData>) -> Result<(), AuditError> {
        for outcome in outcomes {
            tracing::warn!(
                request_id = %outcome.request_id,
                action = %outcome.action,
                resource = %outcome.resource,
                "a change was interrupted after its intent; its outcome is recorded as interrupted"
            );
            self.record_durable(outcome).await?;
        }
        Ok(())
    }

    /// Appends one event and returns its sequence number once it is written as
    /// `audit.durability` asks: handed to the OS (`os`) or synced (`fsync`).
    pub async fn record(&self, data: EventData) -> Result<u64, AuditError> {
        let written = self.shared.append(data).await?;
        if self.shared.settings.durability == Durability::Fsync {
            self.shared.wait_synced(written).await?;
        }
        Ok(written.seq)
    }

    /// Appends one event and returns its sequence number once it is synced, whatever the
    /// durability mode: the intent of a change must survive a power loss the change survives.
    pub async fn record_durable(&self, data: EventData) -> Result<u64, AuditError> {
        let written = self.shared.append(data).await?;
        self.shared.wait_synced(written).await?;
        Ok(written.seq)
    }

    /// Keeps the outcome event of a change whose intent is already in the trail but whose
    /// outcome could not be written: it is appended before anything else as soon as the
    /// trail works again (retried by the indexer while no request comes), so every intent
    /// gets its outcome without a restart.
    pub fn defer(&self, outcome: EventData) {
        self.shared.deferred().push(outcome);
        self.shared.has_deferred.store(true, Ordering::Release);
    }

    /// Waits until the store holds every event written so far (readers of the store call it
    /// first, so a client reads its own requests' events).
    pub async fn catch_up(&self) -> Result<(), AuditError> {
        let written = self.shared.log().last();
        self.shared.wait_synced(written).await?;
        let mut indexed = self.shared.indexed.subscribe();
        self.shared.index_wake.notify_one();
        match tokio::time::timeout(WAIT_LIMIT, indexed.wait_for(|i| *i >= written.seq)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AuditError::Unavailable(
                "the store has not indexed the trail in time".into(),
            )),
        }
    }

    /// Makes everything written durable and indexed, then stops the syncer and the indexer.
    pub async fn shutdown(&self) {
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, "audit trail not fully indexed at shutdown; the next start copies it from the event file");
        }
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.index_wake.notify_one();
        let indexer = self.indexer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(indexer) = indexer {
            let _ = indexer.await;
        }
        self.shared.sync.stop();
        let syncer = self.syncer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(syncer) = syncer {
            let _ = tokio::task::spawn_blocking(move || syncer.join()).await;
        }
    }

    /// `HMAC(audit_key, "secret" || value)` in hex: lets an auditor correlate a secret
    /// (e.g. the same material imported twice) without the trail holding it.
    pub fn secret_hmac(&self, secret: &[u8]) -> String {
        hex(&super::chain::keyed(self.key.expose_secret(), b"secret", secret))
    }

    /// Reading the trail: queries, counts, verification.
    pub fn trail(&self) -> &AuditTrail {
        &self.trail
    }

    /// Whether the trail takes events now.
    pub(crate) fn is_healthy(&self) -> bool {
        self.shared.log().is_healthy()
    }
}

impl Drop for Auditor {
    fn drop(&mut self) {
        // Without a shutdown (a test dropping its app): the syncer syncs once more and ends.
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.index_wake.notify_one();
        self.shared.sync.stop();
    }
}

/// Whether a start compares the trail with the HSM witness first (always, but for an
/// operator's accepted truncation, which gives witnessed events up on purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WitnessCheck {
    Compare,
    GiveUp,
}

/// Creates `path` empty (mode 0600 under the process umask) when nothing is there; a
/// failure is only logged: the first write reports it where it matters.
fn create_if_missing(path: &std::path::Path) {
    let created = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|file| file.sync_all());
    if let Err(e) = created {
        tracing::warn!(path = %path.display(), error = %e, "cannot create the audit file yet");
    }
}

/// The length of the event file (0 when missing or not a regular file).
fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map_or(0, |m| m.len())
}

/// Reconciles the three sinks at start (see [`reconcile`]), and gives up events for
/// [`accept_truncation`].
struct Recovery {
    store: Arc<dyn AuditStore>,
    key: Arc<SecretBytes>,
    settings: AuditSettings,
    anchor: AppendFile,
    head: Head,
}

impl Recovery {
    fn new(store: Arc<dyn AuditStore>, key: Arc<SecretBytes>, settings: AuditSettings) -> Self {
        Self {
            anchor: AppendFile::new(&settings.anchor_file),
            store,
            key,
            settings,
            head: Head::genesis(),
        }
    }
}

/// Appends `head`'s line to the anchor file, synced, on the blocking pool.
async fn append_anchor(anchor: &mut AppendFile, node: &str, head: &Head) -> std::io::Result<()> {
    let line = super::sink::anchor_line(node, head);
    blocking(anchor, move |f| f.append(line.as_bytes())).await
}

/// Runs a blocking file operation on the blocking pool, lending it the file.
async fn blocking<T: Send + 'static>(
    file: &mut AppendFile,
    op: impl FnOnce(&mut AppendFile) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let mut owned = std::mem::replace(file, AppendFile::new(&PathBuf::new()));
    let (owned, result) = tokio::task::spawn_blocking(move || {
        let result = op(&mut owned);
        (owned, result)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    *file = owned;
    result
}
