//! The SigV4 credential section of the compliance report: one row per credential with its
//! age against the cryptoperiod, its last use and state. A credential has one secret for
//! life, so it is measured from its creation; rotating means making a second credential,
//! moving callers over and deleting the first.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::aging;
use crate::clock::from_unix_ms;
use crate::credentials::{CredentialRecord, CredentialState};
use crate::timefmt::rfc3339;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialEntry {
    pub access_key_id: String,
    pub principal: String,
    pub state: CredentialState,
    pub created_at: String,
    pub age_days: i64,
    pub last_used_at: Option<String>,
    pub last_used_region: Option<String>,
    pub last_used_service: Option<String>,
    /// Creation plus the cryptoperiod.
    pub rotation_due_at: String,
    pub over_age: bool,
    pub due_within_30_days: bool,
    pub never_used: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CredentialSummary {
    pub total: u64,
    pub active: u64,
    pub inactive: u64,
    pub over_age: u64,
    pub never_used: u64,
    pub due_within_30_days: u64,
}

pub(crate) fn credential_entry(c: &CredentialRecord, now: OffsetDateTime, cryptoperiod: Duration) -> CredentialEntry {
    let created = from_unix_ms(c.created_at_ms);
    let a = aging(created, now, cryptoperiod);
    CredentialEntry {
        access_key_id: c.access_key_id.clone(),
        principal: c.principal.clone(),
        state: c.state,
        created_at: rfc3339(created),
        age_days: a.age_days,
        last_used_at: c.last_used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        last_used_region: c.last_used_region.clone(),
        last_used_service: c.last_used_service.clone(),
        rotation_due_at: rfc3339(a.rotation_due_at),
        over_age: a.over_age,
        due_within_30_days: a.due_soon,
        never_used: c.last_used_at_ms.is_none(),
    }
}

pub(crate) fn summarise(entries: &[CredentialEntry]) -> CredentialSummary {
    let mut s = CredentialSummary::default();
    for e in entries {
        s.total += 1;
        match e.state {
            CredentialState::Active => s.active += 1,
            CredentialState::Inactive => s.inactive += 1,
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
    use crate::clock::unix_ms;
    use crate::envelope::SealedRecord;
    use crate::report::tests::t0;

    pub(crate) fn credential(id: &str, state: &str, created_day: i64, used_day: Option<i64>) -> CredentialRecord {
        CredentialRecord {
            access_key_id: id.into(),
            principal: "acme-ci".into(),
            groups: vec!["service".into()],
            description: None,
            state: CredentialState::parse(state).expect("a credential state"),
            on_new_fingerprint: None,
            boundary: crate::model::Boundary::Process,
            sealed: SealedRecord {
                format: 1,
                kek_id: "k".into(),
                wrapped_dek: vec![1],
                nonce: vec![2],
                ciphertext: vec![3],
            },
            created_at_ms: unix_ms(t0() + Duration::days(created_day)),
            updated_at_ms: unix_ms(t0() + Duration::days(created_day)),
            last_used_at_ms: used_day.map(|d| unix_ms(t0() + Duration::days(d))),
            last_used_region: used_day.map(|_| "eu-west-1".into()),
            last_used_service: used_day.map(|_| "s3".into()),
            revision: 0,
        }
    }

    #[test]
    fn a_credential_is_measured_from_its_creation_and_never_used_until_a_use() {
        let period = Duration::days(365);
        let now = t0() + Duration::days(400);
        let old = credential_entry(&credential("SVAKOLD", "active", 0, Some(399)), now, period);
        assert_eq!((old.age_days, old.over_age, old.never_used), (400, true, false));
        assert_eq!(old.last_used_service.as_deref(), Some("s3"));
        let soon = credential_entry(&credential("SVAKSOON", "inactive", 50, None), now, period);
        assert_eq!(
            (soon.over_age, soon.due_within_30_days, soon.never_used),
            (false, true, true)
        );
        let s = summarise(&[old, soon]);
        assert_eq!(
            s,
            CredentialSummary {
                total: 2,
                active: 1,
                inactive: 1,
                over_age: 1,
                never_used: 1,
                due_within_30_days: 1,
            }
        );
    }
}
