//! Backup and restore of one key as a single blob: every version's material and the key's
//! metadata, sealed like any record (a fresh DEK wrapped by the KEK, AES-256-GCM whose tag is
//! the blob's MAC) for the identity `key-backup` / `<key id>/<name>` / latest version. So a
//! blob restores on any node that holds the KEK it names, and nowhere else; an altered blob,
//! header included, does not open.
//!
//! The blob is JSON (`sigvault-key-backup-1`): the identity in clear (to open it) and the
//! sealed record. What it holds in clear is only what `GET /v1/keys/{name}` shows.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::model::{self, Algorithm, Boundary, KeyOrigin, KeyState, MAX_KEY_SIZE, MIN_IMPORTED_KEY_SIZE};
use super::{DEFAULT_TENANT, KeyDetails, KeyError, KeyResult, KeyService, aad_id, identity};
use crate::envelope::{RecordIdentity, SealedRecord};
use crate::kek::KekError;
use crate::secret::SecretBytes;
use crate::store::{KeyRecord, NewVersion, StoreError};

/// The blob's format name.
const FORMAT: &str = "sigvault-key-backup-1";
/// The record kind a backup is sealed as.
const KIND: &str = "key-backup";
/// Most versions a backup holds (a key rotated daily for 27 years).
const MAX_VERSIONS: u32 = 10_000;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The blob: the identity it is sealed for, and the sealed contents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Blob {
    format: String,
    key_id: String,
    name: String,
    latest_version: u32,
    kek_id: String,
    envelope_format: u16,
    wrapped_dek: String,
    nonce: String,
    ciphertext: String,
}

/// What the sealed part holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    id: String,
    name: String,
    algorithm: String,
    boundary: String,
    owner: String,
    tags: std::collections::BTreeMap<String, String>,
    state: String,
    min_verify_version: u32,
    exportable: bool,
    origin: String,
    /// Absent from blobs made before keys had it: 0 (any version).
    #[serde(default)]
    min_encryption_version: u32,
    /// Absent from blobs made before keys had it: allowed, as every key was then.
    #[serde(default = "allowed")]
    deletion_allowed: bool,
    auto_rotate_period_s: Option<i64>,
    created_at_ms: i64,
    versions: Vec<Version>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Version {
    version: u32,
    created_at_ms: i64,
    material: Zeroizing<String>,
}

fn allowed() -> bool {
    true
}

fn backup_identity<'a>(aad_id: &'a str, latest_version: u32) -> RecordIdentity<'a> {
    RecordIdentity {
        kind: KIND,
        tenant: DEFAULT_TENANT,
        id: aad_id,
        version: latest_version,
    }
}

fn corrupt(what: &str) -> KeyError {
    KeyError::Invalid(format!("the backup is not one this vault made: {what}"))
}

impl KeyService {
    /// Seals every version of key `name` and its metadata into one blob (JSON bytes).
    pub async fn backup(&self, name: &str) -> KeyResult<(Vec<u8>, u32)> {
        let key = self.load_fresh(name).await?;
        let record = &key.record;
        if record.boundary == Boundary::Hsm {
            return Err(KeyError::Invalid(format!(
                "key '{name}' lives in the HSM (boundary hsm): back it up with the HSM's own means"
            )));
        }
        let mut versions = Vec::new();
        for info in self.store.list_versions(&record.id).await? {
            let material = self.secret(&key, info.version).await?;
            versions.push(Version {
                version: info.version,
                created_at_ms: info.created_at_ms,
                material: Zeroizing::new(b64().encode(material.expose_secret())),
            });
        }
        let state = match record.state {
            KeyState::PendingDeletion => record.state_before_deletion.unwrap_or(KeyState::Enabled),
            other => other,
        };
        let contents = Contents {
            id: record.id.clone(),
            name: record.name.clone(),
            algorithm: record.algorithm.as_str().to_owned(),
            boundary: record.boundary.as_str().to_owned(),
            owner: record.owner.clone(),
            tags: record.tags.clone(),
            state: state.as_str().to_owned(),
            min_verify_version: record.min_verify_version,
            exportable: record.exportable,
            origin: record.origin.as_str().to_owned(),
            min_encryption_version: record.min_encryption_version,
            deletion_allowed: record.deletion_allowed,
            auto_rotate_period_s: record.auto_rotate_period_s,
            created_at_ms: record.created_at_ms,
            versions,
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&contents).map_err(|e| KeyError::Corrupt(format!("cannot encode a backup: {e}")))?,
        );
        let aad = aad_id(record);
        let sealed = self
            .keyring
            .seal(&backup_identity(&aad, record.latest_version), &plain)
            .await?;
        let blob = Blob {
            format: FORMAT.to_owned(),
            key_id: record.id.clone(),
            name: record.name.clone(),
            latest_version: record.latest_version,
            kek_id: sealed.kek_id,
            envelope_format: sealed.format,
            wrapped_dek: b64().encode(&sealed.wrapped_dek),
            nonce: b64().encode(&sealed.nonce),
            ciphertext: b64().encode(&sealed.ciphertext),
        };
        let bytes = serde_json::to_vec(&blob).map_err(|e| KeyError::Corrupt(format!("cannot encode a backup: {e}")))?;
        Ok((bytes, record.latest_version))
    }

    /// Restores the key a [`KeyService::backup`] blob holds, as `name` (which must be the
    /// name it was backed up under), with its id, metadata and every version. Refused when a
    /// key of that name or id exists, and when the blob does not open here (another KEK, or
    /// altered).
    pub async fn restore_backup(&self, name: &str, blob: &[u8]) -> KeyResult<KeyDetails> {
        model::validate_name(name).map_err(KeyError::Invalid)?;
        let blob: Blob = serde_json::from_slice(blob).map_err(|_| corrupt("not a backup blob"))?;
        if blob.format != FORMAT {
            return Err(corrupt("an unknown format"));
        }
        if blob.name != name {
            return Err(KeyError::Invalid(format!(
                "the backup is of key '{}': restore it under that name",
                blob.name
            )));
        }
        if blob.latest_version == 0 || blob.latest_version > MAX_VERSIONS {
            return Err(corrupt("a version count out of range"));
        }
        if self.store.get_key(name).await?.is_some() {
            return Err(KeyError::AlreadyExists(name.to_owned()));
        }
        let decode = |field: &str, text: &str| {
            b64()
                .decode(text)
                .map_err(|_| corrupt(&format!("{field} is not base64")))
        };
        let sealed = SealedRecord {
            format: blob.envelope_format,
            kek_id: blob.kek_id.clone(),
            wrapped_dek: decode("wrapped_dek", &blob.wrapped_dek)?,
            nonce: decode("nonce", &blob.nonce)?,
            ciphertext: decode("ciphertext", &blob.ciphertext)?,
        };
        let aad = format!("{}/{}", blob.key_id, blob.name);
        let plain = match self
            .keyring
            .open(&backup_identity(&aad, blob.latest_version), &sealed)
            .await
        {
            Ok(plain) => plain,
            Err(KekError::UnknownKek(kek_id)) => {
                return Err(KeyError::Invalid(format!(
                    "the backup is sealed under KEK '{kek_id}', which this vault does not hold: restore it on a vault that shares that KEK"
                )));
            }
            Err(e) if e.is_unavailable() => return Err(e.into()),
            Err(_) => {
                return Err(corrupt(
                    "it does not open under its KEK (altered, or sealed by another vault)",
                ));
            }
        };
        let contents: Contents =
            serde_json::from_slice(plain.expose_secret()).map_err(|_| corrupt("its contents do not parse"))?;
        let record = self.restored_record(&blob, &contents)?;
        let mut versions = Vec::with_capacity(contents.versions.len());
        for (expected, v) in (1..).zip(&contents.versions) {
            if v.version != expected {
                return Err(corrupt("its versions are not 1 to the latest"));
            }
            let material = Zeroizing::new(b64().decode(v.material.as_bytes()).map_err(|_| corrupt("material"))?);
            let size_ok = match record.algorithm.fixed_key_size() {
                Some(fixed) => material.len() == fixed,
                None => (MIN_IMPORTED_KEY_SIZE..=MAX_KEY_SIZE).contains(&material.len()),
            };
            if !size_ok {
                return Err(corrupt("a version's material has the wrong size"));
            }
            let material = SecretBytes::from_slice(&material);
            let sealed = self
                .keyring
                .seal(
                    &identity(&record, &aad_id(&record), v.version),
                    material.expose_secret(),
                )
                .await?;
            versions.push(NewVersion {
                version: v.version,
                created_at_ms: v.created_at_ms,
                sealed,
            });
        }
        if versions.len() != usize::try_from(record.latest_version).unwrap_or(usize::MAX) {
            return Err(corrupt("it lacks versions"));
        }
        match self.store.create_key_with_versions(&record, &versions).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => return Err(KeyError::AlreadyExists(name.to_owned())),
            Err(e) => return Err(e.into()),
        }
        self.invalidate(name, Some(&record.id));
        self.details(record).await
    }

    /// The key record a backup's contents describe, checked against its clear header.
    fn restored_record(&self, blob: &Blob, c: &Contents) -> KeyResult<KeyRecord> {
        if c.id != blob.key_id || c.name != blob.name {
            return Err(corrupt("its header and contents disagree"));
        }
        let algorithm = Algorithm::parse(&c.algorithm).ok_or_else(|| corrupt("an unknown algorithm"))?;
        let boundary = Boundary::parse(&c.boundary).ok_or_else(|| corrupt("an unknown boundary"))?;
        if boundary == Boundary::Hsm {
            return Err(corrupt("an hsm-boundary key"));
        }
        let state = KeyState::parse(&c.state)
            .filter(|s| *s != KeyState::PendingDeletion)
            .ok_or_else(|| corrupt("an unknown state"))?;
        let origin = KeyOrigin::parse(&c.origin).ok_or_else(|| corrupt("an unknown origin"))?;
        if c.min_verify_version == 0 || c.min_verify_version > blob.latest_version {
            return Err(corrupt("min_verify_version out of range"));
        }
        if c.min_encryption_version > blob.latest_version {
            return Err(corrupt("min_encryption_version out of range"));
        }
        let now = self.now_ms();
        Ok(KeyRecord {
            id: c.id.clone(),
            name: c.name.clone(),
            tenant: DEFAULT_TENANT.to_owned(),
            algorithm,
            boundary,
            owner: c.owner.clone(),
            tags: c.tags.clone(),
            state,
            latest_version: blob.latest_version,
            min_verify_version: c.min_verify_version,
            exportable: c.exportable,
            origin,
            min_encryption_version: c.min_encryption_version,
            deletion_allowed: c.deletion_allowed,
            auto_rotate_period_s: c.auto_rotate_period_s,
            deletion_due_ms: None,
            state_before_deletion: None,
            created_at_ms: c.created_at_ms,
            updated_at_ms: now,
            revision: 0,
        })
    }
}
