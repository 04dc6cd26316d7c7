//! The lifecycle of signing keys: creation inside the vault, plaintext import, rotation
//! (manual and automatic), state changes, and deletion with a waiting period. Every write
//! goes through [`KeyService::write_key`]: one node's writes are serialised, other nodes'
//! are caught by the row revision, and caches are invalidated after each write.

use time::Duration;

use super::model::{self, Algorithm, KeyOrigin, KeyState, MAX_KEY_SIZE, MIN_GENERATED_KEY_SIZE, MIN_IMPORTED_KEY_SIZE};
use super::{
    CachedKey, CreateOptions, DEFAULT_TENANT, KeyDetails, KeyError, KeyPatch, KeyResult, KeyService, MAX_AUTO_ROTATE,
    MIN_AUTO_ROTATE, UPDATE_ATTEMPTS, aad_id, identity, random_id,
};
use crate::clock::unix_ms;
use crate::secret::SecretBytes;
use crate::store::{KeyRecord, NewVersion, StoreError};

/// Where a new version's material comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    /// Made inside the vault (a rotation); with `if_latest`, only while that is still the
    /// key's latest version (the scheduler's rotation, which another node may have made).
    Generated { if_latest: Option<u32> },
    /// Given by the caller (an import).
    Imported,
}

/// Imported material of an algorithm with one key size (AES-256) must be that size.
fn check_material_size(algorithm: Algorithm, material: &SecretBytes) -> KeyResult<()> {
    match algorithm.fixed_key_size() {
        Some(fixed) if material.len() != fixed => Err(KeyError::Invalid(format!(
            "an {} key is {fixed} bytes: key_material must be {fixed} bytes",
            algorithm.as_str()
        ))),
        _ => Ok(()),
    }
}

/// A key the scheduler rotated, and its new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoRotated {
    pub name: String,
    pub version: u32,
}

impl KeyService {
    /// Creates a key whose first version is generated inside the vault.
    pub async fn create(&self, name: &str, opts: CreateOptions) -> KeyResult<KeyDetails> {
        let size = opts.key_size.unwrap_or_else(|| opts.algorithm.default_key_size());
        if let Some(fixed) = opts.algorithm.fixed_key_size()
            && size != fixed
        {
            return Err(KeyError::Invalid(format!(
                "an {} key is {fixed} bytes: key_size must be {fixed} or absent",
                opts.algorithm.as_str()
            )));
        }
        if !(MIN_GENERATED_KEY_SIZE..=MAX_KEY_SIZE).contains(&size) {
            return Err(KeyError::Invalid(format!(
                "key_size must be between {MIN_GENERATED_KEY_SIZE} and {MAX_KEY_SIZE} bytes"
            )));
        }
        super::resident::check_options(&opts)?;
        // Made where the key lives: here, or inside the HSM (only its wrap comes back).
        let material = self.generated(opts.boundary, size).await?;
        self.insert_new_key(name, &opts, &material, KeyOrigin::Generated).await
    }

    /// Imports `material` as a new key (with `create`), or as a new version of an existing
    /// key — which refuses create options the caller stated (`explicit_options`). Returns the
    /// key and whether it was created.
    pub async fn import(
        &self,
        name: &str,
        material: SecretBytes,
        algorithm: Option<Algorithm>,
        create: CreateOptions,
        explicit_options: bool,
    ) -> KeyResult<(KeyDetails, bool)> {
        model::validate_name(name).map_err(KeyError::Invalid)?;
        if !(MIN_IMPORTED_KEY_SIZE..=MAX_KEY_SIZE).contains(&material.len()) {
            return Err(KeyError::Invalid(format!(
                "key_material must be between {MIN_IMPORTED_KEY_SIZE} and {MAX_KEY_SIZE} bytes"
            )));
        }
        if let Some(existing) = self.store.get_key(name).await? {
            if explicit_options {
                return Err(KeyError::Invalid(format!(
                    "key '{name}' exists: an import into it takes only key_material and algorithm"
                )));
            }
            if algorithm.is_some_and(|a| a != existing.algorithm) {
                return Err(KeyError::Invalid(format!(
                    "key '{name}' uses {}; an imported version must too",
                    existing.algorithm.as_str()
                )));
            }
            check_material_size(existing.algorithm, &material)?;
            super::resident::check_material(existing.boundary, existing.algorithm, material.len())?;
            // An hsm-boundary key's version goes into the HSM; the boundary never changes.
            let sealable = self.sealable(existing.boundary, &material).await?;
            drop(material);
            let details = self.add_version(name, &sealable, Added::Imported).await?;
            return Ok((details, false));
        }
        check_material_size(create.algorithm, &material)?;
        super::resident::check_options(&create)?;
        super::resident::check_material(create.boundary, create.algorithm, material.len())?;
        let sealable = self.sealable(create.boundary, &material).await?;
        drop(material);
        let details = self
            .insert_new_key(name, &create, &sealable, KeyOrigin::Imported)
            .await?;
        Ok((details, true))
    }

    async fn insert_new_key(
        &self,
        name: &str,
        opts: &CreateOptions,
        material: &SecretBytes,
        origin: KeyOrigin,
    ) -> KeyResult<KeyDetails> {
        model::validate_name(name).map_err(KeyError::Invalid)?;
        model::validate_owner(&opts.owner).map_err(KeyError::Invalid)?;
        model::validate_tags(&opts.tags).map_err(KeyError::Invalid)?;
        let auto_rotate_period_s = opts.auto_rotate_period.map(validate_rotation).transpose()?;
        let now = self.now_ms();
        let record = KeyRecord {
            id: random_id()?,
            name: name.to_owned(),
            tenant: DEFAULT_TENANT.to_owned(),
            algorithm: opts.algorithm,
            boundary: opts.boundary,
            owner: opts.owner.clone(),
            tags: opts.tags.clone(),
            state: KeyState::Enabled,
            latest_version: 1,
            min_verify_version: 1,
            exportable: opts.exportable,
            origin,
            min_encryption_version: 0,
            deletion_allowed: opts.deletion_allowed,
            auto_rotate_period_s,
            deletion_due_ms: None,
            state_before_deletion: None,
            created_at_ms: now,
            updated_at_ms: now,
            revision: 0,
        };
        // Sealing the material for this key's identity: the only place it is consumed.
        let sealed = self
            .keyring
            .seal(&identity(&record, &aad_id(&record), 1), material.expose_secret())
            .await?;
        let first = NewVersion {
            version: 1,
            created_at_ms: now,
            sealed,
        };
        match self.store.create_key(&record, &first).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => return Err(KeyError::AlreadyExists(name.to_owned())),
            Err(e) => return Err(e.into()),
        }
        self.invalidate(name, None);
        self.details(record).await
    }

    /// Adds a version generated inside the vault, of the same size as the latest one.
    pub async fn rotate(&self, name: &str) -> KeyResult<KeyDetails> {
        self.rotate_if(name, None).await
    }

    /// [`KeyService::rotate`], only while `if_latest` (when given) is the latest version.
    async fn rotate_if(&self, name: &str, if_latest: Option<u32>) -> KeyResult<KeyDetails> {
        let current = self.load_fresh(name).await?;
        let latest = self.secret(&current, current.record.latest_version).await?;
        let size = Self::material_len(&current, &latest)?.max(MIN_GENERATED_KEY_SIZE);
        drop(latest);
        let material = self.generated(current.record.boundary, size).await?;
        self.add_version(name, &material, Added::Generated { if_latest }).await
    }

    /// Appends a version holding `material` (in the sealable form of the key's boundary:
    /// [`KeyService::sealable`], [`KeyService::generated`]), sealed for its own identity.
    async fn add_version(&self, name: &str, material: &SecretBytes, added: Added) -> KeyResult<KeyDetails> {
        self.write_key(name, |current| async move {
            if current.record.state == KeyState::PendingDeletion {
                return Err(KeyError::Precondition(format!("key '{name}' is pending deletion")));
            }
            // Checked on the fresh row, inside the write: no caller, root included, can make
            // known material the newest version of a key generated inside the vault.
            if let Added::Generated { if_latest: Some(seen) } = added
                && current.record.latest_version != seen
            {
                return Err(KeyError::Superseded(format!(
                    "key '{name}' has a version newer than {seen} already"
                )));
            }
            if added == Added::Imported && current.record.origin != KeyOrigin::Imported {
                return Err(KeyError::Forbidden(format!(
                    "key '{name}' was generated inside the vault: a version can be imported only into a key created by import"
                )));
            }
            let version = current.record.latest_version.saturating_add(1);
            // Sealing the new version's material: the only place it is consumed.
            let sealed = self
                .keyring
                .seal(
                    &identity(&current.record, &aad_id(&current.record), version),
                    material.expose_secret(),
                )
                .await?;
            let new = NewVersion {
                version,
                created_at_ms: self.now_ms(),
                sealed,
            };
            Ok(self.store.add_version(&current.record, &new).await?)
        })
        .await
    }

    pub async fn patch(&self, name: &str, patch: KeyPatch) -> KeyResult<KeyDetails> {
        let period = match patch.auto_rotate_period {
            Some(Some(p)) => Some(Some(validate_rotation(p)?)),
            Some(None) => Some(None),
            None => None,
        };
        let now = self.now_ms();
        self.update(name, |key| {
            let r = &mut key.record;
            if r.state == KeyState::PendingDeletion {
                return Err(KeyError::Precondition(format!(
                    "key '{name}' is pending deletion; restore it first"
                )));
            }
            if let Some(state) = patch.state {
                if state == KeyState::PendingDeletion {
                    return Err(KeyError::Invalid("use DELETE to schedule a key's deletion".into()));
                }
                r.state = state;
            }
            if let Some(min) = patch.min_verify_version {
                if min == 0 || min > r.latest_version {
                    return Err(KeyError::Invalid(format!(
                        "min_verify_version must be between 1 and the latest version ({})",
                        r.latest_version
                    )));
                }
                r.min_verify_version = min;
            }
            if let Some(min) = patch.min_encryption_version {
                r.min_encryption_version = min;
            }
            // Checked together: either may have moved.
            if r.min_encryption_version != 0
                && !(r.min_verify_version..=r.latest_version).contains(&r.min_encryption_version)
            {
                return Err(KeyError::Invalid(format!(
                    "min_encryption_version must be 0 or between min_verify_version ({}) and the latest version ({})",
                    r.min_verify_version, r.latest_version
                )));
            }
            if let Some(allowed) = patch.deletion_allowed {
                r.deletion_allowed = allowed;
            }
            if let Some(exportable) = patch.exportable {
                if exportable && !r.exportable {
                    return Err(KeyError::Invalid(
                        "exportable can only change from true to false".into(),
                    ));
                }
                r.exportable = exportable;
            }
            if let Some(p) = period {
                r.auto_rotate_period_s = p;
            }
            r.updated_at_ms = now;
            Ok(())
        })
        .await
    }

    /// Schedules destruction after `pending_days` (default from settings).
    pub(crate) async fn schedule_deletion(&self, name: &str, pending_days: Option<u32>) -> KeyResult<KeyDetails> {
        let days = pending_days.unwrap_or(self.settings.default_pending_days);
        if !(1..=self.settings.max_pending_days).contains(&days) {
            return Err(KeyError::Invalid(format!(
                "pending_days must be between 1 and {}",
                self.settings.max_pending_days
            )));
        }
        let now = self.clock.now();
        let due = unix_ms(now + Duration::days(i64::from(days)));
        self.update(name, |key| {
            let r = &mut key.record;
            if r.state == KeyState::PendingDeletion {
                return Err(KeyError::Precondition(format!(
                    "key '{name}' is already pending deletion"
                )));
            }
            if !r.deletion_allowed {
                return Err(KeyError::Precondition(format!(
                    "deletion is not allowed for key '{name}': set deletion_allowed to true first"
                )));
            }
            r.state_before_deletion = Some(r.state);
            r.state = KeyState::PendingDeletion;
            r.deletion_due_ms = Some(due);
            r.updated_at_ms = unix_ms(now);
            Ok(())
        })
        .await
    }

    /// Cancels a scheduled deletion; the key returns to the state it had before.
    pub async fn restore(&self, name: &str) -> KeyResult<KeyDetails> {
        let now = self.now_ms();
        self.update(name, |key| {
            let r = &mut key.record;
            if r.state != KeyState::PendingDeletion {
                return Err(KeyError::Precondition(format!("key '{name}' is not pending deletion")));
            }
            // A row that names no prior state (or, impossibly, pending deletion itself)
            // comes back disabled: restoring must never enable a key by guesswork.
            let back = r
                .state_before_deletion
                .take()
                .filter(|s| *s != KeyState::PendingDeletion)
                .unwrap_or(KeyState::Disabled);
            r.state = back;
            r.deletion_due_ms = None;
            r.updated_at_ms = now;
            Ok(())
        })
        .await
    }

    /// Destroys every key whose waiting period has ended. Returns how many. A key restored
    /// (or otherwise changed) after it was listed is left alone: the store destroys a row
    /// only at the revision that was read.
    pub async fn purge_due(&self) -> KeyResult<usize> {
        let _serialised = self.writes.lock().await;
        let due = self.store.keys_due_for_deletion(self.now_ms()).await?;
        let mut destroyed = 0;
        for record in due {
            if self.store.destroy_key(&record).await? {
                destroyed += 1;
                self.usage.forget(&record.id);
                tracing::info!(key = %record.name, "key destroyed after its waiting period");
            }
            self.invalidate(&record.name, Some(&record.id));
        }
        if destroyed > 0 {
            self.checkpoint_pending
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.checkpoint_if_pending().await;
        Ok(destroyed)
    }

    /// Retries the journal checkpoint that follows a destruction until it succeeds, so a
    /// destroyed record does not linger in the WAL beyond one maintenance interval.
    pub(crate) async fn checkpoint_if_pending(&self) {
        use std::sync::atomic::Ordering;
        if self.checkpoint_pending.swap(false, Ordering::Relaxed)
            && let Err(e) = self.system.checkpoint().await
        {
            self.checkpoint_pending.store(true, Ordering::Relaxed);
            tracing::warn!(error = %e, "checkpoint after destroying keys failed; retried at the next maintenance tick");
        }
    }

    /// The keys past their `auto_rotate_period` now, each with the latest version it had
    /// when listed (the scheduler's [`KeyService::rotate_scheduled`] rotates only that).
    pub async fn due_rotations(&self) -> KeyResult<Vec<(String, u32)>> {
        let now = self.now_ms();
        let mut due = Vec::new();
        for (record, latest_created_ms) in self.store.auto_rotating_keys().await? {
            let Some(period_s) = record.auto_rotate_period_s else {
                continue;
            };
            if latest_created_ms.saturating_add(period_s.saturating_mul(1000)) <= now {
                due.push((record.name, record.latest_version));
            }
        }
        Ok(due)
    }

    /// The scheduler's rotation of `name`, only while `seen` is still its latest version:
    /// `None` when it was rotated since it was listed (by another node's scheduler, or by
    /// hand), so the nodes sharing a store add one version between them.
    pub async fn rotate_scheduled(&self, name: &str, seen: u32) -> KeyResult<Option<AutoRotated>> {
        match self.rotate_if(name, Some(seen)).await {
            Ok(details) => {
                tracing::info!(key = %name, version = details.record.latest_version, "key rotated automatically");
                Ok(Some(AutoRotated {
                    name: name.to_owned(),
                    version: details.record.latest_version,
                }))
            }
            Err(KeyError::Superseded(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read-modify-write of a key's settings.
    async fn update(&self, name: &str, apply: impl Fn(&mut CachedKey) -> KeyResult<()>) -> KeyResult<KeyDetails> {
        let apply = &apply;
        self.write_key(name, |mut key| async move {
            apply(&mut key)?;
            Ok(self.store.update_key(&key.record).await?)
        })
        .await
    }

    /// One write of a key row: `write` gets a fresh copy of the row and writes it back with
    /// the revision it read. Writes of this node are serialised; a conflict with another
    /// node retries on a fresh copy. Caches are invalidated after the write.
    async fn write_key<F, Fut>(&self, name: &str, write: F) -> KeyResult<KeyDetails>
    where
        F: Fn(CachedKey) -> Fut,
        Fut: std::future::Future<Output = KeyResult<KeyRecord>>,
    {
        let _serialised = self.writes.lock().await;
        for _ in 0..UPDATE_ATTEMPTS {
            match write(self.load_fresh(name).await?).await {
                Ok(record) => {
                    self.invalidate(name, Some(&record.id));
                    return self.details(record).await;
                }
                Err(KeyError::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(KeyError::Store(StoreError::Conflict))
    }
}

fn validate_rotation(period: Duration) -> KeyResult<i64> {
    if period < MIN_AUTO_ROTATE || period > MAX_AUTO_ROTATE {
        return Err(KeyError::Invalid(
            "auto_rotate_period must be between 1h and 36500d".into(),
        ));
    }
    Ok(period.whole_seconds())
}
