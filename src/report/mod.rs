//! The compliance report: an inventory of the secrets sigvault holds, each measured against
//! the configured cryptoperiod (`report.cryptoperiod`), and how many audit events each
//! principal has caused.
//!
//! [`gather`] reads the inventory and the audit counts through the services (never the
//! store itself); everything after that is a pure function of those inputs and one `now`
//! taken from the injected clock, so tests pin every age, due date and count. The report carries metadata and counters only — never key
//! material, a token, a MAC or a message — and this module never writes anything.
//!
//! Each kind of inventory item is a section of its own ([`keys`] for signing keys): a row
//! type built from the domain's view of the item, and a summary of its rows; [`credentials`]
//! for SigV4 credentials, [`apikeys`] for bearer API keys, both measuring their age with the
//! same [`Aging`].
//! Rendering for people is [`html`], with the age chart of [`chart`].

pub mod apikeys;
pub mod chart;
pub mod credentials;
mod escape;
pub mod html;
pub mod keys;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::apikeys::{ApiKeyError, ApiKeyRecord, ApiKeyService};
use crate::audit::trail::AuditTrail;
use crate::credentials::{CredentialError, CredentialRecord, CredentialService};
use crate::keys::{KeyDetails, KeyError, KeyService};
use crate::store::StoreError;
use crate::timefmt::{format_duration, rfc3339};
use apikeys::{ApiKeyEntry, ApiKeySummary};
use credentials::{CredentialEntry, CredentialSummary};
use keys::{KeyEntry, KeySummary};

/// The compliance report's yardstick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportSettings {
    /// How long a key version may be used before it is due for rotation (NIST SP 800-57
    /// suggests up to about a year for HMAC keys; default 365 days).
    pub cryptoperiod: Duration,
}

/// How far ahead a rotation counts as "due soon" in the report.
pub(crate) const DUE_SOON: Duration = Duration::days(30);
/// Items read per call to [`KeyService::list`], [`CredentialService::list`] and
/// [`ApiKeyService::list`] while gathering the inventory.
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("reading the key inventory: {0}")]
    Keys(#[source] KeyError),
    #[error("reading the audit counts: {0}")]
    Store(#[source] StoreError),
    #[error("reading the credential inventory: {0}")]
    Credentials(#[source] CredentialError),
    #[error("reading the API key inventory: {0}")]
    ApiKeys(#[source] ApiKeyError),
}

/// The whole report, as `GET /v1/reports/compliance` serves it in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComplianceReport {
    pub generated_at: String,
    /// The yardstick, as a duration string (`"365d"`).
    pub cryptoperiod: String,
    /// The cryptoperiod in whole days.
    pub cryptoperiod_days: i64,
    pub summary: Summary,
    /// Signing keys in name order.
    pub keys: Vec<KeyEntry>,
    /// SigV4 credentials in access key id order.
    pub credentials: Vec<CredentialEntry>,
    /// Bearer API keys in id order, revoked ones included.
    pub apikeys: Vec<ApiKeyEntry>,
    /// Audit events per principal, most active first. The request that reads the report
    /// is recorded after the report is built, so it is not counted in its own report.
    pub principals: Vec<PrincipalActivity>,
}

/// One summary per inventory section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub keys: KeySummary,
    pub credentials: CredentialSummary,
    pub apikeys: ApiKeySummary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalActivity {
    pub principal: String,
    pub events: u64,
}

/// Where a secret stands against the cryptoperiod, measured from the creation of the
/// material in use (for a key: its latest version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aging {
    pub age_days: i64,
    pub rotation_due_at: OffsetDateTime,
    /// The material is older than the cryptoperiod: its rotation is overdue.
    pub over_age: bool,
    /// Not yet over-age, but due within [`DUE_SOON`].
    pub(crate) due_soon: bool,
}

/// Measures material created at `created` against `cryptoperiod` at `now`.
pub(crate) fn aging(created: OffsetDateTime, now: OffsetDateTime, cryptoperiod: Duration) -> Aging {
    let rotation_due_at = created + cryptoperiod;
    let over_age = now > rotation_due_at;
    Aging {
        age_days: whole_days(created, now),
        rotation_due_at,
        over_age,
        due_soon: !over_age && rotation_due_at - now <= DUE_SOON,
    }
}

/// Whole days from `from` to `to`; 0 when `from` is later (a clock set back).
pub(crate) fn whole_days(from: OffsetDateTime, to: OffsetDateTime) -> i64 {
    (to - from).whole_days().max(0)
}

/// The report over an inventory and the audit counts, as of `now`.
pub fn build(
    keys: &[KeyDetails],
    audit_counts: Vec<(String, u64)>,
    now: OffsetDateTime,
    cryptoperiod: Duration,
) -> ComplianceReport {
    let keys: Vec<KeyEntry> = keys.iter().map(|d| keys::key_entry(d, now, cryptoperiod)).collect();
    ComplianceReport {
        generated_at: rfc3339(now),
        cryptoperiod: format_duration(cryptoperiod),
        cryptoperiod_days: cryptoperiod.whole_days(),
        summary: Summary {
            keys: keys::summarise(&keys),
            credentials: CredentialSummary::default(),
            apikeys: ApiKeySummary::default(),
        },
        keys,
        credentials: Vec::new(),
        apikeys: Vec::new(),
        principals: principals(audit_counts),
    }
}

impl ComplianceReport {
    /// Adds the credential section, measured as of `now` like the keys.
    pub(crate) fn with_credentials(
        mut self,
        list: &[CredentialRecord],
        now: OffsetDateTime,
        cryptoperiod: Duration,
    ) -> Self {
        self.credentials = list
            .iter()
            .map(|c| credentials::credential_entry(c, now, cryptoperiod))
            .collect();
        self.summary.credentials = credentials::summarise(&self.credentials);
        self
    }

    /// Adds the API key section, measured as of `now` like the keys.
    pub(crate) fn with_apikeys(mut self, list: &[ApiKeyRecord], now: OffsetDateTime, cryptoperiod: Duration) -> Self {
        self.apikeys = list
            .iter()
            .map(|k| apikeys::api_key_entry(k, now, cryptoperiod))
            .collect();
        self.summary.apikeys = apikeys::summarise(&self.apikeys);
        self
    }
}

/// Most events first; ties in name order.
fn principals(counts: Vec<(String, u64)>) -> Vec<PrincipalActivity> {
    let mut out: Vec<PrincipalActivity> = counts
        .into_iter()
        .map(|(principal, events)| PrincipalActivity { principal, events })
        .collect();
    out.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.principal.cmp(&b.principal)));
    out
}

/// Reads every key, credential and API key (page by page) and the audit counts, and builds
/// the report as of `now`.
pub(crate) async fn gather(
    keys: &KeyService,
    credentials: &CredentialService,
    apikeys: &ApiKeyService,
    trail: &AuditTrail,
    now: OffsetDateTime,
    cryptoperiod: Duration,
) -> Result<ComplianceReport, ReportError> {
    let inventory = all_keys(keys).await.map_err(ReportError::Keys)?;
    let counts = trail.counts_by_principal().await.map_err(ReportError::Store)?;
    let credentials = all_credentials(credentials).await.map_err(ReportError::Credentials)?;
    let apikeys = all_api_keys(apikeys).await.map_err(ReportError::ApiKeys)?;
    Ok(build(&inventory, counts, now, cryptoperiod)
        .with_credentials(&credentials, now, cryptoperiod)
        .with_apikeys(&apikeys, now, cryptoperiod))
}

/// Every API key, through the service so that this node's last uses not yet written are
/// merged in (the store alone would show a key verified a moment ago as never used).
async fn all_api_keys(apikeys: &ApiKeyService) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
    let mut out: Vec<ApiKeyRecord> = Vec::new();
    loop {
        let after = out.last().map(|k| k.id.clone());
        let page = apikeys.list(after.as_deref(), PAGE).await?;
        let full = page.len() == PAGE as usize;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

async fn all_credentials(credentials: &CredentialService) -> Result<Vec<CredentialRecord>, CredentialError> {
    let mut out: Vec<CredentialRecord> = Vec::new();
    loop {
        let after = out.last().map(|c| c.access_key_id.clone());
        let page = credentials.list(None, after.as_deref(), PAGE).await?;
        let full = page.len() == PAGE as usize;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

async fn all_keys(keys: &KeyService) -> Result<Vec<KeyDetails>, KeyError> {
    let mut out: Vec<KeyDetails> = Vec::new();
    loop {
        let after = out.last().map(|k| k.record.name.clone());
        let page = keys.list(after.as_deref(), PAGE).await?;
        let full = page.len() == PAGE as usize;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::unix_ms;
    use crate::model::{Algorithm, Boundary, KeyState};
    use crate::store::{KeyRecord, VersionInfo};

    pub(crate) fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
    }

    /// A version created `days` after [`t0`].
    pub(crate) fn version(
        number: u32,
        days: i64,
        signs: u64,
        verifies: u64,
        last_used_day: Option<i64>,
    ) -> VersionInfo {
        VersionInfo {
            version: number,
            created_at_ms: unix_ms(t0() + Duration::days(days)),
            sign_count: signs,
            verify_count: verifies,
            last_used_at_ms: last_used_day.map(|d| unix_ms(t0() + Duration::days(d))),
        }
    }

    /// A key created with its first version; `versions` ascending.
    pub(crate) fn key(name: &str, state: &str, versions: Vec<VersionInfo>) -> KeyDetails {
        let created = versions.first().map_or(0, |v| v.created_at_ms);
        KeyDetails {
            record: KeyRecord {
                id: format!("k_{name}"),
                name: name.into(),
                tenant: "default".into(),
                algorithm: Algorithm::HmacSha256,
                boundary: Boundary::Process,
                owner: "team-a".into(),
                tags: [("env".to_owned(), "prod".to_owned())].into(),
                state: KeyState::parse(state).expect("a key state"),
                latest_version: versions.last().map_or(1, |v| v.version),
                min_verify_version: 1,
                exportable: false,
                origin: crate::model::KeyOrigin::Generated,
                min_encryption_version: 0,
                deletion_allowed: true,
                auto_rotate_period_s: None,
                deletion_due_ms: None,
                state_before_deletion: None,
                created_at_ms: created,
                updated_at_ms: created,
                revision: 1,
            },
            versions,
        }
    }

    #[test]
    fn aging_is_overdue_only_past_the_cryptoperiod_and_due_soon_within_thirty_days() {
        let period = Duration::days(365);
        let at = |days| aging(t0(), t0() + Duration::days(days), period);
        assert_eq!(at(0).rotation_due_at, t0() + period);
        assert_eq!((at(334).over_age, at(334).due_soon), (false, false));
        assert_eq!((at(335).over_age, at(335).due_soon), (false, true));
        assert_eq!(
            (at(365).over_age, at(365).due_soon),
            (false, true),
            "exactly at the end is not over"
        );
        let past = aging(t0(), t0() + period + Duration::seconds(1), period);
        assert_eq!((past.over_age, past.due_soon, past.age_days), (true, false, 365));
        assert_eq!(at(400).age_days, 400);
    }

    #[test]
    fn ages_are_whole_days_and_never_negative() {
        assert_eq!(whole_days(t0(), t0() + Duration::hours(47)), 1);
        assert_eq!(whole_days(t0(), t0() - Duration::days(3)), 0);
    }

    #[test]
    fn principals_are_listed_most_active_first() {
        let counts = vec![("alice".into(), 2), ("-".into(), 5), ("bob".into(), 2)];
        let names: Vec<(String, u64)> = principals(counts)
            .into_iter()
            .map(|p| (p.principal, p.events))
            .collect();
        assert_eq!(names, vec![("-".into(), 5), ("alice".into(), 2), ("bob".into(), 2)]);
    }

    #[test]
    fn the_report_states_its_time_and_yardstick_and_summarises_every_key() {
        let keys = vec![
            key("fresh", "enabled", vec![version(1, 390, 0, 0, None)]),
            key("old", "disabled", vec![version(1, 0, 1, 0, Some(2))]),
        ];
        let now = t0() + Duration::days(400);
        let report = build(&keys, vec![("root".into(), 7)], now, Duration::days(365));
        assert_eq!(report.generated_at, rfc3339(now));
        assert_eq!((report.cryptoperiod.as_str(), report.cryptoperiod_days), ("365d", 365));
        assert_eq!(report.keys.len(), 2);
        assert_eq!(report.summary.keys.total, 2);
        assert_eq!(report.summary.keys.over_age, 1);
        assert_eq!(
            report.principals,
            vec![PrincipalActivity {
                principal: "root".into(),
                events: 7
            }]
        );
    }
}
