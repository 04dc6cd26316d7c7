//! The provider-neutral KEK error: what a caller of any KEK provider must tell apart.
//!
//! Four outcomes matter above the provider: the HSM or KMS is down (try again later: 503),
//! a wrapped data key does not open (a tampered or misplaced record: never retried), a record
//! names a KEK no open provider holds, and a provider that cannot be opened as configured.
//! Each provider keeps its own error type (with its library's codes) as the `source`, so the
//! log says which call failed while nothing above `kek` depends on a provider's types.

use crate::envelope::EnvelopeError;

/// A provider's own error, kept as the cause.
pub type ProviderError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The HSM or KMS cannot be reached or failed to do its work; the same call may succeed
    /// later. Never a statement about the record.
    #[error("the KEK provider is unavailable")]
    Unavailable(#[source] ProviderError),
    /// The provider refused the wrapped data key: it was altered, or wrapped by another KEK.
    #[error("the wrapped data key was rejected by the KEK")]
    Rejected,
    /// The record names a KEK that no open provider holds.
    #[error("record names KEK '{0}', which no open provider holds")]
    UnknownKek(String),
    /// The provider cannot be opened as configured (module, token, PIN, key id, …).
    #[error("the KEK provider cannot be opened as configured")]
    Config(#[source] ProviderError),
    /// The sealed record itself does not open (its AES-GCM tag, format or length).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// A KEK administration step the provider refuses as asked (retiring the current KEK,
    /// rotating a KMS key named by ARN rather than alias, …); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The provider cannot do this at all (an RSA wrapping key on AWS KMS).
    #[error("{0}")]
    Unsupported(&'static str),
}

impl KekError {
    /// True when the error means the HSM/KMS is unreachable, misbehaving or misconfigured
    /// (503), as opposed to a record that does not open (data integrity).
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            KekError::Unavailable(_) | KekError::Config(_) => true,
            KekError::Rejected
            | KekError::UnknownKek(_)
            | KekError::Envelope(_)
            | KekError::Refused(_)
            | KekError::Unsupported(_) => false,
        }
    }
}

/// Why a caller got no secret without asking the provider: the unwrap of the same record by
/// the request before it, in the same burst, failed (see `keys::cache::Flights`).
#[derive(Debug, thiserror::Error)]
#[error("the unwrap of this record by a concurrent request failed just before; not tried again")]
pub struct ConcurrentLoadFailed;

/// The self-test's finding: a data key did not come back from wrap and unwrap unchanged.
#[derive(Debug, thiserror::Error)]
#[error("the KEK self-test failed: a data key did not survive wrap and unwrap")]
pub struct SelfTestFailed;
