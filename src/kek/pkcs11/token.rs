//! The module and its tokens: the one process-wide PKCS#11 context, finding a token by its
//! label, and provisioning a token where sigvault is allowed to (`sigvault dev`, tests).
//!
//! PKCS#11 allows one `C_Initialize` per process, so one [`Pkcs11`] context is shared
//! process-wide and a second, different module is refused. Tokens are found by label, never
//! by slot id (slot ids change when tokens are added).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use secrecy::SecretString;

use super::Pkcs11Settings;
use super::error::{Pkcs11Error, call};

/// The one PKCS#11 context of this process (C_Initialize may run only once).
static CONTEXT: Mutex<Option<(PathBuf, Pkcs11)>> = Mutex::new(None);
/// Serialises everything that reads or changes the slot list: two threads must not both claim
/// the free slot, and SoftHSM2 aborts the process (`SlotManager::insertToken` assertion) when
/// one thread lists slots while another initialises a token.
static SLOTS: Mutex<()> = Mutex::new(());

/// Returns the process-wide context for `module`, loading and initialising it once.
pub(crate) fn context(module: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let mut guard = CONTEXT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((loaded, ctx)) = guard.as_ref() {
        if same_file(loaded, module) {
            return Ok(ctx.clone());
        }
        return Err(Pkcs11Error::ModuleConflict {
            path: module.display().to_string(),
            loaded: loaded.display().to_string(),
        });
    }
    let load_err = |source| Pkcs11Error::ModuleLoad {
        path: module.display().to_string(),
        source,
    };
    let ctx = Pkcs11::new(module).map_err(load_err)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(source) => return Err(load_err(source)),
    }
    *guard = Some((module.to_path_buf(), ctx.clone()));
    Ok(ctx)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Proves `module` is a loadable PKCS#11 library without initialising it, so `sigvault dev`
/// can refuse a wrong path before it writes anything to disk.
pub fn probe_module(module: &Path) -> Result<(), Pkcs11Error> {
    Pkcs11::new(module).map(drop).map_err(|source| Pkcs11Error::ModuleLoad {
        path: module.display().to_string(),
        source,
    })
}

/// The slot holding the initialised token labelled `label`, if any.
///
/// The slot list can change between listing it and reading a slot's token (another thread
/// initialising a token, a token plugged in or out): a slot that vanished in between makes
/// the scan start over, a few times, rather than fail the caller.
pub(crate) fn find_token(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, Pkcs11Error> {
    let _slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
    find_token_locked(ctx, label)
}

/// [`find_token`] for a caller that holds [`SLOTS`].
///
/// SoftHSM2 lists a token directory that another process is still writing (a token being
/// created beside ours) and then fails to read its info with `CKR_GENERAL_ERROR`: that too
/// is retried, after a short pause, before it is reported.
fn find_token_locked(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, Pkcs11Error> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match scan_for_token(ctx, label) {
            Err(Pkcs11Error::Call {
                source: CkError::Pkcs11(RvError::SlotIdInvalid | RvError::TokenNotPresent, _),
                ..
            }) if attempt < ATTEMPTS => attempt += 1,
            Err(Pkcs11Error::Call {
                source: CkError::Pkcs11(RvError::GeneralError, Function::GetTokenInfo),
                ..
            }) if attempt < ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn scan_for_token(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, Pkcs11Error> {
    let slots = ctx.get_slots_with_initialized_token().map_err(call("listing slots"))?;
    for slot in slots {
        let info = ctx.get_token_info(slot).map_err(call("reading token info"))?;
        if info.label().trim_end() == label {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// Whether the module `settings` names holds an initialised token with its label.
pub fn token_present(settings: &Pkcs11Settings) -> Result<bool, Pkcs11Error> {
    let ctx = context(&settings.module)?;
    Ok(find_token(&ctx, settings.token_label.as_str())?.is_some())
}

/// Finds the token `settings` names, or initialises one on a free slot with `so_pin` as its
/// security-officer PIN and `settings.pin` as its user PIN (`C_InitToken`, then `C_InitPIN`
/// as SO). For `sigvault dev` and tests: production tokens are provisioned by their operators.
pub fn provision_token(settings: &Pkcs11Settings, so_pin: &SecretString) -> Result<(), Pkcs11Error> {
    let ctx = context(&settings.module)?;
    let label = settings.token_label.as_str();
    let _slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
    if find_token_locked(&ctx, label)?.is_some() {
        return Ok(());
    }
    let free = ctx
        .get_slots_with_token()
        .map_err(call("listing slots"))?
        .into_iter()
        .find(|slot| {
            ctx.get_token_info(*slot)
                .map(|info| !info.token_initialized())
                .unwrap_or(false)
        })
        .ok_or_else(|| Pkcs11Error::TokenNotFound {
            label: label.to_owned(),
        })?;
    ctx.init_token(free, so_pin, label)
        .map_err(call("initialising the token"))?;
    let session = ctx.open_rw_session(free).map_err(call("opening a session"))?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(call("logging in as SO"))?;
    session.init_pin(&settings.pin).map_err(call("setting the user PIN"))?;
    session.logout().map_err(call("logging out"))?;
    drop(session);
    match find_token_locked(&ctx, label)? {
        Some(_) => Ok(()),
        None => Err(Pkcs11Error::TokenNotFound {
            label: label.to_owned(),
        }),
    }
}
