//! `CK_FUNCTION_LIST` (PKCS#11 v2.40): the version, then the 68 entry points in the order of
//! the specification's `pkcs11f.h`. [`FunctionList::intercepting`] copies the real module's
//! list and replaces every entry that takes a session or a slot with one that first asks
//! [`crate::fault::gate`], then forwards to the real entry. The others (C_Initialize,
//! C_Finalize, C_GetInfo, C_GetSlotList, C_WaitForSlotEvent) are the real module's own.
//!
//! Each line below is `<kind> <name>(<arguments>)`: `session` and `slot` entries are
//! intercepted (their first argument says which session or slot the call is about), `pass`
//! entries are forwarded as they are.

#![allow(non_snake_case)]

use crate::ck::{Bool, ObjectHandle, Ptr, Rv, Scope, SessionHandle, SlotId, Ulong, Version};

macro_rules! function_list {
    ($( $kind:ident $name:ident ( $first:ident : $fty:ty $(, $arg:ident : $aty:ty)* $(,)? ); )*) => {
        /// `CK_FUNCTION_LIST`, field for field.
        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct FunctionList {
            pub version: Version,
            $( pub $name: Option<unsafe extern "C" fn($fty $(, $aty)*) -> Rv>, )*
        }

        /// The intercepting entry points.
        mod intercept {
            use super::*;
            $( entry!($kind $name ($first: $fty $(, $arg: $aty)*)); )*
        }

        impl FunctionList {
            /// `real` with every `session` and `slot` entry it has replaced by ours.
            pub fn intercepting(real: &FunctionList) -> FunctionList {
                let mut list = *real;
                $( install!($kind list $name); )*
                list
            }
        }

        #[cfg(test)]
        #[test]
        fn every_entry_sits_where_the_specification_puts_it() {
            use std::mem::{offset_of, size_of};
            use cryptoki_sys::CK_FUNCTION_LIST;
            assert_eq!(offset_of!(FunctionList, version), offset_of!(CK_FUNCTION_LIST, version));
            $( assert_eq!(
                offset_of!(FunctionList, $name),
                offset_of!(CK_FUNCTION_LIST, $name),
                stringify!($name)
            ); )*
            assert_eq!(size_of::<FunctionList>(), size_of::<CK_FUNCTION_LIST>());
        }
    };
}

macro_rules! entry {
    (pass $name:ident ($($args:tt)*)) => {};
    (session $name:ident ($first:ident : $fty:ty $(, $arg:ident : $aty:ty)*)) => {
        entry!(@body Scope::Session($first), $name ($first: $fty $(, $arg: $aty)*));
    };
    (slot $name:ident ($first:ident : $fty:ty $(, $arg:ident : $aty:ty)*)) => {
        entry!(@body Scope::Slot($first), $name ($first: $fty $(, $arg: $aty)*));
    };
    (@body $scope:expr, $name:ident ($first:ident : $fty:ty $(, $arg:ident : $aty:ty)*)) => {
        /// # Safety
        /// As the real module's entry point of the same name: the caller's arguments are
        /// forwarded to it unchanged.
        pub(super) unsafe extern "C" fn $name($first: $fty $(, $arg: $aty)*) -> Rv {
            crate::fault::gate(stringify!($name), $scope, |real| match real.$name {
                // SAFETY: the real module's own entry point, called with the arguments our
                // caller gave for it.
                Some(forward) => unsafe { forward($first $(, $arg)*) },
                None => crate::ck::CKR_FUNCTION_NOT_SUPPORTED,
            })
        }
    };
}

macro_rules! install {
    (pass $list:ident $name:ident) => {};
    ($kind:ident $list:ident $name:ident) => {
        if $list.$name.is_some() {
            $list.$name = Some(intercept::$name);
        }
    };
}

function_list! {
    pass C_Initialize(init_args: Ptr);
    pass C_Finalize(reserved: Ptr);
    pass C_GetInfo(info: Ptr);
    pass C_GetFunctionList(list: Ptr);
    pass C_GetSlotList(token_present: Bool, slots: Ptr, count: Ptr);
    slot C_GetSlotInfo(slot: SlotId, info: Ptr);
    slot C_GetTokenInfo(slot: SlotId, info: Ptr);
    slot C_GetMechanismList(slot: SlotId, mechanisms: Ptr, count: Ptr);
    slot C_GetMechanismInfo(slot: SlotId, mechanism: Ulong, info: Ptr);
    slot C_InitToken(slot: SlotId, pin: Ptr, pin_len: Ulong, label: Ptr);
    session C_InitPIN(session: SessionHandle, pin: Ptr, pin_len: Ulong);
    session C_SetPIN(session: SessionHandle, old: Ptr, old_len: Ulong, new: Ptr, new_len: Ulong);
    slot C_OpenSession(slot: SlotId, flags: Ulong, application: Ptr, notify: Ptr, session: Ptr);
    session C_CloseSession(session: SessionHandle);
    slot C_CloseAllSessions(slot: SlotId);
    session C_GetSessionInfo(session: SessionHandle, info: Ptr);
    session C_GetOperationState(session: SessionHandle, state: Ptr, state_len: Ptr);
    session C_SetOperationState(
        session: SessionHandle,
        state: Ptr,
        state_len: Ulong,
        encryption_key: ObjectHandle,
        authentication_key: ObjectHandle,
    );
    session C_Login(session: SessionHandle, user_type: Ulong, pin: Ptr, pin_len: Ulong);
    session C_Logout(session: SessionHandle);
    session C_CreateObject(session: SessionHandle, template: Ptr, count: Ulong, object: Ptr);
    session C_CopyObject(session: SessionHandle, object: ObjectHandle, template: Ptr, count: Ulong, copy: Ptr);
    session C_DestroyObject(session: SessionHandle, object: ObjectHandle);
    session C_GetObjectSize(session: SessionHandle, object: ObjectHandle, size: Ptr);
    session C_GetAttributeValue(session: SessionHandle, object: ObjectHandle, template: Ptr, count: Ulong);
    session C_SetAttributeValue(session: SessionHandle, object: ObjectHandle, template: Ptr, count: Ulong);
    session C_FindObjectsInit(session: SessionHandle, template: Ptr, count: Ulong);
    session C_FindObjects(session: SessionHandle, objects: Ptr, max: Ulong, count: Ptr);
    session C_FindObjectsFinal(session: SessionHandle);
    session C_EncryptInit(session: SessionHandle, mechanism: Ptr, key: ObjectHandle);
    session C_Encrypt(session: SessionHandle, data: Ptr, data_len: Ulong, out: Ptr, out_len: Ptr);
    session C_EncryptUpdate(session: SessionHandle, part: Ptr, part_len: Ulong, out: Ptr, out_len: Ptr);
    session C_EncryptFinal(session: SessionHandle, out: Ptr, out_len: Ptr);
    session C_DecryptInit(session: SessionHandle, mechanism: Ptr, key: ObjectHandle);
    session C_Decrypt(session: SessionHandle, data: Ptr, data_len: Ulong, out: Ptr, out_len: Ptr);
    session C_DecryptUpdate(session: SessionHandle, part: Ptr, part_len: Ulong, out: Ptr, out_len: Ptr);
    session C_DecryptFinal(session: SessionHandle, out: Ptr, out_len: Ptr);
    session C_DigestInit(session: SessionHandle, mechanism: Ptr);
    session C_Digest(session: SessionHandle, data: Ptr, data_len: Ulong, out: Ptr, out_len: Ptr);
    session C_DigestUpdate(session: SessionHandle, part: Ptr, part_len: Ulong);
    session C_DigestKey(session: SessionHandle, key: ObjectHandle);
    session C_DigestFinal(session: SessionHandle, out: Ptr, out_len: Ptr);
    session C_SignInit(session: SessionHandle, mechanism: Ptr, key: ObjectHandle);
    session C_Sign(session: SessionHandle, data: Ptr, data_len: Ulong, out: Ptr, out_len: Ptr);
    session C_SignUpdate(session: SessionHandle, part: Ptr, part_len: Ulong);
    session C_SignFinal(session: SessionHandle, out: Ptr, out_len: Ptr);
    session C_SignRecoverInit(session: SessionHandle, mechanism: Ptr, key: ObjectHandle);
    session C_SignRecover(session: SessionHandle, data: Ptr, data_len: Ulong, out: Ptr, out_len: Ptr);
    session C_VerifyInit(session: SessionHandle, mechanism: Ptr, key: ObjectHandle);
    session C_Verify(session: SessionHandle, data: Ptr, data_len: Ulong, signature: Ptr, signature_len: Ulong);
    session C_VerifyUpdate(session: SessionHandle, part: Ptr, part_len: Ulong);
    session C_VerifyFinal(session: SessionHandle, signature: Ptr, signature_len: Ulong);
    session C_VerifyRecoverInit(session: SessionHandle, mechanism: Ptr, key: ObjectHandle);
    session C_VerifyRecover(session: SessionHandle, signature: Ptr, signature_len: Ulong, out: Ptr, out_len: Ptr);
    session C_DigestEncryptUpdate(session: SessionHandle, part: Ptr, part_len: Ulong, out: Ptr, out_len: Ptr);
    session C_DecryptDigestUpdate(session: SessionHandle, part: Ptr, part_len: Ulong, out: Ptr, out_len: Ptr);
    session C_SignEncryptUpdate(session: SessionHandle, part: Ptr, part_len: Ulong, out: Ptr, out_len: Ptr);
    session C_DecryptVerifyUpdate(session: SessionHandle, part: Ptr, part_len: Ulong, out: Ptr, out_len: Ptr);
    session C_GenerateKey(session: SessionHandle, mechanism: Ptr, template: Ptr, count: Ulong, key: Ptr);
    session C_GenerateKeyPair(
        session: SessionHandle,
        mechanism: Ptr,
        public_template: Ptr,
        public_count: Ulong,
        private_template: Ptr,
        private_count: Ulong,
        public_key: Ptr,
        private_key: Ptr,
    );
    session C_WrapKey(
        session: SessionHandle,
        mechanism: Ptr,
        wrapping_key: ObjectHandle,
        key: ObjectHandle,
        wrapped: Ptr,
        wrapped_len: Ptr,
    );
    session C_UnwrapKey(
        session: SessionHandle,
        mechanism: Ptr,
        unwrapping_key: ObjectHandle,
        wrapped: Ptr,
        wrapped_len: Ulong,
        template: Ptr,
        count: Ulong,
        key: Ptr,
    );
    session C_DeriveKey(
        session: SessionHandle,
        mechanism: Ptr,
        base_key: ObjectHandle,
        template: Ptr,
        count: Ulong,
        key: Ptr,
    );
    session C_SeedRandom(session: SessionHandle, seed: Ptr, seed_len: Ulong);
    session C_GenerateRandom(session: SessionHandle, out: Ptr, out_len: Ulong);
    session C_GetFunctionStatus(session: SessionHandle);
    session C_CancelFunction(session: SessionHandle);
    pass C_WaitForSlotEvent(flags: Ulong, slot: Ptr, reserved: Ptr);
}
