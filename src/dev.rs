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
        Ok(text) => Ok(SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut raw = [0u8; 24];
            getrandom::fill(&mut raw).map_err(|e| io::Error::other(e.to_string()))?;
            let pin: String = raw.iter().map(|b| format!("{b:02x}")).collect();
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
