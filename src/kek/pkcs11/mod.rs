//! The PKCS#11 KEK provider (SoftHSM2 in development and tests, any PKCS#11 HSM in
//! production).
//!
//! The KEK is a token object that never leaves the token ([`objects`]); it is created on
//! first start when the token holds none, and every KEK version on the token stays usable to
//! unwrap. `kek_id` = `pkcs11:<token label>:<version>`; the highest version is current.
//!
//! `Session` is not `Sync`, so a small pool of sessions ([`pool`]) is used from tokio's
//! blocking pool, each holding session copies of the KEK versions. A session or token that
//! fails (removed, reset, logged out) is discarded and the pool opens and logs in again by
//! itself. Every call is bounded by `call_timeout`: a call the module does not answer in time
//! is given up on (unavailable) while its thread waits for the module, and the threads so
//! left waiting are bounded ([`Pkcs11Kek::with_session`]). Every error keeps the module's
//! return code inside [`Pkcs11Error`]; callers see the provider-neutral [`KekError`].
//! cryptoki's types stay inside this module. Witness records are private data objects on the
//! token ([`witness`]).
//!
//! This module must never return or log key bytes except the DEK it was asked to unwrap.

mod error;
mod objects;
mod pool;
mod resident;
pub mod softhsm;
mod token;
mod witness;
mod wrapping;

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use cryptoki::session::Session;
use secrecy::SecretString;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use zeroize::Zeroizing;

pub use error::Pkcs11Error;
pub use token::{probe_module, provision_token, token_present};

use super::{KekError, KekProvider, ResidentMac, WrappedDek, WrappingPublicKey};
use crate::BoxFuture;
use crate::envelope::{Dek, RecordIdentity};
use error::{call, unwrap_error};
use objects::{PooledSession, create_kek, destroy_kek, find_kek_objects, unwrap_bytes, wrap_bytes};
use pool::{Handoff, Pool, log_in};
use token::{context, find_token};

/// `[kek.pkcs11] call_timeout` when unset.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time given to generating an RSA-4096 wrapping key (seconds on SoftHSM2, longer
/// on a slow HSM), whatever `call_timeout` says.
const KEY_PAIR_TIMEOUT: Duration = Duration::from_secs(120);

/// What the provider needs to open a token (`[kek.pkcs11]`).
#[derive(Clone)]
pub struct Pkcs11Settings {
    /// Path of the PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// Label of the token holding the KEK (1 to 32 bytes).
    pub token_label: String,
    /// The token's user PIN.
    pub pin: SecretString,
    /// Sessions in the pool (concurrent HSM calls).
    pub sessions: usize,
    /// The longest a call waits for a session and the module's answer before it reports the
    /// HSM unavailable.
    pub call_timeout: Duration,
}

/// The KEK versions on the token, as this process last read them; the highest is current.
struct Versions {
    all: Vec<u32>,
    current: u32,
}

impl Versions {
    fn of(found: impl IntoIterator<Item = u32>) -> Self {
        let mut all: Vec<u32> = found.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        let current = all.last().copied().unwrap_or(1);
        Self { all, current }
    }
}

struct Inner {
    token_label: String,
    versions: RwLock<Versions>,
    call_timeout: Duration,
    pool: Pool,
    /// One permit per call running in the module (the pool size).
    permits: Arc<Semaphore>,
    /// One permit per call given up on that still runs in the module, as many as the pool
    /// size: a call that times out hands its session permit back in exchange for one of
    /// these, so fresh sessions can serve while it hangs. When none is left, a timed-out call
    /// keeps its session permit, so at most twice the pool size of threads ever wait on a
    /// module that does not answer.
    hung: Arc<Semaphore>,
    /// Held while the wrapping key is looked up, created or rotated: one node never makes
    /// two at once.
    wrapping: tokio::sync::Mutex<()>,
}

/// The PKCS#11 KEK provider. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Pkcs11Kek {
    inner: Arc<Inner>,
}

impl Pkcs11Kek {
    /// Loads the module, finds the token, logs in, finds (or creates) the KEK and fills the
    /// session pool. Runs on the blocking pool: every step is a synchronous C call.
    pub(crate) async fn open(settings: Pkcs11Settings) -> Result<Self, KekError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(&settings))
            .await
            .map_err(|_| Pkcs11Error::Pool)?
            .map_err(KekError::from)
    }

    fn open_blocking(settings: &Pkcs11Settings) -> Result<Self, Pkcs11Error> {
        let ctx = context(&settings.module)?;
        let label = settings.token_label.clone();
        let slot = find_token(&ctx, &label)?.ok_or_else(|| Pkcs11Error::TokenNotFound { label: label.clone() })?;
        let first = ctx.open_rw_session(slot).map_err(call("opening a session"))?;
        log_in(&first, &settings.pin, &label)?;
        let mut token_keks = find_kek_objects(&first)?;
        if token_keks.is_empty() {
            token_keks.insert(1, create_kek(&first, 1)?);
        }
        if resident::find_wrap_key(&first)?.is_none() {
            resident::create_wrap_key(&first)?;
        }
        let versions = Versions::of(token_keks.keys().copied());
        let size = settings.sessions.max(1);
        let mut sessions = Vec::with_capacity(size);
        sessions.push(PooledSession::new(first, &token_keks)?);
        for _ in 1..size {
            let session: Session = ctx.open_rw_session(slot).map_err(call("opening a session"))?;
            sessions.push(PooledSession::new(session, &token_keks)?);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                token_label: label.clone(),
                versions: RwLock::new(versions),
                call_timeout: settings.call_timeout,
                pool: Pool::new(ctx, label, settings.pin.clone(), sessions),
                permits: Arc::new(Semaphore::new(size)),
                hung: Arc::new(Semaphore::new(size)),
                wrapping: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn kek_id(&self, version: u32) -> String {
        format!("pkcs11:{}:{version}", self.inner.token_label)
    }

    fn versions(&self) -> std::sync::RwLockReadGuard<'_, Versions> {
        self.inner.versions.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `found` as the token's KEK versions; renews the pool's sessions when they
    /// changed, so every session holds copies of exactly these.
    fn adopt(&self, found: impl IntoIterator<Item = u32>) {
        let next = Versions::of(found);
        let mut versions = self.inner.versions.write().unwrap_or_else(PoisonError::into_inner);
        let changed = versions.all != next.all;
        *versions = next;
        drop(versions);
        if changed {
            self.inner.pool.renew();
        }
    }

    /// Parses a `kek_id` this provider issued into its KEK version.
    fn version_of(&self, kek_id: &str) -> Option<u32> {
        let rest = kek_id.strip_prefix("pkcs11:")?;
        let (label, version) = rest.rsplit_once(':')?;
        let version: u32 = version.parse().ok()?;
        (label == self.inner.token_label && self.versions().all.contains(&version)).then_some(version)
    }

    /// Runs `op` with a pooled session on the blocking pool, within `call_timeout` from the
    /// call (waiting for a session included).
    ///
    /// The permit travels with the blocking task, so a cancelled caller cannot let a second
    /// task in while the session is still out of the pool. A call that outlives the timeout
    /// is given up on: the caller gets [`Pkcs11Error::Timeout`], the pool counts the HSM as
    /// failing, and the task — still inside the module, where nothing can stop it — swaps its
    /// session permit for a hung-call permit when one is left (see [`Inner::hung`]) and
    /// closes its session when the module finally answers.
    async fn with_session<T, F>(&self, op: F) -> Result<T, KekError>
    where
        T: Send + 'static,
        F: FnOnce(&PooledSession) -> Result<T, Pkcs11Error> + Send + 'static,
    {
        self.with_session_within(self.inner.call_timeout, op).await
    }

    /// [`Pkcs11Kek::with_session`] with its own `timeout` (a key-pair generation's).
    async fn with_session_within<T, F>(&self, timeout: Duration, op: F) -> Result<T, KekError>
    where
        T: Send + 'static,
        F: FnOnce(&PooledSession) -> Result<T, Pkcs11Error> + Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        self.inner.pool.admit()?;
        let permit = match tokio::time::timeout_at(deadline, Arc::clone(&self.inner.permits).acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Pkcs11Error::Pool.into()),
            Err(_) => {
                return Err(Pkcs11Error::Timeout {
                    after: timeout,
                    during: "waiting for a free HSM session",
                }
                .into());
            }
        };
        let handoff: Arc<Handoff<OwnedSemaphorePermit>> = Arc::new(Handoff::new(permit));
        let inner = Arc::clone(&self.inner);
        let held = Arc::clone(&handoff);
        let task = tokio::task::spawn_blocking(move || inner.pool.run(&held, op));
        match tokio::time::timeout_at(deadline, task).await {
            Ok(joined) => joined.map_err(|_| Pkcs11Error::Pool)?.map_err(KekError::from),
            Err(_) => {
                handoff.abandon();
                if let Ok(hung) = Arc::clone(&self.inner.hung).try_acquire_owned() {
                    // The session permit is released here; the hung-call permit is released
                    // with the handoff, when the call returns.
                    let released = handoff
                        .permit
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .replace(hung);
                    drop(released);
                }
                let err = Pkcs11Error::Timeout {
                    after: timeout,
                    during: "waiting for the HSM's answer",
                };
                self.inner.pool.timed_out(&err);
                Err(err.into())
            }
        }
    }
}

impl KekProvider for Pkcs11Kek {
    fn current_kek_id(&self) -> String {
        self.kek_id(self.versions().current)
    }

    fn kek_ids(&self) -> Vec<String> {
        self.versions().all.iter().map(|v| self.kek_id(*v)).collect()
    }

    fn holds(&self, kek_id: &str) -> bool {
        self.version_of(kek_id).is_some()
    }

    fn wrap_dek<'a>(
        &'a self,
        dek: &'a Dek,
        _identity: &RecordIdentity<'_>,
    ) -> BoxFuture<'a, Result<WrappedDek, KekError>> {
        let plain = Zeroizing::new(dek.expose_secret().to_vec());
        let version = self.versions().current;
        Box::pin(async move {
            let bytes = self
                .with_session(move |pooled| {
                    let kek = pooled.kek(version)?;
                    wrap_bytes(&pooled.session, kek, &plain).map_err(call("wrapping a data key"))
                })
                .await?;
            Ok(WrappedDek {
                kek_id: self.kek_id(version),
                bytes,
            })
        })
    }

    fn unwrap_dek<'a>(
        &'a self,
        kek_id: &'a str,
        wrapped: &'a [u8],
        _identity: &RecordIdentity<'_>,
    ) -> BoxFuture<'a, Result<Dek, KekError>> {
        let wrapped = wrapped.to_vec();
        Box::pin(async move {
            let version = self
                .version_of(kek_id)
                .ok_or_else(|| KekError::UnknownKek(kek_id.to_owned()))?;
            let plain = self
                .with_session(move |pooled| {
                    let kek = pooled.kek(version)?;
                    unwrap_bytes(&pooled.session, kek, &wrapped).map_err(unwrap_error)
                })
                .await?;
            Ok(Dek::from_slice(&plain)?)
        })
    }

    fn rotate(&self) -> BoxFuture<'_, Result<String, KekError>> {
        Box::pin(async move {
            let found = self
                .with_session(|pooled| {
                    let mut found = find_kek_objects(&pooled.session)?;
                    let next = found
                        .keys()
                        .next_back()
                        .copied()
                        .unwrap_or(0)
                        .checked_add(1)
                        .ok_or_else(|| Pkcs11Error::Refused("the token's KEK versions are exhausted".into()))?;
                    found.insert(next, create_kek(&pooled.session, next)?);
                    // Read back: a second object of this version made at the same moment
                    // elsewhere is refused here rather than found later.
                    let again = find_kek_objects(&pooled.session)?;
                    Ok(again.into_keys().collect::<Vec<u32>>())
                })
                .await?;
            self.adopt(found);
            Ok(self.current_kek_id())
        })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), KekError>> {
        Box::pin(async move {
            let found = self
                .with_session(|pooled| Ok(find_kek_objects(&pooled.session)?.into_keys().collect::<Vec<u32>>()))
                .await?;
            if found.is_empty() {
                // The token lost every KEK: nothing to adopt; calls fail until it is restored.
                return Err(Pkcs11Error::MissingSessionKek(self.versions().current).into());
            }
            self.adopt(found);
            Ok(())
        })
    }

    fn retire<'a>(&'a self, kek_id: &'a str) -> BoxFuture<'a, Result<(), KekError>> {
        Box::pin(async move {
            let version = self
                .version_of(kek_id)
                .ok_or_else(|| KekError::UnknownKek(kek_id.to_owned()))?;
            if version == self.versions().current {
                return Err(KekError::Refused(format!("{kek_id} is the current KEK: rotate first")));
            }
            let found = self
                .with_session(move |pooled| {
                    destroy_kek(&pooled.session, version)?;
                    Ok(find_kek_objects(&pooled.session)?.into_keys().collect::<Vec<u32>>())
                })
                .await?;
            self.adopt(found);
            Ok(())
        })
    }

    fn wrapping_key(&self) -> BoxFuture<'_, Result<WrappingPublicKey, KekError>> {
        Box::pin(async move {
            let _one = self.inner.wrapping.lock().await;
            let timeout = self.inner.call_timeout.max(KEY_PAIR_TIMEOUT);
            self.with_session_within(timeout, |pooled| {
                let session = &pooled.session;
                let pairs = wrapping::find_pairs(session)?;
                match pairs.first() {
                    Some(current) => wrapping::public_key(session, current),
                    None => wrapping::public_key(session, &wrapping::create_pair(session, 1)?),
                }
            })
            .await
        })
    }

    fn rotate_wrapping_key(&self) -> BoxFuture<'_, Result<WrappingPublicKey, KekError>> {
        Box::pin(async move {
            let _one = self.inner.wrapping.lock().await;
            let timeout = self.inner.call_timeout.max(KEY_PAIR_TIMEOUT);
            self.with_session_within(timeout, |pooled| {
                let session = &pooled.session;
                let before = wrapping::find_pairs(session)?;
                let next = before
                    .first()
                    .map_or(Some(1), |current| current.version.checked_add(1))
                    .ok_or_else(|| Pkcs11Error::Refused("the wrapping key's versions are exhausted".into()))?;
                let created = wrapping::create_pair(session, next)?;
                // The pair that was current keeps opening imports until the next rotation;
                // everything older goes.
                let keep = next.saturating_sub(1);
                for old in before.iter().filter(|pair| pair.version < keep) {
                    wrapping::destroy_pair(session, old)?;
                }
                wrapping::public_key(session, &created)
            })
            .await
        })
    }

    fn decrypt_import_key<'a>(&'a self, block: &'a [u8]) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KekError>> {
        let block = block.to_vec();
        Box::pin(self.with_session(move |pooled| {
            let session = &pooled.session;
            for pair in wrapping::find_pairs(session)? {
                if let Some(key) = wrapping::decrypt_import_key(session, &pair, &block)? {
                    return Ok(key);
                }
            }
            Err(Pkcs11Error::ImportRejected)
        }))
    }

    fn resident_generate(&self, len: usize) -> BoxFuture<'_, Result<Vec<u8>, KekError>> {
        Box::pin(self.with_session(move |pooled| resident::generate(&pooled.session, pooled.resident_wrap()?, len)))
    }

    fn resident_import<'a>(&'a self, material: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KekError>> {
        let material = Zeroizing::new(material.to_vec());
        Box::pin(self.with_session(move |pooled| resident::import(&pooled.session, pooled.resident_wrap()?, &material)))
    }

    fn resident_mac<'a>(
        &'a self,
        id: &'a str,
        wrapped: &'a [u8],
        alg: ResidentMac,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, KekError>> {
        let (id, wrapped, message) = (id.to_owned(), wrapped.to_vec(), message.to_vec());
        Box::pin(self.with_session(move |pooled| {
            let mut keys = pooled.resident_keys.lock().unwrap_or_else(PoisonError::into_inner);
            let handle = match keys.get(&id) {
                Some(handle) => handle,
                None => {
                    let handle = resident::unwrap_for_signing(&pooled.session, pooled.resident_wrap()?, &wrapped)?;
                    keys.keep(&pooled.session, id, handle);
                    handle
                }
            };
            resident::mac(&pooled.session, handle, alg, &message)
        }))
    }

    fn witness_write<'a>(&'a self, name: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), KekError>> {
        let (name, value) = (name.to_owned(), value.to_vec());
        Box::pin(self.with_session(move |pooled| witness::write(&pooled.session, &name, &value)))
    }

    fn witness_read<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KekError>> {
        let name = name.to_owned();
        Box::pin(self.with_session(move |pooled| witness::read(&pooled.session, &name)))
    }
}
