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

use std::sync::Arc;

use secrecy::SecretString;
use time::{Date, Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::clock::{SharedClock, unix_ms};
use crate::config::{CacheSettings, OnNewFingerprint, Sigv4Settings};
use crate::envelope::RecordIdentity;
use crate::kek::{KekError, Keyring};
use crate::keys::DEFAULT_TENANT;
use crate::keys::cache::TtlCache;
use crate::secret::SecretBytes;
use crate::sigv4::{self, Authorization, Form, HttpRequest, PathRules, Refusal, Scope};
use crate::store::{CredentialPatch, CredentialRecord, FingerprintRecord, Store, StoreError};
use activity::{ActivityTracker, Fingerprint, Seen};

/// Record kind bound into the AAD of a credential's secret.
pub const KIND_SIGV4_SECRET: &str = "sigv4-secret";
/// The prefix of access key ids made here.
pub const ACCESS_KEY_PREFIX: &str = "SVAK";
/// Characters of a generated secret access key (as AWS's).
pub const SECRET_LEN: usize = 40;
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

pub type CredentialResult<T> = Result<T, CredentialError>;

/// `active` / `inactive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialState {
    Active,
    Inactive,
}

impl CredentialState {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
}

/// `POST /v1/credentials` (and the non-secret part of an import).
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub principal: String,
    pub description: Option<String>,
    pub on_new_fingerprint: Option<OnNewFingerprint>,
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
    pub last_used_at_ms: Option<i64>,
    pub last_used_region: Option<String>,
    pub last_used_service: Option<String>,
    pub fingerprints: Vec<FingerprintRecord>,
}

/// A signed request that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub access_key_id: String,
    pub principal: String,
    pub scope: Scope,
    pub signed_headers: Vec<String>,
    pub form: Form,
}

/// Why a request did not verify: one of API.md's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Refused(&'static str),
    UnknownAccessKey,
    InactiveAccessKey,
}

impl Rejection {
    pub fn code(self) -> &'static str {
        match self {
            Rejection::Refused(code) => code,
            Rejection::UnknownAccessKey => "UNKNOWN_ACCESS_KEY",
            Rejection::InactiveAccessKey => "INACTIVE_ACCESS_KEY",
        }
    }
}

impl From<Refusal> for Rejection {
    fn from(r: Refusal) -> Self {
        Rejection::Refused(r.code())
    }
}

/// A fingerprint the credential had not been used from, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFingerprint {
    pub access_key_id: String,
    pub principal: String,
    pub fingerprint: Fingerprint,
    /// `record`, `alert` or `deactivate` (the rule applied).
    pub rule: OnNewFingerprint,
    /// The credential's first fingerprint ever: learned without alert or deactivation.
    pub first: bool,
}

/// The outcome of [`CredentialService::verify`].
#[derive(Debug, Clone)]
pub struct Verification {
    /// The access key id the request named, when it could be parsed.
    pub access_key_id: Option<String>,
    pub result: Result<Verified, Rejection>,
    pub new_fingerprint: Option<NewFingerprint>,
}

/// A derived key waiting to be cached: its cache key and the fill token taken before it
/// was derived (an invalidation in between keeps it out).
struct Fill {
    cache_key: (Arc<str>, String),
    token: crate::keys::cache::FillToken,
}

struct Cached {
    record: CredentialRecord,
    state: CredentialState,
    rule: Option<OnNewFingerprint>,
}

pub struct CredentialService {
    store: Arc<dyn Store>,
    keyring: Keyring,
    clock: SharedClock,
    settings: Sigv4Settings,
    meta: TtlCache<String, Cached>,
    /// Unwrapped secrets by access key id (bounded, TTL `cache.ttl`, zeroized on eviction).
    secrets: TtlCache<String, SecretBytes>,
    /// Derived keys by (access key id, scope), cached once they verified a request.
    signing_keys: TtlCache<(Arc<str>, String), SecretBytes>,
    activity: ActivityTracker,
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

fn parse_cached(record: CredentialRecord) -> CredentialResult<Cached> {
    let state = CredentialState::parse(&record.state)
        .ok_or_else(|| CredentialError::Corrupt(format!("state '{}'", record.state)))?;
    let rule = match record.on_new_fingerprint.as_deref() {
        None => None,
        Some(text) => {
            Some(OnNewFingerprint::parse(text).ok_or_else(|| CredentialError::Corrupt(format!("rule '{text}'")))?)
        }
    };
    Ok(Cached { record, state, rule })
}

/// Checks an access key id named by a caller: 1–128 characters of `A-Z a-z 0-9`.
pub fn valid_access_key_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
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

/// A scope part (`region`, `service`) a caller may name: 1–64 of `a-z 0-9 -`.
fn check_scope_part(field: &str, value: &str) -> CredentialResult<()> {
    let ok = (1..=MAX_SCOPE_PART_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CredentialError::Invalid(format!(
            "{field} must be 1 to {MAX_SCOPE_PART_LEN} characters of a-z 0-9 -"
        )))
    }
}

fn parse_scope_date(date: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year][month][day]");
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Date::parse(date, format).ok()
}

impl CredentialService {
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Keyring,
        clock: SharedClock,
        settings: Sigv4Settings,
        cache: CacheSettings,
    ) -> Self {
        Self {
            meta: TtlCache::new(cache.max_entries, cache.ttl, clock.clone()),
            secrets: TtlCache::new(cache.max_entries, cache.ttl, clock.clone()),
            signing_keys: TtlCache::new(cache.max_entries, SIGNING_KEY_TTL, clock.clone()),
            activity: ActivityTracker::new(settings.max_fingerprints),
            store,
            keyring,
            clock,
            settings,
        }
    }

    fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    /// The time window of header-signed requests.
    pub fn settings(&self) -> &Sigv4Settings {
        &self.settings
    }

    // ----- lifecycle ---------------------------------------------------------------------

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
        if !(MIN_IMPORTED_ID_LEN..=MAX_ID_LEN).contains(&access_key_id.len())
            || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(CredentialError::Invalid(format!(
                "access_key_id must be {MIN_IMPORTED_ID_LEN} to {MAX_ID_LEN} characters of A-Z a-z 0-9"
            )));
        }
        // Checked for shape only: printable ASCII without spaces, as AWS secrets are.
        let s = secret.expose_secret();
        if !(MIN_IMPORTED_SECRET_LEN..=MAX_SECRET_LEN).contains(&s.len()) || !s.iter().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::Invalid(format!(
                "secret_access_key must be {MIN_IMPORTED_SECRET_LEN} to {MAX_SECRET_LEN} printable ASCII characters"
            )));
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
        check_description(new.description.as_deref())?;
        let aad = aad_id(id, &new.principal);
        // The secret is sealed under a fresh DEK wrapped by the KEK.
        let sealed = self.keyring.seal(&identity(&aad), secret.expose_secret()).await?;
        let now = self.now_ms();
        let record = CredentialRecord {
            access_key_id: id.to_owned(),
            principal: new.principal.clone(),
            description: new.description.clone(),
            state: CredentialState::Active.as_str().to_owned(),
            on_new_fingerprint: new.on_new_fingerprint.map(|r| r.as_str().to_owned()),
            sealed,
            created_at_ms: now,
            updated_at_ms: now,
            last_used_at_ms: None,
            last_used_region: None,
            last_used_service: None,
        };
        self.store
            .insert_credential(&record, self.settings.max_credentials_per_principal)
            .await?;
        self.meta.invalidate(|k| k == id);
        Ok(record)
    }

    fn check_id(id: &str) -> CredentialResult<()> {
        if valid_access_key_id(id) {
            Ok(())
        } else {
            Err(CredentialError::NotFound(id.chars().take(MAX_ID_LEN).collect()))
        }
    }

    /// A credential's row as stored, with this node's pending last use merged in.
    pub async fn get(&self, id: &str) -> CredentialResult<CredentialRecord> {
        Self::check_id(id)?;
        let record = self
            .store
            .get_credential(id)
            .await?
            .ok_or_else(|| CredentialError::NotFound(id.to_owned()))?;
        Ok(self.with_pending(record))
    }

    /// `record` with this node's last use that is not flushed yet.
    fn with_pending(&self, mut record: CredentialRecord) -> CredentialRecord {
        if let Some(p) = self.activity.pending_for(&record.access_key_id)
            && record.last_used_at_ms.is_none_or(|t| t <= p.last_used_at_ms)
        {
            record.last_used_at_ms = Some(p.last_used_at_ms);
            record.last_used_region = Some(p.region);
            record.last_used_service = Some(p.service);
        }
        record
    }

    /// The principal of credential `id` for a policy decision; `None` when there is none.
    pub async fn owner(&self, id: &str) -> CredentialResult<Option<String>> {
        if !valid_access_key_id(id) {
            return Ok(None);
        }
        match self.cached(id).await {
            Ok(c) => Ok(Some(c.record.principal.clone())),
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
        let page = self.store.list_credentials(principal, after, limit).await?;
        Ok(page.into_iter().map(|r| self.with_pending(r)).collect())
    }

    pub async fn update(&self, id: &str, patch: Patch) -> CredentialResult<CredentialRecord> {
        Self::check_id(id)?;
        let stored = CredentialPatch {
            state: patch.state.map(|s| s.as_str().to_owned()),
            on_new_fingerprint: patch.on_new_fingerprint.map(|r| r.map(|r| r.as_str().to_owned())),
        };
        let record = self
            .store
            .update_credential(id, &stored, self.now_ms())
            .await?
            .ok_or_else(|| CredentialError::NotFound(id.to_owned()));
        self.invalidate(id);
        if record
            .as_ref()
            .is_ok_and(|r| r.state == CredentialState::Active.as_str())
        {
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
        if let Err(e) = self.store.checkpoint().await {
            tracing::warn!(error = %e, "checkpoint after deleting a credential failed; retried at shutdown");
        }
        Ok(())
    }

    pub async fn activity(&self, id: &str) -> CredentialResult<Activity> {
        let record = self.get(id).await?;
        let mut fingerprints = self.store.list_fingerprints(id).await?;
        if let Some(p) = self.activity.pending_for(id) {
            for f in p.fingerprints {
                match fingerprints
                    .iter_mut()
                    .find(|s| s.source_ip == f.source_ip && s.user_agent == f.user_agent)
                {
                    Some(s) => {
                        s.count = s.count.saturating_add(f.count);
                        s.first_seen_ms = s.first_seen_ms.min(f.first_seen_ms);
                        s.last_seen_ms = s.last_seen_ms.max(f.last_seen_ms);
                    }
                    None => fingerprints.push(f),
                }
            }
            fingerprints.sort_by_key(|f| std::cmp::Reverse(f.last_seen_ms));
        }
        Ok(Activity {
            last_used_at_ms: record.last_used_at_ms,
            last_used_region: record.last_used_region,
            last_used_service: record.last_used_service,
            fingerprints,
        })
    }

    fn invalidate(&self, id: &str) {
        self.meta.invalidate(|k| k == id);
        self.signing_keys.invalidate(|(k, _)| k.as_ref() == id);
        self.secrets.invalidate(|k| k == id);
    }

    async fn cached(&self, id: &str) -> CredentialResult<Arc<Cached>> {
        if let Some(hit) = self.meta.get(id) {
            return Ok(hit);
        }
        let token = self.meta.fill_token();
        let record = self
            .store
            .get_credential(id)
            .await?
            .ok_or_else(|| CredentialError::NotFound(id.to_owned()))?;
        let cached = Arc::new(parse_cached(record)?);
        self.meta.insert(id.to_owned(), Arc::clone(&cached), token);
        Ok(cached)
    }

    /// The unwrapped secret of a credential: from the cache, or one KEK unwrap.
    async fn secret(&self, credential: &Cached) -> CredentialResult<Arc<SecretBytes>> {
        let id = credential.record.access_key_id.as_str();
        if let Some(hit) = self.secrets.get(id) {
            return Ok(hit);
        }
        let token = self.secrets.fill_token();
        let aad = aad_id(id, &credential.record.principal);
        let secret = Arc::new(self.keyring.open(&identity(&aad), &credential.record.sealed).await?);
        self.secrets.insert(id.to_owned(), Arc::clone(&secret), token);
        Ok(secret)
    }

    /// The derived key of `scope`. A cached one comes with `None`; a fresh one (one HMAC
    /// chain over the cached secret) comes with what [`CredentialService::remember`] needs to
    /// cache it — done only once it verified a request, so requests with made-up scopes
    /// cannot fill the cache.
    async fn scope_key(
        &self,
        credential: &Cached,
        scope: &Scope,
    ) -> CredentialResult<(Arc<SecretBytes>, Option<Fill>)> {
        let id: Arc<str> = Arc::from(credential.record.access_key_id.as_str());
        let cache_key = (id, scope.to_string_scope());
        if let Some(hit) = self.signing_keys.get(&cache_key) {
            return Ok((hit, None));
        }
        let token = self.signing_keys.fill_token();
        let secret = self.secret(credential).await?;
        // The secret is consumed by the key derivation; the derived key lives locked.
        let derived = sigv4::signing_key(secret.expose_secret(), scope);
        let key = Arc::new(SecretBytes::from_slice(derived.as_slice()));
        Ok((key, Some(Fill { cache_key, token })))
    }

    fn remember(&self, key: &Arc<SecretBytes>, fill: Option<Fill>) {
        if let Some(Fill { cache_key, token }) = fill {
            self.signing_keys.insert(cache_key, Arc::clone(key), token);
        }
    }

    // ----- verification ------------------------------------------------------------------

    /// Verifies a signed request as the calling service received it. `who` is the
    /// request's caller as that service saw it; `normalize_path` overrides the path rule of
    /// the request's service. Errors are failures of the vault (KEK, store), never of the
    /// request.
    pub async fn verify(
        &self,
        request: &HttpRequest<'_>,
        who: Fingerprint,
        normalize_path: Option<bool>,
    ) -> CredentialResult<Verification> {
        let auth = match sigv4::parse(request) {
            Ok(auth) => auth,
            Err(refusal) => {
                return Ok(Verification {
                    access_key_id: None,
                    result: Err(refusal.into()),
                    new_fingerprint: None,
                });
            }
        };
        let id = auth.access_key_id.clone();
        let mut rules = PathRules::for_service(&auth.scope.service);
        if let Some(normalize) = normalize_path {
            rules.normalize = normalize;
        }
        let (result, new_fingerprint) = self.verify_parsed(request, &auth, who, rules).await?;
        Ok(Verification {
            access_key_id: Some(id),
            result,
            new_fingerprint,
        })
    }

    async fn verify_parsed(
        &self,
        request: &HttpRequest<'_>,
        auth: &Authorization,
        who: Fingerprint,
        rules: PathRules,
    ) -> CredentialResult<(Result<Verified, Rejection>, Option<NewFingerprint>)> {
        let credential = match self.cached(&auth.access_key_id).await {
            Ok(c) => c,
            Err(CredentialError::NotFound(_)) => return Ok((Err(Rejection::UnknownAccessKey), None)),
            Err(e) => return Err(e),
        };
        let now = self.clock.now();
        let window = self.settings.time_window.whole_seconds();
        if let Err(refusal) = sigv4::check_time(auth, now.unix_timestamp(), window) {
            return Ok((Err(refusal.into()), None));
        }
        let candidates = match sigv4::strings_to_sign(request, auth, rules) {
            Ok(c) => c,
            Err(refusal) => return Ok((Err(refusal.into()), None)),
        };
        let (key, fill) = self.scope_key(&credential, &auth.scope).await?;
        let key_bytes: &[u8; 32] = key
            .expose_secret()
            .try_into()
            .map_err(|_| CredentialError::Corrupt("derived key length".into()))?;
        // The derived key signs the candidate strings; comparison is constant-time.
        if !sigv4::signature_matches(key_bytes, &candidates, &auth.signature) {
            return Ok((Err(Rejection::Refused(Refusal::SignatureMismatch.code())), None));
        }
        self.remember(&key, fill);
        // State is told only to a holder of the secret: a forged request learns nothing.
        if credential.state == CredentialState::Inactive {
            return Ok((Err(Rejection::InactiveAccessKey), None));
        }
        let id = &credential.record.access_key_id;
        if !self.activity.is_loaded(id) {
            let stored = self.store.list_fingerprints(id).await?;
            self.activity.load(id, stored);
        }
        let rule = credential.rule.unwrap_or(self.settings.on_new_fingerprint);
        let seen = self.activity.notice(
            id,
            &who,
            unix_ms(now),
            (&auth.scope.region, &auth.scope.service),
            rule == OnNewFingerprint::Deactivate,
        );
        let new_fingerprint = match seen {
            Seen::Blocked => return Ok((Err(Rejection::InactiveAccessKey), None)),
            Seen::Known => None,
            Seen::First | Seen::New => Some(NewFingerprint {
                access_key_id: id.clone(),
                principal: credential.record.principal.clone(),
                fingerprint: who,
                rule,
                first: seen == Seen::First,
            }),
        };
        if seen == Seen::New {
            if rule != OnNewFingerprint::Record {
                tracing::warn!(
                    access_key_id = %id,
                    principal = %credential.record.principal,
                    rule = rule.as_str(),
                    "credential used from a new caller fingerprint"
                );
            }
            if rule == OnNewFingerprint::Deactivate {
                self.update(
                    id,
                    Patch {
                        state: Some(CredentialState::Inactive),
                        on_new_fingerprint: None,
                    },
                )
                .await?;
                return Ok((Err(Rejection::InactiveAccessKey), new_fingerprint));
            }
        }
        Ok((
            Ok(Verified {
                access_key_id: id.clone(),
                principal: credential.record.principal.clone(),
                scope: auth.scope.clone(),
                signed_headers: auth.signed_headers.clone(),
                form: auth.form,
            }),
            new_fingerprint,
        ))
    }

    /// The derived signing key of one scope, for a gateway that verifies at high rate. The
    /// date may be yesterday, today or tomorrow (UTC); the credential must be active.
    /// Returns the key, its scope and until when requests of that date can be accepted.
    pub async fn derive(
        &self,
        id: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> CredentialResult<(Zeroizing<[u8; 32]>, Scope, OffsetDateTime)> {
        Self::check_id(id)?;
        let day = parse_scope_date(date).ok_or_else(|| CredentialError::Invalid("date must be YYYYMMDD".into()))?;
        check_scope_part("region", region)?;
        check_scope_part("service", service)?;
        let today = self.clock.now().date();
        let distance = (day - today).whole_days().abs();
        if distance > 1 {
            return Err(CredentialError::Invalid(
                "date must be yesterday, today or tomorrow (UTC)".into(),
            ));
        }
        let credential = self.cached(id).await?;
        if credential.state != CredentialState::Active {
            return Err(CredentialError::Precondition(format!("credential '{id}' is inactive")));
        }
        let scope = Scope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        };
        let (key, fill) = self.scope_key(&credential, &scope).await?;
        self.remember(&key, fill);
        let bytes: &[u8; 32] = key
            .expose_secret()
            .try_into()
            .map_err(|_| CredentialError::Corrupt("derived key length".into()))?;
        // Copied out for the one caller allowed to receive it.
        let out = Zeroizing::new(*bytes);
        let expires = day.next_day().unwrap_or(day).midnight().assume_utc() + self.settings.time_window;
        Ok((out, scope, expires))
    }

    // ----- maintenance -------------------------------------------------------------------

    /// Writes pending activity; on failure it is kept for the next try.
    pub async fn flush_activity(&self) -> CredentialResult<()> {
        let pending = self.activity.take();
        if pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self
            .store
            .add_credential_activity(&pending, self.settings.max_fingerprints)
            .await
        {
            self.activity.restore(pending);
            return Err(e.into());
        }
        Ok(())
    }

    /// How many unwrapped secrets and derived keys are cached (for metrics and tests).
    pub fn cache_sizes(&self) -> (usize, usize) {
        (self.secrets.len(), self.signing_keys.len())
    }

    pub fn sweep_caches(&self) {
        self.meta.sweep();
        self.signing_keys.sweep();
        self.secrets.sweep();
    }
}
