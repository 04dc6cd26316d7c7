//! Who is calling. Until named caller tokens land, one bootstrap root token authenticates
//! every `/v1` call except health and ping; it is the principal `root` in group `admin`.
//!
//! Only a keyed hash of the root token is stored ([`keyed_hash`]); the token itself is
//! shown once, when generated, and is never logged.

pub mod certificate;
pub mod keyed_hash;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use keyed_hash::KeyedHasher;

/// Domain label of the root token's keyed hash.
pub const ROOT_TOKEN_DOMAIN: &str = "root-token";
/// Store key under which the root token's keyed hash is kept.
pub const ROOT_TOKEN_VALUE: &str = "root_token_hash";
/// Prefix of tokens sigvault generates, so secret scanners can spot them.
pub const TOKEN_PREFIX: &str = "svt_";
const MAX_TOKEN_LEN: usize = 256;
const MIN_TOKEN_LEN: usize = 16;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
}

impl Principal {
    pub fn root() -> Self {
        Self {
            name: "root".into(),
            groups: vec!["admin".into()],
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
}

/// Checks a root token chosen by the operator (`SIGVAULT_ROOT_TOKEN`).
pub fn validate_root_token(token: &str) -> Result<SecretString, &'static str> {
    let len_ok = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len());
    if !len_ok || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the root token must be 16 to 256 visible ASCII characters");
    }
    Ok(SecretString::from(token.to_owned()))
}

/// A fresh root token: `svt_` and 256 random bits in unpadded base64url.
pub fn generate_token() -> Result<SecretString, getrandom::Error> {
    use base64::Engine as _;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    zeroize::Zeroize::zeroize(&mut raw);
    Ok(SecretString::from(format!("{TOKEN_PREFIX}{body}")))
}

/// Most distinct tokens remembered as verified; the memory is cleared when full.
const VERIFIED_CACHE_MAX: usize = 10_000;

/// Resolves bearer tokens to principals.
///
/// A token that passed the keyed-hash check is remembered by its SHA-256 digest (in memory
/// only; the store never holds an unkeyed hash), so the hot path costs one hash and a map
/// lookup. Revocation (with named tokens) must call [`Authenticator::forget_all`].
pub struct Authenticator {
    hasher: KeyedHasher,
    root_hash: Vec<u8>,
    verified: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
}

impl Authenticator {
    pub fn new(hasher: KeyedHasher, root_hash: Vec<u8>) -> Self {
        Self {
            hasher,
            root_hash,
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// Drops every remembered verification (after a revocation).
    pub fn forget_all(&self) {
        self.verified.write().unwrap_or_else(PoisonError::into_inner).clear();
    }

    pub fn hasher(&self) -> &KeyedHasher {
        &self.hasher
    }

    /// The keyed hash under which `token` is stored.
    pub fn root_hash_of(hasher: &KeyedHasher, token: &SecretString) -> [u8; 32] {
        // The token is hashed, never stored or compared in the clear.
        hasher.hash(ROOT_TOKEN_DOMAIN, token.expose_secret().as_bytes())
    }

    /// Authenticates an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Principal>, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self
            .verified
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest)
        {
            return Ok(Arc::clone(hit));
        }
        if !self
            .hasher
            .matches(ROOT_TOKEN_DOMAIN, token.as_bytes(), &self.root_hash)
        {
            return Err(AuthError::Invalid);
        }
        let principal = Arc::new(Principal::root());
        let mut verified = self.verified.write().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= VERIFIED_CACHE_MAX {
            verified.clear();
        }
        verified.insert(digest, Arc::clone(&principal));
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;

    fn auth(token: &str) -> Authenticator {
        let hasher = KeyedHasher::from_pepper(SecretBytes::from_slice(&[9u8; 32]));
        let hash = Authenticator::root_hash_of(&hasher, &SecretString::from(token.to_owned()));
        Authenticator::new(hasher, hash.to_vec())
    }

    #[test]
    fn the_root_token_authenticates_as_root_in_admin_before_and_after_forgetting() {
        let a = auth("svt_0123456789abcdef");
        let root = Arc::new(Principal::root());
        assert_eq!(a.authenticate(Some("Bearer svt_0123456789abcdef")), Ok(root.clone()));
        assert_eq!(a.authenticate(Some("bearer   svt_0123456789abcdef ")), Ok(root.clone()));
        a.forget_all();
        assert_eq!(a.authenticate(Some("Bearer svt_0123456789abcdef")), Ok(root));
        assert_eq!(
            a.authenticate(Some("Bearer svt_0123456789abcdeX")),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn other_tokens_and_schemes_are_refused() {
        let a = auth("svt_0123456789abcdef");
        assert_eq!(a.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            a.authenticate(Some("Basic svt_0123456789abcdef")),
            Err(AuthError::Missing)
        );
        assert_eq!(a.authenticate(Some("Bearer")), Err(AuthError::Missing));
        assert_eq!(
            a.authenticate(Some("Bearer svt_0123456789abcdeF")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {}", "x".repeat(300)))),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn generated_tokens_are_prefixed_and_distinct() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert!(a.expose_secret().starts_with("svt_"));
        assert_eq!(a.expose_secret().len(), 4 + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(validate_root_token(a.expose_secret()).is_ok());
        assert!(validate_root_token("short").is_err());
        assert!(validate_root_token("has a space in it!!").is_err());
    }
}
