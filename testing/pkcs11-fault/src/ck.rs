//! The few PKCS#11 (v2.40) C types and return codes this module needs, written by hand from
//! the specification: handles and return values are `CK_ULONG`, and every pointer argument
//! is only passed through, so it is an opaque `*mut c_void` here.

use std::ffi::c_void;
use std::os::raw::c_ulong;

pub type Ulong = c_ulong;
/// `CK_RV`.
pub type Rv = Ulong;
/// `CK_SLOT_ID`.
pub type SlotId = Ulong;
/// `CK_SESSION_HANDLE`.
pub type SessionHandle = Ulong;
/// `CK_OBJECT_HANDLE`.
pub type ObjectHandle = Ulong;
/// Any pointer argument, forwarded untouched.
pub type Ptr = *mut c_void;
/// `CK_BBOOL`.
pub type Bool = u8;

/// `CK_VERSION`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

/// `CK_SESSION_INFO`: read to learn which slot a session belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionInfo {
    pub slot_id: SlotId,
    pub state: Ulong,
    pub flags: Ulong,
    pub device_error: Ulong,
}

pub const CKR_OK: Rv = 0x0;
pub const CKR_GENERAL_ERROR: Rv = 0x5;
pub const CKR_ARGUMENTS_BAD: Rv = 0x7;
pub const CKR_DEVICE_ERROR: Rv = 0x30;
pub const CKR_DEVICE_MEMORY: Rv = 0x31;
pub const CKR_DEVICE_REMOVED: Rv = 0x32;
pub const CKR_FUNCTION_NOT_SUPPORTED: Rv = 0x54;
pub const CKR_SESSION_CLOSED: Rv = 0xB0;
pub const CKR_SESSION_HANDLE_INVALID: Rv = 0xB3;
pub const CKR_TOKEN_NOT_PRESENT: Rv = 0xE0;
pub const CKR_USER_NOT_LOGGED_IN: Rv = 0x101;

/// The return codes a control file may name, by their specification names.
pub const NAMED_CODES: &[(&str, Rv)] = &[
    ("CKR_GENERAL_ERROR", CKR_GENERAL_ERROR),
    ("CKR_DEVICE_ERROR", CKR_DEVICE_ERROR),
    ("CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY),
    ("CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED),
    ("CKR_SESSION_CLOSED", CKR_SESSION_CLOSED),
    ("CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID),
    ("CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT),
    ("CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN),
];

/// The name of `rv` for messages: its specification name when listed, else its number.
pub fn code_name(rv: Rv) -> String {
    NAMED_CODES
        .iter()
        .find(|(_, code)| *code == rv)
        .map_or_else(|| format!("CKR 0x{rv:X}"), |(name, _)| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_return_codes_have_the_values_of_the_specification() {
        use cryptoki_sys as sys;
        let pairs = [
            (CKR_OK, sys::CKR_OK),
            (CKR_GENERAL_ERROR, sys::CKR_GENERAL_ERROR),
            (CKR_ARGUMENTS_BAD, sys::CKR_ARGUMENTS_BAD),
            (CKR_DEVICE_ERROR, sys::CKR_DEVICE_ERROR),
            (CKR_DEVICE_MEMORY, sys::CKR_DEVICE_MEMORY),
            (CKR_DEVICE_REMOVED, sys::CKR_DEVICE_REMOVED),
            (CKR_FUNCTION_NOT_SUPPORTED, sys::CKR_FUNCTION_NOT_SUPPORTED),
            (CKR_SESSION_CLOSED, sys::CKR_SESSION_CLOSED),
            (CKR_SESSION_HANDLE_INVALID, sys::CKR_SESSION_HANDLE_INVALID),
            (CKR_TOKEN_NOT_PRESENT, sys::CKR_TOKEN_NOT_PRESENT),
            (CKR_USER_NOT_LOGGED_IN, sys::CKR_USER_NOT_LOGGED_IN),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours, theirs, "{}", code_name(ours));
        }
        assert_eq!(
            std::mem::size_of::<SessionInfo>(),
            std::mem::size_of::<sys::CK_SESSION_INFO>()
        );
    }
}

/// What an intercepted call is about: its first argument.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Session(SessionHandle),
    Slot(SlotId),
}
