//! The PKCS#11 KEK provider (SoftHSM2 in development and tests, any PKCS#11 HSM in
//! production).
//!
//! The KEK is an AES-256 token object labelled `sigvault-kek-<version>`: sensitive, not
//! extractable, usable only to wrap and unwrap. It is created on first start when the
//! token holds none. DEKs are wrapped with `CKM_AES_KEY_WRAP_PAD` (RFC 5649): SoftHSM2
//! refuses AES-GCM for `C_WrapKey`.
//!
//! PKCS#11 facts this module is built around (ARCHITECTURE.md): one `C_Initialize` per
//! process, so one [`Pkcs11`] context is shared process-wide; `Session` is not `Sync`, so a
//! small pool of sessions is used from tokio's blocking pool; each pooled session holds a
//! session copy of every KEK version (`C_CopyObject`), which SoftHSM2 serves ~3× faster than
//! the token object. Tokens are found by label, never by slot id.
//!
//! This module must never return or log key bytes except the DEK it was asked to unwrap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::SecretString;
use tokio::sync::Semaphore;
use zeroize::{Zeroize, Zeroizing};

use super::{KekError, KekProvider, WrappedDek};
use crate::BoxFuture;
use crate::envelope::Dek;

/// Label prefix of KEK objects; the suffix is the KEK version.
const KEK_LABEL_PREFIX: &str = "sigvault-kek-";

/// The one PKCS#11 context of this process (C_Initialize may run only once).
static CONTEXT: Mutex<Option<(PathBuf, Pkcs11)>> = Mutex::new(None);
/// Serialises token initialisation: two threads must not both claim the free slot.
static TOKEN_INIT: Mutex<()> = Mutex::new(());

/// Returns the process-wide context for `module`, loading and initialising it once.
pub fn context(module: &Path) -> Result<Pkcs11, KekError> {
    let mut guard = CONTEXT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((loaded, ctx)) = guard.as_ref() {
        if same_file(loaded, module) {
            return Ok(ctx.clone());
        }
        return Err(KekError::ModuleConflict {
            path: module.display().to_string(),
            loaded: loaded.display().to_string(),
        });
    }
    let load_err = |source| KekError::ModuleLoad {
        path: module.display().to_string(),
        source,
    };
    let ctx = Pkcs11::new(module).map_err(load_err)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(source) => return Err(load_err(source)),
    }
    *guard = Some((module.to_path_buf(), ctx.clone()));
    Ok(ctx)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The slot holding the initialised token labelled `label`, if any.
pub fn find_token(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, KekError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|source| KekError::Pkcs11 {
            during: "listing slots",
            source,
        })?;
    for slot in slots {
        let info = ctx.get_token_info(slot).map_err(|source| KekError::Pkcs11 {
            during: "reading token info",
            source,
        })?;
        if info.label().trim_end() == label {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// Finds the token labelled `label`, or initialises one on a free slot with the given SO
/// and user PINs (`C_InitToken`, then `C_InitPIN` as SO). Used by `sigvault dev` and tests;
/// production tokens are provisioned by their operators.
pub fn ensure_token(
    ctx: &Pkcs11,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<Slot, KekError> {
    let _serialised = TOKEN_INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(slot) = find_token(ctx, label)? {
        return Ok(slot);
    }
    let pk = |during| move |source| KekError::Pkcs11 { during, source };
    let free = ctx
        .get_slots_with_token()
        .map_err(pk("listing slots"))?
        .into_iter()
        .find(|slot| {
            ctx.get_token_info(*slot)
                .map(|info| !info.token_initialized())
                .unwrap_or(false)
        })
        .ok_or_else(|| KekError::TokenNotFound {
            label: label.to_owned(),
        })?;
    ctx.init_token(free, so_pin, label)
        .map_err(pk("initialising the token"))?;
    let session = ctx.open_rw_session(free).map_err(pk("opening a session"))?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(pk("logging in as SO"))?;
    session.init_pin(user_pin).map_err(pk("setting the user PIN"))?;
    session.logout().map_err(pk("logging out"))?;
    drop(session);
    find_token(ctx, label)?.ok_or_else(|| KekError::TokenNotFound {
        label: label.to_owned(),
    })
}

/// What the provider needs to open a token.
pub struct Pkcs11Settings {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: SecretString,
    /// Sessions in the pool (concurrent HSM calls).
    pub sessions: usize,
}

/// One pooled session and its session copies of the KEK versions.
struct PooledSession {
    session: Session,
    keks: BTreeMap<u32, ObjectHandle>,
}

struct Inner {
    token_label: String,
    versions: Vec<u32>,
    current: u32,
    pool: Mutex<Vec<PooledSession>>,
    permits: Arc<Semaphore>,
}

/// A session taken from the pool; returned to it when dropped, whatever happens to the
/// operation that used it.
struct Lease<'a> {
    pool: &'a Mutex<Vec<PooledSession>>,
    session: Option<PooledSession>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.lock().unwrap_or_else(PoisonError::into_inner).push(session);
        }
    }
}

/// The PKCS#11 KEK provider. Cheap to clone.
#[derive(Clone)]
pub struct Pkcs11Kek {
    inner: Arc<Inner>,
}

impl Pkcs11Kek {
    /// Loads the module, finds the token, logs in, finds (or creates) the KEK and fills the
    /// session pool. Runs on the blocking pool: every step is a synchronous C call.
    pub async fn open(settings: Pkcs11Settings) -> Result<Self, KekError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(&settings))
            .await
            .map_err(|_| KekError::Pool)?
    }

    fn open_blocking(settings: &Pkcs11Settings) -> Result<Self, KekError> {
        let pk = |during| move |source| KekError::Pkcs11 { during, source };
        let ctx = context(&settings.module)?;
        let label = settings.token_label.clone();
        let slot = find_token(&ctx, &label)?.ok_or_else(|| KekError::TokenNotFound { label: label.clone() })?;
        let first = ctx.open_rw_session(slot).map_err(pk("opening a session"))?;
        match first.login(UserType::User, Some(&settings.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(KekError::PinIncorrect { label });
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(KekError::PinLocked { label });
            }
            Err(source) => return Err(pk("logging in")(source)),
        }
        let mut token_keks = find_kek_objects(&first)?;
        if token_keks.is_empty() {
            let handle = create_kek(&first, 1)?;
            token_keks.insert(1, handle);
        }
        let versions: Vec<u32> = token_keks.keys().copied().collect();
        let current = versions.last().copied().ok_or(KekError::SelfTest)?;
        let size = settings.sessions.max(1);
        let mut pool = Vec::with_capacity(size);
        pool.push(pooled(first, &token_keks)?);
        for _ in 1..size {
            let session = ctx.open_rw_session(slot).map_err(pk("opening a session"))?;
            pool.push(pooled(session, &token_keks)?);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                token_label: label,
                versions,
                current,
                pool: Mutex::new(pool),
                permits: Arc::new(Semaphore::new(size)),
            }),
        })
    }

    fn kek_id(&self, version: u32) -> String {
        format!("pkcs11:{}:{version}", self.inner.token_label)
    }

    /// Parses a `kek_id` this provider issued into its KEK version.
    fn version_of(&self, kek_id: &str) -> Option<u32> {
        let rest = kek_id.strip_prefix("pkcs11:")?;
        let (label, version) = rest.rsplit_once(':')?;
        let version: u32 = version.parse().ok()?;
        (label == self.inner.token_label && self.inner.versions.contains(&version)).then_some(version)
    }

    /// Runs `op` with a pooled session on the blocking pool. The permit travels with the
    /// blocking task, so a cancelled caller cannot let a second task in while the session is
    /// still out of the pool.
    async fn with_session<T, F>(&self, op: F) -> Result<T, KekError>
    where
        T: Send + 'static,
        F: FnOnce(&PooledSession) -> Result<T, KekError> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| KekError::Pool)?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = inner.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let lease = Lease {
                pool: &inner.pool,
                session: taken,
            };
            let pooled = lease.session.as_ref().ok_or(KekError::Pool)?;
            op(pooled)
        })
        .await
        .map_err(|_| KekError::Pool)?
    }
}

impl KekProvider for Pkcs11Kek {
    fn current_kek_id(&self) -> String {
        self.kek_id(self.inner.current)
    }

    fn kek_ids(&self) -> Vec<String> {
        self.inner.versions.iter().map(|v| self.kek_id(*v)).collect()
    }

    fn wrap_dek(&self, dek: &Dek) -> BoxFuture<'_, Result<WrappedDek, KekError>> {
        let plain = Zeroizing::new(dek.expose_secret().to_vec());
        let version = self.inner.current;
        Box::pin(async move {
            let bytes = self
                .with_session(move |pooled| {
                    let kek = pooled.kek(version)?;
                    wrap_bytes(&pooled.session, kek, &plain).map_err(|source| KekError::Pkcs11 {
                        during: "wrapping a data key",
                        source,
                    })
                })
                .await?;
            Ok(WrappedDek {
                kek_id: self.kek_id(version),
                bytes,
            })
        })
    }

    fn unwrap_dek<'a>(&'a self, kek_id: &'a str, wrapped: &'a [u8]) -> BoxFuture<'a, Result<Dek, KekError>> {
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
}

impl PooledSession {
    fn kek(&self, version: u32) -> Result<ObjectHandle, KekError> {
        self.keks
            .get(&version)
            .copied()
            .ok_or_else(|| KekError::UnknownKek(version.to_string()))
    }
}

/// A wrap/unwrap failure that means "this blob does not open" rather than "HSM down".
pub(super) fn unwrap_error(err: CkError) -> KekError {
    match err {
        CkError::Pkcs11(
            RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::GeneralError,
            _,
        ) => KekError::UnwrapRejected,
        source => KekError::Pkcs11 {
            during: "unwrapping a data key",
            source,
        },
    }
}

fn pooled(session: Session, token_keks: &BTreeMap<u32, ObjectHandle>) -> Result<PooledSession, KekError> {
    let mut keks = BTreeMap::new();
    for (version, handle) in token_keks {
        let copy = session
            .copy_object(*handle, &[Attribute::Token(false)])
            .map_err(|source| KekError::Pkcs11 {
                during: "copying the KEK into a session",
                source,
            })?;
        keks.insert(*version, copy);
    }
    Ok(PooledSession { session, keks })
}

/// Every KEK token object on the token, by version.
fn find_kek_objects(session: &Session) -> Result<BTreeMap<u32, ObjectHandle>, KekError> {
    let pk = |during| move |source| KekError::Pkcs11 { during, source };
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            // Only a KEK that cannot leave the token counts as one, whatever its label.
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ])
        .map_err(pk("searching for the KEK"))?;
    let mut found = BTreeMap::new();
    for handle in handles {
        let attrs = session
            .get_attributes(handle, &[AttributeType::Label])
            .map_err(pk("reading a KEK label"))?;
        for attr in attrs {
            if let Attribute::Label(bytes) = attr
                && let Some(version) = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|l| l.strip_prefix(KEK_LABEL_PREFIX))
                    .and_then(|v| v.parse::<u32>().ok())
            {
                found.insert(version, handle);
            }
        }
    }
    Ok(found)
}

/// Generates KEK `version` inside the token: AES-256, persistent, private, sensitive, never
/// extractable, and usable for nothing but wrapping and unwrapping keys.
fn create_kek(session: &Session, version: u32) -> Result<ObjectHandle, KekError> {
    let label = format!("{KEK_LABEL_PREFIX}{version}");
    let template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::ValueLen(32.into()),
        Attribute::Label(label.clone().into_bytes()),
        Attribute::Id(label.into_bytes()),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|source| KekError::Pkcs11 {
            during: "creating the KEK",
            source,
        })
}

/// Wraps raw secret bytes under `kek` with `CKM_AES_KEY_WRAP_PAD`: the bytes become a
/// short-lived extractable session object, are wrapped, and the object is destroyed.
pub(crate) fn wrap_bytes(session: &Session, kek: ObjectHandle, secret: &[u8]) -> Result<Vec<u8>, CkError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Value(secret.to_vec()),
    ];
    let created = session.create_object(&template);
    for attr in &mut template {
        if let Attribute::Value(bytes) = attr {
            bytes.zeroize();
        }
    }
    let object = created?;
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, kek, object);
    let destroyed = session.destroy_object(object);
    let wrapped = wrapped?;
    destroyed?;
    Ok(wrapped)
}

/// Unwraps `wrapped` under `kek` into a short-lived session object, reads its value and
/// destroys it. An integrity failure comes back as the module's error code.
pub(crate) fn unwrap_bytes(
    session: &Session,
    kek: ObjectHandle,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CkError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let object = session.unwrap_key(&Mechanism::AesKeyWrapPad, kek, wrapped, &template)?;
    let attrs = session.get_attributes(object, &[AttributeType::Value]);
    let destroyed = session.destroy_object(object);
    let mut value = Zeroizing::new(Vec::new());
    for attr in attrs? {
        if let Attribute::Value(mut bytes) = attr {
            value.extend_from_slice(&bytes);
            bytes.zeroize();
        }
    }
    destroyed?;
    Ok(value)
}

/// Re-exported for tests and `sigvault dev`: a PIN from a string.
pub fn pin(text: &str) -> AuthPin {
    AuthPin::from(text.to_owned())
}

#[cfg(test)]
pub(crate) mod testing {
    //! A fresh SoftHSM2 token per test, in the checkout's shared test token directory.
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub fn module() -> PathBuf {
        std::env::var_os("SIGVAULT_TEST_PKCS11_MODULE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
    }

    /// Creates a new token with a unique label and returns settings to open it.
    pub fn fresh_token(tag: &str) -> Pkcs11Settings {
        static N: AtomicU32 = AtomicU32::new(0);
        let conf =
            PathBuf::from(std::env::var_os("SOFTHSM2_CONF").expect("SOFTHSM2_CONF is set by .cargo/config.toml"));
        let token_dir = conf.parent().unwrap().join("tokens");
        crate::dev::write_softhsm_conf(&conf, &token_dir).unwrap_or(());
        let label = format!("u{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), tag);
        let label: String = label.chars().take(32).collect();
        let ctx = context(&module()).unwrap();
        ensure_token(&ctx, &label, &pin("so-pin-1234"), &pin("user-pin-1234")).unwrap();
        Pkcs11Settings {
            module: module(),
            token_label: label,
            pin: pin("user-pin-1234"),
            sessions: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::fresh_token;
    use super::*;

    #[tokio::test]
    async fn a_new_token_gets_a_kek_that_wraps_and_unwraps() {
        let kek = Pkcs11Kek::open(fresh_token("wrap")).await.unwrap();
        kek.self_test().await.unwrap();
        let id = kek.current_kek_id();
        assert!(id.starts_with("pkcs11:") && id.ends_with(":1"), "{id}");
        let dek = Dek::generate().unwrap();
        let wrapped = kek.wrap_dek(&dek).await.unwrap();
        assert_eq!(wrapped.bytes.len(), 40, "RFC 5649 wrap of 32 bytes is 40 bytes");
        assert_ne!(&wrapped.bytes[..32], &dek.expose_secret()[..]);
        let back = kek.unwrap_dek(&wrapped.kek_id, &wrapped.bytes).await.unwrap();
        assert_eq!(back.expose_secret(), dek.expose_secret());
    }

    #[tokio::test]
    async fn reopening_a_token_finds_the_same_kek() {
        let settings = fresh_token("reopen");
        let again = Pkcs11Settings {
            module: settings.module.clone(),
            token_label: settings.token_label.clone(),
            pin: pin("user-pin-1234"),
            sessions: 1,
        };
        let first = Pkcs11Kek::open(settings).await.unwrap();
        let dek = Dek::generate().unwrap();
        let wrapped = first.wrap_dek(&dek).await.unwrap();
        drop(first);
        let second = Pkcs11Kek::open(again).await.unwrap();
        assert_eq!(second.kek_ids(), vec![wrapped.kek_id.clone()]);
        let back = second.unwrap_dek(&wrapped.kek_id, &wrapped.bytes).await.unwrap();
        assert_eq!(back.expose_secret(), dek.expose_secret());
    }

    #[tokio::test]
    async fn a_tampered_wrapped_dek_is_rejected() {
        let kek = Pkcs11Kek::open(fresh_token("tamper")).await.unwrap();
        let wrapped = kek.wrap_dek(&Dek::generate().unwrap()).await.unwrap();
        for i in [0, 7, 20, 39] {
            let mut bad = wrapped.bytes.clone();
            bad[i] ^= 1;
            let err = kek.unwrap_dek(&wrapped.kek_id, &bad).await.err().unwrap();
            assert!(matches!(err, KekError::UnwrapRejected), "byte {i}: {err:?}");
        }
        let err = kek
            .unwrap_dek(&wrapped.kek_id, &wrapped.bytes[..32])
            .await
            .err()
            .unwrap();
        assert!(matches!(err, KekError::UnwrapRejected), "{err:?}");
    }

    #[tokio::test]
    async fn a_dek_wrapped_by_another_token_does_not_open() {
        let a = Pkcs11Kek::open(fresh_token("a")).await.unwrap();
        let b = Pkcs11Kek::open(fresh_token("b")).await.unwrap();
        let wrapped = a.wrap_dek(&Dek::generate().unwrap()).await.unwrap();
        let err = b.unwrap_dek(&wrapped.kek_id, &wrapped.bytes).await.err().unwrap();
        assert!(matches!(err, KekError::UnknownKek(_)), "{err:?}");
        let relabelled = b.current_kek_id();
        let err = b.unwrap_dek(&relabelled, &wrapped.bytes).await.err().unwrap();
        assert!(matches!(err, KekError::UnwrapRejected), "{err:?}");
    }

    #[tokio::test]
    async fn a_wrong_pin_is_named_as_such() {
        let mut settings = fresh_token("pin");
        settings.pin = pin("not-the-pin");
        let err = Pkcs11Kek::open(settings).await.err().unwrap();
        assert!(matches!(err, KekError::PinIncorrect { .. }), "{err:?}");
        assert!(err.to_string().contains("PIN is incorrect"));
    }

    #[tokio::test]
    async fn a_missing_token_is_named_by_its_label() {
        let mut settings = fresh_token("missing");
        settings.token_label = "no-such-token".into();
        let err = Pkcs11Kek::open(settings).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "no initialised token labelled 'no-such-token' in the PKCS#11 module"
        );
    }

    #[tokio::test]
    async fn the_kek_is_sensitive_and_cannot_be_extracted() {
        let settings = fresh_token("attrs");
        let ctx = context(&settings.module).unwrap();
        let slot = find_token(&ctx, &settings.token_label).unwrap().unwrap();
        let _kek = Pkcs11Kek::open(settings).await.unwrap();
        let session = ctx.open_ro_session(slot).unwrap();
        let keks = find_kek_objects(&session).unwrap();
        let handle = *keks.get(&1).unwrap();
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Encrypt,
                    AttributeType::Value,
                ],
            )
            .unwrap();
        assert!(attrs.contains(&Attribute::Sensitive(true)));
        assert!(attrs.contains(&Attribute::Extractable(false)));
        assert!(attrs.contains(&Attribute::Encrypt(false)));
        assert!(
            !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
            "the KEK value must not be readable"
        );
    }
}
