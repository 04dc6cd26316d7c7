//! What can go wrong talking to a PKCS#11 module, with the module's own codes, and how each
//! failure maps onto the provider-neutral [`KekError`].

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
    /// The session lost its login (a token reset): private objects are out of sight.
    #[error("the HSM session is not logged in")]
    NotLoggedIn,
    /// Several objects of a witness record's newest generation, with different values.
    #[error("the token holds {count} different newest witness objects labelled '{name}'")]
    DuplicateWitness { name: String, count: usize },
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
            Pkcs11Error::Call { .. }
            | Pkcs11Error::MissingSessionKek(_)
            | Pkcs11Error::Pool
            | Pkcs11Error::NotLoggedIn
            | Pkcs11Error::DuplicateWitness { .. } => KekError::Unavailable(Box::new(err)),
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

/// An unwrap failure: [`KekError::Rejected`] for an integrity failure, unavailable otherwise.
pub(super) fn unwrap_error(err: CkError) -> KekError {
    match err {
        CkError::Pkcs11(rv, _) if is_integrity_failure(rv) => KekError::Rejected,
        source => call("unwrapping a data key")(source).into(),
    }
}
