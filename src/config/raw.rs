//! The raw configuration as TOML and the environment spell it: every key optional, unknown
//! keys refused (`deny_unknown_fields`). Nothing here is validated; [`super::Settings`] is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

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
    pub apikeys: Option<RawApiKeys>,
    pub ratelimit: Option<RawRateLimit>,
    pub custodian: Option<RawCustodian>,
    pub compat: Option<RawCompat>,
    pub log: Option<RawLog>,
    pub metrics: Option<RawMetrics>,
}

/// `[log]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json`.
    pub format: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// A second address serving only `GET /metrics`, without authentication.
    pub listen: Option<String>,
}

/// `[compat]`: the APIs of other products that sigvault also serves.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompat {
    /// Where the Vault Transit-compatible API is mounted under `/v1`; `""` turns it off.
    pub transit_mount: Option<String>,
    /// The path of the AWS KMS-compatible API; `""` turns it off.
    pub kms_path: Option<String>,
}

/// `[ratelimit]`. Its `Debug` leaves the URL's user information out (it may hold a password).
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub backend: Option<String>,
    pub redis_url: Option<String>,
    pub namespace: Option<String>,
    pub on_redis_error: Option<String>,
    pub redis_timeout: Option<String>,
}

impl std::fmt::Debug for RawRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRateLimit")
            .field("backend", &self.backend)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(crate::ratelimit::redact_userinfo),
            )
            .field("namespace", &self.namespace)
            .field("on_redis_error", &self.on_redis_error)
            .field("redis_timeout", &self.redis_timeout)
            .finish()
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigv4 {
    pub(crate) max_credentials_per_principal: Option<u32>,
    pub time_window: Option<String>,
    pub on_new_fingerprint: Option<String>,
    pub(crate) max_fingerprints: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    pub on_new_fingerprint: Option<String>,
    pub(crate) max_fingerprints: Option<u32>,
}

/// `[custodian]`: dual control.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustodian {
    pub(crate) quorum: Option<u32>,
    pub(crate) approval_ttl: Option<String>,
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
    pub(crate) client_groups: Option<BTreeMap<String, Vec<String>>>,
    pub(crate) default_client_groups: Option<Vec<String>>,
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
    pub durability: Option<String>,
    pub sync_interval: Option<String>,
    pub index_lag: Option<String>,
    pub hsm_anchor_interval: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    pub serve_cached_when_unavailable: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKek {
    pub provider: Option<String>,
    pub rewrap_rate: Option<u32>,
    pub pkcs11: Option<RawPkcs11>,
    pub aws_kms: Option<RawAwsKms>,
    /// `[kek.previous]`: a provider whose records stay readable while the rewrap job moves
    /// them under `[kek]` (a migration).
    pub previous: Option<RawKekProvider>,
}

/// A provider and its section, without the settings only `[kek]` has.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawKekProvider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<RawPkcs11>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_kms: Option<RawAwsKms>,
}

#[derive(Debug, Default, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAwsKms {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPkcs11 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_timeout: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub ttl: Option<String>,
    pub max_entries: Option<u32>,
    pub max_staleness: Option<String>,
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
    pub(crate) max_body_bytes: Option<u64>,
    pub(crate) max_sign_body_bytes: Option<u64>,
    pub(crate) max_message_bytes: Option<u64>,
    pub max_batch_items: Option<u32>,
    pub(crate) max_connections: Option<u32>,
    pub(crate) max_connections_per_address: Option<u32>,
    pub(crate) write_timeout: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) max_pipelined_bytes: Option<u32>,
}
