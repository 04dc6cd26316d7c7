//! KEK rotation and the rewrap job: after the current KEK changes (a rotation, a migration to
//! another provider), every sealed record's DEK is moved under it, online.
//!
//! The job is a loop over the store's records that are not under the current `kek_id`
//! ([`KekStore::sealed_not_under`]): each is opened (its envelope checked, so a record that
//! does not open is never given a fresh wrap), its DEK wrapped under the current KEK, and the
//! new wrap written only if the row still holds the one it was read with
//! ([`KekStore::replace_wrap`]). Nonce and ciphertext never change, so the secret, every
//! cache holding it, and signing and verifying are untouched while the job runs. Progress is
//! the records themselves: a job killed at any point resumes by listing what is still under
//! another KEK, and no record is moved twice. It is throttled to `kek.rewrap_rate` records a
//! second, and on a shared store one node works at a time ([`KekStore::try_lead`]); a
//! rotation takes a lead of its own, so it is never refused because a pass runs (the pass
//! ends and the next one moves records under the newest KEK).
//!
//! Each pass that moved records, or stopped, is an audit event `kek.rewrap` (resource
//! `kek:<target kek_id>`, outcome `ok` or `stopped`), written by the loop in `startup`.
//!
//! A record that does not open is counted as failed and skipped for the rest of the pass;
//! more than [`MAX_FAILED`] failures stop the pass (a wrong KEK set, not a few bad rows).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::envelope::RecordIdentity;
use crate::kek::{KekError, Keyring};
use crate::store::kek::LeadOf;
use crate::store::{KekStore, SealedPlace, StoreError};

/// `kek.rewrap_rate` when unset: records a second.
pub const DEFAULT_RATE: u32 = 200;
/// Records read per store query.
const BATCH: u32 = 100;
/// The audit action of a rewrap pass.
pub const REWRAP_EVENT: &str = "kek.rewrap";
/// Failures after which a pass stops.
pub(crate) const MAX_FAILED: u64 = 100;
/// How often the job looks for records under another KEK without being woken (another
/// node's rotation, or a pass that stopped on an outage).
const IDLE_CHECK: Duration = Duration::from_secs(60);

/// A record identity with owned parts (the store gives places, not borrowed records).
struct Identity {
    kind: String,
    tenant: String,
    id: String,
    version: u32,
}

impl Identity {
    /// The identity a record at `place` was sealed for: the same its owner seals it with
    /// (`keys`, `credentials`, `system_secret`).
    fn of(place: &SealedPlace) -> Self {
        match place {
            SealedPlace::KeyVersion {
                key_id,
                name,
                tenant,
                version,
            } => Self {
                kind: crate::keys::KIND_HMAC_KEY.to_owned(),
                tenant: tenant.clone(),
                id: format!("{key_id}/{name}"),
                version: *version,
            },
            SealedPlace::Credential {
                access_key_id,
                principal,
            } => Self {
                kind: crate::credentials::KIND_SIGV4_SECRET.to_owned(),
                tenant: crate::keys::DEFAULT_TENANT.to_owned(),
                id: format!("{access_key_id}/{principal}"),
                version: 1,
            },
            SealedPlace::SystemSecret { name } => Self {
                kind: name.clone(),
                tenant: crate::keys::DEFAULT_TENANT.to_owned(),
                id: name.clone(),
                version: 1,
            },
        }
    }

    fn record(&self) -> RecordIdentity<'_> {
        RecordIdentity {
            kind: &self.kind,
            tenant: &self.tenant,
            id: &self.id,
            version: self.version,
        }
    }
}

/// What the job is doing, as `GET /v1/sys/kek` shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct JobStatus {
    /// `idle` (nothing to move), `running`, `waiting` (another node holds the lease),
    /// `stopped` (too many records failed, or the HSM/KMS or store failed; tried again).
    pub state: &'static str,
    /// The `kek_id` the current or last pass moved records under.
    pub target: Option<String>,
    /// Records this node moved in the current or last pass.
    pub moved: u64,
    /// Records that did not open, skipped.
    pub failed: u64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// Why the last pass stopped early.
    pub error: Option<String>,
}

/// Why a pass ended before every record was under the current KEK.
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error("{0} records did not open; the pass stopped (is the right KEK configured?)")]
    TooManyFailed(u64),
}

/// The rewrap job of one node. Cheap to share.
pub struct Rewrapper {
    keyring: Keyring,
    store: Arc<dyn KekStore>,
    clock: SharedClock,
    rate: u32,
    status: Mutex<JobStatus>,
    wake: Notify,
}

impl Rewrapper {
    pub fn new(keyring: Keyring, store: Arc<dyn KekStore>, clock: SharedClock, rate: u32) -> Self {
        Self {
            keyring,
            store,
            clock,
            rate: rate.max(1),
            status: Mutex::new(JobStatus {
                state: "idle",
                ..JobStatus::default()
            }),
            wake: Notify::new(),
        }
    }

    pub fn status(&self) -> JobStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Asks the job to look for records to move now (after a rotation or migration).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until woken ([`Rewrapper::wake`]) or [`IDLE_CHECK`] passed: between passes of
    /// the job's loop (`startup`), which runs a pass at start too, resuming one a crash cut
    /// short.
    pub async fn wait_for_work(&self) {
        let _ = tokio::time::timeout(IDLE_CHECK, self.wake.notified()).await;
    }

    /// One pass: moves every record not under the current KEK, if this node gets the lead.
    /// Returns the records it moved.
    pub async fn pass(&self) -> Result<u64, RewrapError> {
        // Another node may have rotated: read the KEKs before deciding what is current.
        self.keyring.refresh().await?;
        let target = self.keyring.current().current_kek_id();
        if self.store.sealed_not_under(&target, 1).await?.is_empty() {
            self.update(|s| s.state = "idle");
            return Ok(0);
        }
        let Some(_lead) = self.store.try_lead(LeadOf::Rewrap).await? else {
            self.update(|s| s.state = "waiting");
            return Ok(0);
        };
        let started = self.clock.now_ms();
        self.update(|s| {
            *s = JobStatus {
                state: "running",
                target: Some(target.clone()),
                started_at_ms: Some(started),
                ..JobStatus::default()
            }
        });
        tracing::info!(kek_id = %target, "KEK rewrap pass started");
        let result = self.move_all(&target).await;
        let finished = self.clock.now_ms();
        match &result {
            Ok(moved) => {
                tracing::info!(kek_id = %target, moved, "KEK rewrap pass finished");
                self.update(|s| {
                    s.state = "idle";
                    s.finished_at_ms = Some(finished);
                });
            }
            Err(e) => {
                let error = e.to_string();
                self.update(|s| {
                    s.state = "stopped";
                    s.finished_at_ms = Some(finished);
                    s.error = Some(error);
                });
            }
        }
        result
    }

    async fn move_all(&self, target: &str) -> Result<u64, RewrapError> {
        let pause = Duration::from_secs(1) / self.rate;
        let mut failed: HashSet<SealedPlace> = HashSet::new();
        let mut moved = 0u64;
        loop {
            // The KEK changed again during the pass: this one ends, and the next moves
            // everything under the newest (its rotation woke the job).
            if self.keyring.current().current_kek_id() != target {
                self.wake();
                return Ok(moved);
            }
            let limit = BATCH.saturating_add(u32::try_from(failed.len()).unwrap_or(u32::MAX));
            let rows = self.store.sealed_not_under(target, limit).await?;
            let todo: Vec<_> = rows.into_iter().filter(|r| !failed.contains(&r.place)).collect();
            if todo.is_empty() {
                return Ok(moved);
            }
            for row in todo {
                let identity = Identity::of(&row.place);
                match self.keyring.rewrap(&identity.record(), &row.sealed).await {
                    Ok(Some(new)) => {
                        if self
                            .store
                            .replace_wrap(&row.place, &row.sealed, &new.kek_id, &new.wrapped_dek)
                            .await?
                        {
                            moved += 1;
                            self.update(|s| s.moved = moved);
                        }
                    }
                    // Under the current KEK already: moved by another node since it was listed,
                    // or the current KEK changed (checked before the next batch).
                    Ok(None) => {}
                    Err(e) if e.is_unavailable() => return Err(e.into()),
                    Err(e) => {
                        tracing::error!(place = ?row.place, error = %e, "a sealed record does not open; not rewrapped");
                        failed.insert(row.place);
                        let count = failed.len() as u64;
                        self.update(|s| s.failed = count);
                        if count > MAX_FAILED {
                            return Err(RewrapError::TooManyFailed(count));
                        }
                    }
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Why a rotation or retirement was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{records} sealed records are still wrapped under {kek_id}")]
    InUse { kek_id: String, records: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kek(#[from] KekError),
}

impl Rewrapper {
    /// Sealed records per `kek_id`.
    pub async fn usage(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.store.kek_usage().await
    }

    /// Makes a new KEK current (the current provider's) and wakes the job; returns the
    /// previous and the new `kek_id`. Only while this node holds the lead, so two nodes never
    /// rotate at once (two KEKs of one version).
    pub async fn rotate(&self) -> Result<(String, String), AdminError> {
        let Some(_lead) = self.store.try_lead(LeadOf::Rotation).await? else {
            return Err(KekError::Refused("another node is rotating the KEK right now: try again".into()).into());
        };
        self.keyring.refresh().await?;
        let previous = self.keyring.current().current_kek_id();
        let current = self.keyring.current().rotate().await?;
        self.announce().await;
        self.wake();
        Ok((previous, current))
    }

    /// Retires `kek_id` once no sealed record names it; refused with the count otherwise.
    pub async fn retire(&self, kek_id: &str) -> Result<(), AdminError> {
        self.keyring.refresh().await?;
        let records = self
            .store
            .kek_usage()
            .await?
            .into_iter()
            .find(|(id, _)| id == kek_id)
            .map_or(0, |(_, n)| n);
        if records > 0 {
            return Err(AdminError::InUse {
                kek_id: kek_id.to_owned(),
                records,
            });
        }
        self.keyring.retire(kek_id).await?;
        self.announce().await;
        Ok(())
    }

    /// Tells the other nodes (they also notice within [`IDLE_CHECK`], and a record naming a
    /// KEK they do not know makes them read the KEKs again).
    async fn announce(&self) {
        if let Err(e) = self.store.announce_kek_change().await {
            tracing::warn!(error = %e, "cannot tell the other nodes that the KEKs changed; they notice within a minute");
        }
    }
}
