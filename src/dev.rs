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
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::config::{self, Mode, RawConfig, Settings};
use crate::kek::KekError;
use crate::kek::pkcs11::{context, ensure_token};

/// The SoftHSM2 configuration template shipped in `softhsm/`.
pub const SOFTHSM_CONF_TEMPLATE: &str = include_str!("../softhsm/softhsm2.conf.template");

/// The token label `sigvault dev` uses.
pub const DEV_TOKEN_LABEL: &str = "sigvault-dev";

/// Paths inside a dev data dir.
#[derive(Debug, Clone)]
pub struct DevPaths {
    pub data_dir: PathBuf,
    pub softhsm_conf: PathBuf,
    pub token_dir: PathBuf,
    pub pin_file: PathBuf,
    pub so_pin_file: PathBuf,
    pub database: PathBuf,
}

impl DevPaths {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            softhsm_conf: data_dir.join("softhsm2.conf"),
            token_dir: data_dir.join("tokens"),
            pin_file: data_dir.join("hsm-pin"),
            so_pin_file: data_dir.join("hsm-so-pin"),
            database: data_dir.join("sigvault.db"),
        }
    }
}

/// Writes a SoftHSM2 config at `conf` whose token directory is `token_dir`, creating both
/// when missing. Leaves an existing config untouched.
pub fn write_softhsm_conf(conf: &Path, token_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(token_dir)?;
    fs::set_permissions(token_dir, fs::Permissions::from_mode(0o700))?;
    if conf.exists() {
        return Ok(());
    }
    let text = SOFTHSM_CONF_TEMPLATE.replace("@TOKENDIR@", &token_dir.display().to_string());
    write_private(conf, text.as_bytes())
}

/// Reads a PIN file (trailing newline removed), or creates it with a fresh random PIN.
pub fn read_or_create_pin(path: &Path) -> io::Result<SecretString> {
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
            write_private(path, pin.as_bytes())?;
            Ok(SecretString::from(pin))
        }
        Err(e) => Err(e),
    }
}

/// Creates `path` with mode 0600 (refusing to follow an existing file) and writes `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("SoftHSM2 is not installed (no libsofthsm2.so in {}); run softhsm/install.sh", config::SOFTHSM_MODULES.join(", "))]
    NoSoftHsm,
    #[error("cannot load the PKCS#11 module {path}: {message}")]
    Module { path: String, message: String },
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
        None => config::default_softhsm_module().ok_or(DevError::NoSoftHsm)?,
    };
    if !module.exists() {
        return Err(DevError::Module {
            path: module.display().to_string(),
            message: "no such file".into(),
        });
    }
    // Loading (not initialising) the module proves it is a PKCS#11 library before anything
    // is written to disk.
    cryptoki::context::Pkcs11::new(&module).map_err(|e| DevError::Module {
        path: module.display().to_string(),
        message: e.to_string(),
    })?;
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
    write_softhsm_conf(&paths.softhsm_conf, &paths.token_dir).map_err(dir_err)?;
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
    let config::KekSettings::Pkcs11 {
        module,
        token_label,
        pin,
        ..
    } = &settings.kek;
    let so_pin = read_or_create_pin(&paths.so_pin_file).map_err(|e| DevError::DataDir {
        path: paths.so_pin_file.display().to_string(),
        message: e.to_string(),
    })?;
    let ctx = context(module)?;
    ensure_token(&ctx, token_label, &so_pin, pin)?;
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
        write_softhsm_conf(&paths.softhsm_conf, &paths.token_dir).unwrap();
        let text = fs::read_to_string(&paths.softhsm_conf).unwrap();
        assert!(text.contains(&format!("directories.tokendir = {}", paths.token_dir.display())));
        assert!(paths.token_dir.is_dir());
        fs::remove_dir_all(&dir).unwrap();
    }
}
