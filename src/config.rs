//! Configuration: a TOML file, then `SIGVAULT_<SECTION>__<KEY>` environment overrides, then
//! command-line overrides, merged and validated into [`Settings`] before anything starts.
//!
//! Every key is optional in the raw form ([`RawConfig`], `deny_unknown_fields`); validation
//! fills defaults, refuses what a production deployment must state explicitly, and reports
//! each bad value with the key (or environment variable) it came from. Secrets never sit in
//! the file: the HSM PIN comes from `kek.pkcs11.pin_file` or `SIGVAULT_KEK__PKCS11__PIN`,
//! the root token from `SIGVAULT_ROOT_TOKEN`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use time::Duration;
use toml::{Table, Value};

use crate::audit::writer::AuditSettings;
use crate::auth::certificate::{CertificateGroups, DEFAULT_CLIENT_GROUPS, is_group_name};
pub use crate::model::OnNewFingerprint;
pub use crate::store::StoreSettings;
use crate::timefmt::parse_duration;
use crate::tls::{ClientAuth, TlsError, TlsFiles};

/// Environment variables that carry secrets or other meanings, not config keys.
const RESERVED_ENV: &[&str] = &["SIGVAULT_ROOT_TOKEN", "SIGVAULT_KEK__PKCS11__PIN", "SIGVAULT_LOG"];
const ENV_PREFIX: &str = "SIGVAULT_";
/// Module paths tried when `kek.pkcs11.module` is not set in `sigvault dev`.
pub const SOFTHSM_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub insecure_http: Option<bool>,
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub store: Option<RawStore>,
    pub kek: Option<RawKek>,
    pub cache: Option<RawCache>,
    pub keys: Option<RawKeys>,
    pub limits: Option<RawLimits>,
    pub audit: Option<RawAudit>,
    pub report: Option<RawReport>,
    pub policies: Option<RawPolicies>,
    pub auth: Option<RawAuth>,
    pub tls: Option<RawTls>,
    pub sigv4: Option<RawSigv4>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigv4 {
    pub max_credentials_per_principal: Option<u32>,
    pub time_window: Option<String>,
    pub on_new_fingerprint: Option<String>,
    pub max_fingerprints: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicies {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub max_failures: Option<u32>,
    pub failure_window: Option<String>,
    pub max_token_ttl: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: Option<String>,
    /// Certificate principal → groups.
    pub client_groups: Option<BTreeMap<String, Vec<String>>>,
    pub default_client_groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    pub cryptoperiod: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub file: Option<PathBuf>,
    pub anchor_file: Option<PathBuf>,
    pub node: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKek {
    pub provider: Option<String>,
    pub pkcs11: Option<RawPkcs11>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPkcs11 {
    pub module: Option<PathBuf>,
    pub token_label: Option<String>,
    pub pin_file: Option<PathBuf>,
    pub sessions: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub ttl: Option<String>,
    pub max_entries: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    pub default_pending_days: Option<u32>,
    pub max_pending_days: Option<u32>,
    pub usage_flush_interval: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<u64>,
    pub max_sign_body_bytes: Option<u64>,
    pub max_message_bytes: Option<u64>,
    pub max_batch_items: Option<u32>,
    pub max_connections: Option<u32>,
}

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

/// A checked `[tls]` section: its PEM files already read into a server configuration.
#[derive(Clone)]
pub struct TlsSettings {
    pub server: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuth,
    pub client_groups: CertificateGroups,
}

impl TlsSettings {
    /// Reads and checks the PEM files (see [`crate::tls::server_config`]).
    pub fn load(files: &TlsFiles, client_auth: ClientAuth, client_groups: CertificateGroups) -> Result<Self, TlsError> {
        Ok(Self {
            server: crate::tls::server_config(files, client_auth)?,
            client_auth,
            client_groups,
        })
    }
}

pub enum KekSettings {
    Pkcs11 {
        module: PathBuf,
        token_label: String,
        pin: SecretString,
        sessions: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub max_entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySettings {
    pub default_pending_days: u32,
    pub max_pending_days: u32,
    pub usage_flush_interval: Duration,
}

/// Caller authentication limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSettings {
    /// Failed authentications a source address may make per `failure_window` before it
    /// gets 429 `RATE_LIMITED`.
    pub max_failures: u32,
    pub failure_window: time::Duration,
    /// Longest `ttl` a caller token may be given (and the ttl of tokens created without one).
    pub max_token_ttl: time::Duration,
}

/// `[sigv4]`: SigV4 credentials and verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sigv4Settings {
    /// Credentials a principal may hold at once (2: one in use, one being rotated in).
    pub max_credentials_per_principal: u32,
    /// How far a header-signed request's date may be from now (AWS: 15 minutes).
    pub time_window: time::Duration,
    /// The default of credentials that do not set their own.
    pub on_new_fingerprint: OnNewFingerprint,
    /// Caller fingerprints kept per credential; beyond it the least recently seen is dropped.
    /// (Last use and fingerprint counts are written every `keys.usage_flush_interval`.)
    pub max_fingerprints: u32,
}

impl Default for Sigv4Settings {
    fn default() -> Self {
        Self {
            max_credentials_per_principal: 2,
            time_window: time::Duration::minutes(15),
            on_new_fingerprint: OnNewFingerprint::Record,
            max_fingerprints: 64,
        }
    }
}

/// The compliance report's yardstick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportSettings {
    /// How long a key version may be used before it is due for rotation (NIST SP 800-57
    /// suggests up to about a year for HMAC keys; default 365 days).
    pub cryptoperiod: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_sign_body_bytes: u64,
    pub max_message_bytes: usize,
    pub max_batch_items: usize,
    /// Open client connections at most; beyond it new connections wait in the backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_sign_body_bytes: 8 * 1024 * 1024,
            max_message_bytes: 1024 * 1024,
            max_batch_items: 1000,
            max_connections: 4096,
        }
    }
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

/// Command-line values that override file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// Reads the file (if any), applies `env` and `overrides`, and returns the merged raw
/// config. `env` is passed in (not read here) so tests control it.
pub fn merge(file: Option<&Path>, env: &[(String, String)], overrides: &Overrides) -> Result<RawConfig, ConfigError> {
    let mut table = match file {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    for (var, value) in env {
        let Some(path) = env_key_path(var) else { continue };
        let layer = env_layer(var, &path, value)?;
        deep_merge(&mut table, layer);
    }
    if let Some(listen) = &overrides.listen {
        table.insert("listen".into(), Value::String(listen.clone()));
    }
    if let Some(dir) = &overrides.data_dir {
        table.insert("data_dir".into(), Value::String(dir.display().to_string()));
    }
    table.try_into().map_err(|e| invalid("config", e.to_string()))
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    let file_err = |e: toml::de::Error| ConfigError::File {
        path: path.display().to_string(),
        message: e.to_string().trim_end().replace('\n', " "),
    };
    // Deserialising into the typed form first reports unknown keys and wrong types with
    // their line; the untyped table is what gets merged.
    toml::from_str::<RawConfig>(&text).map_err(file_err)?;
    toml::from_str::<Table>(&text).map_err(file_err)
}

/// `SIGVAULT_KEK__PKCS11__MODULE` → `["kek", "pkcs11", "module"]`; `None` for variables
/// that are not config keys.
fn env_key_path(var: &str) -> Option<Vec<String>> {
    if RESERVED_ENV.contains(&var) || var.starts_with("SIGVAULT_TEST_") {
        return None;
    }
    let rest = var.strip_prefix(ENV_PREFIX)?;
    Some(rest.split("__").map(str::to_ascii_lowercase).collect())
}

/// One environment variable as a one-key table, checked on its own so an error names it.
/// The value is tried as a string first, then as a TOML literal (numbers, booleans).
fn env_layer(var: &str, path: &[String], value: &str) -> Result<Table, ConfigError> {
    let mut candidates = vec![Value::String(value.to_owned())];
    if let Ok(parsed) = toml::from_str::<Table>(&format!("v = {value}"))
        && let Some(v) = parsed.get("v")
    {
        candidates.push(v.clone());
    }
    let mut last_error = String::new();
    for candidate in candidates {
        let layer = nest(path, candidate);
        match layer.clone().try_into::<RawConfig>() {
            Ok(_) => return Ok(layer),
            Err(e) => last_error = e.to_string().trim_end().replace('\n', " "),
        }
    }
    Err(ConfigError::Env {
        var: var.to_owned(),
        message: last_error,
    })
}

fn nest(path: &[String], value: Value) -> Table {
    let mut value = value;
    for key in path.iter().skip(1).rev() {
        let mut t = Table::new();
        t.insert(key.clone(), value);
        value = Value::Table(t);
    }
    let mut top = Table::new();
    if let Some(first) = path.first() {
        top.insert(first.clone(), value);
    }
    top
}

fn deep_merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => deep_merge(existing, incoming),
            (_, value) => {
                into.insert(key, value);
            }
        }
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

/// The first SoftHSM2 module found on this machine.
pub fn default_softhsm_module() -> Option<PathBuf> {
    SOFTHSM_MODULES.iter().map(PathBuf::from).find(|p| p.exists())
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

/// `[tls]`: the PEM files are read and checked now, so a bad one stops the start (or
/// `config::check`) with one line naming its key.
fn tls_settings(raw: RawTls) -> Result<TlsSettings, ConfigError> {
    let cert_file = raw.cert_file.ok_or_else(|| {
        invalid(
            "tls.cert_file",
            "required with [tls]: the server certificate chain (PEM)",
        )
    })?;
    let key_file = raw
        .key_file
        .ok_or_else(|| invalid("tls.key_file", "required with [tls]: the server private key (PEM)"))?;
    let client_auth = match raw.client_auth.as_deref() {
        None => ClientAuth::None,
        Some(text) => ClientAuth::parse(text).ok_or_else(|| {
            invalid(
                "tls.client_auth",
                format!("`{text}` is not one of none, optional, required"),
            )
        })?,
    };
    let default_groups = raw
        .default_client_groups
        .unwrap_or_else(|| DEFAULT_CLIENT_GROUPS.iter().map(|g| (*g).to_owned()).collect());
    if let Some(bad) = default_groups.iter().find(|g| !is_group_name(g)) {
        return Err(invalid(
            "tls.default_client_groups",
            format!("`{bad}` is not a group name (1 to 64 characters of A-Z a-z 0-9 . _ -)"),
        ));
    }
    let listed = raw.client_groups.unwrap_or_default();
    for (principal, groups) in &listed {
        if principal.is_empty() || !principal.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "tls.client_groups",
                format!("`{principal}` is not a certificate name (visible ASCII, e.g. spiffe://example.org/payments)"),
            ));
        }
        if let Some(bad) = groups.iter().find(|g| !is_group_name(g)) {
            return Err(invalid(
                "tls.client_groups",
                format!("{principal}: `{bad}` is not a group name (1 to 64 characters of A-Z a-z 0-9 . _ -)"),
            ));
        }
    }
    let files = TlsFiles {
        cert_file,
        key_file,
        client_ca_file: raw.client_ca_file,
    };
    Ok(TlsSettings::load(
        &files,
        client_auth,
        CertificateGroups::new(listed, default_groups),
    )?)
}

fn store_settings(raw: RawStore, data_dir: &Path) -> Result<StoreSettings, ConfigError> {
    let url = raw
        .url
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("sigvault.db").display()));
    match url.split_once("://") {
        Some(("sqlite", path)) if !path.is_empty() => Ok(StoreSettings::Sqlite {
            path: PathBuf::from(path),
        }),
        Some(("sqlite", _)) => Err(invalid(
            "store.url",
            "a sqlite URL needs a path: sqlite:///var/lib/sigvault/sigvault.db",
        )),
        Some((scheme, _)) => Err(invalid(
            "store.url",
            format!("unsupported store `{scheme}` (this build supports sqlite://PATH)"),
        )),
        None => Err(invalid(
            "store.url",
            format!("`{url}` is not a URL (expected sqlite://PATH)"),
        )),
    }
}

fn kek_settings(
    mode: Mode,
    raw: RawKek,
    data_dir: &Path,
    pin_env: Option<String>,
    secrets: Secrets,
) -> Result<KekSettings, ConfigError> {
    let provider = raw.provider.unwrap_or_else(|| "pkcs11".into());
    if provider != "pkcs11" {
        return Err(invalid(
            "kek.provider",
            format!("unknown provider `{provider}` (this build supports pkcs11)"),
        ));
    }
    let p = raw.pkcs11.unwrap_or_default();
    let module = match (p.module, mode) {
        (Some(module), _) => module,
        (None, Mode::Dev) => default_softhsm_module().ok_or_else(|| {
            invalid(
                "kek.pkcs11.module",
                "SoftHSM2 is not installed (no libsofthsm2.so found); run softhsm/install.sh",
            )
        })?,
        (None, Mode::Serve) => return Err(invalid("kek.pkcs11.module", "required: the path of the PKCS#11 module")),
    };
    let token_label = match (p.token_label, mode) {
        (Some(label), _) => label,
        (None, Mode::Dev) => crate::dev::DEV_TOKEN_LABEL.to_owned(),
        (None, Mode::Serve) => {
            return Err(invalid(
                "kek.pkcs11.token_label",
                "required: the label of the HSM token",
            ));
        }
    };
    if token_label.is_empty() || token_label.len() > 32 {
        return Err(invalid(
            "kek.pkcs11.token_label",
            "must be 1 to 32 bytes (the PKCS#11 label field)",
        ));
    }
    let read = |path: &Path| match secrets {
        Secrets::Read => read_pin(path),
        Secrets::Skip => Ok(String::new()),
    };
    let pin = match (pin_env, p.pin_file, mode) {
        (Some(pin), _, _) => pin,
        (None, Some(file), _) => read(&file)?,
        (None, None, Mode::Dev) => read(&data_dir.join("hsm-pin"))?,
        (None, None, Mode::Serve) => {
            return Err(invalid(
                "kek.pkcs11.pin_file",
                "required (or set SIGVAULT_KEK__PKCS11__PIN): the HSM user PIN",
            ));
        }
    };
    let sessions = p.sessions.unwrap_or(4);
    if !(1..=64).contains(&sessions) {
        return Err(invalid("kek.pkcs11.sessions", "must be between 1 and 64"));
    }
    Ok(KekSettings::Pkcs11 {
        module,
        token_label,
        pin: SecretString::from(pin),
        sessions: sessions as usize,
    })
}

fn read_pin(path: &Path) -> Result<String, ConfigError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| invalid("kek.pkcs11.pin_file", format!("cannot read {}: {e}", path.display())))?,
    );
    let pin = text.trim_end_matches(['\n', '\r']).to_owned();
    if pin.is_empty() {
        return Err(invalid("kek.pkcs11.pin_file", format!("{} is empty", path.display())));
    }
    Ok(pin)
}

fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| invalid(key, e.to_string()))
}

fn cache_settings(raw: RawCache) -> Result<CacheSettings, ConfigError> {
    let ttl = duration("cache.ttl", raw.ttl.as_deref().unwrap_or("1h"))?;
    let max_entries = raw.max_entries.unwrap_or(10_000);
    if !(1..=1_000_000).contains(&max_entries) {
        return Err(invalid("cache.max_entries", "must be between 1 and 1000000"));
    }
    Ok(CacheSettings {
        ttl,
        max_entries: max_entries as usize,
    })
}

fn key_settings(raw: RawKeys) -> Result<KeySettings, ConfigError> {
    let max_pending_days = raw.max_pending_days.unwrap_or(30);
    if !(1..=365).contains(&max_pending_days) {
        return Err(invalid("keys.max_pending_days", "must be between 1 and 365"));
    }
    let default_pending_days = raw.default_pending_days.unwrap_or(7);
    if !(1..=max_pending_days).contains(&default_pending_days) {
        return Err(invalid(
            "keys.default_pending_days",
            format!("must be between 1 and keys.max_pending_days ({max_pending_days})"),
        ));
    }
    let usage_flush_interval = duration(
        "keys.usage_flush_interval",
        raw.usage_flush_interval.as_deref().unwrap_or("1s"),
    )?;
    if usage_flush_interval > Duration::minutes(10) {
        return Err(invalid("keys.usage_flush_interval", "must be at most 10m"));
    }
    Ok(KeySettings {
        default_pending_days,
        max_pending_days,
        usage_flush_interval,
    })
}

fn auth_settings(raw: RawAuth) -> Result<AuthSettings, ConfigError> {
    let max_failures = raw.max_failures.unwrap_or(10);
    if !(1..=10_000).contains(&max_failures) {
        return Err(invalid("auth.max_failures", "must be 1 to 10000"));
    }
    let failure_window = duration("auth.failure_window", raw.failure_window.as_deref().unwrap_or("1m"))?;
    if failure_window < time::Duration::seconds(1) || failure_window > time::Duration::hours(24) {
        return Err(invalid("auth.failure_window", "must be 1s to 24h"));
    }
    let max_token_ttl = duration("auth.max_token_ttl", raw.max_token_ttl.as_deref().unwrap_or("365d"))?;
    if max_token_ttl < time::Duration::minutes(1) {
        return Err(invalid("auth.max_token_ttl", "must be at least 1m"));
    }
    Ok(AuthSettings {
        max_failures,
        failure_window,
        max_token_ttl,
    })
}

fn sigv4_settings(raw: RawSigv4) -> Result<Sigv4Settings, ConfigError> {
    let d = Sigv4Settings::default();
    let max_credentials_per_principal = raw
        .max_credentials_per_principal
        .unwrap_or(d.max_credentials_per_principal);
    if !(1..=100).contains(&max_credentials_per_principal) {
        return Err(invalid("sigv4.max_credentials_per_principal", "must be 1 to 100"));
    }
    let time_window = duration("sigv4.time_window", raw.time_window.as_deref().unwrap_or("15m"))?;
    if time_window < time::Duration::seconds(1) || time_window > time::Duration::hours(1) {
        return Err(invalid("sigv4.time_window", "must be 1s to 1h"));
    }
    let on_new_fingerprint = match raw.on_new_fingerprint.as_deref() {
        None => d.on_new_fingerprint,
        Some(text) => OnNewFingerprint::parse(text)
            .ok_or_else(|| invalid("sigv4.on_new_fingerprint", "must be record, alert or deactivate"))?,
    };
    let max_fingerprints = raw.max_fingerprints.unwrap_or(d.max_fingerprints);
    if !(1..=10_000).contains(&max_fingerprints) {
        return Err(invalid("sigv4.max_fingerprints", "must be 1 to 10000"));
    }
    Ok(Sigv4Settings {
        max_credentials_per_principal,
        time_window,
        on_new_fingerprint,
        max_fingerprints,
    })
}

fn report_settings(raw: RawReport) -> Result<ReportSettings, ConfigError> {
    let cryptoperiod = duration("report.cryptoperiod", raw.cryptoperiod.as_deref().unwrap_or("365d"))?;
    if cryptoperiod < Duration::days(1) {
        return Err(invalid("report.cryptoperiod", "must be at least 1d"));
    }
    Ok(ReportSettings { cryptoperiod })
}

fn audit_settings(raw: RawAudit, data_dir: &Path) -> Result<AuditSettings, ConfigError> {
    let node = match raw.node {
        Some(node) => node,
        None => default_node_name(),
    };
    let node_ok = !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !node_ok {
        return Err(invalid("audit.node", "must be 1 to 64 characters of A-Z a-z 0-9 . _ -"));
    }
    let file = raw.file.unwrap_or_else(|| data_dir.join("audit.jsonl"));
    let anchor_file = raw.anchor_file.unwrap_or_else(|| data_dir.join("audit.anchor"));
    if file == anchor_file {
        return Err(invalid("audit.anchor_file", "must not be the event file"));
    }
    Ok(AuditSettings {
        node,
        file,
        anchor_file,
    })
}

/// This host's name, reduced to the node-name alphabet; `node-1` if it has none.
fn default_node_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name: String = if rc == 0 {
        buf.iter()
            .take_while(|b| **b != 0)
            .map(|b| *b as char)
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(64)
            .collect()
    } else {
        String::new()
    };
    if name.is_empty() { "node-1".into() } else { name }
}

fn limits(raw: RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let l = Limits {
        max_body_bytes: raw.max_body_bytes.unwrap_or(d.max_body_bytes),
        max_sign_body_bytes: raw.max_sign_body_bytes.unwrap_or(d.max_sign_body_bytes),
        max_message_bytes: raw
            .max_message_bytes
            .map_or(d.max_message_bytes, |v| usize::try_from(v).unwrap_or(usize::MAX)),
        max_batch_items: raw.max_batch_items.map_or(d.max_batch_items, |v| v as usize),
        max_connections: raw.max_connections.map_or(d.max_connections, |v| v as usize),
    };
    if !(1024..=1 << 20).contains(&l.max_body_bytes) {
        return Err(invalid("limits.max_body_bytes", "must be between 1024 and 1048576"));
    }
    if !(1..=16 << 20).contains(&l.max_message_bytes) {
        return Err(invalid("limits.max_message_bytes", "must be between 1 and 16777216"));
    }
    if l.max_sign_body_bytes < l.max_message_bytes as u64 || l.max_sign_body_bytes > 256 << 20 {
        return Err(invalid(
            "limits.max_sign_body_bytes",
            "must be at least limits.max_message_bytes and at most 268435456",
        ));
    }
    if !(1..=10_000).contains(&l.max_batch_items) {
        return Err(invalid("limits.max_batch_items", "must be between 1 and 10000"));
    }
    if !(1..=1_000_000).contains(&l.max_connections) {
        return Err(invalid("limits.max_connections", "must be between 1 and 1000000"));
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn temp(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sv-config-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn dev_dir_with_pin() -> PathBuf {
        let dir = temp("dev");
        std::fs::write(dir.join("hsm-pin"), "1234\n").unwrap();
        dir
    }

    fn load_dev(dir: &Path, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let overrides = Overrides {
            listen: None,
            data_dir: Some(dir.to_path_buf()),
        };
        let e = env(vars);
        Settings::from_raw(Mode::Dev, merge(None, &e, &overrides)?, &e)
    }

    #[test]
    fn dev_mode_fills_every_default_from_the_data_dir() {
        let dir = dev_dir_with_pin();
        let s = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/x/libsofthsm2.so")]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8200");
        assert_eq!(
            s.store,
            StoreSettings::Sqlite {
                path: dir.join("sigvault.db")
            }
        );
        let KekSettings::Pkcs11 {
            module,
            token_label,
            pin,
            sessions,
        } = &s.kek;
        assert_eq!(module, &PathBuf::from("/x/libsofthsm2.so"));
        assert_eq!(token_label, "sigvault-dev");
        assert_eq!(
            pin.expose_secret(),
            "1234",
            "the trailing newline is not part of the PIN"
        );
        assert_eq!(*sessions, 4);
        assert_eq!(s.cache.ttl, Duration::hours(1));
        assert_eq!(s.limits, Limits::default());
        assert!(s.root_token.is_none());
    }

    #[test]
    fn environment_overrides_the_file_and_keeps_types() {
        let dir = dev_dir_with_pin();
        let file = dir.join("sigvault.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[kek.pkcs11]\nsessions = 2\nmodule = \"/m.so\"\n",
        )
        .unwrap();
        let e = env(&[
            ("SIGVAULT_LISTEN", "0.0.0.0:8300"),
            ("SIGVAULT_INSECURE_HTTP", "true"),
            ("SIGVAULT_KEK__PKCS11__SESSIONS", "8"),
            ("SIGVAULT_KEK__PKCS11__TOKEN_LABEL", "123"),
            ("SIGVAULT_CACHE__TTL", "5m"),
            ("SIGVAULT_ROOT_TOKEN", "a-root-token-of-some-length"),
            ("SIGVAULT_KEK__PKCS11__PIN", "from-env"),
            ("UNRELATED", "x"),
        ]);
        let overrides = Overrides {
            listen: None,
            data_dir: Some(dir.clone()),
        };
        let s = Settings::from_raw(Mode::Dev, merge(Some(&file), &e, &overrides).unwrap(), &e).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:8300");
        assert!(s.insecure_http, "a boolean from the environment");
        let KekSettings::Pkcs11 {
            token_label,
            pin,
            sessions,
            module,
        } = &s.kek;
        assert_eq!(*sessions, 8);
        assert_eq!(token_label, "123", "a numeric-looking value still fills a string key");
        assert_eq!(
            module,
            &PathBuf::from("/m.so"),
            "file values survive where env is silent"
        );
        assert_eq!(pin.expose_secret(), "from-env");
        assert_eq!(s.cache.ttl, Duration::minutes(5));
        assert_eq!(
            s.root_token.as_ref().map(|t| t.expose_secret().to_owned()),
            Some("a-root-token-of-some-length".into())
        );
    }

    #[test]
    fn command_line_overrides_win_over_environment() {
        let dir = dev_dir_with_pin();
        let e = env(&[
            ("SIGVAULT_LISTEN", "0.0.0.0:1"),
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
        ]);
        let overrides = Overrides {
            listen: Some("127.0.0.1:2".into()),
            data_dir: Some(dir),
        };
        let s = Settings::from_raw(Mode::Dev, merge(None, &e, &overrides).unwrap(), &e).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:2");
    }

    #[test]
    fn checking_a_config_reads_no_pin_file_but_catches_bad_values() {
        let dir = temp("check");
        let e = env(&[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so")]);
        let overrides = Overrides {
            listen: None,
            data_dir: Some(dir.join("not-yet-created")),
        };
        check(Mode::Dev, &merge(None, &e, &overrides).unwrap(), &e).unwrap();
        let e = env(&[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_LOG_LEVEL", "loud"),
        ]);
        let err = check(Mode::Dev, &merge(None, &e, &overrides).unwrap(), &e)
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("log_level:"), "{err}");
    }

    #[test]
    fn plain_http_off_loopback_needs_an_explicit_opt_in() {
        let dir = dev_dir_with_pin();
        let err = load_dev(
            &dir,
            &[
                ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
                ("SIGVAULT_LISTEN", "0.0.0.0:8200"),
            ],
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("listen: 0.0.0.0:8200 is not a loopback address"),
            "{err}"
        );
        for loopback in ["127.0.0.1:8200", "[::1]:8200"] {
            assert!(
                load_dev(
                    &dir,
                    &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"), ("SIGVAULT_LISTEN", loopback)]
                )
                .is_ok()
            );
        }
        let opted_in = load_dev(
            &dir,
            &[
                ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
                ("SIGVAULT_LISTEN", "0.0.0.0:8200"),
                ("SIGVAULT_INSECURE_HTTP", "true"),
            ],
        );
        assert!(opted_in.unwrap().insecure_http);
    }

    fn tls_env(files: &TlsFiles) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.display().to_string();
        let mut vars = vec![
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so".to_owned()),
            ("SIGVAULT_TLS__CERT_FILE", path(&files.cert_file)),
            ("SIGVAULT_TLS__KEY_FILE", path(&files.key_file)),
        ];
        if let Some(ca) = &files.client_ca_file {
            vars.push(("SIGVAULT_TLS__CLIENT_CA_FILE", path(ca)));
        }
        vars
    }

    fn load_dev_owned(dir: &Path, vars: &[(&str, String)]) -> Result<Settings, ConfigError> {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        load_dev(dir, &pairs)
    }

    #[test]
    fn tls_comes_from_the_environment_like_every_section_and_lifts_the_loopback_rule() {
        let dir = dev_dir_with_pin();
        let files = crate::tls::test_pki::write(&dir);
        let mut vars = tls_env(&files);
        vars.extend([
            ("SIGVAULT_LISTEN", "0.0.0.0:8443".to_owned()),
            ("SIGVAULT_TLS__CLIENT_AUTH", "required".to_owned()),
            (
                "SIGVAULT_TLS__DEFAULT_CLIENT_GROUPS",
                r#"["service", "auditor"]"#.to_owned(),
            ),
            (
                "SIGVAULT_TLS__CLIENT_GROUPS",
                r#"{ "spiffe://example.org/ops" = ["custodian"] }"#.to_owned(),
            ),
        ]);
        let s = load_dev_owned(&dir, &vars).unwrap();
        assert!(!s.insecure_http, "TLS needs no opt-in off loopback");
        let tls = s.tls.expect("[tls] from the environment");
        assert_eq!(tls.client_auth, ClientAuth::Required);
        let groups = |name: &str| tls.client_groups.principal(name).map(|p| p.groups);
        assert_eq!(groups("spiffe://example.org/ops"), Some(vec!["custodian".to_owned()]));
        assert_eq!(
            groups("client.example.org"),
            Some(vec!["service".to_owned(), "auditor".to_owned()])
        );

        let plain = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so")]).unwrap();
        assert!(plain.tls.is_none(), "no [tls], plain HTTP");
    }

    #[test]
    fn tls_in_a_config_file_defaults_to_no_client_auth_and_the_service_group() {
        let dir = dev_dir_with_pin();
        let files = crate::tls::test_pki::write(&dir);
        let file = dir.join("sigvault.toml");
        std::fs::write(
            &file,
            format!(
                "[kek.pkcs11]\nmodule = \"/m.so\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                files.cert_file.display(),
                files.key_file.display()
            ),
        )
        .unwrap();
        let overrides = Overrides {
            listen: None,
            data_dir: Some(dir.clone()),
        };
        let s = Settings::from_raw(Mode::Dev, merge(Some(&file), &[], &overrides).unwrap(), &[]).unwrap();
        let tls = s.tls.expect("[tls] from the file");
        assert_eq!(tls.client_auth, ClientAuth::None);
        assert_eq!(
            tls.client_groups.principal("x").map(|p| p.groups),
            Some(vec!["service".to_owned()])
        );
    }

    #[test]
    fn every_bad_tls_value_is_reported_with_its_key_also_when_only_checking() {
        let dir = dev_dir_with_pin();
        let files = crate::tls::test_pki::write(&dir);
        let good = tls_env(&files);
        let with = |extra: &[(&'static str, &str)]| {
            let mut vars = good.clone();
            for (k, v) in extra {
                vars.retain(|(key, _)| key != k);
                vars.push((k, (*v).to_owned()));
            }
            vars
        };
        let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
            (
                with(&[("SIGVAULT_TLS__CERT_FILE", "/nonexistent/cert.pem")]),
                "tls.cert_file: cannot read",
            ),
            (
                vec![
                    ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so".to_owned()),
                    ("SIGVAULT_TLS__CLIENT_AUTH", "none".to_owned()),
                ],
                "tls.cert_file: required",
            ),
            (
                good.iter()
                    .filter(|(k, _)| *k != "SIGVAULT_TLS__KEY_FILE")
                    .cloned()
                    .collect(),
                "tls.key_file: required",
            ),
            (with(&[("SIGVAULT_TLS__CLIENT_AUTH", "sometimes")]), "tls.client_auth:"),
            (
                good.iter()
                    .filter(|(k, _)| *k != "SIGVAULT_TLS__CLIENT_CA_FILE")
                    .cloned()
                    .chain([("SIGVAULT_TLS__CLIENT_AUTH", "optional".to_owned())])
                    .collect(),
                "tls.client_auth:",
            ),
            (with(&[("SIGVAULT_TLS__CLIENT_AUTH", "none")]), "tls.client_ca_file:"),
            (
                with(&[
                    ("SIGVAULT_TLS__CLIENT_AUTH", "required"),
                    ("SIGVAULT_TLS__DEFAULT_CLIENT_GROUPS", r#"["a b"]"#),
                ]),
                "tls.default_client_groups:",
            ),
            (
                with(&[
                    ("SIGVAULT_TLS__CLIENT_AUTH", "required"),
                    ("SIGVAULT_TLS__CLIENT_GROUPS", r#"{ "spiffe://x/y" = [""] }"#),
                ]),
                "tls.client_groups:",
            ),
        ];
        for (vars, expected) in cases {
            let text = load_dev_owned(&dir, &vars)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                text.starts_with(expected),
                "{vars:?}: expected `{expected}…`, got `{text}`"
            );
            assert!(!text.contains('\n'), "{text}");
            let pairs: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            let overrides = Overrides {
                listen: None,
                data_dir: Some(dir.join("not-yet-created")),
            };
            let checked = check(Mode::Dev, &merge(None, &pairs, &overrides).unwrap(), &pairs)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                checked.starts_with(expected),
                "check: expected `{expected}…`, got `{checked}`"
            );
        }
    }

    #[test]
    fn an_unknown_environment_key_is_named() {
        let err = merge(None, &env(&[("SIGVAULT_BOGUS", "1")]), &Overrides::default())
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.starts_with("environment variable SIGVAULT_BOGUS:"), "{text}");
        assert!(text.contains("bogus"), "{text}");
    }

    #[test]
    fn a_wrongly_typed_environment_value_is_named() {
        let err = merge(
            None,
            &env(&[("SIGVAULT_KEK__PKCS11__SESSIONS", "many")]),
            &Overrides::default(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("environment variable SIGVAULT_KEK__PKCS11__SESSIONS:"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_file_key_is_named_with_its_file() {
        let dir = temp("file");
        let file = dir.join("bad.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\n[store]\nurl = \"sqlite:///x\"\npasword = \"x\"\n",
        )
        .unwrap();
        let err = merge(Some(&file), &[], &Overrides::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("pasword"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = merge(
            Some(Path::new("/nonexistent/sigvault.toml")),
            &[],
            &Overrides::default(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot read config file /nonexistent/sigvault.toml"),
            "{err}"
        );
    }

    #[test]
    fn serve_mode_requires_the_hsm_settings() {
        let dir = temp("serve");
        let e = env(&[("SIGVAULT_DATA_DIR", dir.to_str().unwrap())]);
        let err = Settings::from_raw(Mode::Serve, merge(None, &e, &Overrides::default()).unwrap(), &e)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "kek.pkcs11.module: required: the path of the PKCS#11 module"
        );
        let e = env(&[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_KEK__PKCS11__TOKEN_LABEL", "t"),
        ]);
        let err = Settings::from_raw(Mode::Serve, merge(None, &e, &Overrides::default()).unwrap(), &e)
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("kek.pkcs11.pin_file: required"), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let dir = dev_dir_with_pin();
        let cases: &[(&str, &str, &str)] = &[
            ("SIGVAULT_LISTEN", "nonsense", "listen:"),
            ("SIGVAULT_LOG_LEVEL", "loud", "log_level:"),
            ("SIGVAULT_STORE__URL", "mysql://x", "store.url:"),
            ("SIGVAULT_STORE__URL", "sqlite://", "store.url:"),
            ("SIGVAULT_KEK__PROVIDER", "vault", "kek.provider:"),
            ("SIGVAULT_KEK__PKCS11__SESSIONS", "0", "kek.pkcs11.sessions:"),
            (
                "SIGVAULT_KEK__PKCS11__TOKEN_LABEL",
                "this-label-is-longer-than-thirty-two-bytes",
                "kek.pkcs11.token_label:",
            ),
            (
                "SIGVAULT_KEK__PKCS11__PIN_FILE",
                "/nonexistent/pin",
                "kek.pkcs11.pin_file:",
            ),
            ("SIGVAULT_CACHE__TTL", "forever", "cache.ttl:"),
            ("SIGVAULT_CACHE__MAX_ENTRIES", "0", "cache.max_entries:"),
            (
                "SIGVAULT_KEYS__DEFAULT_PENDING_DAYS",
                "40",
                "keys.default_pending_days:",
            ),
            (
                "SIGVAULT_KEYS__USAGE_FLUSH_INTERVAL",
                "1h",
                "keys.usage_flush_interval:",
            ),
            ("SIGVAULT_LIMITS__MAX_BODY_BYTES", "10", "limits.max_body_bytes:"),
            (
                "SIGVAULT_LIMITS__MAX_SIGN_BODY_BYTES",
                "1024",
                "limits.max_sign_body_bytes:",
            ),
            ("SIGVAULT_LIMITS__MAX_BATCH_ITEMS", "0", "limits.max_batch_items:"),
            ("SIGVAULT_LIMITS__MAX_CONNECTIONS", "0", "limits.max_connections:"),
            ("SIGVAULT_ROOT_TOKEN", "short", "SIGVAULT_ROOT_TOKEN:"),
            ("SIGVAULT_AUDIT__NODE", "a b", "audit.node:"),
            ("SIGVAULT_REPORT__CRYPTOPERIOD", "12h", "report.cryptoperiod:"),
        ];
        for (var, value, expected) in cases {
            let err = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"), (var, value)]).err();
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains(expected), "{var}={value}: got `{text}`");
        }
    }
}
