//! Validated settings of the sections, as the modules that use them take them.

use std::sync::Arc;

use time::Duration;

use crate::auth::certificate::CertificateGroups;
pub use crate::model::OnNewFingerprint;
pub use crate::store::StoreSettings;
use crate::tls::{ClientAuth, TlsError, TlsFiles};

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
