//! Validation of the sections other than `[kek]`: each raw section becomes its module's
//! settings, with defaults filled and every bad value reported with its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration as StdDuration;

use time::Duration;

use super::raw::{
    RawApiKeys, RawAudit, RawAuth, RawCache, RawCustodian, RawKeys, RawLimits, RawPolicies, RawReport, RawSigv4,
    RawStore, RawTls,
};
use super::{ConfigError, invalid};
use crate::api::Limits;
use crate::apikeys::ApiKeySettings;
use crate::approvals::ApprovalSettings;
use crate::audit::{AuditSettings, DEFAULT_INDEX_LAG, DEFAULT_SYNC_INTERVAL, Durability};
use crate::auth::AuthSettings;
use crate::auth::certificate::{CertificateGroups, DEFAULT_CLIENT_GROUPS, is_group_name};
use crate::credentials::Sigv4Settings;
use crate::keys::KeySettings;
use crate::keys::cache::{CacheSettings, DEFAULT_MAX_STALENESS};
use crate::model::OnNewFingerprint;
use crate::report::ReportSettings;
use crate::store::StoreSettings;
use crate::timefmt::parse_duration;
use crate::tls::TlsSettings;
use crate::tls::{ClientAuth, TlsFiles};

/// `listen`: an address, on loopback unless TLS or an explicit `insecure_http` says
/// otherwise.
pub(super) fn listen(text: Option<&str>, tls: bool, insecure_http: bool) -> Result<SocketAddr, ConfigError> {
    let text = text.unwrap_or("127.0.0.1:8200");
    let listen: SocketAddr = text.parse().map_err(|_| {
        invalid(
            "listen",
            format!("`{text}` is not an address (expected host:port, e.g. 127.0.0.1:8200)"),
        )
    })?;
    if !tls && !listen.ip().is_loopback() && !insecure_http {
        return Err(invalid(
            "listen",
            format!(
                "{listen} is not a loopback address: without [tls] this serves plain HTTP, which carries \
                 tokens and key material in the clear; configure [tls], listen on 127.0.0.1, or set \
                 insecure_http = true behind a TLS-terminating proxy"
            ),
        ));
    }
    Ok(listen)
}

pub(super) fn log_level(raw: Option<String>) -> Result<String, ConfigError> {
    let log_level = raw.unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        return Err(invalid(
            "log_level",
            format!("`{log_level}` is not one of error, warn, info, debug, trace"),
        ));
    }
    Ok(log_level)
}

/// `[policies] dir`: where the Cedar policies are read from; `None` = the built-in set.
pub(super) fn policies_dir(raw: RawPolicies) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(dir) = &raw.dir
        && !dir.is_dir()
    {
        return Err(invalid("policies.dir", format!("{} is not a directory", dir.display())));
    }
    Ok(raw.dir)
}

/// `[tls]`: the PEM files are read and checked now, so a bad one stops the start (or
/// `config::check`) with one line naming its key.
pub(super) fn tls_settings(raw: RawTls) -> Result<TlsSettings, ConfigError> {
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

pub(super) fn store_settings(raw: RawStore, data_dir: &Path) -> Result<StoreSettings, ConfigError> {
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
        // The URL may hold a password: it is never repeated in an error.
        Some(("postgres" | "postgresql", rest)) if !rest.is_empty() && !url.chars().any(char::is_whitespace) => {
            Ok(StoreSettings::Postgres { url })
        }
        Some(("postgres" | "postgresql", _)) => Err(invalid(
            "store.url",
            "a postgres URL needs a host and database: postgres://USER:PASSWORD@HOST:5432/DATABASE",
        )),
        Some((scheme, _)) => Err(invalid(
            "store.url",
            format!(
                "unsupported store `{}` (expected sqlite://PATH or postgres://…)",
                scheme.chars().take(32).collect::<String>()
            ),
        )),
        None => Err(invalid(
            "store.url",
            "not a URL (expected sqlite://PATH or postgres://USER:PASSWORD@HOST:5432/DATABASE)",
        )),
    }
}

fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| invalid(key, e.to_string()))
}

pub(super) fn cache_settings(raw: RawCache) -> Result<CacheSettings, ConfigError> {
    let ttl = duration("cache.ttl", raw.ttl.as_deref().unwrap_or("1h"))?;
    let max_entries = raw.max_entries.unwrap_or(10_000);
    if !(1..=1_000_000).contains(&max_entries) {
        return Err(invalid("cache.max_entries", "must be between 1 and 1000000"));
    }
    let max_staleness = match raw.max_staleness.as_deref() {
        Some(text) => duration("cache.max_staleness", text)?,
        None => DEFAULT_MAX_STALENESS,
    };
    if max_staleness > Duration::hours(1) {
        return Err(invalid("cache.max_staleness", "must be between 1s and 1h"));
    }
    Ok(CacheSettings {
        ttl,
        max_entries: max_entries as usize,
        max_staleness,
    })
}

pub(super) fn key_settings(raw: RawKeys) -> Result<KeySettings, ConfigError> {
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

pub(super) fn auth_settings(raw: RawAuth) -> Result<AuthSettings, ConfigError> {
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

pub(super) fn sigv4_settings(raw: RawSigv4) -> Result<Sigv4Settings, ConfigError> {
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
    let (on_new_fingerprint, max_fingerprints) = fingerprint_settings(
        (
            "sigv4.on_new_fingerprint",
            raw.on_new_fingerprint.as_deref(),
            d.on_new_fingerprint,
        ),
        ("sigv4.max_fingerprints", raw.max_fingerprints, d.max_fingerprints),
    )?;
    Ok(Sigv4Settings {
        max_credentials_per_principal,
        time_window,
        on_new_fingerprint,
        max_fingerprints,
    })
}

/// `[custodian]`: `quorum` 1 (dual control off) to 16, `approval_ttl` 1 minute to 7 days.
pub(super) fn custodian_settings(raw: RawCustodian) -> Result<ApprovalSettings, ConfigError> {
    let d = ApprovalSettings::default();
    let quorum = raw.quorum.unwrap_or(d.quorum);
    if !(1..=16).contains(&quorum) {
        return Err(invalid("custodian.quorum", "must be 1 (dual control off) to 16"));
    }
    let ttl = match raw.approval_ttl.as_deref() {
        None => d.ttl,
        Some(text) => duration("custodian.approval_ttl", text)?,
    };
    if !(Duration::minutes(1)..=Duration::days(7)).contains(&ttl) {
        return Err(invalid("custodian.approval_ttl", "must be 1m to 7d"));
    }
    Ok(ApprovalSettings { quorum, ttl })
}

pub(super) fn apikeys_settings(raw: RawApiKeys) -> Result<ApiKeySettings, ConfigError> {
    let d = ApiKeySettings::default();
    let (on_new_fingerprint, max_fingerprints) = fingerprint_settings(
        (
            "apikeys.on_new_fingerprint",
            raw.on_new_fingerprint.as_deref(),
            d.on_new_fingerprint,
        ),
        ("apikeys.max_fingerprints", raw.max_fingerprints, d.max_fingerprints),
    )?;
    Ok(ApiKeySettings {
        on_new_fingerprint,
        max_fingerprints,
    })
}

/// A section's default fingerprint rule and its bound of fingerprints kept per secret, each
/// as `(key, value given, default)`.
fn fingerprint_settings(
    (rule_key, rule, default_rule): (&'static str, Option<&str>, OnNewFingerprint),
    (max_key, max, default_max): (&'static str, Option<u32>, u32),
) -> Result<(OnNewFingerprint, u32), ConfigError> {
    let rule = match rule {
        None => default_rule,
        Some(text) => {
            OnNewFingerprint::parse(text).ok_or_else(|| invalid(rule_key, "must be record, alert or deactivate"))?
        }
    };
    let max = max.unwrap_or(default_max);
    if !(1..=10_000).contains(&max) {
        return Err(invalid(max_key, "must be 1 to 10000"));
    }
    Ok((rule, max))
}

pub(super) fn report_settings(raw: RawReport) -> Result<ReportSettings, ConfigError> {
    let cryptoperiod = duration("report.cryptoperiod", raw.cryptoperiod.as_deref().unwrap_or("365d"))?;
    if cryptoperiod < Duration::days(1) {
        return Err(invalid("report.cryptoperiod", "must be at least 1d"));
    }
    Ok(ReportSettings { cryptoperiod })
}

pub(super) fn audit_settings(raw: RawAudit, data_dir: &Path) -> Result<AuditSettings, ConfigError> {
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
    let durability = match raw.durability.as_deref() {
        None | Some("os") => Durability::Os,
        Some("fsync") => Durability::Fsync,
        Some(_) => return Err(invalid("audit.durability", "must be os or fsync")),
    };
    let sync_interval = millis(
        "audit.sync_interval",
        raw.sync_interval.as_deref(),
        DEFAULT_SYNC_INTERVAL,
    )?;
    if !(StdDuration::from_millis(1)..=StdDuration::from_secs(1)).contains(&sync_interval) {
        return Err(invalid("audit.sync_interval", "must be between 1ms and 1s"));
    }
    let index_lag = millis("audit.index_lag", raw.index_lag.as_deref(), DEFAULT_INDEX_LAG)?;
    if !(StdDuration::from_millis(10)..=StdDuration::from_secs(60)).contains(&index_lag) {
        return Err(invalid("audit.index_lag", "must be between 10ms and 60s"));
    }
    Ok(AuditSettings {
        durability,
        sync_interval,
        index_lag,
        hsm_anchor_interval: hsm_anchor_interval(raw.hsm_anchor_interval.as_deref())?,
        ..AuditSettings::new(node, file, anchor_file)
    })
}

/// A short duration: `<n>ms`, or any duration [`duration`] reads (`<n>s`, `<n>m`, …).
pub(super) fn millis(key: &'static str, text: Option<&str>, default: StdDuration) -> Result<StdDuration, ConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    if let Some(digits) = text.trim().strip_suffix("ms") {
        return match digits.parse::<u64>() {
            Ok(n) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(StdDuration::from_millis(n))
            }
            _ => Err(invalid(
                key,
                format!("'{}' is not a duration", text.chars().take(32).collect::<String>()),
            )),
        };
    }
    let d = duration(key, text)?;
    StdDuration::try_from(d).map_err(|_| invalid(key, "must be positive"))
}

/// `audit.hsm_anchor_interval`: 1s to 1h. Longer leaves more events a wipe of every sink can
/// take unnoticed; an HSM write per second is as often as the writer needs.
fn hsm_anchor_interval(text: Option<&str>) -> Result<std::time::Duration, ConfigError> {
    const KEY: &str = "audit.hsm_anchor_interval";
    let interval = duration(KEY, text.unwrap_or("10s"))?;
    if interval > Duration::hours(1) {
        return Err(invalid(KEY, "must be at most 1h"));
    }
    // Positive (a duration string is), so the conversion cannot fail.
    std::time::Duration::try_from(interval).map_err(|e| invalid(KEY, e.to_string()))
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

pub(super) fn limits(raw: RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let max_connections = raw.max_connections.map_or(d.max_connections, |v| v as usize);
    let l = Limits {
        max_body_bytes: raw.max_body_bytes.unwrap_or(d.max_body_bytes),
        max_sign_body_bytes: raw.max_sign_body_bytes.unwrap_or(d.max_sign_body_bytes),
        max_message_bytes: raw
            .max_message_bytes
            .map_or(d.max_message_bytes, |v| usize::try_from(v).unwrap_or(usize::MAX)),
        max_batch_items: raw.max_batch_items.map_or(d.max_batch_items, |v| v as usize),
        max_connections,
        // Unset, it follows a smaller global cap down (an eighth of it).
        max_connections_per_address: raw
            .max_connections_per_address
            .map_or(d.max_connections_per_address.min((max_connections / 8).max(1)), |v| {
                v as usize
            }),
        write_timeout: millis("limits.write_timeout", raw.write_timeout.as_deref(), d.write_timeout)?,
        idle_timeout: millis("limits.idle_timeout", raw.idle_timeout.as_deref(), d.idle_timeout)?,
        max_pipelined_bytes: raw.max_pipelined_bytes.map_or(d.max_pipelined_bytes, |v| v as usize),
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
    if !(1..=l.max_connections).contains(&l.max_connections_per_address) {
        return Err(invalid(
            "limits.max_connections_per_address",
            "must be between 1 and limits.max_connections",
        ));
    }
    if !(StdDuration::from_secs(1)..=StdDuration::from_secs(600)).contains(&l.write_timeout) {
        return Err(invalid("limits.write_timeout", "must be between 1s and 10m"));
    }
    if !(StdDuration::from_secs(1)..=StdDuration::from_secs(600)).contains(&l.idle_timeout) {
        return Err(invalid("limits.idle_timeout", "must be between 1s and 10m"));
    }
    if !(16 * 1024..=1 << 20).contains(&l.max_pipelined_bytes) {
        return Err(invalid(
            "limits.max_pipelined_bytes",
            "must be between 16384 and 1048576",
        ));
    }
    Ok(l)
}

/// `[compat] transit_mount`: default `transit`; `""` turns the Transit-compatible API off;
/// else one to four segments that do not start with a native route.
pub(super) fn transit_mount(raw: super::raw::RawCompat) -> Result<Option<String>, ConfigError> {
    match raw.transit_mount.as_deref().map(|m| m.trim_matches('/')) {
        None => Ok(Some("transit".to_owned())),
        Some("") => Ok(None),
        Some(mount) => {
            crate::api::transit::validate_mount(mount).map_err(|m| invalid("compat.transit_mount", &m))?;
            Ok(Some(mount.to_owned()))
        }
    }
}

/// `[compat] kms_path`: default `/`; `""` turns the KMS-compatible API off; else `/` and one
/// to four segments, not under `/v1`.
pub(super) fn kms_path(raw: Option<&str>) -> Result<Option<String>, ConfigError> {
    match raw {
        None => Ok(Some("/".to_owned())),
        Some("") => Ok(None),
        Some(path) => {
            crate::api::kms::validate_path(path).map_err(|m| invalid("compat.kms_path", &m))?;
            Ok(Some(path.to_owned()))
        }
    }
}

/// `[log] format`: `text` (default) or `json`.
pub(super) fn log_format(raw: Option<&str>) -> Result<super::LogFormat, ConfigError> {
    match raw {
        None | Some("text") => Ok(super::LogFormat::Text),
        Some("json") => Ok(super::LogFormat::Json),
        Some(other) => Err(invalid("log.format", format!("`{other}` is not one of text, json"))),
    }
}

/// `[metrics] listen`: an address other than `listen`. It serves the metrics without
/// authentication and in plain HTTP, so it must be a loopback address or a private one a
/// scraper reaches (never a public one).
pub(super) fn metrics_listen(raw: Option<&str>, main: SocketAddr) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(text) = raw else { return Ok(None) };
    let addr: SocketAddr = text.parse().map_err(|_| {
        invalid(
            "metrics.listen",
            format!("`{text}` is not an address (expected host:port, e.g. 127.0.0.1:9464)"),
        )
    })?;
    if addr == main && addr.port() != 0 {
        return Err(invalid("metrics.listen", "must differ from listen"));
    }
    let private = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        std::net::IpAddr::V6(ip) => ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00,
    };
    if !private {
        return Err(invalid(
            "metrics.listen",
            format!("{addr} is not a loopback or private address: the metrics are served there without authentication"),
        ));
    }
    Ok(Some(addr))
}
