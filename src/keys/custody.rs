//! What key custodians move in and out: wrapped imports (BYOK) and wrapped exports.
//!
//! Both use one format, `CKM_RSA_AES_KEY_WRAP`'s (Vault, AWS KMS and Google Cloud KMS import
//! it): RSA-OAEP with SHA-256 and MGF1-SHA-256 of a fresh AES-256 key, followed by the key
//! material wrapped under that AES key with AES-KWP (RFC 5649). An import is wrapped to the
//! vault's RSA-4096 wrapping key, whose private half never leaves the HSM
//! ([`crate::kek::KekProvider::decrypt_import_key`]); the AES-KWP half is opened here with the
//! ephemeral key, which (like the material) lives in this process only for the call. An export is wrapped to the custodian's own
//! RSA public key: the public-key half of the work, done here.
//!
//! Export is allowed only for keys created `exportable`; the flag can only ever be cleared
//! (see [`KeyService::patch`]), so a key created non-exportable never leaves, whoever asks.

use rsa::pkcs8::{DecodePublicKey as _, EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::model::KeyState;
use super::{KeyError, KeyResult, KeyService, kwp};
use crate::kek::{KekError, WrappingPublicKey};
use crate::secret::SecretBytes;

/// The wrapping format's name in the API (`"wrapping"`).
pub const WRAPPING_FORMAT: &str = "rsa-oaep-sha256-aes-kwp";
/// The wrapping key's algorithm in the API.
pub const WRAPPING_KEY_ALGORITHM: &str = "RSA-4096";
/// Smallest custodian key an export is wrapped to.
const MIN_RECIPIENT_BITS: usize = 2048;
/// Largest custodian key an export is wrapped to (bounds the work a request can ask for).
const MAX_RECIPIENT_BITS: usize = 8192;
/// Longest PEM text accepted for a custodian key.
const MAX_PUBLIC_KEY_PEM: usize = 4096;
/// The RSA-OAEP block of a wrapped import: one RSA-4096 block.
const WRAPPING_KEY_BYTES: usize = 512;
/// Longest wrapped import accepted: an RSA-4096 block and a KWP of the largest material.
const MAX_WRAPPED_IMPORT: usize = WRAPPING_KEY_BYTES + super::model::MAX_KEY_SIZE + 16;

/// The vault's wrapping key as custodians fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappingKey {
    pub version: u32,
    /// SubjectPublicKeyInfo, PEM.
    pub public_key_pem: String,
    /// `sha256:` and the hex SHA-256 of the SubjectPublicKeyInfo DER.
    pub fingerprint: String,
}

/// A key version wrapped for a custodian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub version: u32,
    pub wrapped: Vec<u8>,
    /// The recipient key's fingerprint (`sha256:` of its SubjectPublicKeyInfo DER).
    pub recipient_fingerprint: String,
}

fn fingerprint(spki_der: &[u8]) -> String {
    format!("sha256:{}", base16ct::lower::encode_string(&Sha256::digest(spki_der)))
}

/// The PEM and fingerprint of a provider's wrapping public key.
fn describe(public: &WrappingPublicKey) -> KeyResult<WrappingKey> {
    let bad = |what: &str| KeyError::Corrupt(format!("the HSM's wrapping key {what}"));
    let n = rsa::BoxedUint::from_be_slice_vartime(&public.modulus);
    let e = rsa::BoxedUint::from_be_slice_vartime(&public.public_exponent);
    let key = rsa::PublicKey::new(n, e).map_err(|_| bad("is not a valid RSA public key"))?;
    let der = key.to_public_key_der().map_err(|_| bad("cannot be encoded"))?;
    let pem = key
        .to_public_key_pem(LineEnding::LF)
        .map_err(|_| bad("cannot be encoded"))?;
    Ok(WrappingKey {
        version: public.version,
        public_key_pem: pem,
        fingerprint: fingerprint(der.as_bytes()),
    })
}

/// The fingerprint of a custodian's RSA public key (SubjectPublicKeyInfo PEM), for the
/// audit trail: `sha256:` and the hex SHA-256 of its DER.
pub fn recipient_fingerprint(pem: &str) -> KeyResult<String> {
    recipient(pem).map(|(_, fingerprint)| fingerprint)
}

/// A custodian's RSA public key (SubjectPublicKeyInfo PEM) and its fingerprint.
fn recipient(pem: &str) -> KeyResult<(rsa::PublicKey, String)> {
    if pem.len() > MAX_PUBLIC_KEY_PEM {
        return Err(KeyError::Invalid(format!(
            "public_key_pem is longer than {MAX_PUBLIC_KEY_PEM} bytes"
        )));
    }
    let key = rsa::PublicKey::from_public_key_pem(pem.trim()).map_err(|_| {
        KeyError::Invalid("public_key_pem is not an RSA public key in PEM (-----BEGIN PUBLIC KEY-----)".into())
    })?;
    let bits = key.size().saturating_mul(8);
    if !(MIN_RECIPIENT_BITS..=MAX_RECIPIENT_BITS).contains(&bits) {
        return Err(KeyError::Invalid(format!(
            "public_key_pem is a {bits}-bit RSA key: between {MIN_RECIPIENT_BITS} and {MAX_RECIPIENT_BITS} bits are accepted"
        )));
    }
    let der = key
        .to_public_key_der()
        .map_err(|_| KeyError::Invalid("public_key_pem cannot be re-encoded".into()))?;
    Ok((key, fingerprint(der.as_bytes())))
}

/// Wraps `material` to `key`: RSA-OAEP-SHA-256 of a fresh AES-256 key ‖ AES-KWP of the
/// material under it.
fn wrap_to(key: &rsa::PublicKey, material: &[u8]) -> KeyResult<Vec<u8>> {
    let mut ephemeral = Zeroizing::new([0u8; 32]);
    getrandom::fill(ephemeral.as_mut_slice()).map_err(|_| KeyError::Random)?;
    let mut out = key
        .oaep_encrypt::<Sha256>(ephemeral.as_slice())
        .map_err(|_| KeyError::Invalid("the key material cannot be wrapped to public_key_pem".into()))?;
    let wrapped = kwp::wrap(ephemeral.as_slice(), material)
        .map_err(|e| KeyError::Invalid(format!("the key material cannot be wrapped: {e}")))?;
    out.extend_from_slice(&wrapped);
    Ok(out)
}

impl KeyService {
    /// The current wrapping key (created in the HSM on first use).
    pub async fn wrapping_key(&self) -> KeyResult<WrappingKey> {
        let public = self.keyring.current().wrapping_key().await?;
        describe(&public)
    }

    /// Makes a new wrapping key current; the previous one still opens imports until the next
    /// rotation.
    pub async fn rotate_wrapping_key(&self) -> KeyResult<WrappingKey> {
        let public = self.keyring.current().rotate_wrapping_key().await?;
        describe(&public)
    }

    /// Opens a custodian's wrapped import with the wrapping key in the HSM: the material,
    /// for [`KeyService::import`]. A wrap that does not open is the caller's error (400).
    pub async fn open_wrapped_import(&self, wrapped: &[u8]) -> KeyResult<SecretBytes> {
        if wrapped.len() > MAX_WRAPPED_IMPORT {
            return Err(KeyError::Invalid(format!(
                "wrapped_key is longer than {MAX_WRAPPED_IMPORT} bytes"
            )));
        }
        let refused = || {
            KeyError::Invalid(
                "wrapped_key does not open under the vault's wrapping key: it was altered, wrapped to another key, or is not RSA-OAEP-SHA-256 followed by AES-KWP".into(),
            )
        };
        let Some((block, kwp_half)) = wrapped.split_at_checked(WRAPPING_KEY_BYTES) else {
            return Err(refused());
        };
        let ephemeral = match self.keyring.current().decrypt_import_key(block).await {
            Ok(key) => key,
            Err(KekError::Rejected) => return Err(refused()),
            Err(e) => return Err(e.into()),
        };
        if ephemeral.len() != 32 {
            return Err(refused());
        }
        let material = kwp::unwrap(&ephemeral, kwp_half).map_err(|_| refused())?;
        Ok(SecretBytes::from_slice(&material))
    }

    /// Wraps version `version` (the latest when `None`) of an exportable key to the custodian
    /// key `recipient_pem`.
    pub async fn export(&self, name: &str, version: Option<u32>, recipient_pem: &str) -> KeyResult<Exported> {
        let (recipient_key, recipient_fingerprint) = recipient(recipient_pem)?;
        let key = self.load_fresh(name).await?;
        if !key.record.exportable || key.record.boundary == super::model::Boundary::Hsm {
            return Err(KeyError::Forbidden(format!(
                "key '{name}' is not exportable: only a key created exportable can be exported"
            )));
        }
        if key.record.state == KeyState::PendingDeletion {
            return Err(KeyError::Precondition(format!("key '{name}' is pending deletion")));
        }
        let version = version.unwrap_or(key.record.latest_version);
        if version == 0 || version > key.record.latest_version {
            return Err(KeyError::Invalid(format!(
                "key '{name}' has versions 1 to {}",
                key.record.latest_version
            )));
        }
        let material = self.secret(&key, version).await?;
        let wrapped = wrap_to(&recipient_key, material.expose_secret())?;
        Ok(Exported {
            version,
            wrapped,
            recipient_fingerprint,
        })
    }
}
