//! SigV4 credentials: AWS-style access key pairs whose secret never leaves the vault.
//!
//! A credential is created here (`SVAK` + 16 base32 characters; a 40-character secret shown
//! once) or imported, and stored only as a sealed record under the KEK. The AAD binds the
//! access key id and the principal, so a database writer who moves a secret to another row,
//! or rewrites a row's principal, gets a credential that no longer opens (requests fail
//! closed) instead of one attributed to someone else.
//!
//! Verification ([`CredentialService::verify`]) parses and checks the request with the pure
//! [`crate::sigv4`] module and signs with the derived key of the request's scope. Unwrapped
//! secrets are cached per credential (`cache.ttl`) and derived keys per (credential, date,
//! region, service) once they verified a request, both in locked, zeroized memory: a steady
//! stream costs one KEK unwrap per `cache.ttl` and one HMAC chain per scope and day, and
//! requests with made-up scopes cost an HMAC chain but neither an HSM call nor cache room.
//! Each verified use is noticed by [`activity`]: last use, and the caller's fingerprint, a new
//! one of which is reported to the caller (for the audit trail) and may deactivate the
//! credential (`on_new_fingerprint`).

pub mod activity;
mod lifecycle;
mod verify;

pub use crate::fingerprint::NewFingerprint;
pub use crate::model::{CredentialState, OnNewFingerprint};
pub use crate::store::{CredentialRecord, FingerprintRecord};
pub use lifecycle::{check_imported_id, valid_access_key_id};
pub use verify::{Rejection, Verification, Verified};

use std::sync::Arc;

use time::Duration;

use crate::clock::SharedClock;
use crate::envelope::RecordIdentity;
use crate::kek::{KekError, Keyring, ResidentMac};
use crate::keys::DEFAULT_TENANT;
use crate::keys::cache::CacheSettings;
use crate::keys::cache::{Flights, TtlCache};
use crate::keys::resident;
use crate::model::Boundary;
use crate::secret::SecretBytes;
use crate::sigv4::{self, Scope};
use crate::store::{CredentialStore, StoreError, SystemStore};
use activity::ActivityTracker;
use sha2::Digest as _;

/// `[sigv4]`: SigV4 credentials and verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sigv4Settings {
    /// Credentials a principal may hold at once (2: one in use, one being rotated in).
    pub(crate) max_credentials_per_principal: u32,
    /// How far a header-signed request's date may be from now (AWS: 15 minutes).
    pub time_window: time::Duration,
    /// The default of credentials that do not set their own.
    pub on_new_fingerprint: OnNewFingerprint,
    /// Caller fingerprints kept per credential; beyond it the least recently seen is dropped.
    /// (Last use and fingerprint counts are written every `keys.usage_flush_interval`.)
    pub(crate) max_fingerprints: u32,
}

impl Default for Sigv4Settings {
    fn default() -> Self {
        Self {
            max_credentials_per_principal: 2,
            time_window: time::Duration::minutes(15),
            on_new_fingerprint: OnNewFingerprint::Record,
            max_fingerprints: 64,
        }
    }
}

/// Record kind bound into the AAD of a credential's secret.
pub(crate) const KIND_SIGV4_SECRET: &str = "sigv4-secret";
/// The prefix of access key ids made here.
pub(crate) const ACCESS_KEY_PREFIX: &str = "SVAK";
/// Characters of a generated secret access key (as AWS's).
pub(crate) const SECRET_LEN: usize = 40;
const MAX_ID_LEN: usize = 128;
const MIN_IMPORTED_ID_LEN: usize = 4;
const MAX_SECRET_LEN: usize = 256;
const MIN_IMPORTED_SECRET_LEN: usize = 16;
const MAX_DESCRIPTION_LEN: usize = 256;
const MAX_SCOPE_PART_LEN: usize = 64;
/// How long a derived signing key stays cached: it is only good for its scope's date.
const SIGNING_KEY_TTL: Duration = Duration::hours(25);

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no credential has access key id '{0}'")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Precondition(String),
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored credential data is malformed: {0}")]
    Corrupt(String),
    #[error("the operating system's random generator failed")]
    Random,
}

pub(crate) type CredentialResult<T> = Result<T, CredentialError>;

impl CredentialService {
    /// What to seal for a new credential: its secret in the process boundary; in the hsm
    /// boundary, the HSM's wrap of `"AWS4" ‖ secret`, the key of the chain's first link.
    async fn sealable(&self, boundary: Boundary, secret: &SecretBytes) -> CredentialResult<SecretBytes> {
        match boundary {
            Boundary::Process => Ok(SecretBytes::from_slice(secret.expose_secret())),
            Boundary::Hsm => {
                let mut seed = zeroize::Zeroizing::new(b"AWS4".to_vec());
                seed.extend_from_slice(secret.expose_secret());
                let wrapped = self.keyring.current().resident_import(&seed).await?;
                let record = resident::encode(seed.len(), &wrapped)
                    .map_err(|_| CredentialError::Invalid("secret_access_key is too long".into()))?;
                Ok(SecretBytes::from_slice(&record))
            }
        }
    }
}

/// `POST /v1/credentials` (and the non-secret part of an import).
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub principal: String,
    /// The signer's groups for the policies (1 to 16; the API's default `["service"]`).
    pub groups: Vec<String>,
    pub description: Option<String>,
    pub on_new_fingerprint: Option<OnNewFingerprint>,
    /// `hsm`: the secret (as the first key of the SigV4 chain, `"AWS4" ‖ secret`) lives only
    /// inside the HSM.
    pub boundary: crate::model::Boundary,
}

/// Changes of `PATCH /v1/credentials/{id}`.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub state: Option<CredentialState>,
    /// `Some(None)` returns to the server's default.
    pub on_new_fingerprint: Option<Option<OnNewFingerprint>>,
}

/// A credential's use: what the store holds merged with this node's pending activity.
#[derive(Debug, Clone)]
pub struct Activity {
    pub(crate) last_used_at_ms: Option<i64>,
    pub last_used_region: Option<String>,
    pub last_used_service: Option<String>,
    pub fingerprints: Vec<FingerprintRecord>,
}

/// A derived key waiting to be cached: its cache key and the fill token taken before it
/// was derived (an invalidation in between keeps it out).
struct Fill {
    cache_key: (Arc<str>, String),
    token: crate::keys::cache::FillToken,
}

pub struct CredentialService {
    store: Arc<dyn CredentialStore>,
    /// For the journal checkpoint after a credential (and its sealed secret) is deleted.
    system: Arc<dyn SystemStore>,
    keyring: Keyring,
    clock: SharedClock,
    settings: Sigv4Settings,
    meta: TtlCache<String, CredentialRecord>,
    /// Unwrapped secrets by access key id (bounded, TTL `cache.ttl`, zeroized on eviction).
    secrets: TtlCache<String, SecretBytes>,
    /// One KEK unwrap at a time per credential (see [`Flights`]).
    unwraps: Flights<String>,
    /// Derived keys by (access key id, scope), cached once they verified a request.
    signing_keys: TtlCache<(Arc<str>, String), SecretBytes>,
    activity: ActivityTracker,
    /// Held while pending activity moves from memory to the store, and while a reader
    /// merges the two: a reader between the flush's store write and its memory clear (or
    /// the other way) would miss or double-count that activity.
    activity_flush: tokio::sync::Mutex<()>,
}

fn identity<'a>(aad_id: &'a str) -> RecordIdentity<'a> {
    RecordIdentity {
        kind: KIND_SIGV4_SECRET,
        tenant: DEFAULT_TENANT,
        id: aad_id,
        version: 1,
    }
}

/// `<access key id>/<principal>`: ids have no `/`, so the encoding is unambiguous.
fn aad_id(access_key_id: &str, principal: &str) -> String {
    format!("{access_key_id}/{principal}")
}

impl CredentialService {
    pub fn new(
        store: Arc<dyn CredentialStore>,
        system: Arc<dyn SystemStore>,
        keyring: Keyring,
        clock: SharedClock,
        settings: Sigv4Settings,
        cache: CacheSettings,
    ) -> Self {
        Self {
            meta: TtlCache::new(cache.max_entries, cache.state_ttl(), clock.clone()),
            secrets: TtlCache::new(cache.max_entries, cache.ttl, clock.clone()),
            unwraps: Flights::new(),
            signing_keys: TtlCache::new(cache.max_entries, SIGNING_KEY_TTL, clock.clone()),
            activity: ActivityTracker::new(settings.max_fingerprints),
            activity_flush: tokio::sync::Mutex::new(()),
            store,
            system,
            keyring,
            clock,
            settings,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The time window of header-signed requests.
    pub fn settings(&self) -> &Sigv4Settings {
        &self.settings
    }

    /// Drops every cached credential, secret and derived key (announcements from other
    /// nodes were missed).
    pub(crate) fn forget_all(&self) {
        self.meta.invalidate(|_| true);
        self.signing_keys.invalidate(|_| true);
        self.secrets.invalidate(|_| true);
    }

    pub(crate) fn invalidate(&self, id: &str) {
        self.meta.invalidate(|k| k == id);
        self.signing_keys.invalidate(|(k, _)| k.as_ref() == id);
        self.secrets.invalidate(|k| k == id);
    }

    async fn cached(&self, id: &str) -> CredentialResult<Arc<CredentialRecord>> {
        if let Some(hit) = self.meta.get(id) {
            return Ok(hit);
        }
        let token = self.meta.fill_token();
        let record = self
            .store
            .get_credential(id)
            .await?
            .ok_or_else(|| CredentialError::NotFound(id.to_owned()))?;
        let cached = Arc::new(record);
        self.meta.insert(id.to_owned(), Arc::clone(&cached), token);
        Ok(cached)
    }

    /// The unwrapped secret of a credential: from the cache, or one KEK unwrap.
    async fn secret(&self, credential: &CredentialRecord) -> CredentialResult<Arc<SecretBytes>> {
        let id = credential.access_key_id.as_str();
        if let Some(hit) = self.secrets.get(id) {
            return Ok(hit);
        }
        let turn = self.unwraps.join(&credential.access_key_id).await;
        // Filled by the caller whose turn came before.
        if let Some(hit) = self.secrets.get(id) {
            return Ok(hit);
        }
        if turn.after_failure() {
            return Err(KekError::Unavailable(Box::new(crate::kek::ConcurrentLoadFailed)).into());
        }
        let token = self.secrets.fill_token();
        let aad = aad_id(id, &credential.principal);
        let secret = Arc::new(
            self.keyring
                .open(&identity(&aad), &credential.sealed)
                .await
                .inspect_err(|_| turn.failed())?,
        );
        self.secrets.insert(id.to_owned(), Arc::clone(&secret), token);
        Ok(secret)
    }

    /// The derived key of `scope`. A cached one comes with `None`; a fresh one (one HMAC
    /// chain over the cached secret) comes with what [`CredentialService::remember`] needs to
    /// cache it — done only once it verified a request, so requests with made-up scopes
    /// cannot fill the cache.
    async fn scope_key(
        &self,
        credential: &CredentialRecord,
        scope: &Scope,
    ) -> CredentialResult<(Arc<SecretBytes>, Option<Fill>)> {
        let id: Arc<str> = Arc::from(credential.access_key_id.as_str());
        let cache_key = (id, scope.to_string_scope());
        if let Some(hit) = self.signing_keys.get(&cache_key) {
            return Ok((hit, None));
        }
        let token = self.signing_keys.fill_token();
        let secret = self.secret(credential).await?;
        // The secret is consumed by the key derivation; the derived key lives locked. An
        // hsm-boundary secret never leaves the HSM: kDate is computed there, the rest of the
        // chain (kRegion, kService, kSigning, then the signature) here.
        let derived = match credential.boundary {
            Boundary::Process => sigv4::signing_key(secret.expose_secret(), scope),
            Boundary::Hsm => {
                let (_, wrapped) = resident::decode(secret.expose_secret())
                    .map_err(|_| CredentialError::Corrupt("an hsm-boundary secret's record".into()))?;
                // The session cache's id must always mean this wrap: a credential deleted and
                // imported again under its id has a new one.
                let digest = sha2::Sha256::digest(wrapped);
                let tag = base16ct::lower::encode_string(digest.get(..8).unwrap_or_default());
                let id = format!("credential:{}:{tag}", credential.access_key_id);
                let k_date = self
                    .keyring
                    .current()
                    .resident_mac(&id, wrapped, ResidentMac::HmacSha256, scope.date.as_bytes())
                    .await?;
                sigv4::signing_key_from_k_date(&k_date, scope)
            }
        };
        let key = Arc::new(SecretBytes::from_slice(derived.as_slice()));
        Ok((key, Some(Fill { cache_key, token })))
    }

    fn remember(&self, key: &Arc<SecretBytes>, fill: Option<Fill>) {
        if let Some(Fill { cache_key, token }) = fill {
            self.signing_keys.insert(cache_key, Arc::clone(key), token);
        }
    }

    // ----- maintenance -------------------------------------------------------------------

    /// Writes pending activity; on failure it is kept for the next try.
    pub(crate) async fn flush_activity(&self) -> CredentialResult<()> {
        let _flushing = self.activity_flush.lock().await;
        let write = <dyn CredentialStore>::add_credential_activity;
        let max = self.settings.max_fingerprints;
        self.activity
            .flush(
                (activity::to_store, activity::from_store),
                self.store.as_ref(),
                write,
                max,
            )
            .await?;
        Ok(())
    }

    /// How many unwrapped secrets and derived keys are cached (for metrics and tests).
    pub fn cache_sizes(&self) -> (usize, usize) {
        (self.secrets.len(), self.signing_keys.len())
    }

    pub(crate) fn sweep_caches(&self) {
        self.meta.sweep();
        self.signing_keys.sweep();
        self.secrets.sweep();
    }
}
