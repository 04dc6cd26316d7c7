//! Keyed hashes of bearer secrets (tokens now; API keys later): HMAC-SHA256 under the
//! vault's pepper key, with a domain label per kind of secret.
//!
//! The pepper is a random 256-bit key sealed under the KEK like any other secret
//! (docs/ARCHITECTURE.md: "pepper key … KEK-wrapped"), so a database dump holds only hashes that
//! cannot be tested against guesses without the HSM. Unwrapped once at start; it lives in
//! a [`SecretBytes`] for the life of the process.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::SharedClock;
use crate::kek::Keyring;
use crate::secret::SecretBytes;
use crate::store::SystemStore;
use crate::system_secret::{self, SystemSecretError};

/// Name of the pepper among the store's system secrets.
const PEPPER_NAME: &str = "pepper";

pub(crate) type PepperError = SystemSecretError;

pub struct KeyedHasher {
    pepper: SecretBytes,
}

impl KeyedHasher {
    /// Opens the stored pepper, creating it on first start.
    pub async fn load_or_create(
        store: &dyn SystemStore,
        keyring: &Keyring,
        clock: &SharedClock,
    ) -> Result<Self, PepperError> {
        Ok(Self {
            pepper: system_secret::load_or_create(store, keyring, clock, PEPPER_NAME).await?,
        })
    }

    /// A hasher over a given pepper (tests of the hashing itself).
    #[cfg(test)]
    pub(crate) fn from_pepper(pepper: SecretBytes) -> Self {
        Self { pepper }
    }

    /// `HMAC-SHA256(pepper, len(domain) || domain || secret)`.
    pub fn hash(&self, domain: &str, secret: &[u8]) -> [u8; 32] {
        // The pepper keys the HMAC; it is not otherwise exposed.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(self.pepper.expose_secret()) else {
            return [0u8; 32];
        };
        mac.update(&u32::try_from(domain.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(domain.as_bytes());
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// Whether `secret` hashes to `expected`, compared in constant time.
    pub fn matches(&self, domain: &str, secret: &[u8], expected: &[u8]) -> bool {
        self.hash(domain, secret).ct_eq(expected).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_pepper_domain_and_secret() {
        let a = KeyedHasher::from_pepper(SecretBytes::from_slice(&[1u8; 32]));
        let b = KeyedHasher::from_pepper(SecretBytes::from_slice(&[2u8; 32]));
        let h = a.hash("root-token", b"svt_abc");
        assert!(a.matches("root-token", b"svt_abc", &h));
        assert!(!a.matches("root-token", b"svt_abd", &h));
        assert!(!a.matches("api-key", b"svt_abc", &h));
        assert!(!b.matches("root-token", b"svt_abc", &h));
        assert!(!a.matches("root-token", b"svt_abc", &h[..31]));
    }
}
