//! Group commit: requests hand their event to [`Auditor::record`] and wait; one writer task
//! takes every event queued so far, gives them sequence numbers and chain MACs, appends
//! them to the JSON-lines file (fdatasync) while inserting them into the store (one
//! transaction, one statement), appends the new head to the anchor file, and only then
//! releases the waiting requests. Many events, one sync on the critical path: the event
//! file is the durable copy; the store's audit connection skips its fsync and is repaired
//! from the file after a power loss; the anchor is synced at most every 200 ms.
//!
//! Fail closed: if any step fails, the steps already done are undone, every request of the
//! batch gets [`AuditError::Unavailable`] (the API answers 503 `AUDIT_UNAVAILABLE`), and the
//! next batch first re-reads the sinks' heads and retries — recovery needs no restart.
//!
//! Crash recovery ([`Writer::reconcile`]): a crash (or power loss) can leave the file ahead
//! of the store (copied into the store after checking the chain) or the anchor behind
//! (appended); a batch that the file did not take was never acknowledged. Anything else — the store ahead of the file, an
//! anchor ahead of both — is evidence of tampering: the auditor refuses to write until a
//! person has looked (`sigvault audit verify`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

mod accept;
mod reconcile;

pub use accept::{Accepted, accept_truncation};

use super::AuditSettings;
use super::chain::{Head, link_encoded};
use super::event::{AuditEvent, EventData, hex, push_line};
use super::sink::{self, AppendFile};
use super::trail::AuditTrail;
use crate::secret::SecretBytes;
use crate::store::{AuditStore, StoredEvent};

/// Most events in one group commit.
pub(crate) const MAX_BATCH: usize = 1024;
/// Requests that may wait for the writer at once; beyond it `record` waits for room.
const QUEUE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuditError {
    /// A sink could not make the event durable; nothing was acknowledged.
    #[error("the audit trail is unavailable: {0}")]
    Unavailable(String),
}

/// The handle requests use. Cheap to share.
pub struct Auditor {
    queue: mpsc::Sender<Pending>,
    key: Arc<SecretBytes>,
    healthy: Arc<AtomicBool>,
    trail: AuditTrail,
    deferred: Deferred,
}

/// Outcome events of changes whose intent is in the trail but whose outcome could not be
/// written (see [`Auditor::defer`]): the writer puts them first into its next batch, and is
/// woken for them when it is idle.
#[derive(Default)]
struct DeferredOutcomes {
    events: std::sync::Mutex<Vec<EventData>>,
    wake: tokio::sync::Notify,
}

type Deferred = Arc<DeferredOutcomes>;

impl DeferredOutcomes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<EventData>> {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How often an idle writer retries deferred outcome events.
const RETRY_DEFERRED: std::time::Duration = std::time::Duration::from_secs(1);

struct Pending {
    data: EventData,
    done: oneshot::Sender<Result<u64, AuditError>>,
}

struct Writer {
    store: Arc<dyn AuditStore>,
    key: Arc<SecretBytes>,
    settings: AuditSettings,
    file: AppendFile,
    anchor: AppendFile,
    head: Head,
    needs_reconcile: bool,
    healthy: Arc<AtomicBool>,
    last_anchor_sync: std::time::Instant,
    deferred: Deferred,
}

/// Longest time an anchor line may stay unsynced (see [`Writer::write`]).
const ANCHOR_SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl Auditor {
    /// Reconciles the sinks after a crash and starts the writer task.
    pub async fn start(
        store: Arc<dyn AuditStore>,
        key: SecretBytes,
        settings: AuditSettings,
    ) -> Result<Self, AuditError> {
        let key = Arc::new(key);
        let healthy = Arc::new(AtomicBool::new(false));
        let trail = AuditTrail::new(Arc::clone(&store), Arc::clone(&key), settings.clone());
        let mut writer = Writer::new(store, Arc::clone(&key), settings, Arc::clone(&healthy));
        writer.reconcile().await?;
        healthy.store(true, Ordering::Relaxed);
        let deferred = Arc::clone(&writer.deferred);
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer.run(rx));
        Ok(Self {
            queue,
            key,
            healthy,
            trail,
            deferred,
        })
    }

    /// Keeps the outcome event of a change whose intent is already in the trail but whose
    /// outcome could not be written: the writer appends it before anything else as soon as
    /// the trail works again (retrying every [`RETRY_DEFERRED`] while idle), so every
    /// intent gets its outcome without a restart.
    pub fn defer(&self, outcome: EventData) {
        self.deferred.lock().push(outcome);
        self.deferred.wake.notify_one();
    }

    /// Appends one event and returns its sequence number once it is durable in every sink.
    pub async fn record(&self, data: EventData) -> Result<u64, AuditError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Pending { data, done })
            .await
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?;
        wait.await
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?
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

    /// Whether the last batch reached every sink.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

impl Writer {
    /// A writer that has not read the sinks yet: its first batch reconciles them.
    fn new(
        store: Arc<dyn AuditStore>,
        key: Arc<SecretBytes>,
        settings: AuditSettings,
        healthy: Arc<AtomicBool>,
    ) -> Self {
        Self {
            file: AppendFile::new(&settings.file),
            anchor: AppendFile::new(&settings.anchor_file),
            store,
            key,
            settings,
            head: Head::genesis(),
            needs_reconcile: true,
            healthy,
            last_anchor_sync: std::time::Instant::now(),
            deferred: Deferred::default(),
        }
    }

    /// Deferred outcome events, as the head of a new batch (their waiters are nobody).
    fn take_deferred(&self) -> Vec<Pending> {
        let taken = std::mem::take(&mut *self.deferred.lock());
        taken
            .into_iter()
            .map(|data| Pending {
                data,
                done: oneshot::channel().0,
            })
            .collect()
    }

    /// Puts back the deferred events of a batch that failed, ahead of any deferred since.
    fn restore_deferred(&self, again: Vec<EventData>) {
        self.deferred.lock().splice(0..0, again);
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        loop {
            // With deferred outcomes waiting (a batch failed), retry them every
            // RETRY_DEFERRED while idle; otherwise sleep until a request or a deferral comes.
            let idle_retry = !self.deferred.lock().is_empty();
            let first = if idle_retry {
                match tokio::time::timeout(RETRY_DEFERRED, rx.recv()).await {
                    Ok(None) => break,
                    Ok(Some(first)) => Some(first),
                    Err(_) => None,
                }
            } else {
                tokio::select! {
                    received = rx.recv() => match received {
                        None => break,
                        Some(first) => Some(first),
                    },
                    () = self.deferred.wake.notified() => None,
                }
            };
            let mut batch = self.take_deferred();
            let deferred = batch.len();
            if let Some(first) = first {
                batch.push(first);
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            // Events are taken out of the batch as they are chained: keep the deferred ones'
            // data to put back if the batch fails.
            let kept: Vec<EventData> = batch.iter().take(deferred).map(|p| p.data.clone()).collect();
            let outcome = self.commit(&mut batch).await;
            self.healthy.store(outcome.is_ok(), Ordering::Relaxed);
            if let Err(e) = &outcome {
                self.restore_deferred(kept);
                tracing::error!(error = %e, events = batch.len(), "audit batch failed; requests refused");
            }
            let first_seq = outcome.as_ref().map(|head| head.seq + 1 - batch.len() as u64);
            for (i, pending) in batch.into_iter().enumerate() {
                let answer = match &first_seq {
                    Ok(first) => Ok(first + i as u64),
                    Err(e) => Err((*e).clone()),
                };
                let _ = pending.done.send(answer);
            }
        }
    }

    /// Makes one batch durable in every sink, or in none.
    async fn commit(&mut self, batch: &mut [Pending]) -> Result<Head, AuditError> {
        if self.needs_reconcile {
            self.reconcile().await?;
        }
        let mut events: Vec<StoredEvent> = Vec::with_capacity(batch.len());
        let mut head = self.head.clone();
        let mut lines = Vec::with_capacity(batch.len() * 320);
        for pending in batch.iter_mut() {
            let event = AuditEvent::new(head.seq + 1, &self.settings.node, std::mem::take(&mut pending.data));
            let canonical = event.canonical();
            let mac = link_encoded(self.key.expose_secret(), &head.mac, &canonical).to_vec();
            push_line(&mut lines, &canonical, &mac);
            head = Head {
                seq: event.seq,
                mac: mac.clone(),
            };
            events.push((event, mac));
        }
        let result = self.write(lines, &events, &head).await;
        match result {
            Ok(()) => {
                self.head = head.clone();
                Ok(head)
            }
            Err(e) => {
                self.needs_reconcile = true;
                Err(e)
            }
        }
    }

    /// The event file and the store are written at the same time (their syncs overlap);
    /// if either fails, the other is undone. The anchor line follows; it is synced at most
    /// every [`ANCHOR_SYNC_EVERY`] — it guards against truncation by a person, which needs
    /// no sync, and a crash that loses its last lines only leaves it behind, which the next
    /// start repairs.
    async fn write(&mut self, lines: Vec<u8>, events: &[StoredEvent], head: &Head) -> Result<(), AuditError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| AuditError::Unavailable(format!("{what}: {e}"));
        let (file_result, store_result) = tokio::join!(
            blocking(&mut self.file, move |f| f.append_durably(&lines)),
            self.store.append_audit(events),
        );
        let file_len = match (file_result, store_result) {
            (Ok(len), Ok(())) => len,
            (Ok(len), Err(e)) => {
                self.undo_file(len).await;
                return Err(unavailable("store", &e));
            }
            (Err(e), Ok(())) => {
                let _ = self.store.truncate_audit(&self.settings.node, self.head.seq).await;
                return Err(unavailable("event file", &e));
            }
            (Err(e), Err(_)) => return Err(unavailable("event file and store", &e)),
        };
        let anchor = sink::anchor_line(&self.settings.node, head);
        let sync = self.last_anchor_sync.elapsed() >= ANCHOR_SYNC_EVERY;
        if let Err(e) = blocking(&mut self.anchor, move |f| f.append(anchor.as_bytes(), sync)).await {
            let _ = self.store.truncate_audit(&self.settings.node, self.head.seq).await;
            self.undo_file(file_len).await;
            return Err(unavailable("anchor file", &e));
        }
        if sync {
            self.last_anchor_sync = std::time::Instant::now();
        }
        Ok(())
    }

    /// Cuts the event file back to `len`, its length before the batch (`None`: not a
    /// regular file, nothing to cut). Best effort: the batch has failed either way, and the
    /// next batch reconciles first.
    async fn undo_file(&mut self, len: Option<u64>) {
        if let Some(len) = len {
            let _ = blocking(&mut self.file, move |f| f.truncate(len)).await;
        }
    }
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
