//! What can go wrong talking to a PKCS#11 module, with the module's own codes, and how each
//! failure maps onto the provider-neutral [`KekError`].

use std::time::Duration;

use cryptoki::error::{Error as CkError, RvError};

use crate::kek::KekError;

#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error("cannot load the PKCS#11 module {path}: {source}")]
    ModuleLoad {
        path: String,
        #[source]
        source: CkError,
    },
    #[error("PKCS#11 module {path} cannot be used: this process already loaded {loaded}")]
    ModuleConflict { path: String, loaded: String },
    #[error("no initialised token labelled '{label}' in the PKCS#11 module")]
    TokenNotFound { label: String },
    #[error("HSM login to token '{label}' failed: the PIN is incorrect")]
    PinIncorrect { label: String },
    #[error("HSM login to token '{label}' failed: the PIN is locked")]
    PinLocked { label: String },
    /// A C call failed: the session, the token or the module is in trouble.
    #[error("PKCS#11 call failed during {during}: {source}")]
    Call {
        during: &'static str,
        #[source]
        source: CkError,
    },
    /// A pooled session lost a session copy of a KEK version it should hold.
    #[error("the pooled session holds no copy of KEK version {0}")]
    MissingSessionKek(u32),
    #[error("the HSM worker pool is gone")]
    Pool,
    /// The token holds two KEK objects of one version.
    #[error("the token holds two KEK objects of version {version}: remove the newer one with the vendor's tool")]
    DuplicateKek { version: u32 },
    /// A rotation or retirement the provider refuses.
    #[error("{0}")]
    Refused(String),
    /// The session lost its login (a token reset): private objects are out of sight.
    #[error("the HSM session is not logged in")]
    NotLoggedIn,
    /// Several objects of a witness record's newest generation, with different values.
    #[error("the token holds {count} different newest witness objects labelled '{name}'")]
    DuplicateWitness { name: String, count: usize },
    /// The module refused a wrapped key: it does not open under the KEK (altered, or wrapped
    /// by another KEK).
    #[error("the module rejected the wrapped key")]
    WrappedKeyRejected(#[source] CkError),
    /// A custodian's wrapped import opens under none of the token's wrapping keys.
    #[error("the wrapped import does not open under any wrapping key on the token")]
    ImportRejected,
    /// The call did not get a session, or the module's answer, within `call_timeout`.
    #[error("no answer from the HSM within {after:?} ({during})")]
    Timeout { after: Duration, during: &'static str },
    /// The HSM failed and is tried again only once a retry interval; this call was not made.
    #[error("the HSM has been failing for {failing_for:?}; it is tried again at most once a second")]
    Down { failing_for: Duration },
    /// Opening a session again after a failure did not work.
    #[error("reopening a session on token '{label}' failed")]
    Reopen {
        label: String,
        #[source]
        source: Box<Pkcs11Error>,
    },
    /// The token refused the PIN when the provider logged in again after a failure; it is not
    /// offered again until a restart, since an HSM locks a PIN after a few wrong attempts.
    #[error("token '{label}' refused the PIN when logging in again; not retried until sigvault restarts")]
    LoginRefused { label: String },
}

impl Pkcs11Error {
    /// Whether the module's answer means the session cannot be used again: the session, the
    /// token or the device is gone, the token lost its login (a reset), or the session's
    /// copies of the KEK are gone with it. Such a session is discarded and the pool reopens.
    pub(super) fn breaks_session(&self) -> bool {
        match self {
            Pkcs11Error::Call {
                source: CkError::Pkcs11(rv, _),
                ..
            } => matches!(
                rv,
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::DeviceError
                    | RvError::DeviceMemory
                    | RvError::TokenNotPresent
                    | RvError::TokenNotRecognized
                    | RvError::SlotIdInvalid
                    | RvError::CryptokiNotInitialized
                    | RvError::UserNotLoggedIn
                    | RvError::KeyHandleInvalid
                    | RvError::ObjectHandleInvalid
                    | RvError::WrappingKeyHandleInvalid
                    | RvError::UnwrappingKeyHandleInvalid
            ),
            Pkcs11Error::NotLoggedIn => true,
            Pkcs11Error::Call { .. }
            | Pkcs11Error::ModuleLoad { .. }
            | Pkcs11Error::ModuleConflict { .. }
            | Pkcs11Error::TokenNotFound { .. }
            | Pkcs11Error::PinIncorrect { .. }
            | Pkcs11Error::PinLocked { .. }
            | Pkcs11Error::MissingSessionKek(_)
            | Pkcs11Error::Pool
            | Pkcs11Error::DuplicateWitness { .. }
            | Pkcs11Error::DuplicateKek { .. }
            | Pkcs11Error::Refused(_)
            | Pkcs11Error::WrappedKeyRejected(_)
            | Pkcs11Error::ImportRejected
            | Pkcs11Error::Timeout { .. }
            | Pkcs11Error::Down { .. }
            | Pkcs11Error::Reopen { .. }
            | Pkcs11Error::LoginRefused { .. } => false,
        }
    }
}

/// `map_err` adapter naming the C call that failed.
pub(super) fn call(during: &'static str) -> impl Fn(CkError) -> Pkcs11Error {
    move |source| Pkcs11Error::Call { during, source }
}

impl From<Pkcs11Error> for KekError {
    fn from(err: Pkcs11Error) -> Self {
        match err {
            Pkcs11Error::ModuleLoad { .. }
            | Pkcs11Error::ModuleConflict { .. }
            | Pkcs11Error::TokenNotFound { .. }
            | Pkcs11Error::PinIncorrect { .. }
            | Pkcs11Error::PinLocked { .. } => KekError::Config(Box::new(err)),
            Pkcs11Error::WrappedKeyRejected(_) | Pkcs11Error::ImportRejected => KekError::Rejected,
            Pkcs11Error::Refused(reason) => KekError::Refused(reason),
            Pkcs11Error::DuplicateKek { .. } => KekError::Config(Box::new(err)),
            Pkcs11Error::Call { .. }
            | Pkcs11Error::MissingSessionKek(_)
            | Pkcs11Error::Pool
            | Pkcs11Error::NotLoggedIn
            | Pkcs11Error::DuplicateWitness { .. }
            | Pkcs11Error::Timeout { .. }
            | Pkcs11Error::Down { .. }
            | Pkcs11Error::Reopen { .. }
            | Pkcs11Error::LoginRefused { .. } => KekError::Unavailable(Box::new(err)),
        }
    }
}

/// The return codes by which a module says "this wrapped key does not open under this KEK"
/// (SoftHSM2 reports a failed RFC 5649 integrity check as `CKR_GENERAL_ERROR`) rather than
/// "the HSM is in trouble".
pub(super) fn is_integrity_failure(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::GeneralError
    )
}

/// An unwrap failure: a rejected wrapped key for an integrity failure, a failed call
/// otherwise.
pub(super) fn unwrap_error(err: CkError) -> Pkcs11Error {
    match err {
        CkError::Pkcs11(rv, _) if is_integrity_failure(rv) => Pkcs11Error::WrappedKeyRejected(err),
        source => call("unwrapping a data key")(source),
    }
}
