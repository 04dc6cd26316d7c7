//! Encryption keys (`aes256-gcm`): encrypt, decrypt, rewrap under the latest version, and
//! data keys. The key's material never leaves the vault; callers get ciphertexts that name
//! the version that made them.
//!
//! A ciphertext is `sigvault:v<version>:<base64 of nonce ‖ AES-GCM ciphertext ‖ tag>`, a
//! random 96-bit nonce per encryption, the caller's `aad` (empty when absent) as AES-GCM's
//! associated data. Decryption accepts versions from `min_verify_version` (which for an
//! encryption key is its minimum decryption version) to the latest, as Vault's
//! `min_decryption_version`. A ciphertext that does not decrypt — another key's, altered,
//! or under other `aad` — is one error, never a hint of which.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use zeroize::Zeroizing;

use super::{CachedKey, KeyError, KeyResult, KeyService, Usage};

/// What every ciphertext starts with.
const PREFIX: &str = "sigvault:v";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Data keys: 256-bit AES keys.
pub const DATA_KEY_BYTES: usize = 32;

/// A ciphertext made by [`KeyService::encrypt`], and the version that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    pub ciphertext: String,
    pub version: u32,
}

impl KeyService {
    /// Encrypts `plaintext` (bound to `aad`) under the key's latest version.
    pub async fn encrypt(&self, name: &str, plaintext: &[u8], aad: &[u8]) -> KeyResult<(Encrypted, Usage)> {
        self.check_message(plaintext)?;
        self.check_message(aad)?;
        let key = self.usable_for(name, super::model::KeyKind::Encryption).await?;
        let version = key.record.latest_version;
        let secret = self.secret(&key, version).await?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| KeyError::Random)?;
        // The key material encrypts; it stays inside this call.
        let cipher = Aes256Gcm::new_from_slice(secret.expose_secret())
            .map_err(|_| KeyError::Corrupt(format!("version {version} of '{name}' is not an AES-256 key")))?;
        let sealed = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| KeyError::Invalid("the plaintext is too long for AES-GCM".into()))?;
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        let encrypted = Encrypted {
            ciphertext: format!(
                "{PREFIX}{version}:{}",
                base64::engine::general_purpose::STANDARD.encode(&body)
            ),
            version,
        };
        Ok((encrypted, usage(&key, version, 1, 0)))
    }

    /// Decrypts a ciphertext of this key made under `aad`: the plaintext and the version
    /// that made it.
    pub async fn decrypt(
        &self,
        name: &str,
        ciphertext: &str,
        aad: &[u8],
    ) -> KeyResult<(Zeroizing<Vec<u8>>, u32, Usage)> {
        self.check_message(aad)?;
        let key = self.usable_for(name, super::model::KeyKind::Encryption).await?;
        let (version, body) = parse(ciphertext, self.max_message_bytes)?;
        Self::check_version(&key, version)?;
        let secret = self.secret(&key, version).await?;
        let (nonce, sealed) = body
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(|| KeyError::Invalid("ciphertext is too short".into()))?;
        // The key material decrypts; it stays inside this call.
        let cipher = Aes256Gcm::new_from_slice(secret.expose_secret())
            .map_err(|_| KeyError::Corrupt(format!("version {version} of '{name}' is not an AES-256 key")))?;
        let plaintext = cipher
            .decrypt(&Nonce::from(*nonce), Payload { msg: sealed, aad })
            .map_err(|_| {
                KeyError::Invalid(format!(
                    "the ciphertext does not decrypt under key '{name}' (another key's, altered, or made with other aad)"
                ))
            })?;
        Ok((Zeroizing::new(plaintext), version, usage(&key, version, 0, 1)))
    }

    /// Decrypts a ciphertext and encrypts its plaintext again under the latest version
    /// (the plaintext never leaves the vault).
    pub async fn rewrap(&self, name: &str, ciphertext: &str, aad: &[u8]) -> KeyResult<(Encrypted, Vec<Usage>)> {
        let (plaintext, _, opened) = self.decrypt(name, ciphertext, aad).await?;
        let (encrypted, sealed) = self.encrypt(name, &plaintext, aad).await?;
        Ok((encrypted, vec![opened, sealed]))
    }

    /// A fresh 256-bit data key, encrypted under the key's latest version (bound to `aad`),
    /// with its plaintext.
    pub async fn data_key(&self, name: &str, aad: &[u8]) -> KeyResult<(Zeroizing<Vec<u8>>, Encrypted, Usage)> {
        let mut plaintext = Zeroizing::new(vec![0u8; DATA_KEY_BYTES]);
        getrandom::fill(plaintext.as_mut_slice()).map_err(|_| KeyError::Random)?;
        let (encrypted, usage) = self.encrypt(name, &plaintext, aad).await?;
        Ok((plaintext, encrypted, usage))
    }
}

impl KeyService {
    /// Wraps key material for another system with the key's latest version (AES-KWP, RFC
    /// 5649): the wrapped bytes and the version, which travels beside them (KWP has no
    /// header to carry it).
    pub async fn wrap_key(&self, name: &str, material: &[u8]) -> KeyResult<(Vec<u8>, u32, Usage)> {
        let key = self.usable_for(name, super::model::KeyKind::Wrapping).await?;
        let version = key.record.latest_version;
        let secret = self.secret(&key, version).await?;
        // The key material wraps; it stays inside this call.
        let wrapped = super::kwp::wrap(secret.expose_secret(), material).map_err(|e| match e {
            super::kwp::KwpError::Length => KeyError::Invalid(format!("key_material: {e}")),
            _ => KeyError::Corrupt(format!("version {version} of '{name}': {e}")),
        })?;
        Ok((wrapped, version, usage(&key, version, 1, 0)))
    }

    /// Unwraps material wrapped by version `version` of the key.
    pub async fn unwrap_key(&self, name: &str, wrapped: &[u8], version: u32) -> KeyResult<(Zeroizing<Vec<u8>>, Usage)> {
        let key = self.usable_for(name, super::model::KeyKind::Wrapping).await?;
        Self::check_version(&key, version)?;
        let secret = self.secret(&key, version).await?;
        // The key material unwraps; it stays inside this call.
        let material = super::kwp::unwrap(secret.expose_secret(), wrapped).map_err(|e| match e {
            super::kwp::KwpError::Key => KeyError::Corrupt(format!("version {version} of '{name}': {e}")),
            _ => KeyError::Invalid(format!(
                "wrapped_key does not unwrap under version {version} of key '{name}' (another key's or version's, altered, or not AES-KWP)"
            )),
        })?;
        Ok((material, usage(&key, version, 0, 1)))
    }
}

fn usage(key: &CachedKey, version: u32, signs: u64, verifies: u64) -> Usage {
    Usage {
        key_id: Arc::clone(&key.id),
        version,
        signs,
        verifies,
    }
}

/// The version and the decoded body of a ciphertext; `max_bytes` bounds what is decoded.
fn parse(ciphertext: &str, max_bytes: usize) -> KeyResult<(u32, Vec<u8>)> {
    let malformed = || KeyError::Invalid("ciphertext must look like sigvault:v<version>:<base64>".into());
    let rest = ciphertext.strip_prefix(PREFIX).ok_or_else(malformed)?;
    let (version, body) = rest.split_once(':').ok_or_else(malformed)?;
    if version.is_empty() || version.len() > 10 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let version: u32 = version.parse().map_err(|_| malformed())?;
    if body.len() / 4 * 3 > max_bytes.saturating_add(NONCE_LEN + TAG_LEN + 3) {
        return Err(KeyError::TooLarge(format!(
            "ciphertexts are limited to those of {max_bytes}-byte plaintexts"
        )));
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| KeyError::Invalid("the ciphertext's body is not base64".into()))?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(KeyError::Invalid("ciphertext is too short".into()));
    }
    Ok((version, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ciphertext_names_its_version_and_malformed_ones_are_refused() {
        let body = base64::engine::general_purpose::STANDARD.encode([7u8; 40]);
        let (version, decoded) = parse(&format!("sigvault:v12:{body}"), 1024).unwrap();
        assert_eq!((version, decoded.len()), (12, 40));
        for bad in [
            String::new(),
            format!("vault:v1:{body}"),
            format!("sigvault:v:{body}"),
            format!("sigvault:v-1:{body}"),
            format!("sigvault:v99999999999:{body}"),
            "sigvault:v1:not base64!".to_owned(),
            format!(
                "sigvault:v1:{}",
                base64::engine::general_purpose::STANDARD.encode([1u8; 20])
            ),
            format!("sigvault:v1{body}"),
        ] {
            assert!(matches!(parse(&bad, 1024), Err(KeyError::Invalid(_))), "{bad}");
        }
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 4096]);
        assert!(matches!(
            parse(&format!("sigvault:v1:{big}"), 1024),
            Err(KeyError::TooLarge(_))
        ));
    }
}
