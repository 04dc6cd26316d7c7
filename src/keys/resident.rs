//! HSM-resident signing keys (`"boundary": "hsm"`): what a version's sealed record holds for
//! them, and how they are made and used.
//!
//! A resident version's material exists in the clear only inside the HSM. Its sealed record
//! holds the HSM's wrap of it (`kek::KekProvider::resident_generate` / `resident_import`),
//! prefixed with the material's length: `SVH1` ‖ length (u16, big-endian) ‖ wrapped. The KWP
//! wrap has no AAD, so it is bound to its row the way every secret is: the record that holds
//! it is sealed with AES-GCM whose AAD names the key id, name and version, so a wrapped blob
//! copied into another row's record does not open there. The HMAC itself runs in the HSM
//! (`C_Sign`), whose session keeps the unwrapped, unreadable key object.

use super::model::{Algorithm, Boundary};
use super::{CachedKey, CreateOptions, KeyError, KeyResult, KeyService};
use crate::kek::ResidentMac;
use crate::secret::SecretBytes;

const MAGIC: &[u8; 4] = b"SVH1";

/// The sealed form of a resident secret: its length and the HSM's wrap (also what an
/// hsm-boundary SigV4 credential seals).
pub(crate) fn encode(len: usize, wrapped: &[u8]) -> KeyResult<Vec<u8>> {
    let len = u16::try_from(len).map_err(|_| KeyError::Invalid("key material is too long".into()))?;
    let mut out = Vec::with_capacity(6 + wrapped.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(wrapped);
    Ok(out)
}

/// The material length and the HSM's wrap in a resident secret's sealed form.
pub(crate) fn decode(record: &[u8]) -> KeyResult<(usize, &[u8])> {
    let corrupt = || KeyError::Corrupt("an hsm-boundary version's record is not one this vault wrote".into());
    let rest = record.strip_prefix(MAGIC.as_slice()).ok_or_else(corrupt)?;
    let (len, wrapped) = rest.split_first_chunk::<2>().ok_or_else(corrupt)?;
    Ok((usize::from(u16::from_be_bytes(*len)), wrapped))
}

fn resident_mac(algorithm: Algorithm) -> KeyResult<ResidentMac> {
    match algorithm {
        Algorithm::HmacSha256 => Ok(ResidentMac::HmacSha256),
        Algorithm::HmacSha384 => Ok(ResidentMac::HmacSha384),
        Algorithm::HmacSha512 => Ok(ResidentMac::HmacSha512),
        Algorithm::Aes256Gcm | Algorithm::Aes256Kwp => Err(KeyError::Invalid(format!(
            "boundary hsm is for signing keys (hmac-sha256, hmac-sha384, hmac-sha512), not {}",
            algorithm.as_str()
        ))),
    }
}

/// Checks the create options of an hsm-boundary key.
pub(super) fn check_options(opts: &CreateOptions) -> KeyResult<()> {
    if opts.boundary != Boundary::Hsm {
        return Ok(());
    }
    resident_mac(opts.algorithm)?;
    if opts.exportable {
        return Err(KeyError::Invalid(
            "an hsm-boundary key never leaves the HSM: it cannot be exportable".into(),
        ));
    }
    Ok(())
}

/// An HSM computes an HMAC only with a key at least as long as the digest (SoftHSM2 refuses
/// shorter ones): imported material for an hsm-boundary key must be that long.
pub(super) fn check_material(boundary: Boundary, algorithm: Algorithm, len: usize) -> KeyResult<()> {
    let least = algorithm.tag_len();
    if boundary == Boundary::Hsm && len < least {
        return Err(KeyError::Invalid(format!(
            "an hsm-boundary {} key needs at least {least} bytes of material",
            algorithm.as_str()
        )));
    }
    Ok(())
}

impl KeyService {
    /// What to seal for a new version of a key of `boundary`: `material` itself in the
    /// process boundary, the HSM's wrap of it in the hsm boundary.
    pub(super) async fn sealable(&self, boundary: Boundary, material: &SecretBytes) -> KeyResult<SecretBytes> {
        match boundary {
            Boundary::Process => Ok(SecretBytes::from_slice(material.expose_secret())),
            Boundary::Hsm => {
                let wrapped = self.keyring.current().resident_import(material.expose_secret()).await?;
                Ok(SecretBytes::from_slice(&encode(material.len(), &wrapped)?))
            }
        }
    }

    /// A new version's material of `len` bytes, made where the key's boundary says: random
    /// bytes here, or generated inside the HSM (only its wrap comes back).
    pub(super) async fn generated(&self, boundary: Boundary, len: usize) -> KeyResult<SecretBytes> {
        match boundary {
            Boundary::Process => SecretBytes::random(len).map_err(|_| KeyError::Random),
            Boundary::Hsm => {
                let wrapped = self.keyring.current().resident_generate(len).await?;
                Ok(SecretBytes::from_slice(&encode(len, &wrapped)?))
            }
        }
    }

    /// The length of a version's material (read from the sealed form of a resident one).
    pub(super) fn material_len(key: &CachedKey, opened: &SecretBytes) -> KeyResult<usize> {
        match key.record.boundary {
            Boundary::Process => Ok(opened.len()),
            Boundary::Hsm => decode(opened.expose_secret()).map(|(len, _)| len),
        }
    }

    /// The MAC of `message` with `version` of `key`: here, or inside the HSM.
    pub(super) async fn mac(&self, key: &CachedKey, version: u32, message: &[u8]) -> KeyResult<Vec<u8>> {
        let opened = self.secret(key, version).await?;
        match key.record.boundary {
            // The HMAC consumes the key material; the tag is public.
            Boundary::Process => Ok(key.record.algorithm.sign(opened.expose_secret(), message)),
            Boundary::Hsm => {
                let (_, wrapped) = decode(opened.expose_secret())?;
                let id = format!("{}/{version}", key.record.id);
                Ok(self
                    .keyring
                    .current()
                    .resident_mac(&id, wrapped, resident_mac(key.record.algorithm)?, message)
                    .await?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sealed_form_keeps_the_length_and_the_wrap_and_refuses_anything_else() {
        let sealed = encode(33, &[7; 48]).unwrap();
        assert_eq!(decode(&sealed).unwrap(), (33, [7u8; 48].as_slice()));
        assert!(decode(b"SVH").is_err());
        assert!(decode(b"XXXX\x00\x20abc").is_err());
        assert!(encode(70_000, &[]).is_err());
    }
}
