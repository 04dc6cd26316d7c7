//! `sigvault dev`: a complete single-node vault in one data directory, with nothing to
//! prepare beyond SoftHSM2 being installed.
//!
//! Layout of the data dir (created on first start, reused on every restart):
//! ```text
//! sigvault.lock      held (flock) by the server using the dir; holds its pid
//! softhsm2.conf      SoftHSM2 configuration naming tokens/ by its absolute path, rewritten
//!                    when the dir has moved
//! tokens/            the SoftHSM2 token holding the KEK
//! hsm-pin            user PIN of the token (mode 0600)
//! hsm-so-pin         security-officer PIN of the token (mode 0600)
//! sigvault.db        SQLite store (+ -wal, -shm)
//! audit.jsonl        the audit event file; audit.anchor its anchor file
//! root-token         the root token generated on the first start (mode 0600; dev only)
//! ```
//! A start on a dir that held something checks that every piece is there
//! ([`check_complete`]) before anything is created: a missing piece is named, never made
//! afresh.
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

/// Reads a PIN file (trailing newline removed); a missing file is an error.
pub fn read_pin_file(path: &Path) -> io::Result<SecretString> {
    let text = zeroize::Zeroizing::new(fs::read_to_string(path)?);
    let pin = text.trim_end_matches(['\n', '\r']);
    if pin.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the file is empty"));
    }
    Ok(SecretString::from(pin.to_owned()))
}

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
/// the module must load, then the SoftHSM2 config (naming the token dir by its absolute
/// path, see [`softhsm::write_conf`]) and the PINs are created when missing. The data dir
/// itself exists already: the caller created and locked it ([`crate::datadir`]). Returns
/// the paths; the caller points `SOFTHSM2_CONF` at `paths.softhsm_conf` before the first
/// `C_Initialize`.
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
    if !paths.data_dir.is_dir() {
        return Err(DevError::DataDir {
            path: paths.data_dir.display().to_string(),
            message: "not a directory".into(),
        });
    }
    fs::set_permissions(&paths.data_dir, fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
    softhsm::write_conf(&paths.softhsm_conf, &paths.token_dir).map_err(dir_err)?;
    if !explicit_pin(raw) {
        read_or_create_pin(&paths.pin_file).map_err(dir_err)?;
    }
    read_or_create_pin(&paths.so_pin_file).map_err(dir_err)?;
    Ok(paths)
}

fn explicit_pin(raw: &RawConfig) -> bool {
    raw.kek
        .as_ref()
        .and_then(|k| k.pkcs11.as_ref())
        .and_then(|p| p.pin_file.as_ref())
        .is_some()
}

/// The pieces of a dev data dir that was started before, each with what it holds: a start
/// must not make a missing one afresh (a new token cannot open the old keys, a new PIN does
/// not log in to the old token, a new database or event file forgets the old ones).
fn pieces(raw: &RawConfig, paths: &DevPaths) -> Vec<(std::path::PathBuf, &'static str)> {
    let audit = raw.audit.as_ref();
    let mut pieces = vec![(
        paths.token_dir.clone(),
        "the SoftHSM2 token holding the KEK every key is wrapped under",
    )];
    if !explicit_pin(raw) {
        pieces.push((paths.pin_file.clone(), "the user PIN of the SoftHSM2 token"));
    }
    if raw.store.as_ref().and_then(|s| s.url.as_ref()).is_none() {
        pieces.push((
            paths.database.clone(),
            "the store: keys, tokens, credentials, API keys and the audit index",
        ));
    }
    if audit.and_then(|a| a.file.as_ref()).is_none() {
        pieces.push((paths.data_dir.join("audit.jsonl"), "the audit event file"));
    }
    if audit.and_then(|a| a.anchor_file.as_ref()).is_none() {
        pieces.push((paths.data_dir.join("audit.anchor"), "the audit anchor file"));
    }
    pieces
}

/// For a data dir that held something before this start: every piece of a started vault is
/// there, else one line naming the first missing file, what it held and what to do.
pub fn check_complete(raw: &RawConfig) -> Result<(), DevError> {
    let paths = DevPaths::new(&config::data_dir_of(Mode::Dev, raw));
    for (path, holds) in pieces(raw, &paths) {
        let present = if path == paths.token_dir {
            fs::read_dir(&path).is_ok_and(|mut entries| entries.next().is_some())
        } else {
            path.exists()
        };
        if !present {
            return Err(DevError::DataDir {
                path: paths.data_dir.display().to_string(),
                message: format!(
                    "{} is missing ({holds}); restore the data dir from one backup \
                     (docs/OPERATIONS.md), or move it aside to start a new, empty vault",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

/// The file in a dev data dir that keeps the root token generated on its first start, as
/// Vault's `-dev` server keeps its token in `~/.vault-token`: so a second shell (and the
/// README's tour) can use the vault without copying the token by hand. Only `sigvault dev`
/// writes it; `serve` prints a generated root token once and keeps nothing but its hash.
pub const ROOT_TOKEN_FILE: &str = "root-token";

/// Keeps the root-token file in step with the root token: written (mode 0600) when this
/// start generated the token; removed when the token was given in `SIGVAULT_ROOT_TOKEN`
/// (which replaces any earlier one, so the file would name a token that no longer works).
pub fn keep_root_token(path: &Path, generated: Option<&SecretString>, given: bool) -> io::Result<()> {
    use secrecy::ExposeSecret;
    if generated.is_some() || given {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    if let Some(token) = generated {
        create_private_file(path, format!("{}\n", token.expose_secret()).as_bytes())?;
    }
    Ok(())
}

/// The line `sigvault dev` prints for a second shell to paste: the address, and the root
/// token read from its file (never the token itself, so the line can be shared).
pub fn export_line(address: &str, token_file: &Path) -> String {
    let file = fs::canonicalize(token_file).unwrap_or_else(|_| token_file.to_path_buf());
    if file.exists() {
        format!(
            "export SIGVAULT_ADDR={address} SIGVAULT_TOKEN=\"$(cat {})\"",
            shell_quote(&file.display().to_string())
        )
    } else {
        format!("export SIGVAULT_ADDR={address}")
    }
}

/// `text` as one shell word: unchanged when it is made of safe characters, else in single
/// quotes.
fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b',' | b':' | b'@'));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
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
    fn the_root_token_file_follows_the_root_token() {
        let dir = std::env::temp_dir().join(format!("sv-root-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join(ROOT_TOKEN_FILE);
        let token = SecretString::from("svt_generated".to_owned());
        keep_root_token(&file, Some(&token), false).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "svt_generated\n");
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        // A restart that generates nothing keeps it.
        keep_root_token(&file, None, false).unwrap();
        assert!(file.exists());
        let line = export_line("http://127.0.0.1:8200", &file);
        assert_eq!(
            line,
            format!(
                "export SIGVAULT_ADDR=http://127.0.0.1:8200 SIGVAULT_TOKEN=\"$(cat {})\"",
                fs::canonicalize(&file).unwrap().display()
            )
        );
        // A token given in the environment replaces the stored one: the file would lie.
        keep_root_token(&file, None, true).unwrap();
        assert!(!file.exists());
        assert_eq!(
            export_line("http://127.0.0.1:8200", &file),
            "export SIGVAULT_ADDR=http://127.0.0.1:8200"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_are_quoted_for_the_shell_when_they_need_it() {
        assert_eq!(
            shell_quote("/srv/vault/.sigvault-dev/root-token"),
            "/srv/vault/.sigvault-dev/root-token"
        );
        assert_eq!(shell_quote("/home/a b/it's"), "'/home/a b/it'\\''s'");
    }

    #[test]
    fn the_softhsm_conf_points_at_the_token_dir() {
        let dir = std::env::temp_dir().join(format!("sv-conf-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let paths = DevPaths::new(&dir);
        softhsm::write_conf(&paths.softhsm_conf, &paths.token_dir).unwrap();
        let text = fs::read_to_string(&paths.softhsm_conf).unwrap();
        let absolute = fs::canonicalize(&paths.token_dir).unwrap();
        assert!(absolute.is_absolute());
        assert!(text.contains(&format!("directories.tokendir = {}\n", absolute.display())));
        assert!(paths.token_dir.is_dir());
        // Moved: the next write points the config at the token dir's new place.
        let moved = dir.with_file_name(format!("sv-conf-moved-{}", std::process::id()));
        let _ = fs::remove_dir_all(&moved);
        fs::rename(&dir, &moved).unwrap();
        let paths = DevPaths::new(&moved);
        softhsm::write_conf(&paths.softhsm_conf, &paths.token_dir).unwrap();
        let text = fs::read_to_string(&paths.softhsm_conf).unwrap();
        let absolute = fs::canonicalize(&paths.token_dir).unwrap();
        assert!(text.contains(&format!("directories.tokendir = {}\n", absolute.display())));
        fs::remove_dir_all(&moved).unwrap();
    }
}
