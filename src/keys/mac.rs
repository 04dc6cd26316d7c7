//! The hot path: MACs with a key's versions. Signing uses one version (the latest unless
//! named); verifying tries the window from `min_verify_version` to the latest, newest first,
//! each comparison constant-time. Only enabled keys are used; material comes from the
//! unwrapped-secret cache and is never returned. An hsm-boundary key's HMAC runs in the HSM
//! ([`super::resident`]).

use std::sync::Arc;

use super::model::{Boundary, KeyKind, KeyState};
use super::{CachedKey, KeyError, KeyResult, KeyService, Usage, Verdict};

impl KeyService {
    /// The enabled key `name`, if its algorithm does `kind` of operation: a key has one
    /// algorithm, used for one kind of operation only.
    pub(super) async fn usable_for(&self, name: &str, kind: KeyKind) -> KeyResult<Arc<CachedKey>> {
        let key = self.cached(name).await?;
        let is = key.record.algorithm.kind();
        if is != kind {
            return Err(KeyError::Invalid(format!(
                "key '{name}' is {} ({}), not {}",
                is.describe(),
                key.record.algorithm.as_str(),
                kind.describe()
            )));
        }
        match key.record.state {
            KeyState::Enabled => Ok(key),
            KeyState::Disabled => Err(KeyError::Precondition(format!("key '{name}' is disabled"))),
            KeyState::PendingDeletion => Err(KeyError::Precondition(format!("key '{name}' is pending deletion"))),
        }
    }

    pub(super) fn check_message(&self, message: &[u8]) -> KeyResult<()> {
        if message.len() > self.max_message_bytes {
            return Err(KeyError::TooLarge(format!(
                "messages are limited to {} bytes",
                self.max_message_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn check_version(key: &CachedKey, version: u32) -> KeyResult<()> {
        if version == 0 || version > key.record.latest_version {
            return Err(KeyError::Invalid(format!(
                "key_version must be between 1 and {}",
                key.record.latest_version
            )));
        }
        if version < key.record.min_verify_version {
            return Err(KeyError::Precondition(format!(
                "version {version} is below the key's min_verify_version ({})",
                key.record.min_verify_version
            )));
        }
        Ok(())
    }

    /// A version named to sign or encrypt with must not be below the key's
    /// `min_encryption_version` (0: no such floor).
    pub(super) fn check_use_version(key: &CachedKey, version: u32) -> KeyResult<()> {
        let floor = key.record.min_encryption_version;
        if floor != 0 && version < floor {
            return Err(KeyError::Precondition(format!(
                "version {version} is below the key's min_encryption_version ({floor})"
            )));
        }
        Ok(())
    }

    /// MAC of `message` with `version` (default: latest). Returns the tag, the version, and
    /// the usage to count once the caller has recorded the operation ([`KeyService::count`]).
    pub async fn sign(&self, name: &str, message: &[u8], version: Option<u32>) -> KeyResult<(Vec<u8>, u32, Usage)> {
        self.check_message(message)?;
        let key = self.usable_for(name, KeyKind::Mac).await?;
        let version = version.unwrap_or(key.record.latest_version);
        Self::check_version(&key, version)?;
        Self::check_use_version(&key, version)?;
        let tag = self.mac(&key, version, message).await?;
        let usage = Usage {
            key_id: Arc::clone(&key.id),
            version,
            signs: 1,
            verifies: 0,
        };
        Ok((tag, version, usage))
    }

    /// Checks `tag` against one version, or every version from `min_verify_version` to the
    /// latest. Says which version matched, or why none did; a match carries the usage to
    /// count once the caller has recorded the operation.
    pub async fn verify(
        &self,
        name: &str,
        message: &[u8],
        tag: &[u8],
        version: Option<u32>,
    ) -> KeyResult<(Verdict, Option<Usage>)> {
        self.check_message(message)?;
        let key = self.usable_for(name, KeyKind::Mac).await?;
        let window = match version {
            Some(v) => {
                Self::check_version(&key, v)?;
                v..=v
            }
            None => key.record.min_verify_version..=key.record.latest_version,
        };
        if tag.len() != key.record.algorithm.tag_len() {
            return Ok((Verdict::MalformedSignature, None));
        }
        for v in window.rev() {
            let matched = match key.record.boundary {
                Boundary::Process => {
                    let secret = self.secret(&key, v).await?;
                    // The HMAC consumes the key material; comparison is constant-time.
                    key.record.algorithm.verify(secret.expose_secret(), message, tag)
                }
                // The HSM computes the HMAC; the comparison here is constant-time.
                Boundary::Hsm => bool::from(subtle::ConstantTimeEq::ct_eq(
                    self.mac(&key, v, message).await?.as_slice(),
                    tag,
                )),
            };
            if matched {
                let usage = Usage {
                    key_id: Arc::clone(&key.id),
                    version: v,
                    signs: 0,
                    verifies: 1,
                };
                return Ok((Verdict::Valid(v), Some(usage)));
            }
        }
        Ok((Verdict::Mismatch, None))
    }
}
