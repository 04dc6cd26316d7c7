//! Envelope encryption of one secret version: pure functions, no I/O.
//!
//! A secret is sealed with AES-256-GCM under its own random data key (DEK) and a 96-bit
//! random nonce. The additional authenticated data binds the ciphertext to the row it
//! belongs to — `"sigvault/v1" | kind | tenant | id | version`, each field length-prefixed
//! so no two identities encode alike — so a blob copied onto another key, version or
//! tenant fails to open. The DEK itself is wrapped by the KEK (see [`crate::kek`]); this
//! module never sees the KEK and never stores anything.
//!
//! A [`SealedRecord`] is the only thing persisted about a secret:
//! `{format, kek_id, wrapped_dek, nonce, ciphertext||tag}`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::secret::SecretBytes;

/// The record format this build writes. Readers refuse formats they do not know.
pub(crate) const FORMAT_V1: u16 = 1;
/// Domain-separation label at the head of every AAD.
pub(crate) const AAD_LABEL: &[u8] = b"sigvault/v1";
pub(crate) const DEK_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 12;
#[cfg(test)]
pub(crate) const TAG_LEN: usize = 16;

/// A 256-bit data-encryption key. Zeroized on drop; never printed, cloned or compared.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Dek([u8; DEK_LEN]);

impl Dek {
    /// A fresh DEK from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, EnvelopeError> {
        let mut bytes = [0u8; DEK_LEN];
        getrandom::fill(&mut bytes).map_err(|_| EnvelopeError::Random)?;
        Ok(Self(bytes))
    }

    /// Takes ownership of raw key bytes (e.g. from a KEK unwrap); the slice is copied and
    /// the caller remains responsible for zeroizing its own buffer.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let array: [u8; DEK_LEN] = bytes.try_into().map_err(|_| EnvelopeError::DekLength)?;
        Ok(Self(array))
    }

    /// The raw key, for the KEK provider that wraps it and for the cipher.
    pub fn expose_secret(&self) -> &[u8; DEK_LEN] {
        &self.0
    }
}

/// Which row a sealed secret belongs to. Every field is bound into the AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordIdentity<'a> {
    /// What the secret is: `hmac-key`, `pepper`, …
    pub kind: &'a str,
    pub tenant: &'a str,
    /// The immutable id of the owning object (not its renameable name).
    pub id: &'a str,
    pub version: u32,
}

impl RecordIdentity<'_> {
    /// `"sigvault/v1" | kind | tenant | id | version`, each variable field prefixed by its
    /// length as a big-endian u32 and the version as a big-endian u32.
    pub(crate) fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(AAD_LABEL.len() + 16 + self.kind.len() + self.tenant.len() + self.id.len());
        for field in [
            AAD_LABEL,
            self.kind.as_bytes(),
            self.tenant.as_bytes(),
            self.id.as_bytes(),
        ] {
            out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// A secret at rest. Only ciphertext and the names needed to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub format: u16,
    /// Names the KEK (provider and version) that wrapped `wrapped_dek`.
    pub kek_id: String,
    pub wrapped_dek: Vec<u8>,
    pub nonce: Vec<u8>,
    /// AES-256-GCM ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the operating system's random generator failed")]
    Random,
    #[error("a data key must be exactly 32 bytes")]
    DekLength,
    #[error("unknown record format {0}")]
    UnknownFormat(u16),
    #[error("the nonce must be exactly 12 bytes")]
    NonceLength,
    /// Tag mismatch, truncated ciphertext, or a record moved to another identity. One
    /// opaque error on purpose: the cause is not told apart to a caller.
    #[error("the sealed record does not open under this identity")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// Encrypts `plaintext` under `dek` with a fresh random nonce. Returns `(nonce, ct||tag)`.
pub(crate) fn seal(
    dek: &Dek,
    identity: &RecordIdentity<'_>,
    plaintext: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), EnvelopeError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| EnvelopeError::Random)?;
    let ciphertext = seal_with_nonce(dek, &nonce, &identity.aad(), plaintext)?;
    Ok((nonce, ciphertext))
}

/// AES-256-GCM encryption with a caller-chosen nonce: the primitive under [`seal`], exposed
/// for known-answer tests. Never reuse a nonce with the same DEK.
pub(crate) fn seal_with_nonce(
    dek: &Dek,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let cipher = Aes256Gcm::new(dek.expose_secret().into());
    cipher
        .encrypt(&Nonce::from(*nonce), Payload { msg: plaintext, aad })
        .map_err(|_| EnvelopeError::Seal)
}

/// Opens a record sealed by [`seal`] for exactly this identity.
pub fn open(dek: &Dek, identity: &RecordIdentity<'_>, record: &SealedRecord) -> Result<SecretBytes, EnvelopeError> {
    if record.format != FORMAT_V1 {
        return Err(EnvelopeError::UnknownFormat(record.format));
    }
    let nonce: &[u8; NONCE_LEN] = record
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| EnvelopeError::NonceLength)?;
    open_with_nonce(dek, nonce, &identity.aad(), &record.ciphertext)
}

/// The primitive under [`open`], exposed for known-answer tests.
pub(crate) fn open_with_nonce(
    dek: &Dek,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<SecretBytes, EnvelopeError> {
    let cipher = Aes256Gcm::new(dek.expose_secret().into());
    let mut plain = cipher
        .decrypt(&Nonce::from(*nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| EnvelopeError::Open)?;
    let secret = SecretBytes::from_slice(&plain);
    plain.zeroize();
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(version: u32) -> RecordIdentity<'static> {
        RecordIdentity {
            kind: "hmac-key",
            tenant: "default",
            id: "k_0123",
            version,
        }
    }

    fn sealed(dek: &Dek, plaintext: &[u8]) -> SealedRecord {
        let (nonce, ciphertext) = seal(dek, &identity(1), plaintext).unwrap();
        SealedRecord {
            format: FORMAT_V1,
            kek_id: "test".into(),
            wrapped_dek: vec![],
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    #[test]
    fn a_sealed_secret_opens_to_the_same_bytes() {
        let dek = Dek::generate().unwrap();
        let record = sealed(&dek, b"a signing secret");
        let opened = open(&dek, &identity(1), &record).unwrap();
        assert_eq!(opened.expose_secret(), b"a signing secret");
        assert_eq!(record.ciphertext.len(), 16 + TAG_LEN);
    }

    #[test]
    fn sealing_twice_gives_different_nonces_and_ciphertexts() {
        let dek = Dek::generate().unwrap();
        let a = sealed(&dek, b"same");
        let b = sealed(&dek, b"same");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn flipping_any_bit_of_nonce_or_ciphertext_fails_to_open() {
        let dek = Dek::generate().unwrap();
        let record = sealed(&dek, b"0123456789abcdef0123456789abcdef");
        for i in 0..record.nonce.len() {
            let mut bad = record.clone();
            bad.nonce[i] ^= 0x01;
            assert_eq!(open(&dek, &identity(1), &bad).err(), Some(EnvelopeError::Open));
        }
        for i in 0..record.ciphertext.len() {
            let mut bad = record.clone();
            bad.ciphertext[i] ^= 0x80;
            assert_eq!(open(&dek, &identity(1), &bad).err(), Some(EnvelopeError::Open));
        }
        let mut truncated = record.clone();
        truncated.ciphertext.pop();
        assert_eq!(open(&dek, &identity(1), &truncated).err(), Some(EnvelopeError::Open));
        let mut short_nonce = record.clone();
        short_nonce.nonce.pop();
        assert_eq!(
            open(&dek, &identity(1), &short_nonce).err(),
            Some(EnvelopeError::NonceLength)
        );
    }

    #[test]
    fn an_unknown_format_is_refused_before_decrypting() {
        let dek = Dek::generate().unwrap();
        let mut record = sealed(&dek, b"x");
        record.format = 2;
        assert_eq!(
            open(&dek, &identity(1), &record).err(),
            Some(EnvelopeError::UnknownFormat(2))
        );
    }

    #[test]
    fn a_record_moved_to_another_identity_fails_to_open() {
        let dek = Dek::generate().unwrap();
        let record = sealed(&dek, b"secret");
        let others = [
            RecordIdentity {
                version: 2,
                ..identity(1)
            },
            RecordIdentity {
                id: "k_0124",
                ..identity(1)
            },
            RecordIdentity {
                tenant: "other",
                ..identity(1)
            },
            RecordIdentity {
                kind: "pepper",
                ..identity(1)
            },
        ];
        for other in others {
            assert_eq!(
                open(&dek, &other, &record).err(),
                Some(EnvelopeError::Open),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_record_opened_with_another_dek_fails() {
        let record = sealed(&Dek::generate().unwrap(), b"secret");
        let other = Dek::generate().unwrap();
        assert_eq!(open(&other, &identity(1), &record).err(), Some(EnvelopeError::Open));
    }

    #[test]
    fn aad_fields_cannot_be_shifted_between_each_other() {
        let a = RecordIdentity {
            kind: "ab",
            tenant: "c",
            id: "d",
            version: 1,
        };
        let b = RecordIdentity {
            kind: "a",
            tenant: "bc",
            id: "d",
            version: 1,
        };
        assert_ne!(a.aad(), b.aad());
        assert!(a.aad().starts_with(&[0, 0, 0, 11]));
    }
}
