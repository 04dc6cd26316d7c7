//! Key-encryption keys: the one secret sigvault never holds.
//!
//! A [`KekProvider`] wraps and unwraps 32-byte data keys (DEKs) with a KEK that stays in
//! its HSM or KMS. Every KEK a provider holds is named by a `kek_id` written into each sealed
//! record, so a record always says which KEK opens it. [`open`] is the one place a provider
//! is built from its settings; [`Keyring`] combines providers with [`crate::envelope`] to seal
//! whole records under the current KEK and to open each record with the provider that holds
//! its `kek_id`. Providers report failures as the provider-neutral [`KekError`]. A provider
//! also keeps small witness records for sigvault ([`KekProvider::witness_write`]): the root
//! of trust is the one place outside the disk, so it remembers how far the audit chain got.
//!
//! This module must never log, return or persist a DEK or a KEK.

#[cfg(feature = "kek-aws-kms")]
pub mod aws_kms;
mod error;
mod keyring;
#[cfg(feature = "kek-pkcs11")]
mod oaep;
#[cfg(feature = "kek-pkcs11")]
pub mod pkcs11;

#[cfg(all(test, any(feature = "kek-pkcs11", feature = "kek-aws-kms")))]
mod contract_tests;

use std::sync::Arc;

pub use error::{ConcurrentLoadFailed, KekError, ProviderError, SelfTestFailed};
pub use keyring::Keyring;
use zeroize::Zeroizing;

use crate::BoxFuture;
use crate::envelope::{Dek, RecordIdentity};

/// A DEK wrapped by a KEK, with the id of the KEK that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDek {
    pub kek_id: String,
    pub bytes: Vec<u8>,
}

/// The public half of the custodians' RSA wrapping key (BYOK import), as the provider holds
/// it: big-endian modulus and public exponent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappingPublicKey {
    /// Starts at 1 and grows with each rotation.
    pub version: u32,
    pub modulus: Vec<u8>,
    pub public_exponent: Vec<u8>,
}

/// Why a provider without an HSM refuses the custodians' wrapping key.
const NO_WRAPPING_KEY: &str = "this KEK provider has no RSA wrapping key: BYOK import needs the pkcs11 KEK provider";
/// Why a provider without an HSM refuses HSM-resident keys.
const NO_RESIDENT_KEYS: &str = "this KEK provider keeps no keys in an HSM: boundary hsm needs the pkcs11 KEK provider";

/// The HMAC an HSM-resident key computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidentMac {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

/// The record a provider's self-test wraps its throwaway DEK for.
const SELF_TEST: RecordIdentity<'static> = RecordIdentity {
    kind: "kek-self-test",
    tenant: "-",
    id: "-",
    version: 1,
};

/// The interface every KEK backend implements (its behaviour is pinned by the contract
/// tests every provider runs).
pub trait KekProvider: Send + Sync {
    /// The `kek_id` new records are wrapped under.
    fn current_kek_id(&self) -> String;

    /// Every KEK version this provider can unwrap with, oldest first.
    fn kek_ids(&self) -> Vec<String>;

    /// Whether `kek_id` names a KEK this provider can unwrap with.
    fn holds(&self, kek_id: &str) -> bool {
        self.kek_ids().iter().any(|id| id == kek_id)
    }

    /// Wraps `dek`, the data key of the record `identity`, under the current KEK. A provider
    /// that can bind the wrap to the record does (AWS KMS: the EncryptionContext), so a wrap
    /// moved to another record does not unwrap; one that cannot (a PKCS#11 key wrap) relies
    /// on the envelope, whose AES-GCM AAD binds the same identity.
    fn wrap_dek<'a>(
        &'a self,
        dek: &'a Dek,
        identity: &RecordIdentity<'_>,
    ) -> BoxFuture<'a, Result<WrappedDek, KekError>>;

    /// Unwraps a DEK wrapped under `kek_id` for the record `identity`:
    /// [`KekError::UnknownKek`] when this provider does not hold it, [`KekError::Rejected`]
    /// when the wrap does not open under it (altered, another KEK's, or bound to another
    /// record).
    fn unwrap_dek<'a>(
        &'a self,
        kek_id: &'a str,
        wrapped: &'a [u8],
        identity: &RecordIdentity<'_>,
    ) -> BoxFuture<'a, Result<Dek, KekError>>;

    /// Makes a new KEK current and returns its `kek_id`: records sealed from now on are
    /// wrapped under it, and every KEK this provider held before still unwraps. PKCS#11
    /// creates the next KEK version on the token; AWS KMS creates a new key and points the
    /// configured alias at it. The caller makes sure one node rotates at a time (the store's
    /// lease): two rotations at once could make two KEKs of one version.
    fn rotate(&self) -> BoxFuture<'_, Result<String, KekError>>;

    /// Reads again which KEKs exist and which is current, after another node rotated or
    /// retired one: a record naming a KEK made elsewhere opens once this ran.
    fn refresh(&self) -> BoxFuture<'_, Result<(), KekError>>;

    /// Stops using `kek_id`, which must not be current: PKCS#11 destroys the KEK object (every
    /// record still wrapped under it is lost); AWS KMS forgets the key (it schedules nothing in
    /// KMS: deleting a key is the key owner's decision). The caller checks that no record
    /// still names it. [`KekError::Refused`] for the current KEK, [`KekError::UnknownKek`]
    /// for one this provider does not hold.
    fn retire<'a>(&'a self, kek_id: &'a str) -> BoxFuture<'a, Result<(), KekError>>;

    /// Keeps `value` as the witness record `name` in the root of trust, replacing the one
    /// kept before. A witness is a few bytes sigvault needs remembered outside the disk: the
    /// audit chain's head (`audit::witness`), so that wiping the trail and the database
    /// together cannot pass verification. Whoever rewrites the disk cannot roll it back
    /// without the HSM or KMS; a provider that cannot answer reports
    /// [`KekError::Unavailable`].
    fn witness_write<'a>(&'a self, name: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), KekError>>;

    /// The witness record `name` as last written; `None` when the root of trust holds none.
    /// A provider that cannot look — down, or no longer logged in, where a missing record
    /// would be indistinguishable from a removed one — reports [`KekError::Unavailable`],
    /// never `None`.
    fn witness_read<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KekError>>;

    /// The current RSA wrapping key custodians wrap imports to, created on first use. A
    /// provider without one (AWS KMS) reports [`KekError::Unsupported`].
    fn wrapping_key(&self) -> BoxFuture<'_, Result<WrappingPublicKey, KekError>> {
        Box::pin(async { Err(KekError::Unsupported(NO_WRAPPING_KEY)) })
    }

    /// Makes a new wrapping key current. The one before it still opens imports until the next
    /// rotation (a custodian who fetched it a moment ago is not cut off); older ones are
    /// destroyed.
    fn rotate_wrapping_key(&self) -> BoxFuture<'_, Result<WrappingPublicKey, KekError>> {
        Box::pin(async { Err(KekError::Unsupported(NO_WRAPPING_KEY)) })
    }

    /// Opens the RSA-OAEP (SHA-256, MGF1-SHA-256) block of a custodian's wrapped import with
    /// a wrapping key this provider holds, and returns the ephemeral AES key inside it (which
    /// then opens the import's AES-KWP half). [`KekError::Rejected`] when it opens under none.
    fn decrypt_import_key<'a>(&'a self, _block: &'a [u8]) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KekError>> {
        Box::pin(async { Err(KekError::Unsupported(NO_WRAPPING_KEY)) })
    }

    /// Generates `len` bytes of key material for an HSM-resident key inside the HSM; returns
    /// it wrapped by the HSM's resident wrapping key (the only form that leaves the HSM).
    /// [`KekError::Unsupported`] for a provider without an HSM (AWS KMS).
    fn resident_generate(&self, _len: usize) -> BoxFuture<'_, Result<Vec<u8>, KekError>> {
        Box::pin(async { Err(KekError::Unsupported(NO_RESIDENT_KEYS)) })
    }

    /// Takes imported material into the HSM as a resident key; returns it wrapped as
    /// [`KekProvider::resident_generate`] does.
    fn resident_import<'a>(&'a self, _material: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KekError>> {
        Box::pin(async { Err(KekError::Unsupported(NO_RESIDENT_KEYS)) })
    }

    /// The HMAC of `message` under the resident key `wrapped`, computed inside the HSM. `id`
    /// names the key version for the HSM session's cache of unwrapped keys (the same id must
    /// always mean the same `wrapped`).
    fn resident_mac<'a>(
        &'a self,
        _id: &'a str,
        _wrapped: &'a [u8],
        _alg: ResidentMac,
        _message: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, KekError>> {
        Box::pin(async { Err(KekError::Unsupported(NO_RESIDENT_KEYS)) })
    }

    /// Proves the provider works end to end: a random DEK wraps and unwraps to itself.
    /// Run when a provider is opened; a failure refuses to start the server.
    fn self_test(&self) -> BoxFuture<'_, Result<(), KekError>> {
        Box::pin(async move {
            let dek = Dek::generate()?;
            let wrapped = self.wrap_dek(&dek, &SELF_TEST).await?;
            let back = self.unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &SELF_TEST).await?;
            // Comparing two copies of a throwaway DEK; constant time is not needed here
            // but costs nothing.
            let same: bool =
                subtle::ConstantTimeEq::ct_eq(back.expose_secret().as_slice(), dek.expose_secret().as_slice()).into();
            if same {
                Ok(())
            } else {
                Err(KekError::Unavailable(Box::new(SelfTestFailed)))
            }
        })
    }
}

/// Which provider holds the KEK, with that provider's own settings.
#[derive(Clone)]
pub enum KekSettings {
    /// A PKCS#11 token (`[kek] provider = "pkcs11"`).
    #[cfg(feature = "kek-pkcs11")]
    Pkcs11(pkcs11::Pkcs11Settings),
    /// An AWS KMS key (`[kek] provider = "aws-kms"`).
    #[cfg(feature = "kek-aws-kms")]
    AwsKms(aws_kms::AwsKmsSettings),
}

impl KekSettings {
    /// The PKCS#11 settings, when the KEK is on a PKCS#11 token (`sigvault dev` needs one).
    #[cfg(feature = "kek-pkcs11")]
    pub fn pkcs11(&self) -> Option<&pkcs11::Pkcs11Settings> {
        match self {
            KekSettings::Pkcs11(settings) => Some(settings),
            #[cfg(feature = "kek-aws-kms")]
            KekSettings::AwsKms(_) => None,
        }
    }
}

/// Builds the provider `settings` name and proves it with [`KekProvider::self_test`]: the one
/// place a provider is opened (serve, dev and the offline admin commands all come here).
// A build without providers has no settings to open: everything after the match is unreachable.
#[cfg_attr(
    not(any(feature = "kek-pkcs11", feature = "kek-aws-kms")),
    allow(unreachable_code, unused_variables)
)]
pub async fn open(settings: &KekSettings) -> Result<Arc<dyn KekProvider>, KekError> {
    let provider: Arc<dyn KekProvider> = match *settings {
        #[cfg(feature = "kek-pkcs11")]
        KekSettings::Pkcs11(ref pkcs11) => Arc::new(pkcs11::Pkcs11Kek::open(pkcs11.clone()).await?),
        #[cfg(feature = "kek-aws-kms")]
        KekSettings::AwsKms(ref kms) => Arc::new(aws_kms::AwsKmsKek::open(kms.clone()).await?),
    };
    provider.self_test().await?;
    Ok(provider)
}

/// The keyring of a vault's settings: `current` ([`open`]ed, proved) seals, and the records of
/// `previous` (a migration's old provider, `[kek.previous]`, also opened and proved) stay
/// readable until the rewrap job moved them.
pub async fn open_keyring(current: &KekSettings, previous: Option<&KekSettings>) -> Result<Keyring, KekError> {
    let current = open(current).await?;
    let previous = match previous {
        Some(settings) => vec![open(settings).await?],
        None => Vec::new(),
    };
    Ok(Keyring::with_retired(current, previous))
}
