//! HSM-resident keys (`"boundary": "hsm"`): HMAC keys whose material exists in the clear only
//! inside the token.
//!
//! Material is generated in the token (`C_GenerateKey`, `CKM_GENERIC_SECRET_KEY_GEN`) or
//! created there from an import, and leaves it only wrapped (`CKM_AES_KEY_WRAP_PAD`) under the
//! resident wrapping key `sigvault-resident-wrap`, an AES-256 token key that, like a KEK, is
//! sensitive, never extractable and good only for wrapping. That wrapped form is what the
//! store keeps (inside the version's sealed record, whose AES-GCM AAD binds it to its row). To
//! sign, a session unwraps it into a session object that is sensitive and not extractable,
//! keeps it for the session's life (up to [`MAX_SESSION_KEYS`]), and runs `C_Sign` with
//! `CKM_SHA256_HMAC` / `384` / `512`.
//!
//! The resident wrapping key is not the KEK: KEK rotation and retirement rewrap sealed records
//! in this process and never touch it, so resident keys survive them. It is created with the
//! KEK on the first start against a token.

use std::collections::HashMap;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroize;

use super::error::{Pkcs11Error, call, unwrap_error};
use crate::kek::ResidentMac;

/// Label of the resident wrapping key.
const WRAP_LABEL: &str = "sigvault-resident-wrap";

/// Unwrapped resident keys a session keeps; past this it drops them all and starts again.
pub(super) const MAX_SESSION_KEYS: usize = 1024;

/// The resident wrapping key on the token, if there is one. Two objects of that label (two
/// nodes creating it at once on a new token) are refused, never guessed between.
pub(super) fn find_wrap_key(session: &Session) -> Result<Option<ObjectHandle>, Pkcs11Error> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(WRAP_LABEL.as_bytes().to_vec()),
        ])
        .map_err(call("searching for the resident wrapping key"))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(Pkcs11Error::Refused(format!(
            "the token holds {} keys labelled {WRAP_LABEL}: remove the newer ones with the vendor's tool",
            found.len()
        ))),
    }
}

/// Generates the resident wrapping key on the token (made like a KEK).
pub(super) fn create_wrap_key(session: &Session) -> Result<ObjectHandle, Pkcs11Error> {
    super::objects::create_wrapping_key(session, WRAP_LABEL.to_owned(), "creating the resident wrapping key")
}

/// The template of a resident key on its way to being wrapped: a session object, sensitive
/// (its value is never readable) but extractable, so the wrapping key can wrap it once.
fn to_wrap_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Sign(true),
        Attribute::Verify(true),
    ]
}

/// Wraps `object` under `wrap_key` and destroys it.
fn wrap_and_destroy(session: &Session, wrap_key: ObjectHandle, object: ObjectHandle) -> Result<Vec<u8>, Pkcs11Error> {
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, wrap_key, object);
    let destroyed = session.destroy_object(object);
    let wrapped = wrapped.map_err(call("wrapping a resident key"))?;
    destroyed.map_err(call("destroying a resident key's transit object"))?;
    Ok(wrapped)
}

/// Generates `len` bytes of key material inside the token; returns them wrapped.
pub(super) fn generate(session: &Session, wrap_key: ObjectHandle, len: usize) -> Result<Vec<u8>, Pkcs11Error> {
    let mut template = to_wrap_template();
    template.push(Attribute::ValueLen(u64::try_from(len).unwrap_or(u64::MAX).into()));
    let object = session
        .generate_key(&Mechanism::GenericSecretKeyGen, &template)
        .map_err(call("generating a resident key"))?;
    wrap_and_destroy(session, wrap_key, object)
}

/// Takes imported `material` into the token; returns it wrapped. The template's copy of the
/// material is wiped once the object exists.
pub(super) fn import(session: &Session, wrap_key: ObjectHandle, material: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
    let mut template = to_wrap_template();
    template.push(Attribute::Value(material.to_vec()));
    let created = session.create_object(&template);
    for attr in &mut template {
        if let Attribute::Value(bytes) = attr {
            bytes.zeroize();
        }
    }
    let object = created.map_err(call("creating a resident key"))?;
    wrap_and_destroy(session, wrap_key, object)
}

/// Unwraps a resident key into a session object that signs and verifies and is neither
/// readable nor extractable.
pub(super) fn unwrap_for_signing(
    session: &Session,
    wrap_key: ObjectHandle,
    wrapped: &[u8],
) -> Result<ObjectHandle, Pkcs11Error> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    session
        .unwrap_key(&Mechanism::AesKeyWrapPad, wrap_key, wrapped, &template)
        .map_err(unwrap_error)
}

/// The HMAC of `message` under the session object `key`.
pub(super) fn mac(
    session: &Session,
    key: ObjectHandle,
    alg: ResidentMac,
    message: &[u8],
) -> Result<Vec<u8>, Pkcs11Error> {
    let mechanism = match alg {
        ResidentMac::HmacSha256 => Mechanism::Sha256Hmac,
        ResidentMac::HmacSha384 => Mechanism::Sha384Hmac,
        ResidentMac::HmacSha512 => Mechanism::Sha512Hmac,
    };
    session
        .sign(&mechanism, key, message)
        .map_err(call("signing with a resident key"))
}

/// The resident keys one session has unwrapped, by the caller's id for them.
#[derive(Default)]
pub(super) struct SessionKeys {
    handles: HashMap<String, ObjectHandle>,
}

impl SessionKeys {
    pub(super) fn get(&self, id: &str) -> Option<ObjectHandle> {
        self.handles.get(id).copied()
    }

    /// Keeps `handle` as `id`; when the session holds [`MAX_SESSION_KEYS`] already, destroys
    /// them all first (the next uses unwrap again).
    pub(super) fn keep(&mut self, session: &Session, id: String, handle: ObjectHandle) {
        if self.handles.len() >= MAX_SESSION_KEYS {
            for (_, old) in self.handles.drain() {
                // A failed destroy leaves a session object the session's close removes.
                let _ = session.destroy_object(old);
            }
        }
        self.handles.insert(id, handle);
    }
}
