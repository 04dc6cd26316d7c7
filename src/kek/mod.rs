//! Key-encryption keys: the one secret sigvault never holds.
//!
//! A [`KekProvider`] wraps and unwraps 32-byte data keys (DEKs) with a KEK that stays in
//! its HSM or KMS. Providers are named by a versioned `kek_id` written into every sealed
//! record, so a record always says which KEK opens it. [`Keyring`] combines a provider with
//! [`crate::envelope`] to seal and open whole records.
//!
//! This module must never log, return or persist a DEK or a KEK.

pub mod pkcs11;

use std::sync::Arc;

use crate::BoxFuture;
use crate::envelope::{self, Dek, EnvelopeError, RecordIdentity, SealedRecord};
use crate::secret::SecretBytes;

/// A DEK wrapped by a KEK, with the id of the KEK that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDek {
    pub kek_id: String,
    pub bytes: Vec<u8>,
}

/// The interface every KEK backend implements.
pub trait KekProvider: Send + Sync {
    /// The `kek_id` new records are wrapped under.
    fn current_kek_id(&self) -> String;

    /// Every KEK version this provider can unwrap with, oldest first.
    fn kek_ids(&self) -> Vec<String>;

    /// Wraps `dek` under the current KEK.
    fn wrap_dek(&self, dek: &Dek) -> BoxFuture<'_, Result<WrappedDek, KekError>>;

    /// Unwraps a DEK wrapped under `kek_id`.
    fn unwrap_dek<'a>(&'a self, kek_id: &'a str, wrapped: &'a [u8]) -> BoxFuture<'a, Result<Dek, KekError>>;

    /// Proves the provider works end to end: a random DEK wraps and unwraps to itself.
    /// Run at startup; a failure refuses to start the server.
    fn self_test(&self) -> BoxFuture<'_, Result<(), KekError>> {
        Box::pin(async move {
            let dek = Dek::generate().map_err(|_| KekError::SelfTest)?;
            let wrapped = self.wrap_dek(&dek).await?;
            let back = self.unwrap_dek(&wrapped.kek_id, &wrapped.bytes).await?;
            // Comparing two copies of a throwaway DEK; constant time is not needed here
            // but costs nothing.
            let same: bool = subtle::ConstantTimeEq::ct_eq(&back.expose_secret()[..], &dek.expose_secret()[..]).into();
            if same { Ok(()) } else { Err(KekError::SelfTest) }
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("cannot load the PKCS#11 module {path}: {source}")]
    ModuleLoad {
        path: String,
        #[source]
        source: cryptoki::error::Error,
    },
    #[error("PKCS#11 module {path} cannot be used: this process already loaded {loaded}")]
    ModuleConflict { path: String, loaded: String },
    #[error("no initialised token labelled '{label}' in the PKCS#11 module")]
    TokenNotFound { label: String },
    #[error("HSM login to token '{label}' failed: the PIN is incorrect")]
    PinIncorrect { label: String },
    #[error("HSM login to token '{label}' failed: the PIN is locked")]
    PinLocked { label: String },
    #[error("PKCS#11 call failed during {during}: {source}")]
    Pkcs11 {
        during: &'static str,
        #[source]
        source: cryptoki::error::Error,
    },
    #[error("record names KEK '{0}', which this provider does not hold")]
    UnknownKek(String),
    /// The wrapped DEK failed its integrity check (tampered, or wrapped by another KEK).
    #[error("the wrapped data key was rejected by the KEK")]
    UnwrapRejected,
    #[error("the HSM worker pool is gone")]
    Pool,
    #[error("the KEK self-test failed: a data key did not survive wrap and unwrap")]
    SelfTest,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

impl KekError {
    /// True when the error means the HSM/KMS is unreachable or misbehaving (503), as
    /// opposed to a record that does not open (data integrity).
    pub fn is_unavailable(&self) -> bool {
        match self {
            KekError::UnwrapRejected | KekError::UnknownKek(_) | KekError::Envelope(_) => false,
            KekError::ModuleLoad { .. }
            | KekError::ModuleConflict { .. }
            | KekError::TokenNotFound { .. }
            | KekError::PinIncorrect { .. }
            | KekError::PinLocked { .. }
            | KekError::Pkcs11 { .. }
            | KekError::Pool
            | KekError::SelfTest => true,
        }
    }
}

/// Seals and opens whole records: a DEK per record, wrapped by the provider's KEK.
#[derive(Clone)]
pub struct Keyring {
    provider: Arc<dyn KekProvider>,
}

impl Keyring {
    pub fn new(provider: Arc<dyn KekProvider>) -> Self {
        Self { provider }
    }

    pub fn provider(&self) -> &Arc<dyn KekProvider> {
        &self.provider
    }

    /// Seals `plaintext` for `identity` under a fresh DEK wrapped by the current KEK.
    pub async fn seal(&self, identity: &RecordIdentity<'_>, plaintext: &[u8]) -> Result<SealedRecord, KekError> {
        let dek = Dek::generate()?;
        let (nonce, ciphertext) = envelope::seal(&dek, identity, plaintext)?;
        let wrapped = self.provider.wrap_dek(&dek).await?;
        Ok(SealedRecord {
            format: envelope::FORMAT_V1,
            kek_id: wrapped.kek_id,
            wrapped_dek: wrapped.bytes,
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens a record for exactly `identity`: one KEK unwrap, then AES-GCM in process.
    pub async fn open(&self, identity: &RecordIdentity<'_>, record: &SealedRecord) -> Result<SecretBytes, KekError> {
        if record.format != envelope::FORMAT_V1 {
            return Err(EnvelopeError::UnknownFormat(record.format).into());
        }
        let dek = self.provider.unwrap_dek(&record.kek_id, &record.wrapped_dek).await?;
        Ok(envelope::open(&dek, identity, record)?)
    }
}

#[cfg(test)]
mod pkcs11_vectors;
