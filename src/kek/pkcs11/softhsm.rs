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

/// Writes a SoftHSM2 config at `conf` whose token directory is `token_dir`, creating both
/// when missing (the directory private to this user). Leaves an existing config untouched.
pub fn write_conf(conf: &Path, token_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(token_dir)?;
    fs::set_permissions(token_dir, fs::Permissions::from_mode(0o700))?;
    if conf.exists() {
        return Ok(());
    }
    let text = CONF_TEMPLATE.replace("@TOKENDIR@", &token_dir.display().to_string());
    crate::hardening::create_private_file(conf, text.as_bytes())
}
