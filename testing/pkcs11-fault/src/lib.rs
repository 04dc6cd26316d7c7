//! A PKCS#11 module for tests that is a fault injector, not a mock: it loads a real module
//! (`PKCS11_FAULT_TARGET`, SoftHSM2's by default), hands its caller the real module's
//! function list with every session and slot entry point wrapped ([`list`]), and lets each
//! wrapped call through unless the control file (`PKCS11_FAULT_CONTROL`, [`control`]) says
//! to fail it with a given return code or to hang it ([`fault`]). So the tokens, keys and
//! cryptography are the real module's, and so is the state a fault leaves behind.
//!
//! It exports one symbol, `C_GetFunctionList`: the loaders (cryptoki among them) fall back to
//! it when a module has no PKCS#11 3.0 `C_GetInterface`, and this module offers v2.40 only.
//!
//! It must never be built into sigvault or shipped: it exists for sigvault's black-box
//! tests (`tests/api/hsm_faults.rs`), which start the vault as a child process with
//! `kek.pkcs11.module` pointing here.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

mod ck;
mod control;
mod fault;
mod list;

use std::path::PathBuf;
use std::sync::OnceLock;

use ck::{CKR_ARGUMENTS_BAD, CKR_GENERAL_ERROR, CKR_OK, Rv};
use list::FunctionList;

/// Where the real module is when `PKCS11_FAULT_TARGET` does not say.
const DEFAULT_TARGET: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The real module, loaded once and never unloaded (its function list points into it).
struct Target {
    _library: libloading::Library,
    list: FunctionList,
}

static TARGET: OnceLock<Result<Target, String>> = OnceLock::new();
/// The list handed to callers: the real one with our entries in it.
static OURS: OnceLock<FunctionList> = OnceLock::new();

/// The real module's function list, loading the module on first use.
pub(crate) fn real() -> Option<&'static FunctionList> {
    match TARGET.get_or_init(load_target) {
        Ok(target) => Some(&target.list),
        Err(e) => {
            eprintln!("pkcs11-fault: {e}");
            None
        }
    }
}

fn load_target() -> Result<Target, String> {
    let path = std::env::var_os("PKCS11_FAULT_TARGET").map_or_else(|| PathBuf::from(DEFAULT_TARGET), PathBuf::from);
    // SAFETY: loading a PKCS#11 module runs its initialisers; the path is the one the test
    // named as the real module.
    let library = unsafe { libloading::Library::new(&path) }
        .map_err(|e| format!("cannot load the real module {}: {e}", path.display()))?;
    type GetFunctionList = unsafe extern "C" fn(*mut *const FunctionList) -> Rv;
    // SAFETY: C_GetFunctionList has this signature in every PKCS#11 version.
    let get = unsafe { library.get::<GetFunctionList>(b"C_GetFunctionList\0") }
        .map_err(|e| format!("{} has no C_GetFunctionList: {e}", path.display()))?;
    let mut list: *const FunctionList = std::ptr::null();
    // SAFETY: the real C_GetFunctionList writes one pointer to its (static) list.
    let rv = unsafe { get(&raw mut list) };
    if rv != CKR_OK || list.is_null() {
        return Err(format!("{}: C_GetFunctionList returned 0x{rv:X}", path.display()));
    }
    // SAFETY: a non-null list from the module, valid while the module stays loaded (it
    // does: `_library` is never dropped); copied, since it is only read.
    let list = unsafe { *list };
    Ok(Target {
        _library: library,
        list,
    })
}

/// The module's one export. Hands out the real module's list with our entry points in it.
///
/// # Safety
/// `list` must be null or point to writable room for one pointer, as PKCS#11 requires.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *const FunctionList) -> Rv {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let Some(real) = real() else {
        return CKR_GENERAL_ERROR;
    };
    let ours = OURS.get_or_init(|| {
        let mut ours = FunctionList::intercepting(real);
        ours.C_GetFunctionList = Some(get_function_list_entry);
        ours
    });
    // SAFETY: checked non-null above; the caller provides room for one pointer.
    unsafe { *list = ours };
    CKR_OK
}

/// `C_GetFunctionList` as the list's own entry (its argument typed as the list declares it).
unsafe extern "C" fn get_function_list_entry(list: ck::Ptr) -> Rv {
    // SAFETY: the same contract as C_GetFunctionList.
    unsafe { C_GetFunctionList(list.cast()) }
}
