//! SoftHSM2, the PKCS#11 module of development and tests: where its library is installed and
//! the configuration file that points it at a token directory.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` in `C_Initialize`, once per process, so whoever writes a
//! config here must point that variable at it before the first PKCS#11 call.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The SoftHSM2 configuration template shipped in `softhsm/`.
pub(crate) const CONF_TEMPLATE: &str = include_str!("../../../softhsm/softhsm2.conf.template");

/// Where Debian, Ubuntu and a source install put the SoftHSM2 module.
pub(crate) const MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The first of [`MODULE_PATHS`] that exists.
pub(crate) fn installed_module() -> Option<PathBuf> {
    MODULE_PATHS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Writes a SoftHSM2 config at `conf` whose token directory is `token_dir`, creating the
/// directory when missing (private to this user). The config names the token directory by
/// its absolute path as it is now, and is rewritten (atomically, by rename) whenever that
/// changed: a data dir that was moved or renamed finds its own token, and a copy of one uses
/// the copy's token files, never the original's.
pub fn write_conf(conf: &Path, token_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(token_dir)?;
    fs::set_permissions(token_dir, fs::Permissions::from_mode(0o700))?;
    let token_dir = fs::canonicalize(token_dir)?;
    let text = CONF_TEMPLATE.replace("@TOKENDIR@", &token_dir.display().to_string());
    match fs::read(conf) {
        Ok(current) if current == text.as_bytes() => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Staged under a name of this process's own: processes that write one config at once
    // (test runners) each rename a whole file into place, and the last one wins.
    static STAGED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut staged = conf.as_os_str().to_owned();
    staged.push(format!(
        ".new.{}.{}",
        std::process::id(),
        STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let staged = PathBuf::from(staged);
    let _ = fs::remove_file(&staged);
    crate::hardening::create_private_file(&staged, text.as_bytes())?;
    fs::rename(&staged, conf).inspect_err(|_| {
        let _ = fs::remove_file(&staged);
    })
}
