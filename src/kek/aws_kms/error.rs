//! What can go wrong talking to AWS KMS, with KMS's own error code, and how each failure maps
//! onto the provider-neutral [`KekError`].
//!
//! KMS names a refusal of the ciphertext in three ways: `InvalidCiphertextException` (altered,
//! cut, or an EncryptionContext that does not match), `IncorrectKeyException` (a ciphertext of
//! another key than the one named), and an `AccessDeniedException` for a ciphertext that
//! refers to a key that does not exist or cannot be used (a ciphertext of a key in another
//! account or region, or of no key at all). That last code is also IAM refusing the call, which
//! says nothing about the record: the provider tells the two apart by trying its own key
//! (`AwsKmsKek::unwrap_dek`). Every other failure — throttling that outlasted its retries, a
//! disabled or pending-deletion key, the network, a timeout — is [`KekError::Unavailable`].

use std::time::Duration;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

use crate::kek::KekError;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// KMS answered with an error code.
    #[error("AWS KMS {operation} failed: {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// No answer: connection refused, TLS, DNS, a response that could not be read.
    #[error("AWS KMS {operation} failed: {detail}")]
    Transport { operation: &'static str, detail: String },
    /// The call (retries included) did not finish within `kek.aws_kms.call_timeout`.
    #[error("no answer from AWS KMS within {after:?} ({operation})")]
    Timeout { operation: &'static str, after: Duration },
    /// The configured key cannot wrap data keys.
    #[error("AWS KMS key {key}: {reason}")]
    Unusable { key: String, reason: String },
    /// A witness record that KMS cannot keep as a tag.
    #[error("witness record {name}: {reason}")]
    Witness { name: String, reason: String },
    /// KMS gave back something sigvault did not ask for.
    #[error("AWS KMS {operation} answered unexpectedly: {detail}")]
    Unexpected { operation: &'static str, detail: String },
}

impl KmsError {
    /// The error of a failed SDK call.
    pub(super) fn from_sdk<E, R>(operation: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match err {
            SdkError::ServiceError(service) => KmsError::Service {
                operation,
                code: service.err().code().unwrap_or("Unknown").to_owned(),
                message: service.err().message().unwrap_or("").to_owned(),
            },
            SdkError::TimeoutError(_) => KmsError::Transport {
                operation,
                detail: "the attempt timed out".into(),
            },
            other => KmsError::Transport {
                operation,
                detail: crate::error::chain(other),
            },
        }
    }

    /// True for KMS's request-rate refusal: the only failure that is retried.
    pub(super) fn is_throttling(&self) -> bool {
        matches!(self, KmsError::Service { code, .. } if code == "ThrottlingException")
    }

    /// True when KMS refused the ciphertext itself (see the module docs); only meaningful for
    /// a Decrypt.
    pub(super) fn is_rejection(&self) -> bool {
        matches!(self, KmsError::Service { code, .. }
            if code == "InvalidCiphertextException" || code == "IncorrectKeyException")
    }

    /// True for `AccessDeniedException`: IAM refused the call, or the ciphertext names a key
    /// this caller cannot use.
    pub(super) fn is_access_denied(&self) -> bool {
        matches!(self, KmsError::Service { code, .. } if code == "AccessDeniedException")
    }
}

impl From<KmsError> for KekError {
    fn from(err: KmsError) -> Self {
        match err {
            KmsError::Unusable { .. } | KmsError::Witness { .. } => KekError::Config(Box::new(err)),
            _ if err.is_rejection() => KekError::Rejected,
            _ => KekError::Unavailable(Box::new(err)),
        }
    }
}
