//! The token objects and mechanisms: KEK objects (`sigvault-kek-<version>`), the session
//! copies the pool works with, and the RFC 5649 wrap and unwrap of raw secret bytes.
//!
//! A KEK is AES-256, persistent, private, sensitive, never extractable, and usable for
//! nothing but wrapping and unwrapping keys. DEKs are wrapped with `CKM_AES_KEY_WRAP_PAD`
//! (RFC 5649): SoftHSM2 refuses AES-GCM for `C_WrapKey`. Nothing here returns key bytes
//! except the secret [`unwrap_bytes`] was asked to unwrap.

use std::collections::BTreeMap;

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::{Zeroize, Zeroizing};

use super::error::{Pkcs11Error, call};

/// Label prefix of KEK objects; the suffix is the KEK version.
const KEK_LABEL_PREFIX: &str = "sigvault-kek-";

/// One pooled session and its session copies of the KEK versions: SoftHSM2 serves a
/// session copy (`C_CopyObject`) about three times faster than the token object.
pub(super) struct PooledSession {
    pub(super) session: Session,
    keks: BTreeMap<u32, ObjectHandle>,
    /// The session copy of the resident wrapping key, when the token has one.
    resident_wrap: Option<ObjectHandle>,
    /// Resident keys this session unwrapped for signing.
    pub(super) resident_keys: std::sync::Mutex<super::resident::SessionKeys>,
}

impl PooledSession {
    /// Takes `session` into the pool with a session copy of every KEK in `token_keks`.
    pub(super) fn new(session: Session, token_keks: &BTreeMap<u32, ObjectHandle>) -> Result<Self, Pkcs11Error> {
        let mut keks = BTreeMap::new();
        for (version, handle) in token_keks {
            let copy = session
                .copy_object(*handle, &[Attribute::Token(false)])
                .map_err(call("copying the KEK into a session"))?;
            keks.insert(*version, copy);
        }
        let resident_wrap = match super::resident::find_wrap_key(&session)? {
            Some(handle) => Some(
                session
                    .copy_object(handle, &[Attribute::Token(false)])
                    .map_err(call("copying the resident wrapping key into a session"))?,
            ),
            None => None,
        };
        Ok(Self {
            session,
            keks,
            resident_wrap,
            resident_keys: std::sync::Mutex::new(super::resident::SessionKeys::default()),
        })
    }

    /// The session copy of the resident wrapping key.
    pub(super) fn resident_wrap(&self) -> Result<ObjectHandle, Pkcs11Error> {
        self.resident_wrap
            .ok_or_else(|| Pkcs11Error::Refused("the token holds no resident wrapping key".into()))
    }

    /// The session copy of KEK `version`.
    pub(super) fn kek(&self, version: u32) -> Result<ObjectHandle, Pkcs11Error> {
        self.keks
            .get(&version)
            .copied()
            .ok_or(Pkcs11Error::MissingSessionKek(version))
    }
}

/// Every KEK token object on the token, by version.
pub(super) fn find_kek_objects(session: &Session) -> Result<BTreeMap<u32, ObjectHandle>, Pkcs11Error> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            // Only a KEK that cannot leave the token counts as one, whatever its label.
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ])
        .map_err(call("searching for the KEK"))?;
    let mut found = BTreeMap::new();
    for handle in handles {
        let attrs = session
            .get_attributes(handle, &[AttributeType::Label])
            .map_err(call("reading a KEK label"))?;
        for attr in attrs {
            if let Attribute::Label(bytes) = attr
                && let Some(version) = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|l| l.strip_prefix(KEK_LABEL_PREFIX))
                    .and_then(|v| v.parse::<u32>().ok())
            {
                // Two objects of one version (two nodes rotating at once without the lease)
                // would wrap records that only one of them opens: refused, never guessed.
                if found.insert(version, handle).is_some() {
                    return Err(Pkcs11Error::DuplicateKek { version });
                }
            }
        }
    }
    Ok(found)
}

/// Destroys the token object of KEK `version`: every record still wrapped under it is lost.
pub(super) fn destroy_kek(session: &Session, version: u32) -> Result<(), Pkcs11Error> {
    let found = find_kek_objects(session)?;
    let handle = found
        .get(&version)
        .copied()
        .ok_or(Pkcs11Error::MissingSessionKek(version))?;
    session.destroy_object(handle).map_err(call("destroying a KEK"))
}

/// Generates KEK `version` inside the token.
pub(super) fn create_kek(session: &Session, version: u32) -> Result<ObjectHandle, Pkcs11Error> {
    create_wrapping_key(session, format!("{KEK_LABEL_PREFIX}{version}"), "creating the KEK")
}

/// Generates an AES-256 token key labelled (and identified) `label` that is persistent,
/// private, sensitive, never extractable and good for nothing but wrapping and unwrapping
/// keys: a KEK, or the resident wrapping key.
pub(super) fn create_wrapping_key(
    session: &Session,
    label: String,
    during: &'static str,
) -> Result<ObjectHandle, Pkcs11Error> {
    let template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::ValueLen(32.into()),
        Attribute::Label(label.clone().into_bytes()),
        Attribute::Id(label.into_bytes()),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(call(during))
}

/// The template of the short-lived session object a secret passes through on its way into
/// or out of a wrap: a generic secret, private to the session's login, readable (it must be,
/// to be wrapped or read back) and never stored on the token.
fn transit_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ]
}

/// Wraps raw secret bytes under `kek` with `CKM_AES_KEY_WRAP_PAD`: the bytes become a
/// short-lived extractable session object, are wrapped, and the object is destroyed.
pub(super) fn wrap_bytes(session: &Session, kek: ObjectHandle, secret: &[u8]) -> Result<Vec<u8>, CkError> {
    let mut template = transit_template();
    template.push(Attribute::Value(secret.to_vec()));
    let created = session.create_object(&template);
    for attr in &mut template {
        if let Attribute::Value(bytes) = attr {
            bytes.zeroize();
        }
    }
    let object = created?;
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, kek, object);
    let destroyed = session.destroy_object(object);
    let wrapped = wrapped?;
    destroyed?;
    Ok(wrapped)
}

/// Unwraps `wrapped` under `kek` into a short-lived session object, reads its value and
/// destroys it. An integrity failure comes back as the module's error code.
pub(super) fn unwrap_bytes(
    session: &Session,
    kek: ObjectHandle,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CkError> {
    let object = session.unwrap_key(&Mechanism::AesKeyWrapPad, kek, wrapped, &transit_template())?;
    let attrs = session.get_attributes(object, &[AttributeType::Value]);
    let destroyed = session.destroy_object(object);
    let mut value = Zeroizing::new(Vec::new());
    for attr in attrs? {
        if let Attribute::Value(mut bytes) = attr {
            value.extend_from_slice(&bytes);
            bytes.zeroize();
        }
    }
    destroyed?;
    Ok(value)
}
