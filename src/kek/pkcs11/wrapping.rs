//! The custodians' RSA wrapping key (BYOK import): an RSA-4096 pair generated on the token,
//! whose private half is sensitive, never extractable and good for nothing but unwrapping.
//!
//! A custodian wraps key material as `CKM_RSA_AES_KEY_WRAP` does (the format of Vault, AWS KMS
//! and Google Cloud KMS imports): RSA-OAEP (SHA-256, MGF1-SHA-256) of an ephemeral AES-256 key,
//! then the material wrapped with AES-KWP (RFC 5649) under that key. SoftHSM2 has neither
//! `CKM_RSA_AES_KEY_WRAP` nor OAEP with SHA-256, so [`decrypt_import_key`] has the HSM do the
//! RSA private-key operation raw and decodes OAEP in this process; the ephemeral key then
//! opens the KWP half here too (`keys::custody`). The private key never leaves the token.
//!
//! Pairs are labelled `sigvault-wrapping-<version>`; each has a random `CKA_ID`. The current
//! pair is the highest version (two nodes creating version 1 at once both keep theirs: the
//! smaller id is current on every node, and imports try every pair on the token).

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use super::error::{Pkcs11Error, call};
use crate::kek::WrappingPublicKey;

/// Label prefix of the wrapping key's two objects; the suffix is its version.
const LABEL_PREFIX: &str = "sigvault-wrapping-";

/// The wrapping key's size in bits (the contract's "RSA-4096").
pub(super) const MODULUS_BITS: u64 = 4096;

/// One wrapping pair on the token.
pub(super) struct Pair {
    pub(super) version: u32,
    id: Vec<u8>,
    private: ObjectHandle,
    public: ObjectHandle,
}

/// The version in a wrapping object's label, when it is one.
fn version_of(label: &[u8]) -> Option<u32> {
    std::str::from_utf8(label)
        .ok()?
        .strip_prefix(LABEL_PREFIX)?
        .parse()
        .ok()
}

/// The label and id of `handle`.
fn label_and_id(session: &Session, handle: ObjectHandle) -> Result<(Vec<u8>, Vec<u8>), Pkcs11Error> {
    let attrs = session
        .get_attributes(handle, &[AttributeType::Label, AttributeType::Id])
        .map_err(call("reading a wrapping key's label"))?;
    let (mut label, mut id) = (Vec::new(), Vec::new());
    for attr in attrs {
        match attr {
            Attribute::Label(bytes) => label = bytes,
            Attribute::Id(bytes) => id = bytes,
            _ => {}
        }
    }
    Ok((label, id))
}

/// Every complete wrapping pair on the token, current first (highest version, then smallest
/// id). A private half without its public half (or the reverse) is skipped.
pub(super) fn find_pairs(session: &Session) -> Result<Vec<Pair>, Pkcs11Error> {
    let find = |class: ObjectClass| {
        session
            .find_objects(&[
                Attribute::Class(class),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(true),
            ])
            .map_err(call("searching for the wrapping key"))
    };
    let mut publics = Vec::new();
    for handle in find(ObjectClass::PUBLIC_KEY)? {
        let (label, id) = label_and_id(session, handle)?;
        if let Some(version) = version_of(&label) {
            publics.push((version, id, handle));
        }
    }
    let mut pairs = Vec::new();
    for handle in find(ObjectClass::PRIVATE_KEY)? {
        let (label, id) = label_and_id(session, handle)?;
        let Some(version) = version_of(&label) else { continue };
        if let Some((_, _, public)) = publics.iter().find(|(v, i, _)| *v == version && *i == id) {
            pairs.push(Pair {
                version,
                id,
                private: handle,
                public: *public,
            });
        }
    }
    pairs.sort_by(|a, b| b.version.cmp(&a.version).then_with(|| a.id.cmp(&b.id)));
    Ok(pairs)
}

/// Generates wrapping pair `version` on the token (an RSA-4096 key generation: seconds on
/// SoftHSM2).
pub(super) fn create_pair(session: &Session, version: u32) -> Result<Pair, Pkcs11Error> {
    let label = format!("{LABEL_PREFIX}{version}").into_bytes();
    let mut id = vec![0u8; 16];
    getrandom::fill(&mut id).map_err(|_| Pkcs11Error::Refused("the random generator failed".into()))?;
    let public_template = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::ModulusBits(MODULUS_BITS.into()),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        Attribute::Encrypt(false),
        Attribute::Verify(false),
        Attribute::Wrap(false),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ];
    let private_template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        // Raw RSA decryption of an import's key block, nothing else (see
        // `decrypt_import_key`).
        Attribute::Decrypt(true),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Derive(false),
        Attribute::Label(label),
        Attribute::Id(id.clone()),
    ];
    let (public, private) = session
        .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public_template, &private_template)
        .map_err(call("generating the wrapping key"))?;
    Ok(Pair {
        version,
        id,
        private,
        public,
    })
}

/// Destroys both halves of `pair`.
pub(super) fn destroy_pair(session: &Session, pair: &Pair) -> Result<(), Pkcs11Error> {
    session
        .destroy_object(pair.private)
        .map_err(call("destroying a wrapping key"))?;
    session
        .destroy_object(pair.public)
        .map_err(call("destroying a wrapping key"))
}

/// The public half of `pair`: its modulus and exponent.
pub(super) fn public_key(session: &Session, pair: &Pair) -> Result<WrappingPublicKey, Pkcs11Error> {
    let attrs = session
        .get_attributes(pair.public, &[AttributeType::Modulus, AttributeType::PublicExponent])
        .map_err(call("reading the wrapping key's public half"))?;
    let (mut modulus, mut exponent) = (Vec::new(), Vec::new());
    for attr in attrs {
        match attr {
            Attribute::Modulus(bytes) => modulus = bytes,
            Attribute::PublicExponent(bytes) => exponent = bytes,
            _ => {}
        }
    }
    if modulus.is_empty() || exponent.is_empty() {
        return Err(Pkcs11Error::Refused(
            "the wrapping key's public half has no modulus".into(),
        ));
    }
    Ok(WrappingPublicKey {
        version: pair.version,
        modulus,
        public_exponent: exponent,
    })
}

/// Opens `block`, the RSA-OAEP (SHA-256) half of a wrapped import, with `pair`'s private
/// half: the ephemeral key it carries. The RSA private-key operation runs in the HSM, raw
/// (`CKM_RSA_X_509`: SoftHSM2's OAEP is SHA-1 only); the OAEP decoding runs here
/// ([`crate::kek::oaep`]). `Ok(None)` when it does not open under this pair.
pub(super) fn decrypt_import_key(
    session: &Session,
    pair: &Pair,
    block: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, Pkcs11Error> {
    let modulus_len = usize::try_from(MODULUS_BITS / 8).unwrap_or(usize::MAX);
    if block.len() != modulus_len {
        return Ok(None);
    }
    let raw = match session.decrypt(&Mechanism::RsaX509, pair.private, block) {
        Ok(raw) => Zeroizing::new(raw),
        Err(e) if rejected(&e) => return Ok(None),
        Err(e) => return Err(call("decrypting an import's ephemeral key")(e)),
    };
    // The module may drop the block's leading zero bytes: put them back.
    let mut em = Zeroizing::new(vec![0u8; modulus_len.saturating_sub(raw.len())]);
    em.extend_from_slice(&raw);
    Ok(crate::kek::oaep::decode_sha256(&em))
}

/// Whether the module's answer means "this does not open under this key" rather than "the
/// HSM is in trouble".
fn rejected(err: &CkError) -> bool {
    match err {
        CkError::Pkcs11(rv, _) => {
            super::error::is_integrity_failure(*rv)
                || matches!(
                    rv,
                    cryptoki::error::RvError::DataInvalid | cryptoki::error::RvError::DataLenRange
                )
        }
        _ => false,
    }
}
