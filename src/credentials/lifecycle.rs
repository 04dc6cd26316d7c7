//! The lifecycle of a credential: issuing (id and secret generated here), importing an
//! existing pair, reading, activating/deactivating, deleting, and its activity. The secret
//! leaves this module only once, in the answer of [`CredentialService::create`].

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{
    ACCESS_KEY_PREFIX, Activity, CredentialError, CredentialResult, CredentialService, CredentialState,
    MAX_DESCRIPTION_LEN, MAX_ID_LEN, MAX_SECRET_LEN, MIN_IMPORTED_ID_LEN, MIN_IMPORTED_SECRET_LEN, NewCredential,
    Patch, SECRET_LEN, aad_id, identity,
};
use crate::secret::SecretBytes;
use crate::store::{CredentialPatch, CredentialRecord, StoreError};

/// Checks an access key id named by a caller: 1–128 characters of `A-Z a-z 0-9`.
pub fn valid_access_key_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The shape an imported access key id must have (checked before anything else: it says
/// nothing about what exists).
pub fn check_imported_id(id: &str) -> CredentialResult<()> {
    if (MIN_IMPORTED_ID_LEN..=MAX_ID_LEN).contains(&id.len()) && valid_access_key_id(id) {
        Ok(())
    } else {
        Err(CredentialError::Invalid(format!(
            "access_key_id must be {MIN_IMPORTED_ID_LEN} to {MAX_ID_LEN} characters of A-Z a-z 0-9"
        )))
    }
}

fn check_description(description: Option<&str>) -> CredentialResult<()> {
    if let Some(d) = description
        && (d.len() > MAX_DESCRIPTION_LEN || d.chars().any(char::is_control))
    {
        return Err(CredentialError::Invalid(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// `SVAK` + 16 characters of the RFC 4648 base32 alphabet (80 random bits).
fn generate_access_key_id() -> CredentialResult<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut raw = [0u8; 10];
    getrandom::fill(&mut raw).map_err(|_| CredentialError::Random)?;
    let mut bits: u128 = 0;
    for b in raw {
        bits = (bits << 8) | u128::from(b);
    }
    let mut out = String::with_capacity(ACCESS_KEY_PREFIX.len() + 16);
    out.push_str(ACCESS_KEY_PREFIX);
    for i in (0..16).rev() {
        let index = usize::try_from((bits >> (i * 5)) & 31).unwrap_or(0);
        out.push(char::from(*ALPHABET.get(index).unwrap_or(&b'A')));
    }
    Ok(out)
}

/// 40 characters of the base64 alphabet (240 random bits), like an AWS secret access key.
fn generate_secret() -> CredentialResult<SecretBytes> {
    use base64::Engine as _;
    let raw = SecretBytes::random(30).map_err(|_| CredentialError::Random)?;
    let mut text = Zeroizing::new([0u8; SECRET_LEN]);
    // The random bytes become the secret's text; both buffers are zeroized.
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(raw.expose_secret(), text.as_mut_slice())
        .map_err(|_| CredentialError::Random)?;
    if written != SECRET_LEN {
        return Err(CredentialError::Random);
    }
    Ok(SecretBytes::from_slice(text.as_slice()))
}

impl CredentialService {
    /// Makes a credential with a secret generated here; the secret is returned once.
    pub async fn create(&self, new: NewCredential) -> CredentialResult<(CredentialRecord, SecretString)> {
        let secret = generate_secret()?;
        // Up to a few tries in the (2^-80) case of an id collision.
        for _ in 0..3 {
            let id = generate_access_key_id()?;
            match self.insert(&id, &secret, &new).await {
                Err(CredentialError::Store(StoreError::AlreadyExists)) => continue,
                Err(e) => return Err(e),
                Ok(record) => {
                    // The secret goes to the caller once; it was generated as base64 text.
                    let text =
                        String::from_utf8(secret.expose_secret().to_vec()).map_err(|_| CredentialError::Random)?;
                    return Ok((record, SecretString::from(text)));
                }
            }
        }
        Err(CredentialError::Random)
    }

    /// Stores an existing key pair (migration from another system).
    pub async fn import(
        &self,
        access_key_id: &str,
        secret: &SecretBytes,
        new: NewCredential,
    ) -> CredentialResult<CredentialRecord> {
        check_imported_id(access_key_id)?;
        // Checked for shape only: printable ASCII without spaces, as AWS secrets are.
        let s = secret.expose_secret();
        if !(MIN_IMPORTED_SECRET_LEN..=MAX_SECRET_LEN).contains(&s.len()) || !s.iter().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::Invalid(format!(
                "secret_access_key must be {MIN_IMPORTED_SECRET_LEN} to {MAX_SECRET_LEN} printable ASCII characters"
            )));
        }
        // The HSM computes an HMAC only with a key at least as long as its digest: "AWS4" and
        // 28 characters.
        if new.boundary == crate::model::Boundary::Hsm && s.len() < 28 {
            return Err(CredentialError::Invalid(
                "an hsm-boundary credential's secret_access_key must be at least 28 characters".into(),
            ));
        }
        match self.insert(access_key_id, secret, &new).await {
            Err(CredentialError::Store(StoreError::AlreadyExists)) => Err(CredentialError::Precondition(format!(
                "access key id '{access_key_id}' already exists"
            ))),
            other => other,
        }
    }

    async fn insert(&self, id: &str, secret: &SecretBytes, new: &NewCredential) -> CredentialResult<CredentialRecord> {
        crate::auth::validate_principal(&new.principal).map_err(CredentialError::Invalid)?;
        crate::auth::validate_groups(&new.groups).map_err(CredentialError::Invalid)?;
        check_description(new.description.as_deref())?;
        let aad = aad_id(id, &new.principal);
        // The secret is sealed under a fresh DEK wrapped by the KEK (an hsm-boundary one as
        // the HSM's wrap of "AWS4" ‖ secret).
        let sealable = self.sealable(new.boundary, secret).await?;
        let sealed = self.keyring.seal(&identity(&aad), sealable.expose_secret()).await?;
        let now = self.now_ms();
        let record = CredentialRecord {
            access_key_id: id.to_owned(),
            principal: new.principal.clone(),
            groups: new.groups.clone(),
            description: new.description.clone(),
            state: CredentialState::Active,
            on_new_fingerprint: new.on_new_fingerprint,
            boundary: new.boundary,
            sealed,
            created_at_ms: now,
            updated_at_ms: now,
            last_used_at_ms: None,
            last_used_region: None,
            last_used_service: None,
            revision: 0,
        };
        self.store
            .insert_credential(&record, self.settings.max_credentials_per_principal)
            .await?;
        self.meta.invalidate(|k| k == id);
        Ok(record)
    }

    pub(super) fn check_id(id: &str) -> CredentialResult<()> {
        if valid_access_key_id(id) {
            Ok(())
        } else {
            Err(CredentialError::NotFound(id.chars().take(MAX_ID_LEN).collect()))
        }
    }

    /// A credential's row as stored, with this node's pending last use merged in.
    pub async fn get(&self, id: &str) -> CredentialResult<CredentialRecord> {
        Self::check_id(id)?;
        // Read and merged under the flush's lock: between a flush's take and its store
        // write the last use is in neither place.
        let _no_flush = self.activity_flush.lock().await;
        let record = self
            .store
            .get_credential(id)
            .await?
            .ok_or_else(|| CredentialError::NotFound(id.to_owned()))?;
        Ok(self.with_pending(record))
    }

    /// `record` with this node's last use that is not flushed yet.
    fn with_pending(&self, mut record: CredentialRecord) -> CredentialRecord {
        if let Some(p) = self.activity.pending_for(&record.access_key_id) {
            let (at_ms, region, service) = super::activity::last_use(&p);
            if record.last_used_at_ms.is_none_or(|t| t <= at_ms) {
                record.last_used_at_ms = Some(at_ms);
                record.last_used_region = Some(region.to_owned());
                record.last_used_service = Some(service.to_owned());
            }
        }
        record
    }

    /// The principal of credential `id` for a policy decision; `None` when there is none.
    pub async fn owner(&self, id: &str) -> CredentialResult<Option<String>> {
        if !valid_access_key_id(id) {
            return Ok(None);
        }
        match self.cached(id).await {
            Ok(c) => Ok(Some(c.principal.clone())),
            Err(CredentialError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list(
        &self,
        principal: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> CredentialResult<Vec<CredentialRecord>> {
        let _no_flush = self.activity_flush.lock().await;
        let page = self.store.list_credentials(principal, after, limit).await?;
        Ok(page.into_iter().map(|r| self.with_pending(r)).collect())
    }

    pub async fn update(&self, id: &str, patch: Patch) -> CredentialResult<CredentialRecord> {
        Self::check_id(id)?;
        let stored = CredentialPatch {
            state: patch.state,
            on_new_fingerprint: patch.on_new_fingerprint,
        };
        let record = self
            .store
            .update_credential(id, &stored, self.now_ms())
            .await?
            .ok_or_else(|| CredentialError::NotFound(id.to_owned()));
        self.invalidate(id);
        if record.as_ref().is_ok_and(|r| r.state == CredentialState::Active) {
            self.activity.unblock(id);
        }
        record
    }

    pub async fn delete(&self, id: &str) -> CredentialResult<()> {
        Self::check_id(id)?;
        let existed = self.store.delete_credential(id).await?;
        self.invalidate(id);
        self.activity.forget(id);
        if !existed {
            return Err(CredentialError::NotFound(id.to_owned()));
        }
        // The sealed secret's pages must not linger in the journal.
        if let Err(e) = self.system.checkpoint().await {
            tracing::warn!(error = %e, "checkpoint after deleting a credential failed; retried at shutdown");
        }
        Ok(())
    }

    pub async fn activity(&self, id: &str) -> CredentialResult<Activity> {
        let record = self.get(id).await?;
        // The store and memory read as one: no flush moves activity between them meanwhile.
        let _no_flush = self.activity_flush.lock().await;
        let stored = self.store.list_fingerprints(id).await?;
        let fingerprints = self.activity.with_pending(id, stored);
        Ok(Activity {
            last_used_at_ms: record.last_used_at_ms,
            last_used_region: record.last_used_region,
            last_used_service: record.last_used_service,
            fingerprints,
        })
    }
}
