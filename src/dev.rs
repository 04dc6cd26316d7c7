//! `sigvault dev`: a complete single-node vault in one data directory, with nothing to
//! prepare beyond SoftHSM2 being installed.
//!
//! Layout of the data dir (created on first start, reused on every restart):
//! ```text
//! softhsm2.conf      SoftHSM2 configuration pointing at tokens/
//! tokens/            the SoftHSM2 token holding the KEK
//! hsm-pin            user PIN of the token (mode 0600)
//! hsm-so-pin         security-officer PIN of the token (mode 0600)
//! sigvault.db        SQLite store (+ -wal, -shm)
//! ```
//! SoftHSM2 reads `SOFTHSM2_CONF` in `C_Initialize`, once per process, so the binary sets
//! that variable to this directory's config before any PKCS#11 call (see `main.rs`).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use secrecy::SecretString;

use crate::config::{self, DevPaths, Mode, RawConfig, Settings};
use crate::hardening::create_private_file;
use crate::kek::KekError;
use crate::kek::pkcs11::{self, softhsm};

/// Reads a PIN file (trailing newline removed), or creates it with a fresh random PIN.
pub(crate) fn read_or_create_pin(path: &Path) -> io::Result<SecretString> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let text = zeroize::Zeroizing::new(text);
            Ok(SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut raw = [0u8; 24];
            getrandom::fill(&mut raw).map_err(|e| io::Error::other(e.to_string()))?;
            let pin = base16ct::lower::encode_string(&raw);
            zeroize::Zeroize::zeroize(&mut raw);
            create_private_file(path, pin.as_bytes())?;
            Ok(SecretString::from(pin))
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("SoftHSM2 is not installed (no libsofthsm2.so in {}); run softhsm/install.sh", softhsm::MODULE_PATHS.join(", "))]
    NoSoftHsm,
    #[error("`sigvault dev` keeps its KEK in SoftHSM2: set kek.provider = \"pkcs11\"")]
    NotPkcs11,
    #[error("cannot load the PKCS#11 module {path}: no such file")]
    ModuleMissing { path: String },
    #[error(transparent)]
    Module(pkcs11::Pkcs11Error),
    #[error("data dir {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("HSM: {}", crate::startup::chain(.0))]
    Token(#[from] KekError),
}

/// Everything `sigvault dev` needs on disk, checked and created before any PKCS#11 call:
/// the module must load (else nothing is created), then the data dir, the SoftHSM2 config
/// and the PINs are created when missing. Returns the paths; the caller points
/// `SOFTHSM2_CONF` at `paths.softhsm_conf` before the first `C_Initialize`.
pub fn prepare(raw: &RawConfig) -> Result<DevPaths, DevError> {
    let module = match raw
        .kek
        .as_ref()
        .and_then(|k| k.pkcs11.as_ref())
        .and_then(|p| p.module.clone())
    {
        Some(module) => module,
        None => softhsm::installed_module().ok_or(DevError::NoSoftHsm)?,
    };
    if !module.exists() {
        return Err(DevError::ModuleMissing {
            path: module.display().to_string(),
        });
    }
    // Loading (not initialising) the module proves it is a PKCS#11 library before anything
    // is written to disk.
    pkcs11::probe_module(&module).map_err(DevError::Module)?;
    let paths = DevPaths::new(&config::data_dir_of(Mode::Dev, raw));
    let dir_err = |e: io::Error| DevError::DataDir {
        path: paths.data_dir.display().to_string(),
        message: e.to_string(),
    };
    if paths.data_dir.exists() && !paths.data_dir.is_dir() {
        return Err(DevError::DataDir {
            path: paths.data_dir.display().to_string(),
            message: "not a directory".into(),
        });
    }
    if !paths.data_dir.exists() {
        fs::create_dir_all(&paths.data_dir).map_err(dir_err)?;
        fs::set_permissions(&paths.data_dir, fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
    }
    fs::read_dir(&paths.data_dir).map_err(dir_err)?;
    softhsm::write_conf(&paths.softhsm_conf, &paths.token_dir).map_err(dir_err)?;
    let explicit_pin = raw
        .kek
        .as_ref()
        .and_then(|k| k.pkcs11.as_ref())
        .and_then(|p| p.pin_file.as_ref())
        .is_some();
    if !explicit_pin {
        read_or_create_pin(&paths.pin_file).map_err(dir_err)?;
    }
    read_or_create_pin(&paths.so_pin_file).map_err(dir_err)?;
    Ok(paths)
}

/// Creates the dev token on first start (`C_InitToken` + `C_InitPIN`); a no-op afterwards.
/// Must run after `SOFTHSM2_CONF` points at the dev data dir.
pub fn ensure_dev_token(settings: &Settings, paths: &DevPaths) -> Result<(), DevError> {
    let pkcs11 = settings.kek.pkcs11().ok_or(DevError::NotPkcs11)?;
    let so_pin = read_or_create_pin(&paths.so_pin_file).map_err(|e| DevError::DataDir {
        path: paths.so_pin_file.display().to_string(),
        message: e.to_string(),
    })?;
    pkcs11::provision_token(pkcs11, &so_pin).map_err(KekError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_pin_file_is_created_private_once_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("sv-pin-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pin");
        let first = read_or_create_pin(&path).unwrap();
        let again = read_or_create_pin(&path).unwrap();
        assert_eq!(first.expose_secret(), again.expose_secret());
        assert_eq!(first.expose_secret().len(), 48);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_softhsm_conf_points_at_the_token_dir() {
        let dir = std::env::temp_dir().join(format!("sv-conf-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let paths = DevPaths::new(&dir);
        softhsm::write_conf(&paths.softhsm_conf, &paths.token_dir).unwrap();
        let text = fs::read_to_string(&paths.softhsm_conf).unwrap();
        assert!(text.contains(&format!("directories.tokendir = {}", paths.token_dir.display())));
        assert!(paths.token_dir.is_dir());
        fs::remove_dir_all(&dir).unwrap();
    }
}
