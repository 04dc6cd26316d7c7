//! The signing-key section of the compliance report: one row per key with its age, usage
//! and rotation due date, and the counts an auditor reads first.
//!
//! A key is measured by its latest version: rotation replaces the material that signs, so
//! a key created years ago and rotated last week is not over-age. Usage sums every version.

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::aging;
use crate::clock::from_unix_ms;
use crate::keys::KeyDetails;
use crate::keys::model::{Algorithm, KeyState};
use crate::timefmt::rfc3339;

/// One key of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyEntry {
    pub name: String,
    pub algorithm: Algorithm,
    pub owner: String,
    pub tags: BTreeMap<String, String>,
    pub state: KeyState,
    pub created_at: String,
    /// Whole days since the key was created.
    pub age_days: i64,
    pub version_count: usize,
    pub latest_version: u32,
    pub latest_version_created_at: String,
    /// Whole days since the latest version was created: what the cryptoperiod measures.
    pub latest_version_age_days: i64,
    /// The most recent sign or verify with any version.
    pub last_used_at: Option<String>,
    pub sign_count: u64,
    pub verify_count: u64,
    /// The latest version's creation plus the cryptoperiod.
    pub rotation_due_at: String,
    /// How often the scheduler gives the key a new version; `None` when it does not.
    pub auto_rotate_period: Option<String>,
    /// When the scheduler rotates it next (its latest version's creation plus the period);
    /// `None` when it does not rotate automatically or is not enabled (only enabled keys
    /// are rotated). A time in the past means the rotation is overdue: the scheduler has not
    /// run (no node serving) or failed (its log says why).
    pub next_auto_rotation_at: Option<String>,
    /// The latest version is older than the cryptoperiod.
    pub over_age: bool,
    /// Not over-age, but due for rotation within 30 days.
    pub due_within_30_days: bool,
    /// No version has ever signed or verified.
    pub never_used: bool,
}

/// Counts over the key section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeySummary {
    pub total: u64,
    pub enabled: u64,
    pub disabled: u64,
    pub pending_deletion: u64,
    pub over_age: u64,
    pub never_used: u64,
    pub due_within_30_days: u64,
}

/// The row of one key as of `now`.
pub(crate) fn key_entry(details: &KeyDetails, now: OffsetDateTime, cryptoperiod: Duration) -> KeyEntry {
    let record = &details.record;
    let created = from_unix_ms(record.created_at_ms);
    // The latest version by number; a key whose versions are missing (not expected) is
    // measured from its own creation rather than left out of the inventory.
    let latest_created = details
        .versions
        .iter()
        .find(|v| v.version == record.latest_version)
        .or_else(|| details.versions.iter().max_by_key(|v| v.version))
        .map_or(created, |v| from_unix_ms(v.created_at_ms));
    let latest = aging(latest_created, now, cryptoperiod);
    let sign_count: u64 = details.versions.iter().map(|v| v.sign_count).sum();
    let verify_count: u64 = details.versions.iter().map(|v| v.verify_count).sum();
    let last_used = details.versions.iter().filter_map(|v| v.last_used_at_ms).max();
    KeyEntry {
        name: record.name.clone(),
        algorithm: record.algorithm,
        owner: record.owner.clone(),
        tags: record.tags.clone(),
        state: record.state,
        created_at: rfc3339(created),
        age_days: super::whole_days(created, now),
        version_count: details.versions.len(),
        latest_version: record.latest_version,
        latest_version_created_at: rfc3339(latest_created),
        latest_version_age_days: latest.age_days,
        last_used_at: last_used.map(|ms| rfc3339(from_unix_ms(ms))),
        sign_count,
        verify_count,
        rotation_due_at: rfc3339(latest.rotation_due_at),
        auto_rotate_period: record
            .auto_rotate_period_s
            .map(|s| crate::timefmt::format_duration(Duration::seconds(s))),
        next_auto_rotation_at: record
            .auto_rotate_period_s
            .filter(|_| record.state == KeyState::Enabled)
            .map(|s| rfc3339(latest_created + Duration::seconds(s))),
        over_age: latest.over_age,
        due_within_30_days: latest.due_soon,
        never_used: sign_count == 0 && verify_count == 0 && last_used.is_none(),
    }
}

/// Counts by state and by finding.
pub(crate) fn summarise(entries: &[KeyEntry]) -> KeySummary {
    let mut s = KeySummary::default();
    for e in entries {
        s.total += 1;
        match e.state {
            KeyState::Enabled => s.enabled += 1,
            KeyState::Disabled => s.disabled += 1,
            KeyState::PendingDeletion => s.pending_deletion += 1,
        }
        s.over_age += u64::from(e.over_age);
        s.never_used += u64::from(e.never_used);
        s.due_within_30_days += u64::from(e.due_within_30_days);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{key, t0, version};

    const YEAR: Duration = Duration::days(365);

    fn at(day: i64) -> OffsetDateTime {
        t0() + Duration::days(day)
    }

    #[test]
    fn a_key_whose_latest_version_is_older_than_the_cryptoperiod_is_over_age() {
        let e = key_entry(
            &key("old", "enabled", vec![version(1, 0, 3, 1, Some(10))]),
            at(400),
            YEAR,
        );
        assert!(e.over_age);
        assert!(!e.due_within_30_days);
        assert!(!e.never_used);
        assert_eq!((e.age_days, e.latest_version_age_days), (400, 400));
        assert_eq!(e.rotation_due_at, rfc3339(at(365)));
        assert_eq!(e.last_used_at, Some(rfc3339(at(10))));
    }

    #[test]
    fn rotation_resets_the_age_that_counts_but_not_the_keys_own_age() {
        let e = key_entry(
            &key(
                "rotated",
                "enabled",
                vec![version(1, 0, 0, 0, None), version(2, 399, 0, 0, None)],
            ),
            at(400),
            YEAR,
        );
        assert!(!e.over_age);
        assert_eq!((e.age_days, e.latest_version_age_days), (400, 1));
        assert_eq!((e.version_count, e.latest_version), (2, 2));
        assert_eq!(e.latest_version_created_at, rfc3339(at(399)));
        assert_eq!(e.rotation_due_at, rfc3339(at(399 + 365)));
        assert!(e.never_used);
        assert_eq!(e.last_used_at, None);
    }

    #[test]
    fn usage_sums_every_version_and_last_use_is_the_latest_of_any() {
        let e = key_entry(
            &key(
                "used",
                "enabled",
                vec![version(1, 0, 5, 2, Some(30)), version(2, 20, 1, 0, Some(25))],
            ),
            at(40),
            YEAR,
        );
        assert_eq!((e.sign_count, e.verify_count), (6, 2));
        assert_eq!(e.last_used_at, Some(rfc3339(at(30))));
        assert!(!e.never_used);
    }

    #[test]
    fn a_key_used_only_through_an_old_version_is_not_never_used() {
        let e = key_entry(
            &key(
                "k",
                "enabled",
                vec![version(1, 0, 0, 1, Some(1)), version(2, 5, 0, 0, None)],
            ),
            at(6),
            YEAR,
        );
        assert!(!e.never_used);
    }

    #[test]
    fn a_key_due_within_thirty_days_is_flagged_but_not_over_age() {
        let e = key_entry(&key("soon", "enabled", vec![version(1, 0, 0, 0, None)]), at(350), YEAR);
        assert_eq!((e.over_age, e.due_within_30_days), (false, true));
    }

    #[test]
    fn tags_owner_and_algorithm_are_carried_over() {
        let e = key_entry(&key("k", "enabled", vec![version(1, 0, 0, 0, None)]), at(0), YEAR);
        assert_eq!(e.owner, "team-a");
        assert_eq!(e.algorithm, Algorithm::HmacSha256);
        assert_eq!(e.tags.get("env").map(String::as_str), Some("prod"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["algorithm"], "hmac-sha256", "shown as its stored text");
        assert_eq!(json["state"], "enabled");
    }

    #[test]
    fn the_summary_counts_states_and_findings() {
        let now = at(400);
        let entries: Vec<KeyEntry> = [
            key("a", "enabled", vec![version(1, 0, 1, 0, Some(1))]),
            key("b", "enabled", vec![version(1, 50, 0, 0, None)]),
            key("c", "disabled", vec![version(1, 400, 0, 0, None)]),
            key("d", "pending_deletion", vec![version(1, 0, 0, 0, None)]),
            key("e", "disabled", vec![version(1, 400, 0, 2, Some(400))]),
        ]
        .iter()
        .map(|k| key_entry(k, now, YEAR))
        .collect();
        assert_eq!(
            summarise(&entries),
            KeySummary {
                total: 5,
                enabled: 2,
                disabled: 2,
                pending_deletion: 1,
                over_age: 2,
                never_used: 3,
                due_within_30_days: 1,
            }
        );
    }
}
