//! The rules of signing keys — sizes, names, owners and tags — and the MAC computation of
//! each [`Algorithm`] (the enums themselves are [`crate::model`]'s). Pure; no I/O.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// Largest key the vault creates or imports, in bytes.
pub(crate) const MAX_KEY_SIZE: usize = 512;
/// Smallest key the vault *generates*: 256 bits.
pub(crate) const MIN_GENERATED_KEY_SIZE: usize = 32;
/// Smallest key the vault *imports*. Existing secrets being migrated (webhook keys, RFC 4231
/// test keys) can be shorter than what the vault would generate; a zero-length key is never
/// a secret.
pub(crate) const MIN_IMPORTED_KEY_SIZE: usize = 1;
pub(crate) const MAX_NAME_LEN: usize = 128;
pub(crate) const MAX_TAGS: usize = 64;
pub(crate) const MAX_TAG_KEY_LEN: usize = 128;
pub(crate) const MAX_TAG_VALUE_LEN: usize = 256;
pub(crate) const MAX_OWNER_LEN: usize = 256;

pub use crate::model::{Algorithm, Boundary, KeyKind, KeyOrigin, KeyState};

// The MAC computation lives with the keys domain; `crate::model` only names the algorithm.
impl Algorithm {
    /// The MAC of `message` under `key`.
    pub fn sign(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            // HMAC accepts keys of any length, so this cannot fail; an empty MAC would
            // never verify, so it is a safe fallback all the same.
            let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
                return Vec::new();
            };
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Self::HmacSha256 => run::<Hmac<Sha256>>(key, message),
            Self::HmacSha384 => run::<Hmac<Sha384>>(key, message),
            Self::HmacSha512 => run::<Hmac<Sha512>>(key, message),
            // Refused before it gets here (`KeyService::usable_for`); an empty MAC would
            // never verify.
            Self::Aes256Gcm | Self::Aes256Kwp => Vec::new(),
        }
    }

    /// Whether `tag` is the MAC of `message` under `key`, compared in constant time.
    pub fn verify(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
            let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
                return false;
            };
            mac.update(message);
            mac.verify_slice(tag).is_ok()
        }
        if tag.len() != self.tag_len() {
            return false;
        }
        match self {
            Self::HmacSha256 => run::<Hmac<Sha256>>(key, message, tag),
            Self::HmacSha384 => run::<Hmac<Sha384>>(key, message, tag),
            Self::HmacSha512 => run::<Hmac<Sha512>>(key, message, tag),
            Self::Aes256Gcm | Self::Aes256Kwp => false,
        }
    }
}

/// Names: 1–128 characters of `[A-Za-z0-9._-]`, not only dots (`.`, `..`: a name is a path
/// segment, and those are the current and parent directory to every URL client).
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("a key name must be 1 to {MAX_NAME_LEN} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("a key name may contain only A-Z, a-z, 0-9, '.', '_' and '-'".into());
    }
    if name.bytes().all(|b| b == b'.') {
        return Err("a key name must hold a character other than '.'".into());
    }
    Ok(())
}

/// Owners are principals: 1–256 printable characters, no whitespace or control characters.
pub(crate) fn validate_owner(owner: &str) -> Result<(), String> {
    if owner.is_empty() || owner.len() > MAX_OWNER_LEN || owner.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "owner must be 1 to {MAX_OWNER_LEN} printable characters without spaces"
        ));
    }
    Ok(())
}

/// Tags: at most 64, keys of `[A-Za-z0-9._:/-]` up to 128 bytes, values up to 256 bytes
/// without control characters.
pub(crate) fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags"));
    }
    for (k, v) in tags {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_TAG_KEY_LEN
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
        if !key_ok {
            return Err(format!(
                "tag keys must be 1 to {MAX_TAG_KEY_LEN} characters of A-Z a-z 0-9 . _ : / -"
            ));
        }
        if v.len() > MAX_TAG_VALUE_LEN || v.chars().any(char::is_control) {
            return Err(format!(
                "tag values must be at most {MAX_TAG_VALUE_LEN} bytes without control characters"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_api_alphabet_and_length() {
        assert!(validate_name("payments.webhook-key_1").is_ok());
        assert!(validate_name(&"a".repeat(128)).is_ok());
        for dotted in [".a", "a.", "a..b", "-", "_"] {
            assert!(validate_name(dotted).is_ok(), "{dotted:?}");
        }
        for bad in ["", "a b", "a/b", "ключ", "x;drop", &"a".repeat(129), ".", "..", "..."] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_algorithm_signs_and_verifies_its_own_tags_only() {
        for alg in [Algorithm::HmacSha256, Algorithm::HmacSha384, Algorithm::HmacSha512] {
            assert_eq!(Algorithm::parse(alg.as_str()), Some(alg));
            let tag = alg.sign(b"key material of some length", b"message");
            assert_eq!(tag.len(), alg.tag_len());
            assert!(alg.verify(b"key material of some length", b"message", &tag));
            assert!(!alg.verify(b"key material of some length", b"messagE", &tag));
            assert!(!alg.verify(b"other key", b"message", &tag));
            assert!(
                !alg.verify(b"key material of some length", b"message", &tag[..16]),
                "truncated tags are refused"
            );
        }
    }

    #[test]
    fn tags_are_bounded() {
        let mut tags = BTreeMap::new();
        tags.insert("team".to_string(), "payments".to_string());
        assert!(validate_tags(&tags).is_ok());
        tags.insert("bad key".to_string(), "x".to_string());
        assert!(validate_tags(&tags).is_err());
        let many: BTreeMap<String, String> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_tags(&many).is_err());
    }
}
