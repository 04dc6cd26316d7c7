//! The gate every intercepted call passes: read the control file, then forward the call to
//! the real module, fail it, or hold it until its `hang` rule is gone.
//!
//! A failure does what the failure means to the real module before its code is returned,
//! so the caller faces the state a real fault leaves, not just a code: a session that is
//! "invalid" or "closed" is closed in the real module; "user not logged in" logs the token
//! out (SoftHSM2 then destroys the private session objects, as a token reset does); "device
//! removed", "token not present" and "device error" close every session of the slot (which
//! logs the token out too). A caller that merely retried on the same session would find it
//! still broken once the rule is cleared — only one that reopens and logs in again recovers.
//!
//! This module must never change a call's arguments or results: a call it lets through is
//! the real module's call.

use std::path::PathBuf;
use std::time::Duration;

use crate::ck::{
    CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED, CKR_GENERAL_ERROR, CKR_OK, CKR_SESSION_CLOSED, CKR_SESSION_HANDLE_INVALID,
    CKR_TOKEN_NOT_PRESENT, CKR_USER_NOT_LOGGED_IN, Rv, Scope, SessionInfo, SlotId, code_name,
};
use crate::control::{self, Action, Rules};
use crate::list::FunctionList;

/// How often a hung call reads the control file to see whether it may go on.
const HANG_POLL: Duration = Duration::from_millis(10);

/// Runs the call `function` (about `scope`) as the control file says: `forward` makes the
/// real call.
pub fn gate(function: &'static str, scope: Scope, forward: impl FnOnce(&FunctionList) -> Rv) -> Rv {
    let Some(real) = crate::real() else {
        return CKR_GENERAL_ERROR;
    };
    match decide(function) {
        None => forward(real),
        Some(rv) => {
            eprintln!("pkcs11-fault: {function} fails with {}", code_name(rv));
            enact(real, rv, scope);
            rv
        }
    }
}

/// The code `function` fails with now, `None` to forward it; waits while it is to hang.
fn decide(function: &str) -> Option<Rv> {
    let mut announced = false;
    loop {
        match current_rules().action_for(function) {
            None => return None,
            Some(Action::Fail(rv)) => return Some(rv),
            Some(Action::Hang) => {
                if !announced {
                    eprintln!("pkcs11-fault: {function} hangs until its rule is cleared");
                    announced = true;
                }
                std::thread::sleep(HANG_POLL);
            }
        }
    }
}

/// The control file's rules as they are now. A file the module cannot obey fails every
/// intercepted call with `CKR_GENERAL_ERROR` (and says why on stderr), so a mistyped rule
/// shows instead of silently forwarding.
fn current_rules() -> Rules {
    let Some(path) = std::env::var_os("PKCS11_FAULT_CONTROL").map(PathBuf::from) else {
        return Rules::default();
    };
    match control::read(&path) {
        Ok(rules) => rules,
        Err(e) => {
            eprintln!("pkcs11-fault: {}: {e}", path.display());
            Rules::parse("* 0x5").unwrap_or_default()
        }
    }
}

/// Makes the real module's state what a failure `rv` on `scope` leaves behind.
fn enact(real: &FunctionList, rv: Rv, scope: Scope) {
    match rv {
        CKR_SESSION_HANDLE_INVALID | CKR_SESSION_CLOSED => {
            if let (Scope::Session(session), Some(close)) = (scope, real.C_CloseSession) {
                // SAFETY: the real module's C_CloseSession with a session handle our caller
                // gave; an unknown handle is answered with an error code, ignored here.
                unsafe { close(session) };
            }
        }
        CKR_USER_NOT_LOGGED_IN => {
            if let (Scope::Session(session), Some(logout)) = (scope, real.C_Logout) {
                // SAFETY: as above, with C_Logout.
                unsafe { logout(session) };
            }
        }
        CKR_DEVICE_REMOVED | CKR_TOKEN_NOT_PRESENT | CKR_DEVICE_ERROR => {
            if let (Some(slot), Some(close_all)) = (slot_of(real, scope), real.C_CloseAllSessions) {
                // SAFETY: the real module's C_CloseAllSessions with a slot id it reported.
                unsafe { close_all(slot) };
            }
        }
        _ => {}
    }
}

/// The slot `scope` is about: its own, or the one the real module says the session is on.
fn slot_of(real: &FunctionList, scope: Scope) -> Option<SlotId> {
    match scope {
        Scope::Slot(slot) => Some(slot),
        Scope::Session(session) => {
            let get_info = real.C_GetSessionInfo?;
            let mut info = SessionInfo::default();
            // SAFETY: C_GetSessionInfo writes one CK_SESSION_INFO, which `info` is.
            let rv = unsafe { get_info(session, (&raw mut info).cast()) };
            (rv == CKR_OK).then_some(info.slot_id)
        }
    }
}
