//! Witness records as PKCS#11 data objects: `CKO_DATA`, a token object (it outlives the
//! session and the process), private (readable and writable only after the user logged in,
//! and encrypted at rest by SoftHSM2), labelled with the record's name, `CKA_APPLICATION`
//! `sigvault`, and in `CKA_VALUE` the object's generation (u64 big-endian: 1, 2, 3, …; a
//! data object has no other attribute free for it) followed by the record.
//!
//! SoftHSM2 refuses to change a data object's `CKA_VALUE` (`CKR_ATTRIBUTE_READ_ONLY`), so a
//! write creates the next generation first and only then destroys the older ones: a crash
//! in between leaves two objects, and a read takes the newer — never none, which would read
//! as a removed witness.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};

use super::error::{Pkcs11Error, call};

/// `CKA_APPLICATION` of every witness object.
const APPLICATION: &[u8] = b"sigvault";

/// What identifies the witness objects of `name`. Only private objects count: anyone may
/// create a public token object in a read-write session without the PIN, and such an
/// object must not pass for (or hide) the record.
pub(super) fn identity(name: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(name.as_bytes().to_vec()),
        Attribute::Application(APPLICATION.to_vec()),
    ]
}

/// One object of a record: its generation (0 for a value too short to carry one, which is
/// then all record) and the record.
struct Generation {
    handle: ObjectHandle,
    number: u64,
    value: Vec<u8>,
}

/// Refuses to go on when the session is not logged in. A search then does not see private
/// objects, so a token that lost its login (a reset) would read as "no record" — the very
/// answer a removed record gives — instead of as unavailable.
fn require_login(session: &Session) -> Result<(), Pkcs11Error> {
    let info = session.get_session_info().map_err(call("reading the session state"))?;
    match info.session_state() {
        SessionState::RoUser | SessionState::RwUser => Ok(()),
        SessionState::RoPublic | SessionState::RwPublic | SessionState::RwSecurityOfficer => {
            Err(Pkcs11Error::NotLoggedIn)
        }
    }
}

/// Every object of the record `name` (one, except after a crash mid-write), newest first.
fn generations(session: &Session, name: &str) -> Result<Vec<Generation>, Pkcs11Error> {
    require_login(session)?;
    let handles = session
        .find_objects(&identity(name))
        .map_err(call("searching for a witness record"))?;
    let mut found = Vec::with_capacity(handles.len());
    for handle in handles {
        let attrs = session
            .get_attributes(handle, &[AttributeType::Value])
            .map_err(call("reading a witness record"))?;
        let stored = attrs
            .into_iter()
            .find_map(|attr| match attr {
                Attribute::Value(stored) => Some(stored),
                _ => None,
            })
            .unwrap_or_default();
        found.push(split_generation(handle, stored));
    }
    found.sort_by_key(|generation| std::cmp::Reverse(generation.number));
    Ok(found)
}

/// A stored `CKA_VALUE` as its generation and the record.
fn split_generation(handle: ObjectHandle, mut stored: Vec<u8>) -> Generation {
    let number = stored
        .get(..8)
        .and_then(|prefix| <[u8; 8]>::try_from(prefix).ok())
        .map(u64::from_be_bytes);
    match number {
        Some(number) => Generation {
            handle,
            number,
            value: stored.split_off(8),
        },
        None => Generation {
            handle,
            number: 0,
            value: stored,
        },
    }
}

/// The value of the record `name`, `None` when the token holds none. Of several objects the
/// newest generation wins; two newest that differ (two writers at once, or objects made by
/// hand) are an error, not a choice.
pub(super) fn read(session: &Session, name: &str) -> Result<Option<Vec<u8>>, Pkcs11Error> {
    let mut found = generations(session, name)?.into_iter();
    let Some(newest) = found.next() else {
        return Ok(None);
    };
    let rivals = found
        .take_while(|other| other.number == newest.number)
        .filter(|other| other.value != newest.value)
        .count();
    if rivals > 0 {
        return Err(Pkcs11Error::DuplicateWitness {
            name: name.to_owned(),
            count: rivals + 1,
        });
    }
    Ok(Some(newest.value))
}

/// Sets the record `name` to `value`: creates the next generation, then destroys every older
/// object of the record (see the module docs for why in that order).
pub(super) fn write(session: &Session, name: &str, value: &[u8]) -> Result<(), Pkcs11Error> {
    let older = generations(session, name)?;
    let next = older.first().map_or(1, |newest| newest.number.saturating_add(1));
    let mut stored = next.to_be_bytes().to_vec();
    stored.extend_from_slice(value);
    let mut template = identity(name);
    template.push(Attribute::Value(stored));
    session
        .create_object(&template)
        .map_err(call("creating a witness record"))?;
    for generation in older {
        session
            .destroy_object(generation.handle)
            .map_err(call("removing an older witness record"))?;
    }
    Ok(())
}
