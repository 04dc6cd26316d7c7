//! The bearer-API-key section of the compliance report: one row per key — revoked ones
//! included, so the inventory accounts for every key ever issued — with its age against the
//! cryptoperiod, last use and expiry.
//!
//! A key is measured from its creation, as a SigV4 credential is: the stored row keeps no
//! time of the last reroll, and `updated_at` moves on any change, so creation is the only
//! date that is certainly no later than the material in use. A revoked key has no material
//! left (revocation deletes every hash of it), so it raises no rotation finding. A row
//! carries the key's id and prefix only — never the key, nor any hash of it.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::aging;
use crate::apikeys::{ApiKeyRecord, ApiKeyState};
use crate::clock::from_unix_ms;
use crate::timefmt::rfc3339;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyEntry {
    pub id: String,
    pub prefix: String,
    pub principal: String,
    pub state: ApiKeyState,
    pub created_at: String,
    /// Whole days since the key was created.
    pub age_days: i64,
    /// The last verification that found the key (whatever its answer); `None` if never.
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    /// The key has an expiry and it has passed: it verifies as `EXPIRED`.
    pub expired: bool,
    /// Creation plus the cryptoperiod.
    pub rotation_due_at: String,
    /// Older than the cryptoperiod and not revoked.
    pub over_age: bool,
    /// Not over-age and not revoked, but due within 30 days.
    pub due_within_30_days: bool,
    pub never_used: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiKeySummary {
    pub total: u64,
    pub enabled: u64,
    pub disabled: u64,
    pub revoked: u64,
    pub expired: u64,
    pub over_age: u64,
    pub never_used: u64,
    pub due_within_30_days: u64,
}

/// The row of one key as of `now`.
pub(crate) fn api_key_entry(k: &ApiKeyRecord, now: OffsetDateTime, cryptoperiod: Duration) -> ApiKeyEntry {
    let created = from_unix_ms(k.created_at_ms);
    let a = aging(created, now, cryptoperiod);
    let live = k.state != ApiKeyState::Revoked;
    let expires_at = k.expires_at_ms.map(from_unix_ms);
    ApiKeyEntry {
        id: k.id.clone(),
        prefix: k.prefix.clone(),
        principal: k.principal.clone(),
        state: k.state,
        created_at: rfc3339(created),
        age_days: a.age_days,
        last_used_at: k.last_used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        expires_at: expires_at.map(rfc3339),
        // As `ApiKeyService::verify` decides: expired from the instant of `expires_at` on.
        expired: expires_at.is_some_and(|at| at <= now),
        rotation_due_at: rfc3339(a.rotation_due_at),
        over_age: live && a.over_age,
        due_within_30_days: live && a.due_soon,
        never_used: k.last_used_at_ms.is_none(),
    }
}

/// Counts by state and by finding.
pub(crate) fn summarise(entries: &[ApiKeyEntry]) -> ApiKeySummary {
    let mut s = ApiKeySummary::default();
    for e in entries {
        s.total += 1;
        match e.state {
            ApiKeyState::Enabled => s.enabled += 1,
            ApiKeyState::Disabled => s.disabled += 1,
            ApiKeyState::Revoked => s.revoked += 1,
        }
        s.expired += u64::from(e.expired);
        s.over_age += u64::from(e.over_age);
        s.never_used += u64::from(e.never_used);
        s.due_within_30_days += u64::from(e.due_within_30_days);
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::unix_ms;
    use crate::report::tests::t0;

    /// A key of principal `acme-ci` created on day `created_day` after [`t0`].
    const REVOKED: &str = "revoked";

    pub(crate) fn api_key(id: &str, state: &str, created_day: i64, used_day: Option<i64>) -> ApiKeyRecord {
        let at = |day: i64| unix_ms(t0() + Duration::days(day));
        ApiKeyRecord {
            id: id.into(),
            prefix: "sk".into(),
            principal: "acme-ci".into(),
            state: ApiKeyState::parse(state).expect("an API key state"),
            meta: serde_json::Map::new(),
            permissions: Vec::new(),
            expires_at_ms: None,
            remaining: None,
            ratelimit: None,
            on_new_fingerprint: None,
            created_at_ms: at(created_day),
            updated_at_ms: at(created_day),
            last_used_at_ms: used_day.map(at),
            revoked_at_ms: (state == REVOKED).then(|| at(created_day)),
            revision: 0,
        }
    }

    #[test]
    fn an_api_key_is_measured_from_its_creation_and_never_used_until_a_verification() {
        let period = Duration::days(365);
        let now = t0() + Duration::days(400);
        let old = api_key_entry(&api_key("ak_old", "enabled", 0, Some(399)), now, period);
        assert_eq!((old.age_days, old.over_age, old.never_used), (400, true, false));
        assert_eq!(old.last_used_at, Some(rfc3339(t0() + Duration::days(399))));
        assert_eq!(old.rotation_due_at, rfc3339(t0() + period));
        assert_eq!((old.expires_at, old.expired), (None, false));

        let soon = api_key_entry(&api_key("ak_soon", "disabled", 50, None), now, period);
        assert_eq!(
            (
                soon.over_age,
                soon.due_within_30_days,
                soon.never_used,
                soon.last_used_at
            ),
            (false, true, true, None)
        );
    }

    #[test]
    fn a_key_is_expired_from_the_instant_of_its_expiry() {
        let period = Duration::days(365);
        let now = t0() + Duration::days(10);
        let mut record = api_key("ak_exp", "enabled", 0, None);
        for (expires, expired) in [
            (now - Duration::seconds(1), true),
            (now, true),
            (now + Duration::seconds(1), false),
        ] {
            record.expires_at_ms = Some(unix_ms(expires));
            let e = api_key_entry(&record, now, period);
            assert_eq!(e.expires_at, Some(rfc3339(expires)));
            assert_eq!(e.expired, expired, "expires at {expires}");
        }
    }

    #[test]
    fn a_revoked_key_is_listed_but_raises_no_rotation_finding() {
        let period = Duration::days(365);
        let now = t0() + Duration::days(400);
        let over = api_key_entry(&api_key("ak_gone", REVOKED, 0, None), now, period);
        let due = api_key_entry(&api_key("ak_gone2", REVOKED, 50, Some(60)), now, period);
        assert_eq!((over.age_days, over.over_age, over.never_used), (400, false, true));
        assert!(!due.due_within_30_days);
        assert_eq!(summarise(&[over, due]).revoked, 2);
    }

    #[test]
    fn the_report_carries_the_api_key_section_and_its_summary() {
        let period = Duration::days(365);
        let now = t0() + Duration::days(400);
        let report = crate::report::build(&[], Vec::new(), now, period).with_apikeys(
            &[
                api_key("ak_a", "enabled", 0, None),
                api_key("ak_b", "enabled", 390, Some(399)),
            ],
            now,
            period,
        );
        let ids: Vec<&str> = report.apikeys.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["ak_a", "ak_b"]);
        assert_eq!(report.summary.apikeys, summarise(&report.apikeys));
        assert_eq!(
            (report.summary.apikeys.total, report.summary.apikeys.never_used),
            (2, 1)
        );
        let json = serde_json::to_value(&report).expect("the report serialises");
        assert_eq!(json["apikeys"][0]["last_used_at"], serde_json::Value::Null);
        assert_eq!(json["apikeys"][0]["expires_at"], serde_json::Value::Null);
        assert_eq!(json["summary"]["apikeys"]["over_age"], 1);
    }

    #[test]
    fn the_summary_counts_states_and_findings() {
        let period = Duration::days(365);
        let now = t0() + Duration::days(400);
        let mut expired = api_key("ak_c", "enabled", 399, None);
        expired.expires_at_ms = Some(unix_ms(now - Duration::hours(1)));
        let entries: Vec<ApiKeyEntry> = [
            api_key("ak_a", "enabled", 0, Some(1)),
            api_key("ak_b", "disabled", 50, None),
            expired,
            api_key("ak_d", REVOKED, 0, None),
            api_key("ak_e", "disabled", 390, Some(395)),
        ]
        .iter()
        .map(|k| api_key_entry(k, now, period))
        .collect();
        assert_eq!(
            summarise(&entries),
            ApiKeySummary {
                total: 5,
                enabled: 2,
                disabled: 2,
                revoked: 1,
                expired: 1,
                over_age: 1,
                never_used: 3,
                due_within_30_days: 1,
            }
        );
    }
}
