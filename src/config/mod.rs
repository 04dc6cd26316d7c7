//! Configuration: a TOML file, then `SIGVAULT_<SECTION>__<KEY>` environment overrides, then
//! command-line overrides, merged and validated into [`Settings`] before anything starts.
//!
//! Every key is optional in the raw form ([`RawConfig`], `deny_unknown_fields`); validation
//! fills defaults, refuses what a production deployment must state explicitly, and reports
//! each bad value with the key (or environment variable) it came from. Secrets never sit in
//! the file: the HSM PIN comes from `kek.pkcs11.pin_file` or `SIGVAULT_KEK__PKCS11__PIN`,
//! the root token from `SIGVAULT_ROOT_TOKEN`.

mod kek;
pub(crate) mod layers;
mod ratelimit;
mod raw;
mod sections;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

pub use kek::DEV_TOKEN_LABEL;
pub use layers::{Overrides, merge, merge_text};
pub use raw::*;

use crate::api::Limits;
use crate::apikeys::ApiKeySettings;
use crate::approvals::ApprovalSettings;
use crate::audit::AuditSettings;
use crate::auth::AuthSettings;
use crate::credentials::Sigv4Settings;
use crate::kek::KekSettings;
use crate::keys::KeySettings;
use crate::keys::cache::CacheSettings;
use crate::ratelimit::RateLimitSettings;
use crate::report::ReportSettings;
use crate::store::StoreSettings;
use crate::tls::TlsError;
use crate::tls::TlsSettings;

/// Which command is starting: `dev` fills every missing key with an embedded default,
/// `serve` requires the HSM settings to be stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dev,
    Serve,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
    /// `store.serve_cached_when_unavailable`: while the store does not answer, requests
    /// that memory can answer (cached keys, tokens, credentials) still are; otherwise every
    /// request but ping and health gets 503 `STORE_UNAVAILABLE` (the default).
    pub serve_cached_when_unavailable: bool,
    pub kek: KekSettings,
    /// `[kek.previous]`: a provider whose records stay readable until the rewrap job moved
    /// them under `kek` (a migration from one HSM or KMS to another).
    pub kek_previous: Option<KekSettings>,
    /// `kek.rewrap_rate`: records a second the rewrap job moves (`rewrap`).
    pub rewrap_rate: u32,
    pub cache: CacheSettings,
    pub keys: KeySettings,
    pub limits: Limits,
    pub audit: AuditSettings,
    pub report: ReportSettings,
    /// Where the Cedar policies are read from; `None` = the built-in set.
    pub policies_dir: Option<PathBuf>,
    pub auth: AuthSettings,
    pub sigv4: Sigv4Settings,
    pub apikeys: ApiKeySettings,
    /// `[custodian]`: dual control's quorum and how long an approval stays valid.
    pub approvals: ApprovalSettings,
    /// `[compat] transit_mount`: where the Vault Transit-compatible API is mounted under
    /// `/v1` (default `transit`); `None` when it is off (`""`).
    pub transit_mount: Option<String>,
    /// `[compat] kms_path`: where the AWS KMS-compatible API is served (default `/`); `None`
    /// when it is off (`""`).
    pub kms_path: Option<String>,
    /// `[log] format`: log lines as text (default) or one JSON object each.
    pub log_format: LogFormat,
    /// `[metrics] listen`: a second, unauthenticated listener serving only `GET /metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// `[ratelimit]`: where the API-key and failed-authentication limits count.
    pub ratelimit: RateLimitSettings,
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

/// The layout of a `sigvault dev` data dir (see `crate::dev`): what `dev` creates there and
/// where the dev defaults of [`Settings`] point.
#[derive(Debug, Clone)]
pub struct DevPaths {
    pub data_dir: PathBuf,
    pub softhsm_conf: PathBuf,
    pub token_dir: PathBuf,
    pub pin_file: PathBuf,
    pub(crate) so_pin_file: PathBuf,
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
        let insecure_http = raw.insecure_http.unwrap_or(false);
        let tls = raw.tls.map(sections::tls_settings).transpose()?;
        let listen = sections::listen(raw.listen.as_deref(), tls.is_some(), insecure_http)?;
        let log_level = sections::log_level(raw.log_level)?;
        let raw_store = raw.store.unwrap_or_default();
        let serve_cached_when_unavailable = raw_store.serve_cached_when_unavailable.unwrap_or(false);
        let store = sections::store_settings(raw_store, &data_dir)?;
        let mut raw_kek = raw.kek.unwrap_or_default();
        let rewrap_rate = kek::rewrap_rate(raw_kek.rewrap_rate)?;
        let kek_previous = kek::previous_settings(raw_kek.previous.take(), &data_dir, secrets)?;
        let kek = kek::kek_settings(mode, raw_kek, &data_dir, env_var("SIGVAULT_KEK__PKCS11__PIN"), secrets)?;
        let cache = sections::cache_settings(raw.cache.unwrap_or_default())?;
        let keys = sections::key_settings(raw.keys.unwrap_or_default())?;
        let limits = sections::limits(raw.limits.unwrap_or_default())?;
        let audit = sections::audit_settings(raw.audit.unwrap_or_default(), &data_dir)?;
        let report = sections::report_settings(raw.report.unwrap_or_default())?;
        let policies_dir = sections::policies_dir(raw.policies.unwrap_or_default())?;
        let auth = sections::auth_settings(raw.auth.unwrap_or_default())?;
        let sigv4 = sections::sigv4_settings(raw.sigv4.unwrap_or_default())?;
        let apikeys = sections::apikeys_settings(raw.apikeys.unwrap_or_default())?;
        let ratelimit = ratelimit::ratelimit_settings(raw.ratelimit.unwrap_or_default())?;
        let approvals = sections::custodian_settings(raw.custodian.unwrap_or_default())?;
        let compat = raw.compat.unwrap_or_default();
        let kms_path = sections::kms_path(compat.kms_path.as_deref())?;
        let transit_mount = sections::transit_mount(compat)?;
        let log_format = sections::log_format(raw.log.unwrap_or_default().format.as_deref())?;
        let metrics_listen = sections::metrics_listen(raw.metrics.unwrap_or_default().listen.as_deref(), listen)?;
        let root_token = env_var("SIGVAULT_ROOT_TOKEN").map(root_token).transpose()?;
        Ok(Self {
            listen,
            insecure_http,
            tls,
            data_dir,
            log_level,
            store,
            serve_cached_when_unavailable,
            kek,
            kek_previous,
            rewrap_rate,
            cache,
            keys,
            limits,
            audit,
            report,
            policies_dir,
            auth,
            sigv4,
            apikeys,
            approvals,
            transit_mount,
            kms_path,
            log_format,
            metrics_listen,
            ratelimit,
            root_token,
        })
    }
}

/// `SIGVAULT_ROOT_TOKEN`, checked for the shape of a token.
fn root_token(token: String) -> Result<SecretString, ConfigError> {
    crate::auth::validate_root_token(&token).map_err(|m| ConfigError::Env {
        var: "SIGVAULT_ROOT_TOKEN".into(),
        message: m.to_owned(),
    })
}
