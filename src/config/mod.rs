//! Configuration: a TOML file, then `SIGVAULT_<SECTION>__<KEY>` environment overrides, then
//! command-line overrides, merged and validated into [`Settings`] before anything starts.
//!
//! Every key is optional in the raw form ([`RawConfig`], `deny_unknown_fields`); validation
//! fills defaults, refuses what a production deployment must state explicitly, and reports
//! each bad value with the key (or environment variable) it came from. Secrets never sit in
//! the file: the HSM PIN comes from `kek.pkcs11.pin_file` or `SIGVAULT_KEK__PKCS11__PIN`,
//! the root token from `SIGVAULT_ROOT_TOKEN`.

mod kek;
mod layers;
mod raw;
mod sections;
#[cfg(test)]
mod tests;
mod types;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

pub use kek::DEV_TOKEN_LABEL;
pub use layers::{Overrides, merge};
pub use raw::*;
pub use types::*;

use crate::audit::writer::AuditSettings;
use crate::kek::KekSettings;
use crate::tls::TlsError;

/// Which command is starting: `dev` fills every missing key with an embedded default,
/// `serve` requires the HSM settings to be stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dev,
    Serve,
}

/// Validated settings. Built only through [`load`] / [`Settings::from_raw`].
pub struct Settings {
    pub listen: SocketAddr,
    /// Plain HTTP on a non-loopback address was explicitly accepted (meaningless with TLS).
    pub insecure_http: bool,
    /// `[tls]`: when present the server speaks only TLS on `listen`.
    pub tls: Option<TlsSettings>,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub store: StoreSettings,
    pub kek: KekSettings,
    pub cache: CacheSettings,
    pub keys: KeySettings,
    pub limits: Limits,
    pub audit: AuditSettings,
    pub report: ReportSettings,
    /// Where the Cedar policies are read from; `None` = the built-in set.
    pub policies_dir: Option<PathBuf>,
    pub auth: AuthSettings,
    pub sigv4: Sigv4Settings,
    /// `SIGVAULT_ROOT_TOKEN`, when set.
    pub root_token: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Merges and validates in one step, reading the process environment.
pub fn load(mode: Mode, file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let raw = merge(file, &env, overrides)?;
    Settings::from_raw(mode, raw, &env)
}

/// The data dir a raw config names, with the mode's default.
pub fn data_dir_of(mode: Mode, raw: &RawConfig) -> PathBuf {
    raw.data_dir.clone().unwrap_or_else(|| match mode {
        Mode::Dev => PathBuf::from(".sigvault-dev"),
        Mode::Serve => PathBuf::from("/var/lib/sigvault"),
    })
}

/// Whether validation reads secret files (the PIN file): not when only checking values
/// before the files exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Read,
    Skip,
}

/// Validates every value of `raw` without reading secret files: lets `sigvault dev` refuse
/// a bad config before it creates its data dir (where the PIN file will live).
pub fn check(mode: Mode, raw: &RawConfig, env: &[(String, String)]) -> Result<(), ConfigError> {
    Settings::validate(mode, raw.clone(), env, Secrets::Skip).map(drop)
}

impl Settings {
    /// Validates a merged raw config. `env` supplies the secret variables.
    pub fn from_raw(mode: Mode, raw: RawConfig, env: &[(String, String)]) -> Result<Self, ConfigError> {
        Self::validate(mode, raw, env, Secrets::Read)
    }

    fn validate(mode: Mode, raw: RawConfig, env: &[(String, String)], secrets: Secrets) -> Result<Self, ConfigError> {
        let env_var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let data_dir = data_dir_of(mode, &raw);
        let listen_text = raw.listen.clone().unwrap_or_else(|| "127.0.0.1:8200".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{listen_text}` is not an address (expected host:port, e.g. 127.0.0.1:8200)"),
            )
        })?;
        let insecure_http = raw.insecure_http.unwrap_or(false);
        let tls = raw.tls.map(tls_settings).transpose()?;
        if tls.is_none() && !listen.ip().is_loopback() && !insecure_http {
            return Err(invalid(
                "listen",
                format!(
                    "{listen} is not a loopback address: without [tls] this serves plain HTTP, which carries \
                     tokens and key material in the clear; configure [tls], listen on 127.0.0.1, or set \
                     insecure_http = true behind a TLS-terminating proxy"
                ),
            ));
        }
        let log_level = raw.log_level.clone().unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(invalid(
                "log_level",
                format!("`{log_level}` is not one of error, warn, info, debug, trace"),
            ));
        }
        let store = store_settings(raw.store.unwrap_or_default(), &data_dir)?;
        let kek = kek_settings(
            mode,
            raw.kek.unwrap_or_default(),
            &data_dir,
            env_var("SIGVAULT_KEK__PKCS11__PIN"),
            secrets,
        )?;
        let cache = cache_settings(raw.cache.unwrap_or_default())?;
        let keys = key_settings(raw.keys.unwrap_or_default())?;
        let limits = limits(raw.limits.unwrap_or_default())?;
        let audit = audit_settings(raw.audit.unwrap_or_default(), &data_dir)?;
        let report = report_settings(raw.report.unwrap_or_default())?;
        let policies_dir = raw.policies.unwrap_or_default().dir;
        if let Some(dir) = &policies_dir
            && !dir.is_dir()
        {
            return Err(invalid("policies.dir", format!("{} is not a directory", dir.display())));
        }
        let auth = auth_settings(raw.auth.unwrap_or_default())?;
        let sigv4 = sigv4_settings(raw.sigv4.unwrap_or_default())?;
        let root_token = match env_var("SIGVAULT_ROOT_TOKEN") {
            Some(token) => Some(crate::auth::validate_root_token(&token).map_err(|m| ConfigError::Env {
                var: "SIGVAULT_ROOT_TOKEN".into(),
                message: m.to_owned(),
            })?),
            None => None,
        };
        Ok(Self {
            listen,
            insecure_http,
            tls,
            data_dir,
            log_level,
            store,
            kek,
            cache,
            keys,
            limits,
            audit,
            report,
            policies_dir,
            auth,
            sigv4,
            root_token,
        })
    }
}
